// The JSON shapes of the orchestra-server API that the console reads.
// Events may gain new types: everything unknown is shown generically.

export interface Usage {
  prompt_tokens?: number;
  completion_tokens?: number;
  total_tokens?: number;
}

export interface ErrorInfo {
  code: string;
  message: string;
  agent?: string;
}

export interface Message {
  role: string;
  content: string;
  name?: string;
  data?: unknown;
  created_at?: string;
}

export interface PlanStep {
  pattern: string;
  agents: string[];
  task: string;
}

export interface Plan {
  steps: PlanStep[];
  rationale: string;
  planner?: string;
}

export interface LedgerEntry {
  step: PlanStep;
  ok: boolean;
  outcome: string;
  failed_agents?: string[];
}

export interface Ledger {
  done: LedgerEntry[];
  remaining: PlanStep[];
  stalls: number;
  replans: number;
}

export interface Step {
  index: number;
  agent: string;
  fallback_for?: string;
  label?: string;
  input: string;
  status: string;
  output?: { content?: string; handoff?: { to: string; reason?: string }; data?: unknown; usage?: Usage };
  error?: ErrorInfo;
  attempts: number;
  started_at: string;
  duration_ms: number;
}

export interface RunResult {
  run_id: string;
  session_id: string;
  pattern: string;
  task: string;
  agents: string[];
  status: string;
  output?: string;
  data?: unknown;
  error?: ErrorInfo;
  termination?: string;
  partial?: boolean;
  steps: Step[];
  usage?: Usage;
  started_at?: string;
  finished_at?: string;
  duration_ms?: number;
  /** The pending question of a run that waits (`waiting_for_input`). */
  input?: InputRequest | null;
}

/** What a run waiting for input asks (`input` of a run, `request` of `input_requested`). */
export interface InputRequest {
  key?: string;
  /** `agent` (an agent asked), `approval` (an agent may act), `plan` (a plan may run) or `human` (a person's turn). */
  kind?: string;
  agent?: string;
  step?: number;
  prompt?: string;
  schema?: unknown;
  context?: unknown;
  requested_at?: string;
  expires_at?: string;
}

/** `GET /runs/{run_id}`. */
export interface RunRecord {
  run_id: string;
  session_id?: string;
  status: string;
  queue_status?: string;
  input?: InputRequest | null;
  checkpoint?: unknown;
  result?: RunResult | null;
  request?: Record<string, unknown>;
  attempts?: number;
  [field: string]: unknown;
}

/** `POST /runs/{run_id}/input` (202). */
export interface Resumed {
  run_id: string;
  session_id: string;
  status: string;
  status_url: string;
  events_url?: string;
}

export interface EventEnvelope {
  schema_version?: number;
  run_id: string;
  session_id: string;
  seq: number;
  timestamp: string;
  type: string;
}

// Fields are optional on purpose: the console reads them defensively.
export interface OrchestrationEvent extends EventEnvelope {
  [field: string]: unknown;
  pattern?: string;
  task?: string;
  agents?: string[];
  agent?: string;
  step?: number;
  input?: string;
  delta?: string;
  message?: Message;
  handoff?: { to: string; reason?: string };
  duration_ms?: number;
  usage?: Usage;
  error?: ErrorInfo;
  attempt?: number;
  will_retry?: boolean;
  delay_ms?: number;
  tool?: string;
  call_id?: string;
  arguments?: unknown;
  result?: unknown;
  from?: string;
  to?: string;
  reason?: string;
  round?: number;
  plan?: Plan;
  ledger?: Ledger;
}

export interface PatternListing {
  name: string;
  description: string;
  options_schema: unknown;
}

export interface AgentListing {
  name: string;
  kind: string;
  description: string;
  source?: string;
  health?: string;
  health_error?: string;
  critical?: boolean;
}

export interface SessionSummary {
  id: string;
  created_at: string;
  updated_at: string;
  message_count: number;
  run_count: number;
  version?: number;
}

export interface SessionList {
  sessions: SessionSummary[];
  offset: number;
  limit: number;
  next_offset?: number;
}

export interface Session {
  id: string;
  messages: Message[];
  state?: unknown;
  runs: RunResult[];
  metadata?: unknown;
  created_at: string;
  updated_at: string;
  version?: number;
}
