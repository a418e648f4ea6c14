// `run` is driven on the JS thread and calls JS agents directly; these tests
// cover what that path has to get right: interleaved sync and async agents,
// wake-ups from other threads (Tokio timers, Redis), time limits and
// cancellation while a JS Promise is pending, and the event loop being kept
// alive exactly as long as a run is pending.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { Worker } from 'node:worker_threads'
import { fileURLToPath } from 'node:url'
import { Orchestrator, RedisStore, TimeoutError } from '../index.mjs'
import { deferred } from './helpers.mjs'

const REDIS_URL = process.env.ORCHESTRA_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0'
const uniquePrefix = () => `orchestra-node-test-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function mixedOrchestrator(config) {
  const orch = new Orchestrator(config)
  orch.addAgent('syncUp', (input) => input.task.toUpperCase())
  orch.addAgent('asyncTag', async (input) => `<${input.task}>`)
  orch.addAgent('timerEcho', async (input) => {
    await sleep(input.task.length % 3)
    return `echo ${input.task}`
  })
  orch.addAgent('microtask', (input) => Promise.resolve().then(() => `micro ${input.task}`))
  orch.addAgent('count', (input) => `${input.messages.length}`)
  return orch
}

test('run() calls its agents directly: before the event loop turns, but not inside run() itself', async () => {
  const orch = new Orchestrator()
  const seen = []
  orch.addAgent('first', (input) => {
    seen.push(input.task)
    return 'one'
  })
  orch.addAgent('second', async () => {
    seen.push('second')
    return 'two'
  })
  const pending = orch.run('sequential', 'x', { agents: ['first', 'second'] })
  assert.deepEqual(seen, [])
  // A call through another thread would need an event loop turn; these are microtasks only.
  for (let i = 0; i < 10 && seen.length < 2; i++) await null
  assert.deepEqual(seen, ['x', 'second'])
  assert.equal((await pending).output, 'two')
})

test('input.messages (parsed when first read) behaves like a plain property', async () => {
  const orch = new Orchestrator()
  const seen = {}
  orch.addAgent('first', () => ({ content: 'one', data: { some_key: 1 } }))
  orch.addAgent('reader', async (input) => {
    await sleep(1)
    seen.keys = Object.keys(input)
    seen.json = JSON.parse(JSON.stringify(input)).messages
    seen.spread = { ...input }.messages
    seen.messages = input.messages
    seen.same = input.messages === seen.messages
    input.messages = ['replaced']
    seen.replaced = input.messages
    return 'read'
  })
  orch.addAgent('writer', (input) => {
    input.messages = []
    input.messages.push('mine')
    seen.written = input.messages
    return 'wrote'
  })
  const r = await orch.run('sequential', 'x', { agents: ['first', 'reader', 'writer'] })
  assert.equal(r.status, 'completed')
  assert.deepEqual(seen.keys, ['task', 'messages', 'sessionId', 'runId', 'state', 'metadata'])
  assert.deepEqual(
    seen.messages.map((m) => [m.role, m.name, m.content, m.data, typeof m.createdAt]),
    [
      ['user', undefined, 'x', undefined, 'string'],
      ['assistant', 'first', 'one', { some_key: 1 }, 'string'],
    ],
  )
  assert.deepEqual(seen.json, seen.messages)
  assert.deepEqual(seen.spread, seen.messages)
  assert.equal(seen.same, true)
  assert.deepEqual(seen.replaced, ['replaced'])
  assert.deepEqual(seen.written, ['mine'])
})

test('every call sees the conversation so far, round after round and across a session', async () => {
  const orch = new Orchestrator()
  const seen = []
  for (const name of ['a', 'b']) {
    orch.addAgent(name, async (input) => {
      seen.push(input.messages.map((m) => `${m.name ?? m.role}:${m.content}`))
      return `${name}${seen.length}`
    })
  }
  const first = await orch.run('group_chat', 'topic', { agents: ['a', 'b'], options: { maxRounds: 4 } })
  assert.deepEqual(seen, [
    ['user:topic'],
    ['user:topic', 'a:a1'],
    ['user:topic', 'a:a1', 'b:b2'],
    ['user:topic', 'a:a1', 'b:b2', 'a:a3'],
  ])
  seen.length = 0
  await orch.run('concurrent', 'again', { agents: ['a', 'b'], sessionId: first.sessionId })
  const history = ['user:topic', 'a:a1', 'b:b2', 'a:a3', 'b:b4', 'user:again']
  assert.deepEqual(seen, [history, history])
})

test('non-ASCII text crosses both ways intact', async () => {
  const orch = new Orchestrator()
  const seen = []
  orch.addAgent('first', (input) => `${input.task} → héllo ✓ 你好 😀`)
  orch.addAgent('second', async (input) => {
    seen.push(input.task, input.messages.map((m) => m.content))
    return `${input.task}!`
  })
  const r = await orch.run('sequential', 'café', { agents: ['first', 'second'] })
  assert.equal(r.output, 'café → héllo ✓ 你好 😀!')
  assert.deepEqual(seen, ['café → héllo ✓ 你好 😀', ['café', 'café → héllo ✓ 你好 😀']])
  assert.equal(r.task, 'café')
})

test('a text answer that looks like the wire format is still just text', async () => {
  const orch = new Orchestrator()
  const tricky = ['{"ok":{"content":"fake"}}', '\u0000\u0000x', '{"error":{"message":"no"}}', '']
  tricky.forEach((t, i) => {
    orch.addAgent(`sync${i}`, () => t)
    orch.addAgent(`async${i}`, async () => t)
  })
  for (let i = 0; i < tricky.length; i++) {
    for (const kind of ['sync', 'async']) {
      const r = await orch.run('sequential', 'x', { agents: [`${kind}${i}`] })
      assert.equal(r.status, 'completed', JSON.stringify(r.error))
      assert.equal(r.output, tricky[i])
    }
  }
})

test('many concurrent runs with sync, async and timer agents interleaved all get their own results', async () => {
  const orch = mixedOrchestrator()
  let turn = 0
  orch.addManager('alternate', (chat) => {
    turn++
    const next = chat.round % 2 === 0 ? 'syncUp' : 'microtask'
    return turn % 2 === 0 ? next : Promise.resolve(next)
  })
  orch.addCondition('fourMessages', async (state) => state.messages.length >= 5)
  const runs = []
  for (let i = 0; i < 60; i++) {
    const task = `t${i}`
    switch (i % 4) {
      case 0:
        runs.push(orch.run('sequential', task, { agents: ['syncUp', 'asyncTag', 'timerEcho', 'microtask'] }).then((r) => [r, `micro echo <T${i}>`]))
        break
      case 1:
        runs.push(orch.run('concurrent', task, { agents: ['syncUp', 'asyncTag', 'timerEcho'], options: { aggregator: 'merge' } }).then((r) => [r, null]))
        break
      case 2:
        runs.push(
          orch
            .run('group_chat', task, { agents: ['syncUp', 'microtask'], options: { manager: 'alternate', maxRounds: 10, termination: { custom: 'fourMessages' } } })
            .then((r) => [r, null]),
        )
        break
      default:
        runs.push(orch.run('sequential', task, { agents: ['count', 'count'] }).then((r) => [r, '2']))
    }
  }
  const results = await Promise.all(runs)
  results.forEach(([r, expected], i) => {
    assert.equal(r.status, 'completed', JSON.stringify(r.error))
    assert.equal(r.task, `t${i}`)
    if (expected !== null) assert.equal(r.output, expected)
    if (i % 4 === 1) {
      assert.match(r.output, new RegExp(`T${i}`))
      assert.match(r.output, new RegExp(`<t${i}>`))
      assert.match(r.output, new RegExp(`echo t${i}`))
    }
    if (i % 4 === 2) {
      // the condition ends the chat before maxRounds; the manager alternated
      assert.ok(r.steps.length >= 4 && r.steps.length < 10, `${r.steps.length} steps`)
      assert.deepEqual(r.steps.slice(0, 2).map((s) => s.agent), ['syncUp', 'microtask'])
    }
  })
  assert.equal(new Set(results.map(([r]) => r.runId)).size, 60)
  assert.equal(orch.activeRuns, 0)
})

test('a run started from inside an agent (nested) completes, and the outer run sees its result', async () => {
  const orch = mixedOrchestrator()
  orch.addAgent('nest', async (input) => (await orch.run('sequential', input.task, { agents: ['syncUp', 'asyncTag'] })).output)
  orch.addAgent('nestSync', (input) => orch.run('sequential', input.task, { agents: ['syncUp'] }).then((r) => r.output))
  const results = await Promise.all(Array.from({ length: 10 }, (_, i) => orch.run('sequential', `n${i}`, { agents: ['nest', 'nestSync'] })))
  results.forEach((r, i) => assert.equal(r.output, `<N${i}>`))
})

test('a retry backoff (a Tokio timer, woken off the JS thread) resumes the run', async () => {
  const orch = new Orchestrator()
  const calls = new Map()
  orch.addAgent('flaky', (input) => {
    const n = (calls.get(input.runId) ?? 0) + 1
    calls.set(input.runId, n)
    if (n === 1) {
      const e = new Error('try again')
      e.retryable = true
      throw e
    }
    return `ok after ${n}`
  })
  orch.addAgent('flakyAsync', async (input) => {
    const key = `${input.runId}/async`
    const n = (calls.get(key) ?? 0) + 1
    calls.set(key, n)
    if (n === 1) {
      const e = new Error('try again')
      e.retryable = true
      throw e
    }
    return `async ok after ${n}`
  })
  const results = await Promise.all(
    Array.from({ length: 20 }, () => orch.run('sequential', 'x', { agents: ['flaky', 'flakyAsync'], options: { retry: { maxRetries: 1, initialBackoffMs: 5 } } })),
  )
  for (const r of results) {
    assert.equal(r.status, 'completed', JSON.stringify(r.error))
    assert.equal(r.output, 'async ok after 2')
    assert.deepEqual(r.steps.map((s) => s.attempts), [2, 2])
  }
})

test('runs on a RedisStore (replies woken off the JS thread) complete and are recorded', async () => {
  const orch = mixedOrchestrator({ store: new RedisStore(REDIS_URL, { prefix: uniquePrefix() }) })
  const results = await Promise.all(
    Array.from({ length: 20 }, (_, i) => orch.run('sequential', `r${i}`, { agents: ['syncUp', 'timerEcho', 'asyncTag'] })),
  )
  results.forEach((r, i) => assert.equal(r.output, `<echo R${i}>`))
  const again = await orch.run('sequential', 'more', { agents: ['count'], sessionId: results[0].sessionId })
  assert.equal(again.output, '5')
  const session = await orch.getSession(results[0].sessionId)
  assert.equal(session.runs.length, 2)
  await Promise.all(results.map((r) => orch.deleteSession(r.sessionId)))
})

test('a run time limit fires while a JS agent Promise is pending; its late answer is ignored', async () => {
  const orch = new Orchestrator()
  const late = deferred()
  let settled = false
  orch.addAgent('slow', async () => {
    await late.promise
    settled = true
    return 'too late'
  })
  const started = Date.now()
  const r = await orch.run('sequential', 'x', { agents: ['slow'], options: { timeoutMs: 30 } })
  assert.equal(r.status, 'timed_out')
  assert.equal(r.error.code, 'timeout')
  assert.equal(settled, false)
  assert.ok(Date.now() - started < 5000)
  late.resolve()
  await sleep(1)
  assert.equal(settled, true)
  orch.addAgent('never', () => new Promise(() => {}))
  await assert.rejects(
    orch.run('sequential', 'x', { agents: ['never'], options: { timeoutMs: 10 }, throwOnFailure: true }),
    (e) => e instanceof TimeoutError && e.code === 'timeout',
  )
  orch.addAgent('fast', () => 'fine')
  assert.equal((await orch.run('sequential', 'y', { agents: ['fast'] })).output, 'fine')
})

test('an agent time limit with a fallback: the fallback answers while the first agent is still pending', async () => {
  const orch = new Orchestrator()
  orch.addAgent('hangs', () => new Promise(() => {}))
  orch.addAgent('backup', async (input) => `backup did ${input.task}`)
  const r = await orch.run('sequential', 'job', { agents: ['hangs'], options: { agentTimeoutMs: 20, fallbacks: { hangs: ['backup'] } } })
  assert.equal(r.status, 'completed', JSON.stringify(r.error))
  assert.equal(r.output, 'backup did job')
})

test('cancel() from a timer while the agent Promise is pending ends the run cancelled', async () => {
  const orch = new Orchestrator()
  const inside = deferred()
  orch.addAgent('stuck', (input) => {
    inside.resolve(input.runId)
    return new Promise(() => {})
  })
  const pending = orch.run('sequential', 'x', { agents: ['stuck'] })
  const runId = await inside.promise
  assert.equal(orch.activeRuns, 1)
  assert.equal(orch.cancel(runId), true)
  const r = await pending
  assert.equal(r.status, 'cancelled')
  assert.equal(r.error.code, 'cancelled')
  assert.equal(orch.activeRuns, 0)
})

test('an AbortSignal cancels a run whose agent is pending', async () => {
  const orch = new Orchestrator()
  orch.addAgent('stuck', () => new Promise(() => {}))
  const controller = new AbortController()
  const pending = orch.run('sequential', 'x', { agents: ['stuck'], signal: controller.signal })
  setTimeout(() => controller.abort(), 10)
  const r = await pending
  assert.equal(r.status, 'cancelled')
})

test('an agent that rejects with a non-Error fails the step with agent_failed', async () => {
  const orch = new Orchestrator()
  orch.addAgent('rejects', () => Promise.reject('plain string'))
  orch.addAgent('throwsSymbol', () => {
    throw Symbol('odd')
  })
  const a = await orch.run('sequential', 'x', { agents: ['rejects'] })
  assert.equal(a.status, 'failed')
  assert.equal(a.error.code, 'agent_failed')
  assert.match(a.error.message, /plain string/)
  const b = await orch.run('sequential', 'x', { agents: ['throwsSymbol'] })
  assert.equal(b.status, 'failed')
  assert.equal(b.error.code, 'agent_failed')
})

function runChild(source) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', source], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('error', reject)
    child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
}

const INDEX = JSON.stringify(new URL('../index.mjs', import.meta.url).href)

test('a pending run waiting only on a Tokio timer keeps the process alive until it ends', { timeout: 20000 }, async () => {
  const { code, stdout, stderr } = await runChild(`
    import { Orchestrator } from ${INDEX}
    const orch = new Orchestrator()
    let calls = 0
    orch.addAgent('flaky', () => {
      if (calls++ === 0) {
        const e = new Error('later')
        e.retryable = true
        throw e
      }
      return 'second try'
    })
    const r = await orch.run('sequential', 'x', { agents: ['flaky'], options: { retry: { maxRetries: 1, initialBackoffMs: 300 } } })
    console.log(JSON.stringify({ status: r.status, output: r.output }))
  `)
  assert.equal(code, 0, stderr)
  assert.deepEqual(JSON.parse(stdout), { status: 'completed', output: 'second try' })
})

test('the process exits by itself once its runs (memory and Redis) have finished', { timeout: 20000 }, async () => {
  const { code, stdout, stderr } = await runChild(`
    import { Orchestrator, RedisStore } from ${INDEX}
    const stores = [undefined, new RedisStore(${JSON.stringify(REDIS_URL)}, { prefix: 'orchestra-node-exit-test-' + process.pid })]
    let done = 0
    for (const store of stores) {
      const orch = new Orchestrator({ store })
      orch.addAgent('sync', (input) => input.task + '!')
      orch.addAgent('timer', (input) => new Promise((r) => setTimeout(() => r(input.task + '?'), 2)))
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => orch.run('sequential', 't' + i, { agents: ['sync', 'timer'] })))
      done += results.filter((r) => r.output.endsWith('!?')).length
      await Promise.all(results.map((r) => orch.deleteSession(r.sessionId)))
    }
    console.log(done)
  `)
  assert.equal(code, 0, stderr)
  assert.equal(stdout.trim(), '40')
})

const INDEX_CJS = JSON.stringify(fileURLToPath(new URL('../index.js', import.meta.url)))

function worker(source) {
  return new Promise((resolve, reject) => {
    const w = new Worker(source, { eval: true })
    const messages = []
    w.on('message', (m) => {
      messages.push(m)
      if (m === 'started') w.terminate()
    })
    w.on('error', reject)
    w.on('exit', (code) => resolve({ code, messages }))
  })
}

test('runs in worker threads are driven on each worker\'s own thread', { timeout: 20000 }, async () => {
  const source = `
    const { parentPort } = require('node:worker_threads')
    const { Orchestrator } = require(${INDEX_CJS})
    const orch = new Orchestrator()
    orch.addAgent('a', (input) => 'a:' + input.task)
    orch.addAgent('b', async (input) => {
      await new Promise((resolve) => setTimeout(resolve, 2))
      return 'b:' + input.task
    })
    Promise.all([1, 2, 3].map((n) => orch.run('sequential', 't' + n, { agents: ['a', 'b'] }))).then((rs) =>
      parentPort.postMessage(rs.map((r) => r.output)),
    )
  `
  const results = await Promise.all([worker(source), worker(source)])
  for (const { code, messages } of results) {
    assert.equal(code, 0)
    assert.deepEqual(messages, [['b:a:t1', 'b:a:t2', 'b:a:t3']])
  }
})

test('terminating a worker with runs pending (on a Promise and on a Tokio timer) is safe', { timeout: 20000 }, async () => {
  const source = `
    const { parentPort } = require('node:worker_threads')
    const { Orchestrator } = require(${INDEX_CJS})
    const orch = new Orchestrator()
    orch.addAgent('stuck', () => new Promise(() => {}))
    orch.addAgent('flaky', () => {
      const e = new Error('again')
      e.retryable = true
      throw e
    })
    orch.run('sequential', 't', { agents: ['stuck'] })
    orch.run('sequential', 't', { agents: ['flaky'], options: { retry: { maxRetries: 50, initialBackoffMs: 2 } } })
    setTimeout(() => parentPort.postMessage('started'), 10)
  `
  for (let i = 0; i < 3; i++) {
    const { messages } = await worker(source)
    assert.deepEqual(messages, ['started'])
  }
  const orch = new Orchestrator()
  orch.addAgent('after', () => 'still fine')
  assert.equal((await orch.run('sequential', 'x', { agents: ['after'] })).output, 'still fine')
})
