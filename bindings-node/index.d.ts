// Type declarations of orchestra-sdk (camelCase). Events additionally
// serialize (`toJSON`, `JSON.stringify`) to the core's exact snake_case JSON.

export type PatternName = 'sequential' | 'concurrent' | 'handoff' | 'group_chat' | 'dynamic'
export type Role = 'system' | 'user' | 'assistant' | 'tool'
export type RunStatus = 'running' | 'completed' | 'failed' | 'timed_out' | 'cancelled' | 'waiting_for_input'
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }
export type JsonObject = { [key: string]: JsonValue }

export interface Message {
  role: Role
  content: string
  /** The agent that wrote an assistant message. */
  name?: string
  data?: JsonValue
  createdAt: string
}

export interface Usage {
  promptTokens: number
  completionTokens: number
  totalTokens: number
  /**
   * Cost in millionths of the price table's currency (e.g. micro-USD); counts
   * towards `maxCost` and `sessionBudget.maxCost`. Absent when zero.
   */
  costMicros?: number
}

/** A handoff as the core sends it: the one that made an agent active. */
export interface HandoffInfo {
  to: string
  reason: string
  /** The typed payload, kept as the agent that handed off wrote it. */
  payload?: JsonValue
}

/** What an agent function receives. */
export interface AgentInput {
  /** The instruction for this step. */
  task: string
  /** The conversation so far: earlier session messages, then this run's. */
  messages: Message[]
  sessionId: string
  runId: string
  /** Shared session state, as of this step. */
  state: JsonValue
  /** The request's metadata. */
  metadata: JsonObject
  /**
   * The answer to the question this agent asked at this step (`InputRequired`),
   * once the run was resumed with it; absent before that.
   */
  answer?: JsonValue
  /**
   * In handoff runs, the handoff that made this agent active (with its
   * `payload`); absent for the first agent and in other patterns.
   */
  handoff?: HandoffInfo
}

export interface AgentOutputObject {
  content?: string
  data?: JsonValue
  /** A JSON merge patch (RFC 7396) applied to the shared session state. */
  statePatch?: JsonValue
  usage?: { promptTokens?: number; completionTokens?: number; totalTokens?: number; costMicros?: number }
  handoff?: Handoff | { to: string; reason?: string; payload?: JsonValue }
  /** More handoffs asked for in the same turn, after `handoff` (see `parallelHandoffs`). */
  handoffs?: Array<Handoff | { to: string; reason?: string; payload?: JsonValue }>
}

/**
 * A string, a handoff, several handoffs in one turn (an array: with
 * `parallelHandoffs` they run at once and their answers come back; otherwise
 * the first wins and a `handoff_conflict` event names them all), an output
 * object, or a question for a person.
 */
export type AgentResult = string | Handoff | Handoff[] | AgentOutputObject | InputRequired
/**
 * An agent: a sync or async function. Throw to fail the call; set `retryable: true` on the error to allow retries.
 * Throw or return an `InputRequired` to pause the run for a person's answer (then read as `input.answer`).
 */
export type AgentFn = (input: AgentInput) => AgentResult | Promise<AgentResult>

export interface AgentOptions {
  /** What the agent is good at; read by managers and planners. */
  description?: string
}

export interface AgentInfo {
  name: string
  description: string
}

/** Returned by an agent to pass control to another agent; `payload` is checked against `payloadSchemas`. */
export declare class Handoff {
  constructor(to: string, reason?: string, options?: { payload?: JsonValue })
  readonly to: string
  readonly reason: string
  readonly payload?: JsonValue
  toJSON(): { to: string; reason: string; payload?: JsonValue }
}

export interface ChatState {
  task: string
  participants: AgentInfo[]
  /** Messages written in this chat so far. */
  transcript: Message[]
  /** Rounds completed. */
  round: number
  usage: Usage
  runId: string
  sessionId: string
}

export type SpeakerChoice = string | { agent: string; reason?: string } | null | undefined
export type Awaitable<T> = T | Promise<T>
export type SelectNextFn = (chat: ChatState) => Awaitable<SpeakerChoice>

export interface GroupChatManager {
  /** The next speaker, or null to end the chat. */
  selectNext(chat: ChatState): Awaitable<SpeakerChoice>
  /** A reason to stop after the latest turn (or true), or null to go on. */
  shouldTerminate?(chat: ChatState): Awaitable<string | boolean | null | undefined>
  /** The chat's result; null means the last message. */
  filterResult?(chat: ChatState): Awaitable<string | null | undefined>
}

