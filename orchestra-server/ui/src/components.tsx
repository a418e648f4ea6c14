// Pieces shared by the views: status badges, the live timeline, the plan and
// ledger panels, the result panel and a collapsible JSON viewer.

import type { ComponentChildren } from 'preact';
import { agentHue, type AgentCard, type Entry, ledgerOf, type RunTimeline } from './timeline';
import type { Ledger, Plan, RunResult, Step } from './types';

export function Status({ status }: { status: string }) {
  return <span class={`status status-${status.replace(/[^a-z_]/gi, '')}`}>{status.replace(/_/g, ' ')}</span>;
}

export function AgentName({ name }: { name: string }) {
  return (
    <span class="agent-name" style={{ '--hue': String(agentHue(name)) }}>
      {name}
    </span>
  );
}

export function JsonBlock({ value, label }: { value: unknown; label: string }) {
  return (
    <details class="json">
      <summary>{label}</summary>
      <pre>{JSON.stringify(value, null, 2)}</pre>
    </details>
  );
}

export function Panel({ title, children, class: cls }: { title: ComponentChildren; children: ComponentChildren; class?: string }) {
  return (
    <section class={`panel ${cls ?? ''}`}>
      <h3>{title}</h3>
      {children}
    </section>
  );
}

function Card({ card }: { card: AgentCard }) {
  return (
    <article
      class={`card card-${card.status}`}
      style={{ '--hue': String(agentHue(card.agent)) }}
      data-agent={card.agent}
      data-step={card.step}
    >
      <header>
        <AgentName name={card.agent} />
        <span class="muted small">step {card.step}</span>
        <Status status={card.status} />
        {card.durationMs !== undefined && <span class="muted small">{card.durationMs} ms</span>}
        {card.usage?.total_tokens ? <span class="muted small">{card.usage.total_tokens} tokens</span> : null}
        {card.deltas > 0 && <span class="muted small">{card.deltas} streamed chunks</span>}
      </header>
      {card.input && (
        <div class="card-input" title={card.input}>
          <span class="label">input</span> {clip(card.input, 240)}
        </div>
      )}
      {card.notes.map((n, i) => (
        <div key={i} class={`note note-${n.kind}`}>
          {n.text}
        </div>
      ))}
      <div class="card-text">
        {card.text || (card.status === 'running' ? <span class="muted">working…</span> : '')}
        {card.status === 'running' && card.text && <span class="cursor">▍</span>}
      </div>
      {card.handoffTo && (
        <div class="muted small">
          hands off to <AgentName name={card.handoffTo} />
        </div>
      )}
    </article>
  );
}

function EntryRow({ entry }: { entry: Entry }) {
  switch (entry.kind) {
    case 'agent':
      return <Card card={entry} />;
    case 'handoff':
      return (
        <div class="arrow handoff" data-kind="handoff">
          <span class="arrow-label">handoff</span>
          <span class="arrow-text">
            {entry.from} → {entry.to}
          </span>
          {entry.reason && <span class="muted">: {entry.reason}</span>}
        </div>
      );
    case 'fallback':
      return (
        <div class="arrow fallback" data-kind="fallback">
          <span class="arrow-label">fallback</span>
          <span class="arrow-text">
            {entry.from} ⇢ {entry.to}
          </span>
          {entry.reason && <span class="muted">: {clip(entry.reason, 200)}</span>}
        </div>
      );
    case 'speaker':
      return (
        <div class="turn" data-kind="speaker">
          <span class="arrow-label">round {entry.round}</span>
          <span>
            <AgentName name={entry.agent} /> speaks
          </span>
          {entry.reason && <span class="muted"> ({entry.reason})</span>}
        </div>
      );
    case 'plan':
      return (
        <div class="turn plan-row" data-kind="plan">
          <span class="arrow-label">{entry.created ? 'plan' : 'replan'}</span>
          <span>
            {entry.plan.steps.length} step{entry.plan.steps.length === 1 ? '' : 's'}:{' '}
            {entry.plan.steps.map((s) => `${s.pattern} [${s.agents.join(' → ')}]`).join('; ')}
          </span>
          {entry.reason && <span class="muted"> — {entry.reason}</span>}
        </div>
      );
    case 'input':
      return (
        <div class="turn input-row" data-kind="input_requested">
          <span class="arrow-label">asks {entry.request.kind ?? 'input'}</span>
          <span>
            {entry.request.agent && <AgentName name={entry.request.agent} />} {clip(entry.request.prompt ?? '', 200)}
          </span>
        </div>
      );
    case 'resumed':
      return (
        <div class="turn resumed-row" data-kind="run_resumed">
          <span class="arrow-label">resumed</span>
          <span class="muted">
            the run goes on from its checkpoint ({entry.recorded} recorded step{entry.recorded === 1 ? '' : 's'})
          </span>
        </div>
      );
    case 'other':
      return (
        <div class="turn other" data-kind={entry.type}>
          <span class="arrow-label">{entry.type}</span>
          <code class="small">{entry.summary}</code>
        </div>
      );
  }
}

