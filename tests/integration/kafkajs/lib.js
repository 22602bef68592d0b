// Shared by the scripts test_client_kafkajs.py runs: one JSON spec in (argv[2]),
// JSON lines out on stdout (the last one is the result), KafkaJS' own log on stderr.
// Bytes cross the boundary as base64 (null stays null), so keys, values and headers
// are compared exactly.
'use strict'

const { EventEmitter } = require('events')
const { Kafka, logLevel } = require('kafkajs')

const spec = JSON.parse(process.argv[2] || '{}')

const toStderr = () => ({ namespace, level, label, log }) => {
  const { message, ...extra } = log
  process.stderr.write(`${label} [${namespace}] ${message} ${JSON.stringify(extra)}\n`)
}

function kafka (clientId) {
  return new Kafka({
    clientId: clientId || spec.clientId || 'ottla-kafkajs-test',
    brokers: spec.brokers,
    logLevel: logLevel.INFO,
    logCreator: toStderr,
    // Fail fast and loudly: a retry loop hides the broker's answer.
    retry: { retries: spec.retries ?? 5 }
  })
}

const b64 = (buf) => (buf == null ? null : Buffer.from(buf).toString('base64'))
const bytes = (text) => (text == null ? null : Buffer.from(text, 'base64'))

// KafkaJS headers are an object; a repeated key is an array of values.
function headersIn (pairs) {
  const headers = {}
  for (const [key, value] of pairs || []) {
    if (key in headers) {
      headers[key] = [].concat(headers[key], bytes(value))
    } else {
      headers[key] = bytes(value)
    }
  }
  return headers
}

function headersOut (headers) {
  const pairs = []
  for (const [key, value] of Object.entries(headers || {})) {
    for (const one of [].concat(value)) pairs.push([key, b64(one)])
  }
  return pairs
}

function messageIn (m) {
  const message = { key: bytes(m.key), value: bytes(m.value), headers: headersIn(m.headers) }
  if (m.partition != null) message.partition = m.partition
  if (m.timestamp != null) message.timestamp = String(m.timestamp)
  return message
}

function messageOut (topic, partition, message) {
  return {
    topic,
    partition,
    offset: Number(message.offset),
    key: b64(message.key),
    value: b64(message.value),
    headers: headersOut(message.headers),
    timestamp: Number(message.timestamp)
  }
}

function emit (object) {
  process.stdout.write(JSON.stringify(object) + '\n')
}

function errorOut (e) {
  return {
    name: e.name,
    type: e.type ?? null,
    code: e.code ?? null,
    message: e.message,
    errors: (e.errors || []).map((x) => ({ type: x.type ?? null, code: x.code ?? null, message: x.message })),
    groups: (e.groups || []).map((g) => ({ groupId: g.groupId, errorCode: g.errorCode }))
  }
}

// Every event handler calls changed(); until(predicate) resolves once predicate()
// holds, re-checked on each change: the scripts wait on state, never on time.
const changes = new EventEmitter()
changes.setMaxListeners(0)
const changed = () => changes.emit('change')

function until (predicate) {
  return new Promise((resolve) => {
    const check = () => {
      if (predicate()) {
        changes.off('change', check)
        resolve()
      }
    }
    changes.on('change', check)
    check()
  })
}

function main (body) {
  body().then(
    () => process.exit(0),
    (e) => {
      process.stderr.write(`FAILED: ${e && e.stack}\n`)
      emit({ failed: errorOut(e) })
      process.exit(1)
    }
  )
}

module.exports = { spec, kafka, b64, bytes, messageIn, messageOut, emit, errorOut, changed, until, main }