export interface PlanStep {
  pattern: Exclude<PatternName, 'dynamic'>
  agents: string[]
  task: string
  options?: RunOptions
}

export interface Plan {
  steps: PlanStep[]
  rationale?: string
  planner?: string
}

export interface LedgerEntry {
  step: PlanStep
  ok: boolean
  outcome: string
  failedAgents?: string[]
}

export interface Ledger {
  done: LedgerEntry[]
  remaining: PlanStep[]
  stalls: number
  replans: number
}

export interface PlanRequest {
  task: string
  agents: AgentInfo[]
  /** Present when replanning. */
  ledger?: Ledger
  runId: string
  sessionId: string
}

export type PlannerFn = (request: PlanRequest) => Awaitable<Plan>

/** What a custom termination condition is checked against. */
export interface TerminationState {
  /** Agent turns so far (group chat rounds; agent steps elsewhere). */
  rounds: number
  /** Agent messages so far, oldest first. */
  messages: Message[]
  tokens: number
  /** Cost so far in millionths of the currency. */
  costMicros: number
  elapsedMs: number
}

/** A custom termination predicate: `true` ends the run; a throw or any other value counts as `false`. */
export type ConditionFn = (state: TerminationState) => Awaitable<boolean>

export interface RetryPolicy {
  maxRetries?: number
  initialBackoffMs?: number
  maxBackoffMs?: number
}

/** A condition that ends a run cleanly (the run option `termination`, in every pattern). */
export type Termination =
  /** This many agent turns. */
  | { maxRounds: number }
  /** This many agent messages in the run. */
  | { maxMessages: number }
  /** The latest message contains this text. */
  | { textMention: string }
  /** This agent has just spoken. */
  | { speaker: string }
  /** A token budget: also emits `budget_exceeded`. */
  | { maxTokens: number }
  /** A cost budget (agents' `usage.costMicros` summed, in currency units): also emits `budget_exceeded`. */
  | { maxCost: number }
  | { maxDurationMs: number }
  /** A predicate registered on the orchestrator under this name (`addCondition`, or from Rust or Python). */
  | { custom: string }
  | { any: Termination[] }
  | { all: Termination[] }

/** Options: the common limits plus the pattern's own (camelCase or snake_case keys). */
export interface RunOptions {
  /** Total time for the run. */
  timeoutMs?: number
  /** Time for each agent call attempt. */
  agentTimeoutMs?: number
  /** Most agent calls in the run. */
  maxIterations?: number
  retry?: RetryPolicy
  /** For each agent, the agents to try in order when it fails for good. */
  fallbacks?: Record<string, string[]>
  /** Ends the run cleanly when it holds; `result.termination` names it. */
  termination?: Termination
  /** Bounds every run of the session together; a spent session starts no agent. */
  sessionBudget?: { maxTokens?: number; maxCost?: number }
  // sequential
  keepTask?: boolean
  // concurrent
  aggregator?: 'all' | 'first' | 'vote' | 'merge' | 'agent'
  summarizer?: string
  maxConcurrency?: number
  onFailure?: 'fail_fast' | 'collect_partial'
  // handoff
  start?: string
  routes?: Record<string, string[]>
  maxHandoffs?: number
  /** A JSON schema per target agent: a handoff to it must carry a `payload` that satisfies it. */
  payloadSchemas?: Record<string, JsonValue>
  /** An agent that hands off to several agents in one turn runs them all at once; their answers come back to it. */
  parallelHandoffs?: boolean
  // group_chat
  manager?: string
  maxRounds?: number
  // dynamic
  planner?: string
  maxStalls?: number
  maxReplans?: number
  /** Dynamic runs pause for a person to approve each plan before it runs. */
  approvePlan?: boolean
  // human input (every pattern)
  /** These agents act only after a person approved each of their steps. */
  approveAgents?: string[]
  /** A question not answered within this time ends the run `timed_out` (`input_expired`). */
  inputTimeoutMs?: number
  /** Write a checkpoint after every step (default: when the store is durable). */
  checkpoint?: boolean
  [key: string]: unknown
}

