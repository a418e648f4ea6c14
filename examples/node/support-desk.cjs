// A support desk in CommonJS: handoff between agents, a custom group chat
// manager, a custom planner, shared state, and errors with stable codes.
//
// Run: (cd examples/node && npm ci && node support-desk.cjs)
const assert = require('node:assert/strict')
const { Orchestrator, Handoff, InvalidRequestError } = require('orchestra-sdk')

async function main() {
  const orch = new Orchestrator()

  // Handoff: triage routes the customer; billing answers.
  orch.addAgent('triage', (input) => (/refund|invoice/i.test(input.task) ? new Handoff('billing', 'money question') : 'How can I help?'), {
    description: 'routes customers',
  })
  orch.addAgent(
    'billing',
    async (input) => ({
      content: `Refund issued for: ${input.task}`,
      data: { refund: true },
      statePatch: { refunds: (input.state.refunds ?? 0) + 1 },
    }),
    { description: 'refunds and invoices' },
  )
  const desk = await orch.run('handoff', 'I want a refund for order 42', { agents: ['triage', 'billing'] })
  console.log(`[handoff] ${desk.steps.map((s) => s.agent).join(' -> ')}: ${desk.output}`)
  assert.equal(desk.output, 'Refund issued for: I want a refund for order 42')
  const session = await orch.getSession(desk.sessionId)
  assert.deepEqual(session.state, { refunds: 1 })

  // Group chat with a custom manager: the writer drafts until the editor approves.
  let drafts = 0
  orch.addAgent('drafter', () => `Draft ${++drafts}`, { description: 'drafts replies' })
  orch.addAgent('editor', (input) => (input.messages.at(-1).content === 'Draft 2' ? 'APPROVED' : 'Try again'), {
    description: 'approves replies',
  })
  orch.addManager('alternate', {
    selectNext: (chat) => (chat.round % 2 === 0 ? 'drafter' : { agent: 'editor', reason: 'review' }),
    shouldTerminate: (chat) => (chat.transcript.at(-1)?.content === 'APPROVED' ? 'editor approved' : null),
    filterResult: (chat) => chat.transcript.filter((m) => m.name === 'drafter').at(-1).content,
  })
  const chat = await orch.run('group_chat', 'Reply to the customer', {
    agents: ['drafter', 'editor'],
    options: { manager: 'alternate', maxRounds: 10 },
  })
  console.log(`[group_chat] ${chat.termination} after ${chat.steps.length} turns: ${chat.output}`)
  assert.equal(chat.output, 'Draft 2')

  // Dynamic with a custom planner: billing and triage in parallel.
  orch.addPlanner('desk-planner', (request) => ({
    steps: [{ pattern: 'concurrent', agents: ['triage', 'billing'], task: request.task, options: { aggregator: 'all' } }],
    rationale: `both desks look at: ${request.task}`,
  }))
  for await (const event of orch.stream('dynamic', 'invoice question', { options: { planner: 'desk-planner' } })) {
    if (event.type === 'plan_created') console.log(`[dynamic] plan: ${event.plan.rationale}`)
    if (event.type === 'run_completed') console.log(`[dynamic] ${event.result.steps.length} steps`)
  }

  // Invalid requests throw typed errors with the core's codes.
  try {
    await orch.run('sequential', 'hello', { agents: ['nobody'] })
    assert.fail('expected an error')
  } catch (e) {
    assert.ok(e instanceof InvalidRequestError)
    console.log(`[errors] ${e.name} ${e.code}: ${e.message}`)
    assert.equal(e.code, 'unknown_agent')
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
