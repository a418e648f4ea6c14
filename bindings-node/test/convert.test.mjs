import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const { toCamel, toSnake, eventToCamel, agentInputToCamel } = require('../lib/convert.js')

test('options in camelCase map to the core snake_case keys', () => {
  assert.deepEqual(toSnake({ timeoutMs: 1, maxRounds: 2, agentTimeoutMs: 3, retry: { maxRetries: 1, initialBackoffMs: 5 } }), {
    timeout_ms: 1,
    max_rounds: 2,
    agent_timeout_ms: 3,
    retry: { max_retries: 1, initial_backoff_ms: 5 },
  })
  assert.deepEqual(toSnake({ termination: { any: [{ textMention: 'OK' }, { maxMessages: 3 }] } }), {
    termination: { any: [{ text_mention: 'OK' }, { max_messages: 3 }] },
  })
  assert.deepEqual(toSnake({ max_rounds: 1 }), { max_rounds: 1 }, 'snake_case passes unchanged')
})

test('agent names and user data keep their keys', () => {
  assert.deepEqual(toSnake({ fallbacks: { mainWriter: ['backupWriter'] }, routes: { triageBot: ['billingBot'] } }), {
    fallbacks: { mainWriter: ['backupWriter'] },
    routes: { triageBot: ['billingBot'] },
  })
  assert.deepEqual(toSnake({ content: 'x', statePatch: { userName: 1 }, data: { someKey: 2 } }), {
    content: 'x',
    state_patch: { userName: 1 },
    data: { someKey: 2 },
  })
  assert.deepEqual(toCamel({ session_id: 's', state: { a_b: 1 }, metadata: { c_d: 2 }, messages: [{ created_at: 't', data: { e_f: 3 } }] }), {
    sessionId: 's',
    state: { a_b: 1 },
    metadata: { c_d: 2 },
    messages: [{ createdAt: 't', data: { e_f: 3 } }],
  })
})

test('a question and its answers keep their keys', () => {
  const q = { key: 'approve_plan:0', kind: 'plan', prompt: 'p', schema: { min_length: 1 }, context: { plan: { some_key: 1 } }, requested_at: 't' }
  assert.deepEqual(toCamel({ input: q, answers: { 'approve_plan:0': { approved: true, some_reason: 'x' } } }), {
    input: { key: 'approve_plan:0', kind: 'plan', prompt: 'p', schema: { min_length: 1 }, context: { plan: { some_key: 1 } }, requestedAt: 't' },
    answers: { 'approve_plan:0': { approved: true, some_reason: 'x' } },
  })
})

test('undefined values are dropped and a tool result is user data', () => {
  assert.deepEqual(toSnake({ a: undefined, bC: 1 }), { b_c: 1 })
  const ev = eventToCamel({ type: 'tool_completed', call_id: 'c', result: { x_y: 1 } })
  assert.deepEqual(ev, { type: 'tool_completed', callId: 'c', result: { x_y: 1 } })
  const done = eventToCamel({ type: 'run_completed', result: { run_id: 'r' } })
  assert.deepEqual(done.result, { runId: 'r' })
})

test('the agent input fast path gives exactly what toCamel gives', () => {
  const inputs = [
    {
      task: 't',
      messages: [
        { role: 'user', content: 'hi', created_at: '2026-01-01T00:00:00Z' },
        { role: 'assistant', content: 'yo', name: 'a', data: { some_key: 1 }, created_at: '2026-01-01T00:00:01Z' },
      ],
      session_id: 's',
      run_id: 'r',
      state: { a_b: { c_d: 1 } },
      metadata: { user_id: 2 },
    },
    { task: 't', messages: [], session_id: 's', run_id: 'r', state: null, metadata: {} },
    // the answer to the agent's question is user data
    { task: 't', messages: [], session_id: 's', run_id: 'r', answer: { num_words: 3 } },
    // an unknown field (a newer core) takes the general path
    { task: 't', messages: [{ role: 'tool', content: 'x', tool_call_id: 'c', created_at: 'z' }], session_id: 's', run_id: 'r', extra_field: 1 },
  ]
  for (const input of inputs) assert.deepEqual(agentInputToCamel(input), toCamel(input))
  assert.deepEqual(agentInputToCamel(inputs[2]).answer, { num_words: 3 })
  assert.equal(agentInputToCamel(inputs[3]).extraField, 1)
  assert.equal(agentInputToCamel(inputs[3]).messages[0].toolCallId, 'c')
})
