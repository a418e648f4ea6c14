const { test } = require('node:test')
const assert = require('node:assert/strict')
const sdk = require('..')
const { Orchestrator, Handoff, InvalidRequestError } = require('..')

test('require() gives the same API as import', async () => {
  const esm = await import('../index.mjs')
  const names = ['Orchestrator', 'RedisStore', 'MemoryStore', 'Handoff', 'OrchestraError', 'InvalidRequestError', 'AgentError', 'TimeoutError', 'CancelledError', 'StoreError']
  names.push('InputRequired', 'InvalidAnswerError', 'InputExpiredError', 'ApprovalDeniedError', 'RunNotFoundError', 'RunStateError', 'CheckpointError')
  names.push('InvalidHandoffPayloadError')
  for (const name of names) {
    assert.equal(typeof sdk[name], 'function', name)
    assert.equal(esm[name], sdk[name], `${name} is the same object in ESM and CJS`)
  }
  assert.equal(esm.default, sdk)
})

test('a CommonJS program runs a handoff', async () => {
  const orch = new Orchestrator()
  orch.addAgent('router', () => new Handoff('expert', 'needs an expert'))
  orch.addAgent('expert', (input) => `expert answer to ${input.task}`)
  const r = await orch.run('handoff', 'q', { agents: ['router', 'expert'] })
  assert.equal(r.output, 'expert answer to q')
  await assert.rejects(orch.run('handoff', 'q', { agents: ['nobody'] }), InvalidRequestError)
})

test('a CommonJS program pauses for an approval and resumes', async () => {
  const { InputRequired, RunStateError } = require('..')
  const orch = new Orchestrator()
  orch.addAgent('ask', (input) => (input.answer === undefined ? new InputRequired('ok?') : `got ${input.answer}`))
  orch.addAgent('act', (input) => `done: ${input.task}`)
  const paused = await orch.run('sequential', 'q', { agents: ['ask', 'act'], options: { approveAgents: ['act'] } })
  assert.equal(paused.input.kind, 'agent')
  const approval = await orch.resume(paused.runId, 'yes')
  assert.equal(approval.input.kind, 'approval')
  const done = await orch.resume(paused.runId, true)
  assert.equal(done.output, 'done: got yes')
  await assert.rejects(orch.resume(paused.runId, true), RunStateError)
})

test('the package resolves by name with exports for both module systems', () => {
  const pkg = require('../package.json')
  assert.equal(pkg.name, 'orchestra-sdk')
  assert.equal(pkg.exports['.'].require, './index.js')
  assert.equal(pkg.exports['.'].import, './index.mjs')
})