export interface RunRequestOptions {
  /** Agent names, in order. Optional for handoff and dynamic (default: all registered). */
  agents?: string[]
  /** Continue this session (created if unknown). */
  sessionId?: string
  options?: RunOptions
  /** Passed to every agent as `input.metadata`. */
  metadata?: JsonObject
  /** Cancels the run when aborted. */
  signal?: AbortSignal
}

export interface RunCallOptions extends RunRequestOptions {
  /** Reject with the matching OrchestraError when the run fails (a run paused for input does not reject). */
  throwOnFailure?: boolean
}

export interface ResumeOptions {
  /** Reject with the matching OrchestraError when the run fails (a run paused again does not reject). */
  throwOnFailure?: boolean
}

/**
 * What kind of pause: an agent's question (`InputRequired`), an approval of
 * a named agent (`approveAgents`), of a dynamic plan (`approvePlan`), or a
 * human participant's turn (`addHuman`).
 */
export type InputKind = 'agent' | 'approval' | 'plan' | 'human'

/**
 * A question a paused run waits on. Answers: approvals take `true`/`false` or
 * `{ approved, reason? }`; a human's turn takes text or `{ content, data? }`;
 * an agent's question whatever its `schema` allows.
 */
export interface InputRequest {
  /** Identifies the pause point within the run ("step:3", "approve:2", "approve_plan:0"). */
  key: string
  kind: InputKind
  /** The agent that asked, or the one waiting for approval. */
  agent?: string
  /** The step the answer belongs to. */
  step?: number
  /** What to show the person answering. */
  prompt: string
  /** A JSON schema the answer must satisfy (kept as given). */
  schema?: JsonValue
  /** Extra facts for the person answering, e.g. the plan to approve (kept as the core wrote it). */
  context?: JsonValue
  requestedAt: string
  /** After this, answers are refused and the run ends `timed_out`. */
  expiresAt?: string
}

/** Where a run stands, written after every step of a checkpointed run. */
export interface Checkpoint {
  version: number
  steps: number
  historyLen: number
  position?: JsonValue
  /** Times the run was resumed. */
  resumes: number
  updatedAt: string
}

export interface ErrorInfo {
  code: string
  message: string
  agent?: string
}

export interface AgentOutputRecord {
  content: string
  handoff?: { to: string; reason: string }
  data?: JsonValue
  statePatch?: JsonValue
  usage?: Usage
}

export interface Step {
  index: number
  agent: string
  fallbackFor?: string
  label?: string
  input: string
  status: 'completed' | 'failed'
  output?: AgentOutputRecord
  error?: ErrorInfo
  attempts: number
  startedAt: string
  durationMs: number
  /** Retries, fallbacks and circuit breaker decisions taken in this step, in order. */
  policy?: PolicyDecision[]
}

/** A decision a policy took during a step (the same facts as the `retry`, `fallback` and `circuit*` events). */
export type PolicyDecision =
  | { kind: 'retry'; agent: string; attempt: number; delayMs: number; error: ErrorInfo }
  | { kind: 'fallback'; from: string; to: string; reason: string }
  | { kind: 'circuit_opened'; agent: string; failures: number; cooldownMs: number }
  | { kind: 'circuit_half_open'; agent: string }
  | { kind: 'circuit_closed'; agent: string }
  /** The call was refused by an open breaker without reaching the agent. */
  | { kind: 'circuit_rejected'; agent: string; retryInMs: number }

export interface RunResult {
  runId: string
  sessionId: string
  pattern: string
  task: string
  agents: string[]
  status: RunStatus
  output?: string
  data?: JsonValue
  error?: ErrorInfo
  /** Why the run stopped, when a condition or `stop()` ended it (e.g. "text_mention: APPROVED"). */
  termination?: string
  partial: boolean
  steps: Step[]
  usage: Usage
  /** The request's options, kept so the run can be replayed (absent when empty). */
  options?: RunOptions
  metadata?: JsonObject
  /** The question the run waits on (status `waiting_for_input`). */
  input?: InputRequest
  /** Answers given to the run's questions, by `InputRequest.key`. */
  answers?: Record<string, JsonValue>
  checkpoint?: Checkpoint
  startedAt: string
  finishedAt?: string
  durationMs: number
}

