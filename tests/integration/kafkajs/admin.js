// Runs spec.ops in order on one admin client; emits each op's result or error.
'use strict'

const { AssignerProtocol } = require('kafkajs')
const { spec, kafka, emit, errorOut, main } = require('./lib')

function describeOut (described) {
  // Member metadata and assignment are the consumer protocol's bytes: decode them.
  return described.groups.map((g) => ({
    ...g,
    members: g.members.map((m) => ({
      memberId: m.memberId,
      clientId: m.clientId,
      clientHost: m.clientHost,
      metadata: AssignerProtocol.MemberMetadata.decode(m.memberMetadata),
      assignment: AssignerProtocol.MemberAssignment.decode(m.memberAssignment)?.assignment ?? null
    }))
  }))
}

main(async () => {
  const admin = kafka().admin()
  await admin.connect()
  const results = []
  for (const { op, args } of spec.ops) {
    try {
      let result = await admin[op](...(Array.isArray(args) ? args : [args]))
      if (op === 'describeGroups') result = describeOut(result)
      results.push({ op, result: result === undefined ? null : result })
    } catch (e) {
      results.push({ op, error: errorOut(e) })
    }
  }
  await admin.disconnect()
  emit({ results })
})
