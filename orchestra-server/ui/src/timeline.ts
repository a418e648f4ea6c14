// Folds a run's event stream into what the live view draws: one card per
// agent call (streamed tokens appended as they arrive), handoff and fallback
// arrows, group chat turns, the dynamic planner's plan and ledger, and the
// final result. The model is mutated in place; the view re-renders on a tick.

import type { ErrorInfo, InputRequest, Ledger, OrchestrationEvent, Plan, RunResult, Usage } from './types';

export interface Note {
  kind: 'failed' | 'retry' | 'tool' | 'input';
  text: string;
}

export interface AgentCard {
  kind: 'agent';
  seq: number;
  key: string;
  agent: string;
  step: number;
  input: string;
  /** Streamed tokens, replaced by the final message when the call completes. */
  text: string;
  deltas: number;
  status: 'running' | 'waiting' | 'completed' | 'failed';
  durationMs?: number;
  usage?: Usage;
  handoffTo?: string;
  notes: Note[];
}

export type Entry =
  | AgentCard
  | { kind: 'handoff'; seq: number; from: string; to: string; reason: string }
  | { kind: 'fallback'; seq: number; from: string; to: string; reason: string }
  | { kind: 'speaker'; seq: number; agent: string; round: number; reason: string }
  | { kind: 'plan'; seq: number; created: boolean; plan: Plan; reason?: string }
  | { kind: 'input'; seq: number; request: InputRequest }
  | { kind: 'resumed'; seq: number; recorded: number }
  | { kind: 'other'; seq: number; type: string; summary: string };

export type Terminal = 'run_completed' | 'run_failed' | 'run_cancelled';

export class RunTimeline {
  runId = '';
  sessionId = '';
  pattern = '';
  task = '';
  agents: string[] = [];
  entries: Entry[] = [];
  events: OrchestrationEvent[] = [];
  plan?: Plan;
  ledger?: Ledger;
  planReason?: string;
  result?: RunResult;
  terminal?: Terminal;
  terminalReason?: string;
  terminalError?: ErrorInfo;
  /** The question of a run paused by `input_requested`, until it goes on. */
  waiting?: InputRequest;
  private cards = new Map<string, AgentCard>();

  get finished(): boolean {
    return this.terminal !== undefined;
  }

  /** Calls per agent, in the order agents first appeared. */
  agentSummary(): { agent: string; calls: number; tokens: number; status: AgentCard['status'] }[] {
    const by = new Map<string, { agent: string; calls: number; tokens: number; status: AgentCard['status'] }>();
    for (const e of this.entries) {
      if (e.kind !== 'agent') continue;
      const s = by.get(e.agent) ?? { agent: e.agent, calls: 0, tokens: 0, status: e.status };
      s.calls += 1;
      s.tokens += e.usage?.total_tokens ?? 0;
      s.status = e.status;
      by.set(e.agent, s);
    }
    return [...by.values()];
  }

  /** The run's status as far as this timeline knows. */
  get status(): string | undefined {
    if (this.waiting) return 'waiting_for_input';
    return this.terminal ? this.result?.status ?? this.terminal.replace('run_', '') : undefined;
  }

  /**
   * Takes a run record read with `GET /runs/{run_id}` (after an answer, when
   * the continuation's events cannot be streamed): a finished run ends the
   * timeline, a run that asks again waits again.
   */
  applyRecord(status: string, result: RunResult | undefined, input: InputRequest | undefined): void {
    if (status === 'waiting_for_input' && input) {
      if (this.waiting?.key !== input.key || !this.waiting) {
        this.waiting = input;
        this.entries.push({ kind: 'input', seq: -this.entries.length, request: input });
      }
      if (result) this.result = result;
      return;
    }
    const terminal: Record<string, Terminal> = {
      completed: 'run_completed',
      failed: 'run_failed',
      timed_out: 'run_failed',
      cancelled: 'run_cancelled',
    };
    if (!terminal[status]) return;
    this.waiting = undefined;
    this.answered();
    this.terminal = terminal[status];
    this.result = result;
    this.terminalError = result?.error;
    const ledger = ledgerOf(result);
    if (ledger) this.ledger = ledger;
    for (const c of this.cards.values()) if (c.status === 'running' || c.status === 'waiting') c.status = 'failed';
  }