export interface Session {
  id: string
  messages: Message[]
  state: JsonValue
  runs: RunResult[]
  metadata: JsonObject
  createdAt: string
  updatedAt: string
  version: number
}

export interface SessionSummary {
  id: string
  createdAt: string
  updatedAt: string
  messageCount: number
  runCount: number
  version: number
}

interface EventBase {
  schemaVersion: number
  runId: string
  sessionId: string
  /** 1, 2, 3… within a run. */
  seq: number
  timestamp: string
  /** The core's exact event JSON (snake_case), identical in every language and over SSE. */
  readonly raw: Record<string, unknown>
  toJSON(): Record<string, unknown>
}

export interface RunStartedEvent extends EventBase { type: 'run_started'; pattern: string; task: string; agents: string[] }
export interface AgentStartedEvent extends EventBase { type: 'agent_started'; agent: string; step: number; input: string }
export interface AgentDeltaEvent extends EventBase { type: 'agent_delta'; agent: string; step: number; delta: string }
export interface AgentCompletedEvent extends EventBase {
  type: 'agent_completed'
  agent: string
  step: number
  message: Message
  handoff?: { to: string; reason: string }
  durationMs: number
  usage: Usage
}
export interface AgentFailedEvent extends EventBase {
  type: 'agent_failed'
  agent: string
  step: number
  error: ErrorInfo
  attempt: number
  /** Whether a retry or a fallback follows. */
  willRetry: boolean
}
export interface ToolCalledEvent extends EventBase { type: 'tool_called'; agent: string; step: number; tool: string; callId: string; arguments: JsonValue }
export interface ToolCompletedEvent extends EventBase { type: 'tool_completed'; agent: string; step: number; tool: string; callId: string; result: JsonValue }
export interface RetryEvent extends EventBase { type: 'retry'; agent: string; step: number; attempt: number; delayMs: number; error: ErrorInfo }
export interface FallbackEvent extends EventBase { type: 'fallback'; from: string; to: string; reason: string }
/** An agent's circuit breaker opened: its calls fail fast for `cooldownMs`. */
export interface CircuitOpenedEvent extends EventBase { type: 'circuit_opened'; agent: string; step: number; failures: number; cooldownMs: number }
/** The cool-down passed: this step's call is the probe. */
export interface CircuitHalfOpenEvent extends EventBase { type: 'circuit_half_open'; agent: string; step: number }
/** The probe succeeded: calls go through again. */
export interface CircuitClosedEvent extends EventBase { type: 'circuit_closed'; agent: string; step: number }
export interface HandoffEvent extends EventBase { type: 'handoff'; from: string; to: string; reason: string }
/** An agent asked for several handoffs in one turn without `parallelHandoffs`: `chosen` (the first) wins. */
export interface HandoffConflictEvent extends EventBase { type: 'handoff_conflict'; agent: string; step: number; requested: string[]; chosen: string }
export interface SpeakerSelectedEvent extends EventBase { type: 'speaker_selected'; agent: string; round: number; reason: string }
export interface PlanCreatedEvent extends EventBase { type: 'plan_created'; plan: Plan }
export interface PlanUpdatedEvent extends EventBase { type: 'plan_updated'; plan: Plan; ledger: Ledger; reason: string }
/** A budget of the run's `termination` condition was used up; the run stops cleanly. */
export interface BudgetExceededEvent extends EventBase { type: 'budget_exceeded'; budget: string; limit: number; used: number }
export interface RunCompletedEvent extends EventBase { type: 'run_completed'; result: RunResult }
/** A remote (A2A) agent's task changed state: submitted, working, input-required, auth-required, completed, failed, canceled, rejected. */
export interface AgentTaskStateEvent extends EventBase { type: 'agent_task_state'; agent: string; step: number; taskId?: string; state: string; message?: string }
export interface RunFailedEvent extends EventBase { type: 'run_failed'; error: ErrorInfo; result: RunResult }
export interface RunCancelledEvent extends EventBase { type: 'run_cancelled'; reason: string; result: RunResult }
/** The run paused for input: the last event of its stream. Resume it with `orch.resume(runId, answer)`. */
export interface InputRequestedEvent extends EventBase { type: 'input_requested'; request: InputRequest; result: RunResult }
/** The first event of a resumed run's stream; recorded steps are not run again. */
export interface RunResumedEvent extends EventBase {
  type: 'run_resumed'
  pattern: string
  task: string
  agents: string[]
  /** Steps answered from the checkpoint. */
  recordedSteps: number
  /** The key of the question answered, if the run was waiting for one. */
  answered?: string
}

