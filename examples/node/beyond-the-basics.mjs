// Budgets, a typed parallel handoff, an external stop and replay: the
// features beyond the five patterns, each checked as it runs.
//
// Run: (cd bindings-node && npm ci && npm run build) && (cd examples/node && npm ci && node beyond-the-basics.mjs)
import assert from 'node:assert/strict'
import { Handoff, Orchestrator } from 'orchestra-sdk'

const orch = new Orchestrator()
// Each desk answers "<name>: <task>" for 60 tokens costing 0.25.
for (const desk of ['research', 'draft', 'edit', 'review']) {
  orch.addAgent(desk, (input) => ({
    content: `${desk}: ${input.task}`,
    usage: { promptTokens: 40, completionTokens: 20, costMicros: 250_000 },
  }), { description: `the ${desk} desk` })
}

// 1. A cost budget: the run stops cleanly once it has cost 0.5.
let r = await orch.run('sequential', 'a launch note', {
  agents: ['research', 'draft', 'edit', 'review'],
  options: { termination: { any: [{ maxRounds: 10 }, { maxCost: 0.5 }] } },
})
console.log('cost budget:', r.termination, r.steps.length, 'steps')
assert.equal(r.termination, 'max_cost: 0.5')

// 2. A session budget across runs: 120 tokens per run, 200 for the session.
const outcomes = []
for (let i = 0; i < 3; i++) {
  r = await orch.run('sequential', 'again', {
    agents: ['research', 'draft'],
    sessionId: 'budgeted-session',
    options: { sessionBudget: { maxTokens: 200 } },
  })
  outcomes.push([r.steps.length, r.termination ?? null])
}
console.log('session budget:', JSON.stringify(outcomes))
assert.deepEqual(outcomes[2], [0, 'session_max_tokens: 200'])

// 3. A typed, parallel handoff: one task to three desks at once.
orch.addAgent('triage', (input) => {
  const answers = input.messages.filter((m) => m.name && m.name !== 'triage').map((m) => m.content)
  if (answers.length > 0) return `joined: ${answers.join(' | ')}`
  const payload = { ticket: 'T-7' }
  return [
    new Handoff('research', 'find the facts', { payload }),
    new Handoff('draft', 'write a first draft', { payload }),
    new Handoff('review', 'list the risks', { payload }),
  ]
}, { description: 'routes' })
const schema = { type: 'object', required: ['ticket'] }
const handed = await orch.run('handoff', 'launch plan', {
  agents: ['triage', 'research', 'draft', 'review'],
  options: { parallelHandoffs: true, payloadSchemas: { research: schema, draft: schema, review: schema } },
})
console.log('parallel handoff:', handed.output)
assert.ok(handed.output.startsWith('joined: research: find the facts'))

// 4. An external stop: the run completes with what it has. `gated` waits
//    until the stop has been asked for, so the stop lands mid-run.
let open
const gate = new Promise((resolve) => { open = resolve })
orch.addAgent('gated', async () => { await gate; return 'gated: done' }, { description: 'waits for a signal' })
const stream = orch.stream('sequential', 'long job', { agents: ['research', 'gated', 'edit', 'review'] })
let stopped
for await (const event of stream) {
  if (event.type === 'agent_started' && event.step === 1) {
    orch.stop(stream.runId, 'good enough')
    open()
  }
  if (event.result) stopped = event.result
}
console.log('stop:', stopped.termination, stopped.steps.length, 'steps')
assert.equal(stopped.termination, 'stopped: good enough')

// 5. Replay: the recorded run again, event by event, no agent called.
const replayed = []
for await (const event of orch.replay(handed)) replayed.push(event)
assert.equal(replayed.at(-1).result.output, handed.output)
console.log('replay:', replayed.length, 'events')
