import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  Orchestrator,
  OrchestraError,
  InvalidRequestError,
  AgentError,
  TimeoutError,
  CancelledError,
  StoreError,
} from '../index.mjs'
import { withAgents, collect } from './helpers.mjs'

const invalid = (code) => (e) => e instanceof InvalidRequestError && e instanceof OrchestraError && e.code === code

test('invalid requests reject with InvalidRequestError and the core code', async () => {
  const orch = withAgents()
  await assert.rejects(orch.run('sequential', 'x', { agents: ['ghost'] }), invalid('unknown_agent'))
  await assert.rejects(orch.run('zigzag', 'x', { agents: ['writer'] }), invalid('unknown_pattern'))
  await assert.rejects(orch.run('sequential', '   ', { agents: ['writer'] }), invalid('invalid_request'))
  await assert.rejects(orch.run('sequential', 'x', { agents: [] }), invalid('no_agents'))
  await assert.rejects(orch.run('sequential', 'x', { agents: ['writer'], sessionId: 'has space' }), invalid('invalid_session_id'))
  await assert.rejects(orch.getSession('bad/id'), invalid('invalid_session_id'))
})

test('invalid options name the field, and camelCase options reach the core', async () => {
  const orch = withAgents()
  await assert.rejects(
    orch.run('concurrent', 'x', { agents: ['writer'], options: { aggregator: 'loudest' } }),
    (e) => invalid('invalid_options')(e) && /aggregator/.test(e.message),
  )
  await assert.rejects(orch.run('group_chat', 'x', { agents: ['writer'], options: { manager: 'nobody' } }), (e) => e.code === 'invalid_options' && e.field === 'options.manager')
  // maxRounds is accepted because it becomes max_rounds
  const r = await orch.run('group_chat', 'x', { agents: ['writer'], options: { maxRounds: 2 } })
  assert.equal(r.steps.length, 2)
  orch.validate('group_chat', 'x', { agents: ['writer'], options: { max_rounds: 1 } })
  assert.throws(() => orch.validate('group_chat', 'x', { agents: ['writer'], options: { maxRoundz: 1 } }), invalid('invalid_options'))
})

test('a thrown agent error becomes agent_failed and fails the run', async () => {
  const orch = withAgents()
  orch.addAgent('broken', () => {
    throw new Error('disk on fire')
  })
  const events = await collect(orch.stream('sequential', 'x', { agents: ['writer', 'broken'] }))
  const failed = events.find((e) => e.type === 'agent_failed')
  assert.equal(failed.agent, 'broken')
  assert.equal(failed.error.code, 'agent_error')
  assert.equal(failed.error.message, 'disk on fire')
  assert.equal(failed.willRetry, false)
  const last = events.at(-1)
  assert.equal(last.type, 'run_failed')
  assert.equal(last.error.code, 'agent_failed')
  assert.equal(last.error.agent, 'broken')
  assert.equal(last.result.status, 'failed')
})

test('async rejections and non-Error throws are agent failures too', async () => {
  const orch = new Orchestrator()
  orch.addAgent('rejects', async () => {
    throw new TypeError('bad type')
  })
  orch.addAgent('throws-string', () => {
    throw 'plain string'
  })
  const a = await orch.run('sequential', 'x', { agents: ['rejects'] })
  assert.equal(a.error.code, 'agent_failed')
  assert.match(a.error.message, /bad type/)
  const b = await orch.run('sequential', 'x', { agents: ['throws-string'] })
  assert.match(b.error.message, /plain string/)
})