/** One step of a run. New event types may be added; switch on `type` with a default branch. */
export type OrchestrationEvent =
  | RunStartedEvent
  | AgentStartedEvent
  | AgentDeltaEvent
  | AgentCompletedEvent
  | AgentFailedEvent
  | ToolCalledEvent
  | ToolCompletedEvent
  | AgentTaskStateEvent
  | RetryEvent
  | FallbackEvent
  | CircuitOpenedEvent
  | CircuitHalfOpenEvent
  | CircuitClosedEvent
  | HandoffEvent
  | HandoffConflictEvent
  | SpeakerSelectedEvent
  | PlanCreatedEvent
  | PlanUpdatedEvent
  | BudgetExceededEvent
  | RunCompletedEvent
  | RunFailedEvent
  | RunCancelledEvent
  | InputRequestedEvent
  | RunResumedEvent

/** A run's events. Breaking out of `for await` cancels the run and waits until it is recorded. */
export declare class RunStream implements AsyncIterableIterator<OrchestrationEvent> {
  readonly runId: string
  /** The run's session (for `resumeStream`, known once the first event arrived). */
  readonly sessionId: string
  [Symbol.asyncIterator](): RunStream
  next(): Promise<IteratorResult<OrchestrationEvent, undefined>>
  /** Cancels the run and resolves once it has ended. */
  return(): Promise<IteratorResult<OrchestrationEvent, undefined>>
  /** Requests cancellation; the stream then ends with `run_cancelled`. */
  cancel(): void
  /** Consumes the rest of the stream; resolves to the run's result (paused: on `input_requested`). */
  result(): Promise<RunResult | null>
}

export interface MemoryStoreOptions {
  /** Idle time after which a session is dropped; 0 keeps sessions until evicted. Default 24 h. */
  ttlMs?: number
  /** Most sessions kept (least recently used evicted first). Default 10000. */
  maxSessions?: number
}

export declare class MemoryStore {
  constructor(options?: MemoryStoreOptions)
  readonly kind: 'memory'
}

export interface RedisStoreOptions {
  /** Prepended to every key (default "orchestra"). */
  prefix?: string
  /** Idle time after which a session expires; 0 keeps sessions until deleted. Default 24 h. */
  ttlMs?: number
  connectTimeoutMs?: number
  responseTimeoutMs?: number
}

/** Sessions in Redis; connects on first use. */
export declare class RedisStore {
  constructor(url: string, options?: RedisStoreOptions)
  readonly url: string
  readonly prefix: string
  readonly kind: 'redis'
  /** Resolves when Redis answers; rejects with StoreError otherwise. */
  ping(): Promise<void>
}

export interface OrchestratorConfig {
  /** Where sessions live (default: a MemoryStore). */
  store?: MemoryStore | RedisStore
}

/** An OpenAI-compatible chat model endpoint (`POST {baseUrl}/chat/completions`). */
export interface ModelConfig {
  baseUrl: string
  model: string
  /** Environment variable holding the API key. */
  apiKeyEnv?: string
  apiKeyHeader?: string
  query?: Record<string, string>
  headers?: Record<string, string>
  temperature?: number
  topP?: number
  maxTokens?: number
  stop?: string[]
  seed?: number
  stream?: boolean
  streamUsage?: boolean
  timeoutMs?: number
  maxRetries?: number
  maxRetryWaitMs?: number
  extraBody?: JsonObject
}

export interface OpenAIAgentConfig extends ModelConfig {
  name: string
  description?: string
  systemPrompt?: string
  maxToolRounds?: number
}

export interface HttpAgentOptions {
  description?: string
  timeoutMs?: number
  headers?: Record<string, string>
}

export interface A2aAgentConfig {
  cardUrl: string
  name?: string
  description?: string
  protocol?: 'auto' | '0.3' | '1.0'
  stream?: boolean
  bearerTokenEnv?: string
  headers?: Record<string, string>
  timeoutMs?: number
  pollIntervalMs?: number
}

