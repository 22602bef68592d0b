// Two members of one group share spec.topic's partitions. Once both hold disjoint
// assignments covering every partition, an admin describes and lists the groups
// (and tries resetOffsets on the running group), a producer sends spec.messages, and
// each member reads until all arrived and the group committed past them. Then
// member-b leaves, and member-a, reassigned every partition, reads spec.moreMessages.
// Emits what each member was assigned and read, and the admin's answers.
'use strict'

const { AssignerProtocol, Partitioners } = require('kafkajs')
const { spec, kafka, messageIn, messageOut, emit, errorOut, changed, until, main } = require('./lib')

main(async () => {
  const client = kafka()
  const admin = client.admin()
  await admin.connect()
  const metadata = await admin.fetchTopicMetadata({ topics: [spec.topic] })
  const partitions = metadata.topics[0].partitions.map((p) => p.partitionId).sort()
  const members = ['member-a', 'member-b'].map((name) => ({
    name,
    consumer: kafka(name).consumer({
      groupId: spec.groupId,
      maxWaitTimeInMs: 200,
      sessionTimeout: 10000,
      heartbeatInterval: 300
    }),
    assignment: [],
    received: [],
    committed: {}
  }))
  for (const member of members) {
    const { consumer } = member
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      member.assignment = (e.payload.memberAssignment[spec.topic] || []).slice().sort()
      changed()
    })
    consumer.on(consumer.events.COMMIT_OFFSETS, (e) => {
      for (const p of e.payload.topics.flatMap((t) => t.partitions)) {
        member.committed[p.partition] = Number(p.offset)
      }
      changed()
    })
    await consumer.connect()
    await consumer.subscribe({ topic: spec.topic, fromBeginning: true })
    await consumer.run({
      eachMessage: async ({ topic, partition, message }) => {
        member.received.push(messageOut(topic, partition, message))
        changed()
      }
    })
  }
  const shared = () => {
    const [a, b] = members.map((m) => m.assignment)
    const all = [...a, ...b].sort()
    return a.length > 0 && b.length > 0 && JSON.stringify(all) === JSON.stringify(partitions)
  }
  await until(shared)

  const described = await admin.describeGroups([spec.groupId])
  const listed = await admin.listGroups()
  let resetWhileRunning = null
  try {
    await admin.resetOffsets({ groupId: spec.groupId, topic: spec.topic, earliest: true })
  } catch (e) {
    resetWhileRunning = errorOut(e)
  }

  const send = async (messages) => {
    const producer = client.producer({ createPartitioner: Partitioners.DefaultPartitioner })
    await producer.connect()
    await producer.send({ topic: spec.topic, acks: -1, messages: messages.map(messageIn) })
    await producer.disconnect()
  }
  await send(spec.messages)

  const total = () => members.reduce((n, m) => n + m.received.length, 0)
  await until(
    () =>
      total() >= spec.messages.length &&
      members.every((m) => m.received.every((r) => (m.committed[r.partition] ?? -1) > r.offset))
  )
  const [a, b] = members
  const split = members.map((m) => ({ name: m.name, assignment: m.assignment, received: m.received }))

  // member-b leaves (LeaveGroup): member-a is reassigned every partition and reads on.
  await b.consumer.disconnect()
  await until(() => JSON.stringify(a.assignment) === JSON.stringify(partitions))
  a.received = []
  await send(spec.moreMessages)
  await until(
    () =>
      a.received.length >= spec.moreMessages.length &&
      a.received.every((r) => (a.committed[r.partition] ?? -1) > r.offset)
  )
  await a.consumer.disconnect()
  const offsets = await admin.fetchOffsets({ groupId: spec.groupId, topics: [spec.topic] })
  await admin.disconnect()
  emit({
    partitions,
    members: split,
    afterLeave: { assignment: a.assignment, received: a.received },
    described: described.groups.map((g) => ({
      ...g,
      members: g.members.map((m) => ({
        clientId: m.clientId,
        assignment: AssignerProtocol.MemberAssignment.decode(m.memberAssignment).assignment
      }))
    })),
    listed: listed.groups,
    resetWhileRunning,
    offsets
  })
})
