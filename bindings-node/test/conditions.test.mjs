import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Orchestrator, InvalidRequestError } from '../index.mjs'

/** writer / critic agents; each reply counts the calls so far. */
function chat(calls) {
  const orch = new Orchestrator()
  orch.addAgent('writer', () => {
    calls.push('writer')
    return `draft ${calls.length}`
  }, { description: 'drafts' })
  orch.addAgent('critic', () => {
    calls.push('critic')
    return calls.length >= 4 ? 'looks good' : 'more'
  }, { description: 'reviews' })
  return orch
}

test('a custom condition ends a group chat', async () => {
  const calls = []
  const seen = []
  const orch = chat(calls)
  orch.addCondition('goodEnough', (state) => {
    seen.push(state)
    return state.messages.at(-1)?.content === 'looks good'
  })
  const result = await orch.run('group_chat', 'a slogan', {
    agents: ['writer', 'critic'],
    options: { maxRounds: 10, termination: { custom: 'goodEnough' } },
  })
  assert.equal(result.status, 'completed')
  assert.equal(result.termination, 'custom: goodEnough')
  assert.deepEqual(calls, ['writer', 'critic', 'writer', 'critic'])
  assert.equal(seen.length, 4)
  const last = seen.at(-1)
  assert.equal(last.rounds, 4)
  assert.equal(last.messages.length, 4)
  assert.equal(last.messages[0].name, 'writer')
  assert.equal(last.messages[0].role, 'assistant')
  assert.equal(typeof last.tokens, 'number')
  assert.equal(typeof last.costMicros, 'number')
  assert.equal(typeof last.elapsedMs, 'number')
})

test('a custom condition sees usage and ends a sequential run', async () => {
  const orch = new Orchestrator()
  for (const name of ['a', 'b', 'c']) {
    orch.addAgent(name, () => ({ content: name, usage: { promptTokens: 10, completionTokens: 5, costMicros: 7 } }))
  }
  const seen = []
  orch.addCondition('spent', (state) => {
    seen.push([state.rounds, state.tokens, state.costMicros])
    return state.tokens >= 30
  })
  const result = await orch.run('sequential', 't', {
    agents: ['a', 'b', 'c'],
    options: { termination: { any: [{ maxRounds: 9 }, { custom: 'spent' }] } },
  })
  assert.equal(result.termination, 'custom: spent')
  assert.deepEqual(result.steps.map((s) => s.agent), ['a', 'b'])
  assert.deepEqual(seen, [[1, 15, 7], [2, 30, 14]])
})

test('an async custom condition is awaited', async () => {
  const orch = new Orchestrator()
  for (const name of ['a', 'b', 'c']) orch.addAgent(name, () => name)
  orch.addCondition('afterB', async (state) => {
    await new Promise((resolve) => setTimeout(resolve, 5))
    return state.messages.at(-1).content === 'b'
  })
  const result = await orch.run('sequential', 't', {
    agents: ['a', 'b', 'c'],
    options: { termination: { custom: 'afterB' } },
  })
  assert.equal(result.status, 'completed')
  assert.equal(result.termination, 'custom: afterB')
  assert.equal(result.output, 'b')
})

test('a throwing, rejecting or non-boolean condition counts as false', async () => {
  const orch = new Orchestrator()
  for (const name of ['a', 'b', 'c']) orch.addAgent(name, () => name)
  let calls = 0
  orch.addCondition('throws', () => {
    calls += 1
    throw new Error('broken')
  })
  orch.addCondition('rejects', async () => {
    calls += 1
    throw new Error('broken')
  })
  orch.addCondition('truthy', () => {
    calls += 1
    return 'yes'
  })
  const result = await orch.run('sequential', 't', {
    agents: ['a', 'b', 'c'],
    options: { termination: { any: [{ custom: 'throws' }, { custom: 'rejects' }, { custom: 'truthy' }] } },
  })
  assert.equal(result.status, 'completed')
  assert.equal(result.termination ?? null, null)
  assert.equal(result.output, 'c')
  assert.equal(calls, 9)
})

test('an unknown custom condition is refused at run start', async () => {
  const calls = []
  const orch = chat(calls)
  orch.addCondition('known', () => true)
  await assert.rejects(
    orch.run('group_chat', 'x', { agents: ['writer', 'critic'], options: { termination: { any: [{ custom: 'unknown' }] } } }),
    (e) => e instanceof InvalidRequestError && e.code === 'invalid_options' && /unknown/.test(e.message),
  )
  assert.deepEqual(calls, [])
  assert.throws(() => orch.addCondition('bad', 'not a function'), TypeError)
})