export interface QueueAgentOptions {
  description?: string
  /** Time limit of one call (default 60 000). */
  timeoutMs?: number
  /** Namespace of the queue's keys or subjects; must match the workers' (default "orchestra"). */
  prefix?: string
  /** NATS only: durable delivery through a JetStream work-queue stream. */
  jetstream?: boolean
}

export interface ServeAgentOptions {
  /** `redis://host:6379` or `nats://host:4222`. */
  transport: string
  description?: string
  /** Must match the orchestrator's queue agent (default "orchestra"). */
  prefix?: string
  /** NATS only: take requests from a JetStream work-queue stream. */
  jetstream?: boolean
  /** A request its worker has not touched for this long goes to another worker (default 30 000). */
  claimIdleMs?: number
  /** A Redis URL: announce the worker in that agent registry while it runs (seen by `/agents`). */
  registryUrl?: string
  /** Key prefix of that registry (default "orchestra"). */
  registryPrefix?: string
}

/** A running queue worker (see `serveAgent`). */
export declare class AgentWorker {
  /** The worker's consumer name on the queue. */
  readonly id: string
  readonly running: boolean
  /** Stops taking requests; resolves once the request in flight is answered. */
  stop(): Promise<void>
  /** Resolves when the worker has stopped. */
  wait(): Promise<void>
  /** Ends the worker at once, as a crash would: another worker takes its request over. */
  abort(): void
}

/**
 * Serves `fn` as agent `name` to orchestrators through a queue; resolves once
 * the worker receives requests.
 */
export declare function serveAgent(name: string, fn: AgentFn, options: ServeAgentOptions): Promise<AgentWorker>

export declare class Orchestrator {
  constructor(config?: OrchestratorConfig)
  /** The five pattern names. */
  static readonly patterns: PatternName[]
  /** Registers (or replaces) an agent. */
  addAgent(name: string, fn: AgentFn, options?: AgentOptions): this
  /** Registers an agent service called with one JSON POST per step (docs/agent-protocol.md). */
  addHttpAgent(name: string, url: string, options?: HttpAgentOptions): this
  /** Registers an OpenAI-compatible chat model as an agent. */
  addOpenAIAgent(config: OpenAIAgentConfig): this
  /** Registers an LLM group chat manager, used with `options: { manager: name }`. */
  addLlmManager(name: string, model: ModelConfig, options?: { instructions?: string }): this
  /** Registers an LLM planner, used with `options: { planner: name }`. */
  addLlmPlanner(name: string, model: ModelConfig): this
  /** Fetches an A2A agent card and registers the peer; resolves to its name. */
  addA2aAgent(config: A2aAgentConfig): Promise<string>
  /** Registers an agent answered by workers behind a queue (`serveAgent`); resolves once connected. */
  addQueueAgent(name: string, transport: string, options?: QueueAgentOptions): Promise<this>
  removeAgent(name: string): boolean
  agents(): AgentInfo[]
  /** Registers a group chat manager, used with `options: { manager: name }`. */
  addManager(name: string, manager: SelectNextFn | GroupChatManager): this
  /** Registers a planner for the dynamic pattern, used with `options: { planner: name }`. */
  addPlanner(name: string, planner: PlannerFn): this
  /** Registers a termination predicate, used with `options: { termination: { custom: name } }`. */
  addCondition(name: string, condition: ConditionFn): this
  /** Registers a person as a participant: each turn pauses the run until it is resumed with their answer. */
  addHuman(name: string, options?: { description?: string; prompt?: string }): this
  /**
   * Resumes a run paused for input with the person's answer and runs it to its
   * end or its next pause; without an answer, continues a run whose process died.
   * Rejects with InvalidAnswerError, RunStateError, RunNotFoundError or InputExpiredError.
   */
  resume(runId: string, answer?: JsonValue, options?: ResumeOptions): Promise<RunResult>
  /** `resume()` as an event stream starting with `run_resumed`; its errors are thrown by the first iteration. */
  resumeStream(runId: string, answer?: JsonValue): RunStream
  /** The stored record of a run (paused runs included); null when unknown. */
  getRun(runId: string): Promise<RunResult | null>
  /** Cancels a run in flight here or waiting for input; false otherwise. */
  cancelRun(runId: string): Promise<boolean>
  /** Runs a pattern to the end. Rejects with InvalidRequestError for an invalid request. */
  run(pattern: PatternName, task: string, options?: RunCallOptions): Promise<RunResult>
  /** Starts a run; its events as an async iterator. Throws InvalidRequestError for an invalid request. */
  stream(pattern: PatternName, task: string, options?: RunRequestOptions): RunStream
  /** Checks a request without running it. */
  validate(pattern: PatternName, task: string, options?: RunRequestOptions): void
  /** The session, or null when unknown. */
  getSession(sessionId: string): Promise<Session | null>
  /** Deletes a session; false if there was none. */
  deleteSession(sessionId: string): Promise<boolean>
  listSessions(page?: { offset?: number; limit?: number }): Promise<SessionSummary[]>
  /** Cancels a run in flight in this process; false if it is not running here. */
  cancel(runId: string): boolean
  /**
   * Asks a run in flight to stop cleanly at its next step boundary; it completes
   * with `termination: "stopped: <reason>"`. False if it is not running here.
   */
  stop(runId: string, reason?: string): boolean
  /**
   * Replays a recorded run from its result without calling any agent; the same
   * events as the original (run and session ids kept), as an async iterator.
   */
  replay(result: RunResult): RunStream
  readonly activeRuns: number
  readonly storeKind: 'memory' | 'redis'
}

