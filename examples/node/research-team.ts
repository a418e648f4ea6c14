// A typed research team: agents, events and errors with the package's TypeScript types.
//
// Type-check: (cd examples/node && npm ci && npx tsc --noEmit --strict -p tsconfig.json)
import {
  Orchestrator,
  Handoff,
  OrchestraError,
  InvalidRequestError,
  type AgentInput,
  type AgentResult,
  type ChatState,
  type OrchestrationEvent,
  type PlanRequest,
  type Plan,
  type PolicyDecision,
  type RunResult,
  type TerminationState,
} from 'orchestra-sdk'

const orch = new Orchestrator()

async function researcher(input: AgentInput): Promise<AgentResult> {
  const previous: number = input.messages.length
  return { content: `facts about ${input.task}`, data: { previous }, statePatch: { researched: true } }
}

orch
  .addAgent('researcher', researcher, { description: 'finds facts' })
  .addAgent('writer', (input: AgentInput) => `article: ${input.task}`, { description: 'writes' })
  .addAgent('router', () => new Handoff('writer', 'ready to write'))

orch.addManager('writer-first', (chat: ChatState) => (chat.round === 0 ? 'writer' : null))
orch.addPlanner(
  'single',
  (request: PlanRequest): Plan => ({
    steps: [{ pattern: 'sequential', agents: request.agents.map((a) => a.name).slice(0, 1), task: request.task }],
    rationale: 'first agent only',
  }),
)

orch.addCondition('two-replies', async (state: TerminationState): Promise<boolean> => {
  const spent: number = state.tokens + state.costMicros + state.elapsedMs
  return state.rounds >= 2 && state.messages.length >= 2 && spent >= 0
})

function describe(event: OrchestrationEvent): string {
  switch (event.type) {
    case 'agent_completed':
      return `${event.agent}: ${event.message.content} (${event.durationMs} ms)`
    case 'agent_failed':
      return `${event.agent} failed: ${event.error.code}${event.willRetry ? ', retrying' : ''}`
    case 'handoff':
      return `${event.from} -> ${event.to}: ${event.reason}`
    case 'circuit_opened':
      return `${event.agent}: circuit open for ${event.cooldownMs} ms after ${event.failures} failures`
    case 'budget_exceeded':
      return `${event.budget}: ${event.used} of ${event.limit}`
    case 'run_completed':
      return `done: ${event.result.output ?? ''}`
    default:
      return event.type
  }
}

async function main(): Promise<void> {
  const result: RunResult = await orch.run('sequential', 'tides', {
    agents: ['researcher', 'writer'],
    options: { timeoutMs: 30_000, retry: { maxRetries: 1 } },
  })
  console.log(result.status, result.output, result.usage.totalTokens)

  for await (const event of orch.stream('handoff', 'draft', { agents: ['router', 'writer'] })) {
    console.log(describe(event), JSON.stringify(event).length)
  }

  const chat = await orch.run('group_chat', 'talk', {
    agents: ['writer'],
    options: { manager: 'writer-first', maxRounds: 3, termination: { any: [{ textMention: 'DONE' }, { maxTokens: 10_000 }, { custom: 'two-replies' }] } },
  })
  const planned = await orch.run('dynamic', 'plan it', { options: { planner: 'single' } })
  console.log(chat.termination, planned.steps.length)

  const policy: PolicyDecision[] = result.steps.flatMap((s) => s.policy ?? [])
  console.log(policy.map((d) => (d.kind === 'fallback' ? `${d.from} -> ${d.to}` : `${d.kind} ${d.agent}`)))
  const replayed = await orch.replay(result).result()
  console.log(replayed?.output === result.output, orch.stop(result.runId, 'finished already'))

  const session = await orch.getSession(result.sessionId)
  if (session !== null) console.log(session.runs.length, session.state)

  try {
    await orch.run('sequential', 'x', { agents: ['ghost'] })
  } catch (e) {
    if (e instanceof InvalidRequestError) console.log(e.code, e.field)
    else if (e instanceof OrchestraError) console.log(e.code)
    else throw e
  }
}

void main()
