// One idempotent producer and one group member live through a broker restart. For
// each entry of spec.phases (records to send): the producer sends them, the member
// reads until it has them all and the group committed past them, and the script
// emits {phase, received}, then waits for a line on stdin (the test restarts the
// broker meanwhile) before the next phase. The last line is {done: true}.
'use strict'

const readline = require('readline')
const { Partitioners } = require('kafkajs')
const { spec, kafka, messageIn, messageOut, emit, changed, until, main } = require('./lib')

main(async () => {
  const client = kafka()
  const producer = client.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: Partitioners.DefaultPartitioner
  })
  const consumer = client.consumer({
    groupId: spec.groupId,
    maxWaitTimeInMs: 200,
    sessionTimeout: 10000,
    heartbeatInterval: 500
  })
  let received = []
  const committed = {}
  consumer.on(consumer.events.COMMIT_OFFSETS, (e) => {
    for (const p of e.payload.topics.flatMap((t) => t.partitions)) {
      committed[p.partition] = Number(p.offset)
    }
    changed()
  })
  await producer.connect()
  await consumer.connect()
  await consumer.subscribe({ topic: spec.topic, fromBeginning: true })
  await consumer.run({
    eachMessage: async ({ topic, partition, message }) => {
      received.push(messageOut(topic, partition, message))
      changed()
    }
  })
  const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]()
  for (const [index, messages] of spec.phases.entries()) {
    if (index > 0) await lines.next()
    await producer.send({ topic: spec.topic, acks: -1, messages: messages.map(messageIn) })
    await until(
      () =>
        received.length >= messages.length &&
        received.every((r) => (committed[r.partition] ?? -1) > r.offset)
    )
    emit({ phase: index, received })
    received = []
  }
  await consumer.disconnect()
  await producer.disconnect()
  emit({ done: true })
})
