// One group member reads spec.topics until it has spec.expect records and the group
// has committed past each of them (KafkaJS' auto-commit after each batch); emits the
// records in arrival order, its assignment and the offsets committed.
// spec.sendsAfterFirstFetch: records produced once the consumer has fetched (so it
// has resolved its start offsets): how a test proves where a consumer starts.
'use strict'

const { Partitioners } = require('kafkajs')
const { spec, kafka, messageIn, messageOut, emit, changed, until, main } = require('./lib')

main(async () => {
  const client = kafka()
  const consumer = client.consumer({
    groupId: spec.groupId,
    maxWaitTimeInMs: 200,
    sessionTimeout: 10000,
    heartbeatInterval: 500
  })
  const received = []
  const committed = {}
  let assignment = null
  let fetched = false
  consumer.on(consumer.events.GROUP_JOIN, (e) => { assignment = e.payload.memberAssignment; changed() })
  consumer.on(consumer.events.FETCH, () => { fetched = true; changed() })
  consumer.on(consumer.events.COMMIT_OFFSETS, (e) => {
    for (const { topic, partitions } of e.payload.topics) {
      for (const { partition, offset } of partitions) committed[`${topic}/${partition}`] = Number(offset)
    }
    changed()
  })
  await consumer.connect()
  for (const topic of spec.topics) {
    await consumer.subscribe({ topic, fromBeginning: Boolean(spec.fromBeginning) })
  }
  await consumer.run({
    eachMessage: async ({ topic, partition, message }) => {
      received.push(messageOut(topic, partition, message))
      changed()
    }
  })
  if (spec.sendsAfterFirstFetch) {
    await until(() => fetched)
    const producer = client.producer({ createPartitioner: Partitioners.DefaultPartitioner })
    await producer.connect()
    for (const send of spec.sendsAfterFirstFetch) {
      await producer.send({ topic: send.topic, acks: -1, messages: send.messages.map(messageIn) })
    }
    await producer.disconnect()
  }
  const allCommitted = () =>
    received.length >= spec.expect &&
    received.every((m) => (committed[`${m.topic}/${m.partition}`] ?? -1) > m.offset)
  await until(allCommitted)
  await consumer.disconnect()
  emit({ received, assignment, committed })
})