test('a retryable error is retried by the retry policy', async () => {
  const orch = new Orchestrator()
  let calls = 0
  orch.addAgent('flaky', () => {
    calls++
    if (calls < 3) throw Object.assign(new Error('503 upstream'), { retryable: true })
    return 'finally'
  })
  const events = await collect(orch.stream('sequential', 'x', { agents: ['flaky'], options: { retry: { maxRetries: 2, initialBackoffMs: 1 } } }))
  const result = events.at(-1).result
  assert.equal(result.status, 'completed')
  assert.equal(result.output, 'finally')
  assert.equal(result.steps[0].attempts, 3)
  assert.equal(events.filter((e) => e.type === 'retry').length, 2)
  assert.equal(events.filter((e) => e.type === 'agent_failed' && e.willRetry).length, 2)
})

test('a plain error is not retried', async () => {
  const orch = new Orchestrator()
  let calls = 0
  orch.addAgent('fails', () => {
    calls++
    throw new Error('permanent')
  })
  const r = await orch.run('sequential', 'x', { agents: ['fails'], options: { retry: { maxRetries: 3, initialBackoffMs: 1 } } })
  assert.equal(r.status, 'failed')
  assert.equal(calls, 1)
})

test('a failing agent falls back to the configured fallback', async () => {
  const orch = new Orchestrator()
  orch.addAgent('primary', () => {
    throw new Error('down')
  })
  orch.addAgent('backup', (input) => `backup did ${input.task}`)
  const events = await collect(orch.stream('sequential', 'job', { agents: ['primary'], options: { fallbacks: { primary: ['backup'] } } }))
  const fb = events.find((e) => e.type === 'fallback')
  assert.equal(fb.from, 'primary')
  assert.equal(fb.to, 'backup')
  const result = events.at(-1).result
  assert.equal(result.output, 'backup did job')
  assert.equal(result.steps.at(-1).fallbackFor, 'primary')
})

test('an agent returning an unusable value fails with invalid_agent_output', async () => {
  const orch = new Orchestrator()
  orch.addAgent('nothing', () => undefined)
  orch.addAgent('number', () => 42)
  const events = await collect(orch.stream('sequential', 'x', { agents: ['nothing'] }))
  assert.equal(events.find((e) => e.type === 'agent_failed').error.code, 'invalid_agent_output')
  const r = await orch.run('sequential', 'x', { agents: ['number'] })
  assert.equal(r.status, 'failed')
})

test('a run over its time limit ends timed_out; throwOnFailure raises TimeoutError', async () => {
  const orch = new Orchestrator()
  orch.addAgent('slow', () => new Promise(() => {}))
  const r = await orch.run('sequential', 'x', { agents: ['slow'], options: { timeoutMs: 50 } })
  assert.equal(r.status, 'timed_out')
  assert.equal(r.error.code, 'timeout')
  await assert.rejects(
    orch.run('sequential', 'x', { agents: ['slow'], options: { timeoutMs: 50 }, throwOnFailure: true }),
    (e) => e instanceof TimeoutError && e.code === 'timeout' && e.result.status === 'timed_out',
  )
})

test('throwOnFailure raises AgentError and CancelledError with the core codes', async () => {
  const orch = new Orchestrator()
  orch.addAgent('broken', () => {
    throw new Error('nope')
  })
  await assert.rejects(
    orch.run('sequential', 'x', { agents: ['broken'], throwOnFailure: true }),
    (e) => e instanceof AgentError && e.code === 'agent_failed' && e.agent === 'broken' && /nope/.test(e.message),
  )
  orch.addAgent('stuck', (input) => {
    orch.cancel(input.runId)
    return new Promise(() => {})
  })
  await assert.rejects(orch.run('sequential', 'x', { agents: ['stuck'], throwOnFailure: true }), (e) => e instanceof CancelledError && e.code === 'cancelled')
})

test('error classes form one tree with stable names', () => {
  for (const Cls of [InvalidRequestError, AgentError, TimeoutError, CancelledError, StoreError]) {
    const e = new Cls('m', 'c')
    assert.ok(e instanceof OrchestraError)
    assert.ok(e instanceof Error)
    assert.equal(e.name, Cls.name)
    assert.equal(e.code, 'c')
  }
})
