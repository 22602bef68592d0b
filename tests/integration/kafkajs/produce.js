// One producer sends spec.sends in order (each: topic, messages, compression, acks);
// emits the broker's answer of every send (with spec.errorsAreAnswers, a failed send
// is answered {error} and the next one goes on).
'use strict'

const { CompressionTypes, Partitioners } = require('kafkajs')
const { spec, kafka, messageIn, emit, errorOut, main } = require('./lib')

const CODECS = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP }

main(async () => {
  const producer = kafka().producer({
    idempotent: Boolean(spec.idempotent),
    maxInFlightRequests: spec.idempotent ? 1 : undefined,
    createPartitioner: Partitioners.DefaultPartitioner
  })
  await producer.connect()
  const sent = []
  for (const send of spec.sends) {
    let answer
    try {
      answer = await producer.send({
        topic: send.topic,
        acks: send.acks ?? -1,
        compression: CODECS[send.compression || 'none'],
        messages: send.messages.map(messageIn)
      })
    } catch (e) {
      if (!spec.errorsAreAnswers) throw e
      sent.push({ error: errorOut(e) })
      continue
    }
    sent.push(answer.map((a) => ({
      topic: a.topicName,
      partition: a.partition,
      errorCode: a.errorCode,
      baseOffset: Number(a.baseOffset)
    })))
  }
  await producer.disconnect()
  emit({ sent })
})