  apply(ev: OrchestrationEvent): void {
    this.events.push(ev);
    if (ev.run_id) this.runId = ev.run_id;
    if (ev.session_id) this.sessionId = ev.session_id;
    const agent = str(ev.agent);
    const step = typeof ev.step === 'number' ? ev.step : 0;
    switch (ev.type) {
      case 'run_started':
        this.pattern = str(ev.pattern);
        this.task = str(ev.task);
        this.agents = Array.isArray(ev.agents) ? ev.agents.map(String) : [];
        break;
      case 'agent_started': {
        // A resumed run calls the step that asked again: a new card, same lookup key.
        const key = this.cards.has(cardKey(agent, step)) ? `${cardKey(agent, step)}~${this.events.length}` : cardKey(agent, step);
        const card: AgentCard = {
          kind: 'agent',
          seq: ev.seq,
          key,
          agent,
          step,
          input: str(ev.input),
          text: '',
          deltas: 0,
          status: 'running',
          notes: [],
        };
        this.cards.set(cardKey(agent, step), card);
        this.entries.push(card);
        break;
      }
      case 'agent_delta': {
        const card = this.card(ev, agent, step);
        card.text += str(ev.delta);
        card.deltas += 1;
        break;
      }
      case 'agent_completed': {
        const card = this.card(ev, agent, step);
        card.status = 'completed';
        const content = ev.message?.content;
        if (typeof content === 'string' && (content || !card.text)) card.text = content;
        card.durationMs = ev.duration_ms;
        card.usage = ev.usage;
        card.handoffTo = ev.handoff?.to;
        break;
      }
      case 'agent_failed': {
        const card = this.card(ev, agent, step);
        const e = ev.error;
        const then = ev.will_retry ? ' — a retry or fallback follows' : '';
        card.notes.push({
          kind: 'failed',
          text: `attempt ${ev.attempt ?? 1} failed: ${e?.code ?? 'error'}: ${e?.message ?? ''}${then}`,
        });
        if (!ev.will_retry) card.status = 'failed';
        break;
      }
      case 'retry': {
        const card = this.card(ev, agent, step);
        card.status = 'running';
        card.notes.push({
          kind: 'retry',
          text: `retry: attempt ${ev.attempt ?? '?'} after ${ev.delay_ms ?? 0} ms (${ev.error?.code ?? 'error'})`,
        });
        break;
      }
      case 'fallback': {
        const from = str(ev.from);
        for (const c of this.cards.values()) {
          if (c.agent === from && c.status === 'running') c.status = 'failed';
        }
        this.entries.push({ kind: 'fallback', seq: ev.seq, from, to: str(ev.to), reason: str(ev.reason) });
        break;
      }
      case 'tool_called': {
        const card = this.card(ev, agent, step);
        card.notes.push({ kind: 'tool', text: `→ ${str(ev.tool)}(${short(ev.arguments)})` });
        break;
      }
      case 'tool_completed': {
        const card = this.card(ev, agent, step);
        card.notes.push({ kind: 'tool', text: `← ${str(ev.tool)}: ${short(ev.result)}` });
        break;
      }
      case 'handoff':
        this.entries.push({ kind: 'handoff', seq: ev.seq, from: str(ev.from), to: str(ev.to), reason: str(ev.reason) });
        break;
      case 'speaker_selected':
        this.entries.push({
          kind: 'speaker',
          seq: ev.seq,
          agent,
          round: typeof ev.round === 'number' ? ev.round : 0,
          reason: str(ev.reason),
        });
        break;
      case 'plan_created':
      case 'plan_updated':
        if (ev.plan) {
          this.plan = ev.plan;
          if (ev.ledger) this.ledger = ev.ledger;
          this.planReason = ev.type === 'plan_updated' ? str(ev.reason) : undefined;
          this.entries.push({
            kind: 'plan',
            seq: ev.seq,
            created: ev.type === 'plan_created',
            plan: ev.plan,
            reason: ev.type === 'plan_updated' ? str(ev.reason) : undefined,
          });
        }
        break;
      case 'input_requested': {
        const request = (ev.request && typeof ev.request === 'object' ? ev.request : {}) as InputRequest;
        this.waiting = request;
        this.result = ev.result as RunResult | undefined;
        this.entries.push({ kind: 'input', seq: ev.seq, request });
        for (const c of this.cards.values()) {
          if (c.status !== 'running') continue;
          c.status = 'waiting';
          c.notes.push({ kind: 'input', text: `asked for input: ${request.prompt ?? ''}` });
        }
        break;
      }
      case 'run_resumed':
        this.waiting = undefined;
        this.answered();
        if (!this.pattern) this.pattern = str(ev.pattern);
        if (!this.task) this.task = str(ev.task);
        this.entries.push({ kind: 'resumed', seq: ev.seq, recorded: typeof ev.recorded_steps === 'number' ? ev.recorded_steps : 0 });
        break;
      case 'run_completed':
      case 'run_failed':
      case 'run_cancelled': {
        this.waiting = undefined;
        this.terminal = ev.type;
        this.result = ev.result as RunResult | undefined;
        this.terminalReason = ev.type === 'run_cancelled' ? str(ev.reason) : undefined;
        this.terminalError = ev.error ?? this.result?.error;
        const ledger = ledgerOf(this.result);
        if (ledger) this.ledger = ledger;
        for (const c of this.cards.values()) if (c.status === 'running' || c.status === 'waiting') c.status = 'failed';
        break;
      }
      default:
        this.entries.push({ kind: 'other', seq: ev.seq, type: ev.type, summary: summarize(ev) });
    }
  }

