import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Orchestrator, MemoryStore, RedisStore, StoreError } from '../index.mjs'

const REDIS_URL = process.env.ORCHESTRA_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0'
const uniquePrefix = () => `orchestra-node-test-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`

async function conversationContinues(orch) {
  let lastMessages
  orch.addAgent('counter', (input) => {
    lastMessages = input.messages
    const n = (input.state.count ?? 0) + 1
    return { content: `count ${n}`, statePatch: { count: n, last_task: input.task }, data: { someKey: n } }
  })
  const first = await orch.run('sequential', 'one', { agents: ['counter'] })
  const second = await orch.run('sequential', 'two', { agents: ['counter'], sessionId: first.sessionId })
  assert.equal(second.sessionId, first.sessionId)
  assert.equal(second.output, 'count 2')
  assert.deepEqual(lastMessages.map((m) => m.content), ['one', 'count 1', 'two'])
  assert.equal(lastMessages[1].name, 'counter')
  assert.deepEqual(lastMessages[1].data, { someKey: 1 })

  const session = await orch.getSession(first.sessionId)
  assert.equal(session.id, first.sessionId)
  assert.deepEqual(session.runs.map((r) => r.runId), [first.runId, second.runId])
  assert.ok(session.runs.every((r) => r.status === 'completed'))
  // state is user data: its keys are kept as written
  assert.deepEqual(session.state, { count: 2, last_task: 'two' })
  assert.equal(session.messages.length, 4)
  assert.ok(session.version >= 2)
  assert.equal(typeof session.createdAt, 'string')

  assert.equal(await orch.deleteSession(first.sessionId), true)
  assert.equal(await orch.getSession(first.sessionId), null)
  assert.equal(await orch.deleteSession(first.sessionId), false)
}

test('in-memory sessions continue a conversation and share state', async () => {
  const orch = new Orchestrator()
  assert.equal(orch.storeKind, 'memory')
  await conversationContinues(orch)
})

test('an explicit MemoryStore works and unknown sessions are null', async () => {
  const orch = new Orchestrator({ store: new MemoryStore({ maxSessions: 10 }) })
  assert.equal(await orch.getSession('never-seen'), null)
  assert.equal(await orch.deleteSession('never-seen'), false)
  orch.addAgent('a', () => 'x')
  await orch.run('sequential', 't', { agents: ['a'], sessionId: 'listed-1' })
  const list = await orch.listSessions()
  assert.equal(list[0].id, 'listed-1')
  assert.equal(list[0].runCount, 1)
})

test('a store that is not a store is rejected', () => {
  assert.throws(() => new Orchestrator({ store: {} }), TypeError)
})

test('sessions live in the real Redis and are shared between orchestrators', async () => {
  const prefix = uniquePrefix()
  const store = new RedisStore(REDIS_URL, { prefix })
  await store.ping()
  const orch = new Orchestrator({ store })
  assert.equal(orch.storeKind, 'redis')
  await conversationContinues(orch)

  // A second orchestrator (its own connection) on the same prefix sees the same session.
  orch.addAgent('echo', (input) => `echo ${input.task}`)
  const r = await orch.run('sequential', 'shared', { agents: ['echo'], sessionId: `shared-${prefix}` })
  const other = new Orchestrator({ store: new RedisStore(REDIS_URL, { prefix }) })
  const seen = await other.getSession(r.sessionId)
  assert.equal(seen.runs[0].output, 'echo shared')
  // ...and another prefix does not.
  const elsewhere = new Orchestrator({ store: new RedisStore(REDIS_URL, { prefix: uniquePrefix() }) })
  assert.equal(await elsewhere.getSession(r.sessionId), null)
  assert.equal(await other.deleteSession(r.sessionId), true)
  assert.equal(await orch.getSession(r.sessionId), null)
})

test('a cancelled run is recorded as cancelled in Redis', async () => {
  const orch = new Orchestrator({ store: new RedisStore(REDIS_URL, { prefix: uniquePrefix() }) })
  orch.addAgent('stuck', () => new Promise(() => {}))
  const stream = orch.stream('sequential', 'x', { agents: ['stuck'] })
  for await (const ev of stream) if (ev.type === 'agent_started') break
  const session = await orch.getSession(stream.sessionId)
  assert.equal(session.runs[0].status, 'cancelled')
  assert.equal(await orch.deleteSession(stream.sessionId), true)
})

test('an unreachable Redis gives StoreError with store_unavailable', async () => {
  const store = new RedisStore('redis://127.0.0.1:1/0', { prefix: 'unreachable', connectTimeoutMs: 200, responseTimeoutMs: 200 })
  await assert.rejects(store.ping(), (e) => e instanceof StoreError && e.code === 'store_unavailable')
  const orch = new Orchestrator({ store })
  await assert.rejects(orch.getSession('x'), (e) => e instanceof StoreError && e.code === 'store_unavailable')
  orch.addAgent('a', () => 'x')
  const r = await orch.run('sequential', 'x', { agents: ['a'] })
  assert.equal(r.status, 'failed')
  assert.equal(r.error.code, 'store_unavailable')
})

test('a malformed Redis URL is a StoreError at construction', () => {
  assert.throws(() => new RedisStore('not a url'), (e) => e instanceof StoreError && e.code === 'store_error')
})
