// JS functions served as queue workers (serveAgent) and orchestrated through
// queue agents, on Redis Streams, core NATS and JetStream. Needs Redis at
// 127.0.0.1:6379 and NATS with JetStream at 127.0.0.1:4222
// (scripts/ensure-services starts both); a missing service fails the tests.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { Orchestrator, serveAgent, Handoff, OrchestraError } from '../index.mjs'

const transports = {
  redis: { transport: 'redis://127.0.0.1:6379', jetstream: false },
  nats: { transport: 'nats://127.0.0.1:4222', jetstream: false },
  jetstream: { transport: 'nats://127.0.0.1:4222', jetstream: true },
}

for (const [kind, { transport, jetstream }] of Object.entries(transports)) {
  test(`served functions answer an orchestration over ${kind}`, async () => {
    const prefix = `js${randomUUID().replaceAll('-', '')}`
    const opts = { transport, jetstream, prefix }
    const triage = await serveAgent('triage', () => new Handoff('writer', 'needs prose'), opts)
    const writer = await serveAgent(
      'writer',
      async (input) => ({ content: `article after ${input.messages.length} messages`, statePatch: { written: true } }),
      opts,
    )
    assert.notEqual(triage.id, writer.id)
    assert.equal(writer.running, true)

    const orch = new Orchestrator()
    for (const name of ['triage', 'writer']) {
      await orch.addQueueAgent(name, transport, { description: name, prefix, jetstream, timeoutMs: 10000 })
    }
    const result = await orch.run('handoff', 'tides', { agents: ['triage', 'writer'] })
    assert.equal(result.status, 'completed', JSON.stringify(result.error))
    assert.match(result.output, /^article after \d+ messages$/)
    const session = await orch.getSession(result.sessionId)
    assert.deepEqual(session.state, { written: true })

    await triage.stop()
    await writer.stop()
    assert.equal(writer.running, false)
  })
}

test('an agent error crosses the queue with its retryability', async () => {
  const prefix = `js${randomUUID().replaceAll('-', '')}`
  const transport = 'redis://127.0.0.1:6379'
  let calls = 0
  const worker = await serveAgent(
    'flaky',
    () => {
      calls += 1
      if (calls === 1) throw Object.assign(new Error('busy'), { retryable: true })
      return 'second time lucky'
    },
    { transport, prefix },
  )
  const orch = new Orchestrator()
  await orch.addQueueAgent('flaky', transport, { prefix })
  const result = await orch.run('sequential', 't', {
    agents: ['flaky'],
    options: { retry: { maxRetries: 1, initialBackoffMs: 1 } },
  })
  assert.equal(result.output, 'second time lucky')
  assert.equal(calls, 2)
  await worker.stop()
})

test('an unreachable or unknown transport rejects', async () => {
  await assert.rejects(serveAgent('a', () => 'x', { transport: 'nats://127.0.0.1:1' }), OrchestraError)
  await assert.rejects(serveAgent('a', () => 'x', { transport: 'ftp://127.0.0.1:1' }), OrchestraError)
  await assert.rejects(serveAgent('a', () => 'x', {}), TypeError)
})

test('a script that only serves an agent stays up until the worker stops', async () => {
  const prefix = `js${randomUUID().replaceAll('-', '')}`
  const transport = 'redis://127.0.0.1:6379'
  const index = fileURLToPath(new URL('../index.js', import.meta.url))
  // The whole agent service: nothing but the worker keeps its process alive.
  const script = `
    const { serveAgent } = require(${JSON.stringify(index)})
    const worker = serveAgent('echo', (input) => {
      setImmediate(() => worker.then((w) => w.stop()))
      return 'served ' + input.task
    }, { transport: ${JSON.stringify(transport)}, prefix: ${JSON.stringify(prefix)} })
  `
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'inherit', 'inherit'] })
  const exited = once(child, 'exit')
  const orch = new Orchestrator()
  await orch.addQueueAgent('echo', transport, { prefix, timeoutMs: 10000 })
  const result = await orch.run('sequential', 'tides', { agents: ['echo'] })
  assert.equal(result.status, 'completed', JSON.stringify(result.error))
  assert.equal(result.output, 'served tides')
  const [code] = await exited
  assert.equal(code, 0)
})