  /** Calls that asked for input were answered: the run went on. */
  private answered(): void {
    for (const e of this.entries) if (e.kind === 'agent' && e.status === 'waiting') e.status = 'completed';
  }

  /** The card of an agent call, created if its start was not seen. */
  private card(ev: OrchestrationEvent, agent: string, step: number): AgentCard {
    const key = cardKey(agent, step);
    let card = this.cards.get(key);
    if (!card) {
      card = { kind: 'agent', seq: ev.seq, key, agent, step, input: '', text: '', deltas: 0, status: 'running', notes: [] };
      this.cards.set(key, card);
      this.entries.push(card);
    }
    return card;
  }
}

function cardKey(agent: string, step: number): string {
  return `${agent}#${step}`;
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v);
}

function short(v: unknown): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v) ?? '';
  return s.length > 160 ? `${s.slice(0, 160)}…` : s;
}

function summarize(ev: OrchestrationEvent): string {
  const skip = new Set(['schema_version', 'run_id', 'session_id', 'seq', 'timestamp', 'type']);
  const rest = Object.fromEntries(Object.entries(ev).filter(([k]) => !skip.has(k)));
  return short(rest);
}

/** The dynamic pattern keeps its final ledger in `result.data.ledger`. */
export function ledgerOf(result: RunResult | undefined): Ledger | undefined {
  const data = result?.data as { ledger?: Ledger } | null | undefined;
  const l = data && typeof data === 'object' ? data.ledger : undefined;
  return l && Array.isArray(l.done) && Array.isArray(l.remaining) ? l : undefined;
}

/** A stable colour per agent name, so an agent's cards read as one lane. */
export function agentHue(name: string): number {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
  return h % 360;
}
