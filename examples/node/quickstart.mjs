// Quick start: agents are plain functions; run patterns; stream events; reuse a session.
//
// Run: (cd bindings-node && npm ci && npm run build) && (cd examples/node && npm ci && node quickstart.mjs)
import assert from 'node:assert/strict'
import { Orchestrator } from 'orchestra-sdk'

const orch = new Orchestrator()
orch.addAgent('researcher', async (input) => `Facts about ${input.task}: the moon pulls the sea.`, {
  description: 'finds facts',
})
orch.addAgent('writer', (input) => `Article: ${input.task}`, { description: 'writes prose' })
orch.addAgent('reviewer', (input) => `Looks good (${input.messages.length} messages read).`, {
  description: 'reviews drafts',
})

// 1. Sequential: each agent gets the previous agent's output.
const result = await orch.run('sequential', 'tides', {
  agents: ['researcher', 'writer'],
  options: { timeoutMs: 30_000 },
})
console.log(`[sequential] ${result.status}: ${result.output}`)
assert.equal(result.status, 'completed')
assert.equal(result.output, 'Article: Facts about tides: the moon pulls the sea.')

// 2. Concurrent, streamed: every event as it happens.
const types = []
for await (const event of orch.stream('concurrent', 'Compare offers', {
  agents: ['researcher', 'writer'],
  options: { aggregator: 'merge' },
})) {
  types.push(event.type)
  if (event.type === 'agent_completed') console.log(`[concurrent] ${event.agent} answered: ${event.message.content}`)
  if (event.type === 'run_completed') console.log(`[concurrent] merged:\n${event.result.output}`)
}
assert.equal(types[0], 'run_started')
assert.equal(types.at(-1), 'run_completed')

// 3. Sessions: a second run in the same session sees the earlier conversation.
const followUp = await orch.run('sequential', 'Review the article', {
  agents: ['reviewer'],
  sessionId: result.sessionId,
})
console.log(`[session] ${followUp.output}`)
const session = await orch.getSession(result.sessionId)
assert.equal(session.runs.length, 2)
console.log(`[session] ${session.id}: ${session.runs.length} runs, ${session.messages.length} messages`)
assert.equal(await orch.deleteSession(result.sessionId), true)
assert.equal(await orch.getSession(result.sessionId), null)
