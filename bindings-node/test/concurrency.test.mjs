import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Orchestrator } from '../index.mjs'
import { deferred } from './helpers.mjs'

test('100 concurrent runs under Promise.all all complete with their own results', async () => {
  const orch = new Orchestrator()
  orch.addAgent('upper', async (input) => input.task.toUpperCase())
  orch.addAgent('tag', (input) => `<${input.task}>`)
  const tasks = Array.from({ length: 100 }, (_, i) => `task ${i}`)
  const results = await Promise.all(tasks.map((t) => orch.run('sequential', t, { agents: ['upper', 'tag'] })))
  assert.equal(results.length, 100)
  results.forEach((r, i) => {
    assert.equal(r.status, 'completed')
    assert.equal(r.output, `<TASK ${i}>`)
  })
  assert.equal(new Set(results.map((r) => r.runId)).size, 100)
  assert.equal(new Set(results.map((r) => r.sessionId)).size, 100)
  assert.equal(orch.activeRuns, 0)
})

test('100 concurrent runs are in flight together (agents overlap)', async () => {
  const orch = new Orchestrator()
  const all = deferred()
  let waiting = 0
  orch.addAgent('barrier', async () => {
    waiting++
    if (waiting === 100) all.resolve()
    await all.promise // only resolves once every run has reached its agent
    return 'through'
  })
  const results = await Promise.all(Array.from({ length: 100 }, () => orch.run('sequential', 'x', { agents: ['barrier'] })))
  assert.ok(results.every((r) => r.output === 'through'))
})

test('the JS thread stays free while Rust runs: the agent is released by a later macrotask', async () => {
  const orch = new Orchestrator()
  const release = deferred()
  orch.addAgent('waits', async () => {
    await release.promise
    return 'released'
  })
  const pending = orch.run('sequential', 'x', { agents: ['waits'] })
  // If run() blocked the JS thread, this timer could never fire and the run could never finish.
  let ticks = 0
  const timer = setInterval(() => {
    ticks++
    if (ticks === 3) release.resolve()
  }, 1)
  const r = await pending
  clearInterval(timer)
  assert.equal(r.output, 'released')
  assert.ok(ticks >= 3)
})

test('concurrent streams on one session all get recorded', async () => {
  const orch = new Orchestrator()
  orch.addAgent('a', async (input) => `did ${input.task}`)
  const runs = await Promise.all(
    Array.from({ length: 20 }, async (_, i) => {
      const stream = orch.stream('sequential', `t${i}`, { agents: ['a'], sessionId: 'shared-session' })
      return stream.result()
    }),
  )
  assert.ok(runs.every((r) => r.status === 'completed'))
  const session = await orch.getSession('shared-session')
  assert.equal(session.runs.length, 20)
  assert.equal(session.messages.length, 40)
})
