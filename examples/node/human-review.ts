// A run that waits for people: an agent asks a question, an editor takes part
// in a group chat, a publisher approves before acting, and paused runs are
// resumed with the answers.
//
// Type-check: (cd examples/node && npm ci && npx tsc --noEmit --strict -p tsconfig.json)
import {
  Orchestrator,
  InputRequired,
  InvalidAnswerError,
  RunStateError,
  ApprovalDeniedError,
  type AgentInput,
  type AgentResult,
  type InputRequest,
  type JsonValue,
  type OrchestrationEvent,
  type RunResult,
} from 'orchestra-sdk'

const orch = new Orchestrator()

// Asks how long the piece should be, then writes it.
async function writer(input: AgentInput): Promise<AgentResult> {
  if (input.answer === undefined) {
    throw new InputRequired('How many words?', { schema: { type: 'integer', minimum: 50 } })
  }
  return `a ${String(input.answer)}-word piece on ${input.task}`
}

orch
  .addAgent('writer', writer, { description: 'writes pieces' })
  .addAgent('publisher', (input: AgentInput) => `published: ${input.task}`, { description: 'publishes' })
  .addHuman('editor', { description: 'the editor', prompt: 'Your notes?' })

/** What a review screen would show for a pending question. */
function describe(q: InputRequest): string {
  const who = q.agent ?? 'the run'
  return `[${q.kind}] ${who} asks: ${q.prompt}${q.expiresAt ? ` (until ${q.expiresAt})` : ''}`
}

/** Runs the pipeline, answering each question with `answerFor` (a person, in a real app). */
async function review(answerFor: (q: InputRequest) => Promise<JsonValue>): Promise<RunResult> {
  let result = await orch.run('sequential', 'tides', {
    agents: ['writer', 'publisher'],
    options: { approveAgents: ['publisher'], inputTimeoutMs: 3_600_000 },
  })
  while (result.status === 'waiting_for_input' && result.input) {
    console.log(describe(result.input))
    try {
      result = await orch.resume(result.runId, await answerFor(result.input), { throwOnFailure: true })
    } catch (e) {
      if (e instanceof InvalidAnswerError) continue // the run still waits: ask again
      if (e instanceof ApprovalDeniedError) console.log(`not published: ${e.result?.error?.message}`)
      if (e instanceof RunStateError) console.log('answered elsewhere, or cancelled')
      throw e
    }
  }
  return result
}

async function chatWithEditor(): Promise<void> {
  const events: OrchestrationEvent[] = []
  for await (const ev of orch.stream('group_chat', 'tides', { agents: ['writer', 'editor'] })) events.push(ev)
  const last = events[events.length - 1]
  if (last?.type === 'input_requested') {
    for await (const ev of orch.resumeStream(last.result.runId, { content: 'shorter, please' })) {
      if (ev.type === 'run_resumed') console.log(`resumed after ${ev.recordedSteps} recorded steps`)
    }
  }
  const stored = await orch.getRun(last?.runId ?? '')
  if (stored?.status === 'waiting_for_input') await orch.cancelRun(stored.runId)
}

export { review, chatWithEditor }
