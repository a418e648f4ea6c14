import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Orchestrator } from '../index.mjs'
import { toSnake } from '../lib/convert.js'
import { deferred, collect } from './helpers.mjs'

/** writer / critic agents; the critic approves from the fourth call on. */
function counting(calls) {
  const orch = new Orchestrator()
  orch.addAgent('writer', () => {
    calls.push('writer')
    return `draft ${calls.length}`
  }, { description: 'drafts' })
  orch.addAgent('critic', () => {
    calls.push('critic')
    return calls.length >= 4 ? 'APPROVED' : 'more'
  }, { description: 'reviews' })
  return orch
}

test('nested termination keys are converted to snake_case', () => {
  assert.deepEqual(
    toSnake({ termination: { any: [{ textMention: 'OK' }, { maxTokens: 5 }, { maxDurationMs: 9 }, { custom: 'myCheck' }] } }),
    { termination: { any: [{ text_mention: 'OK' }, { max_tokens: 5 }, { max_duration_ms: 9 }, { custom: 'myCheck' }] } },
  )
})

test('termination textMention ends a group chat', async () => {
  const calls = []
  const orch = counting(calls)
  const result = await orch.run('group_chat', 'a slogan', {
    agents: ['writer', 'critic'],
    options: { maxRounds: 10, termination: { textMention: 'APPROVED' } },
  })
  assert.equal(result.status, 'completed')
  assert.equal(result.termination, 'text_mention: APPROVED')
  assert.deepEqual(calls, ['writer', 'critic', 'writer', 'critic'])
  assert.deepEqual(result.options.termination, { textMention: 'APPROVED' })
})

test('termination maxTokens is a budget with a budget_exceeded event', async () => {
  const orch = new Orchestrator()
  orch.addAgent('spender', () => ({ content: 'spent', usage: { promptTokens: 40, completionTokens: 20 } }))
  const events = await collect(
    orch.stream('sequential', 't', {
      agents: ['spender', 'spender', 'spender'],
      options: { termination: { any: [{ maxTokens: 100 }, { maxRounds: 9 }] } },
    }),
  )
  const result = events.at(-1).result
  assert.equal(result.termination, 'max_tokens: 100')
  assert.equal(result.steps.length, 2)
  const budget = events.filter((e) => e.type === 'budget_exceeded')
  assert.equal(budget.length, 1)
  assert.equal(budget[0].budget, 'max_tokens')
  assert.equal(budget[0].limit, 100)
  assert.equal(budget[0].used, 120)
})

test('stop ends a run cleanly at the next step boundary', async () => {
  const orch = new Orchestrator()
  const started = deferred()
  const release = deferred()
  const calls = []
  orch.addAgent('gate', async () => {
    calls.push('gate')
    started.resolve()
    await release.promise
    return 'gate done'
  })
  orch.addAgent('after', () => {
    calls.push('after')
    return 'after'
  })
  const stream = orch.stream('sequential', 't', { agents: ['gate', 'after'] })
  const events = collect(stream)
  await started.promise
  assert.equal(orch.stop(stream.runId, 'enough'), true)
  release.resolve()
  const done = (await events).at(-1)
  assert.equal(done.type, 'run_completed')
  assert.equal(done.result.status, 'completed')
  assert.equal(done.result.termination, 'stopped: enough')
  assert.equal(done.result.output, 'gate done')
  assert.deepEqual(calls, ['gate'])
  assert.equal(orch.stop(stream.runId, 'again'), false)
  assert.equal(orch.stop('no-such-run'), false)
})

const VOLATILE = new Set(['timestamp', 'duration_ms', 'started_at', 'finished_at', 'created_at', 'updated_at'])
function stable(value) {
  if (Array.isArray(value)) return value.map(stable)
  if (value === null || typeof value !== 'object') return value
  const out = {}
  for (const [k, v] of Object.entries(value)) if (!VOLATILE.has(k)) out[k] = stable(v)
  return out
}

test('a replay yields the original events without calling any agent', async () => {
  const calls = []
  const orch = counting(calls)
  const original = await collect(
    orch.stream('group_chat', 'a slogan', {
      agents: ['writer', 'critic'],
      options: { maxRounds: 10, termination: { textMention: 'APPROVED' } },
    }),
  )
  const result = original.at(-1).result
  assert.equal(result.status, 'completed')
  const n = calls.length
  for (const record of [result, original.at(-1).raw.result]) {
    const replay = orch.replay(record)
    assert.equal(replay.runId, result.runId)
    assert.equal(replay.sessionId, result.sessionId)
    const replayed = await collect(replay)
    assert.deepEqual(
      replayed.map((e) => stable(e.toJSON())),
      original.map((e) => stable(e.toJSON())),
    )
  }
  assert.equal(calls.length, n)
})

test('a run record from a session replays on an orchestrator without agents', async () => {
  const orch = counting([])
  const result = await orch.run('sequential', 'tides', { agents: ['writer', 'critic'] })
  const session = await orch.getSession(result.sessionId)
  const recorded = session.runs.find((r) => r.runId === result.runId)
  const replayed = await new Orchestrator().replay(recorded).result()
  assert.equal(replayed.output, result.output)
  assert.deepEqual(replayed.steps.map((s) => s.agent), ['writer', 'critic'])
})

test('steps carry their policy decisions', async () => {
  const orch = new Orchestrator()
  let attempts = 0
  orch.addAgent('flaky', () => {
    attempts += 1
    if (attempts === 1) throw Object.assign(new Error('down'), { retryable: true })
    return 'ok'
  })
  const result = await orch.run('sequential', 't', {
    agents: ['flaky'],
    options: { retry: { maxRetries: 2, initialBackoffMs: 1 } },
  })
  assert.equal(result.status, 'completed')
  const [decision] = result.steps[0].policy
  assert.equal(decision.kind, 'retry')
  assert.equal(decision.agent, 'flaky')
  assert.equal(decision.attempt, 2)
  assert.equal(typeof decision.delayMs, 'number')
  assert.equal(result.options.retry.maxRetries, 2)
})

test('replay rejects what is not a run result', () => {
  const orch = new Orchestrator()
  assert.throws(() => orch.replay({ nope: true }), (e) => e.code === 'invalid_request')
})