export type InvalidRequestCode =
  | 'invalid_request'
  | 'unknown_pattern'
  | 'unknown_agent'
  | 'no_agents'
  | 'invalid_options'
  | 'invalid_session_id'
  | 'invalid_answer'
export type StoreErrorCode = 'session_conflict' | 'store_unavailable' | 'store_corrupt' | 'store_error'

/** Base class of every error this package throws; `code` is the core's stable code. */
export declare class OrchestraError extends Error {
  constructor(message: string, code?: string)
  readonly code: string
  /** The offending request field, for invalid requests and options. */
  readonly field?: string
  /** The agent, for agent failures. */
  readonly agent?: string
  /** The agent's own error code (e.g. "agent_error", "agent_timeout"), for agent failures. */
  readonly agentCode?: string
  /** The run's result, when thrown for a run that did not complete. */
  readonly result?: RunResult
}
export declare class InvalidRequestError extends OrchestraError {
  readonly code: InvalidRequestCode
}
export declare class AgentError extends OrchestraError {
  readonly code: 'agent_failed'
}
export declare class TimeoutError extends OrchestraError {
  readonly code: 'timeout' | 'timed_out' | 'input_expired'
}
export declare class CancelledError extends OrchestraError {
  readonly code: 'cancelled'
}
export declare class StoreError extends OrchestraError {
  readonly code: StoreErrorCode
}
/** An answer does not satisfy the pending question's schema; the run keeps waiting. */
export declare class InvalidAnswerError extends InvalidRequestError {
  readonly code: 'invalid_answer'
}
/** The run's question expired (`inputTimeoutMs`); the run ended `timed_out`. */
export declare class InputExpiredError extends TimeoutError {
  readonly code: 'input_expired'
}
/** A person refused an approval; the run failed. */
export declare class ApprovalDeniedError extends OrchestraError {
  readonly code: 'approval_denied'
}
/** No run with this id in the session store. */
export declare class RunNotFoundError extends OrchestraError {
  readonly code: 'run_not_found'
}
/** The run is not waiting: it has finished, another answer was taken first, or an answer is missing. */
export declare class RunStateError extends OrchestraError {
  readonly code: 'run_not_waiting'
}
/** A stored checkpoint has a format this release cannot read. */
export declare class CheckpointError extends OrchestraError {
  readonly code: 'checkpoint_unreadable'
}
/** A handoff's payload does not satisfy the schema the run sets for its target (`payloadSchemas`). */
export declare class InvalidHandoffPayloadError extends OrchestraError {
  readonly code: 'invalid_handoff_payload'
}
/** Thrown or returned by an agent to pause the run until a person answers `prompt`. */
export declare class InputRequired extends OrchestraError {
  constructor(prompt: string, options?: { schema?: JsonValue; context?: JsonValue })
  readonly code: 'input_required'
  readonly prompt: string
  readonly schema?: JsonValue
  readonly context?: JsonValue
  toJSON(): { prompt: string; schema?: JsonValue; context?: JsonValue }
}

export declare const PATTERNS: PatternName[]
export declare const EVENT_SCHEMA_VERSION: number