export function Timeline({ timeline, lanes }: { timeline: RunTimeline; lanes: boolean }) {
  if (lanes) {
    const byAgent = new Map<string, AgentCard[]>();
    for (const e of timeline.entries) {
      if (e.kind !== 'agent') continue;
      byAgent.set(e.agent, [...(byAgent.get(e.agent) ?? []), e]);
    }
    return (
      <div class="lanes">
        {[...byAgent.entries()].map(([agent, cards]) => (
          <div class="lane" key={agent}>
            <h4>
              <AgentName name={agent} />
            </h4>
            {cards.map((c) => (
              <Card key={c.key} card={c} />
            ))}
          </div>
        ))}
      </div>
    );
  }
  return (
    <div class="timeline" aria-live="polite">
      {timeline.entries.map((e, i) => (
        <EntryRow key={e.kind === 'agent' ? e.key : `${e.kind}-${i}`} entry={e} />
      ))}
    </div>
  );
}

export function PlanPanel({ plan, reason }: { plan: Plan; reason?: string }) {
  return (
    <Panel title={`Plan${plan.planner ? ` (${plan.planner} planner)` : ''}`} class="plan">
      <ol class="plan-steps">
        {plan.steps.map((s, i) => (
          <li key={i}>
            <strong>{s.pattern}</strong> {s.agents.map((a) => <AgentName key={a} name={a} />)}
            <div class="muted small">{clip(s.task, 200)}</div>
          </li>
        ))}
      </ol>
      <div class="rationale">
        <span class="label">rationale</span> {plan.rationale}
      </div>
      {reason && (
        <div class="rationale">
          <span class="label">replanned because</span> {reason}
        </div>
      )}
    </Panel>
  );
}

export function LedgerPanel({ ledger }: { ledger: Ledger }) {
  return (
    <Panel title={`Ledger · ${ledger.done.length} done · ${ledger.remaining.length} remaining · stalls ${ledger.stalls} · replans ${ledger.replans}`} class="ledger">
      <ul class="ledger-list">
        {ledger.done.map((d, i) => (
          <li key={i} class={d.ok ? 'ok' : 'failed'}>
            <span class="ledger-mark">{d.ok ? '✓' : '✗'}</span> {d.step.pattern} [{d.step.agents.join(' → ')}]
            <div class="muted small">{clip(d.outcome, 240)}</div>
          </li>
        ))}
        {ledger.remaining.map((s, i) => (
          <li key={`r${i}`} class="remaining">
            <span class="ledger-mark">○</span> {s.pattern} [{s.agents.join(' → ')}]
          </li>
        ))}
      </ul>
    </Panel>
  );
}

export function StepsTable({ steps }: { steps: Step[] }) {
  if (!steps.length) return <p class="muted">No steps.</p>;
  return (
    <table class="steps">
      <thead>
        <tr>
          <th>#</th>
          <th>agent</th>
          <th>where</th>
          <th>status</th>
          <th>tries</th>
          <th>ms</th>
          <th>output</th>
        </tr>
      </thead>
      <tbody>
        {steps.map((s) => (
          <tr key={s.index}>
            <td>{s.index}</td>
            <td>
              <AgentName name={s.agent} />
              {s.fallback_for && <div class="muted small">for {s.fallback_for}</div>}
            </td>
            <td class="small">{s.label ?? ''}</td>
            <td>
              <Status status={s.status} />
            </td>
            <td>{s.attempts}</td>
            <td>{s.duration_ms}</td>
            <td class="small">
              {s.error ? (
                <span class="error-text">
                  {s.error.code}: {s.error.message}
                </span>
              ) : s.output?.handoff ? (
                `→ ${s.output.handoff.to}${s.output.handoff.reason ? `: ${s.output.handoff.reason}` : ''}`
              ) : (
                clip(s.output?.content ?? '', 300)
              )}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function ResultPanel({ result, reason }: { result: RunResult; reason?: string }) {
  const ledger = ledgerOf(result);
  return (
    <Panel
      class={`result result-${result.status}`}
      title={
        <>
          Result <Status status={result.status} />
        </>
      }
    >
      <dl class="facts">
        {result.termination && (
          <>
            <dt>termination</dt>
            <dd class="termination">{result.termination}</dd>
          </>
        )}
        {reason && (
          <>
            <dt>reason</dt>
            <dd>{reason}</dd>
          </>
        )}
        {result.error && (
          <>
            <dt>error</dt>
            <dd class="error-text">
              {result.error.code}: {result.error.message}
              {result.error.agent ? ` (agent ${result.error.agent})` : ''}
            </dd>
          </>
        )}
        <dt>pattern</dt>
        <dd>{result.pattern}</dd>
        {result.duration_ms !== undefined && (
          <>
            <dt>time</dt>
            <dd>{result.duration_ms} ms</dd>
          </>
        )}
        {result.usage?.total_tokens !== undefined && (
          <>
            <dt>tokens</dt>
            <dd>
              {result.usage.total_tokens} ({result.usage.prompt_tokens ?? 0} in, {result.usage.completion_tokens ?? 0} out)
            </dd>
          </>
        )}
        {result.partial && (
          <>
            <dt>partial</dt>
            <dd>some agents failed</dd>
          </>
        )}
      </dl>
      {result.output !== undefined && (
        <div class="output">
          <span class="label">output</span>
          <div class="output-text">{result.output}</div>
        </div>
      )}
      <h4>Steps</h4>
      <StepsTable steps={result.steps ?? []} />
      {ledger && <LedgerPanel ledger={ledger} />}
      <JsonBlock label="result JSON" value={result} />
    </Panel>
  );
}

export function clip(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n)}…` : s;
}

export function when(iso: string | undefined): string {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}
