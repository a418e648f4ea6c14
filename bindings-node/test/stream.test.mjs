import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Orchestrator, EVENT_SCHEMA_VERSION, InvalidRequestError } from '../index.mjs'
import { withAgents, deferred, collect } from './helpers.mjs'

test('a stream yields every event in order, ending with run_completed', async () => {
  const orch = withAgents()
  const stream = orch.stream('sequential', 'tides', { agents: ['researcher', 'writer'] })
  assert.match(stream.runId, /^[0-9a-f-]{36}$/)
  const events = await collect(stream)
  assert.deepEqual(events.map((e) => e.type), [
    'run_started',
    'agent_started',
    'agent_completed',
    'agent_started',
    'agent_completed',
    'run_completed',
  ])
  assert.deepEqual(events.map((e) => e.seq), [1, 2, 3, 4, 5, 6])
  for (const e of events) {
    assert.equal(e.runId, stream.runId)
    assert.equal(e.sessionId, stream.sessionId)
    assert.equal(e.schemaVersion, EVENT_SCHEMA_VERSION)
  }
  const done = events.at(-1)
  assert.equal(done.result.output, 'article from facts about tides')
  assert.equal(done.result.status, 'completed')
  assert.equal(events[2].message.name, 'researcher')
  assert.equal(typeof events[2].durationMs, 'number')
})

test('event JSON is the core JSON: snake_case and the same bytes as raw', async () => {
  const orch = withAgents()
  const events = await collect(orch.stream('sequential', 'x', { agents: ['writer'] }))
  const started = events.find((e) => e.type === 'agent_started')
  const wire = JSON.parse(JSON.stringify(started))
  assert.equal(wire.run_id, started.runId)
  assert.equal(wire.schema_version, EVENT_SCHEMA_VERSION)
  assert.equal(wire.runId, undefined)
  assert.deepEqual(wire, started.raw)
  const done = JSON.parse(JSON.stringify(events.at(-1)))
  assert.equal(done.result.session_id, events.at(-1).result.sessionId)
  assert.ok(Array.isArray(done.result.steps))
})

test('the stream result() drains and returns the final result', async () => {
  const orch = withAgents()
  const stream = orch.stream('concurrent', 'compare', { agents: ['researcher', 'writer'], options: { aggregator: 'all' } })
  const result = await stream.result()
  assert.equal(result.status, 'completed')
  assert.equal(result.steps.length, 2)
})

test('an invalid request throws from stream() before anything runs', () => {
  const orch = withAgents()
  assert.throws(() => orch.stream('sequential', 'x', { agents: ['ghost'] }), (e) => e instanceof InvalidRequestError && e.code === 'unknown_agent')
  assert.throws(() => orch.stream('zigzag', 'x'), (e) => e.code === 'unknown_pattern')
})

test('breaking out of for-await cancels the run and the session records it as cancelled', async () => {
  const orch = new Orchestrator()
  const gate = deferred()
  let secondCalls = 0
  orch.addAgent('first', () => 'one')
  orch.addAgent('stuck', () => {
    secondCalls++
    gate.resolve()
    return new Promise(() => {}) // never answers
  })
  orch.addAgent('never', () => 'three')
  const stream = orch.stream('sequential', 'work', { agents: ['first', 'stuck', 'never'] })
  const seen = []
  for await (const ev of stream) {
    seen.push(ev.type)
    if (ev.type === 'agent_started' && ev.agent === 'stuck') {
      await gate.promise // the JS agent is running now
      break
    }
  }
  assert.equal(secondCalls, 1)
  const session = await orch.getSession(stream.sessionId)
  assert.equal(session.runs.length, 1)
  assert.equal(session.runs[0].runId, stream.runId)
  assert.equal(session.runs[0].status, 'cancelled')
  assert.equal(session.runs[0].error.code, 'cancelled')
  assert.ok(!session.runs[0].steps.some((s) => s.agent === 'never'))
  assert.equal(orch.activeRuns, 0)
})

test('a run in flight keeps the event loop alive while nobody awaits its events', async () => {
  const orch = new Orchestrator()
  const second = deferred()
  let calls = 0
  orch.addAgent('flaky', () => {
    calls++
    if (calls === 1) throw Object.assign(new Error('503 upstream'), { retryable: true })
    second.resolve()
    return 'ok'
  })
  const stream = orch.stream('sequential', 'x', { agents: ['flaky'], options: { retry: { maxRetries: 1, initialBackoffMs: 50 } } })
  // Left pending: a Tokio timer (the backoff) and the agent's second call,
  // no Promise of the addon. The run itself must hold the loop open.
  await second.promise
  const result = await stream.result()
  assert.equal(result.status, 'completed')
  assert.equal(calls, 2)
})

test('cancel() on a stream ends it with run_cancelled', async () => {
  const orch = new Orchestrator()
  orch.addAgent('stuck', () => new Promise(() => {}))
  const stream = orch.stream('sequential', 'wait', { agents: ['stuck'] })
  const types = []
  for await (const ev of stream) {
    types.push(ev.type)
    if (ev.type === 'agent_started') stream.cancel()
  }
  assert.equal(types.at(-1), 'run_cancelled')
})

test('an AbortSignal cancels run() and stream()', async () => {
  const orch = new Orchestrator()
  const controller = new AbortController()
  orch.addAgent('stuck', () => {
    controller.abort()
    return new Promise(() => {})
  })
  const r = await orch.run('sequential', 'wait', { agents: ['stuck'], signal: controller.signal })
  assert.equal(r.status, 'cancelled')

  const already = new AbortController()
  already.abort()
  const events = await collect(orch.stream('sequential', 'wait', { agents: ['stuck'], signal: already.signal }))
  assert.equal(events.at(-1).type, 'run_cancelled')
})

test('orch.cancel(runId) cancels a run in flight', async () => {
  const orch = new Orchestrator()
  let cancelled
  orch.addAgent('self-cancel', (input) => {
    cancelled = orch.cancel(input.runId)
    return new Promise(() => {})
  })
  const r = await orch.run('sequential', 'x', { agents: ['self-cancel'] })
  assert.equal(cancelled, true)
  assert.equal(r.status, 'cancelled')
  assert.equal(orch.cancel(r.runId), false)
})
