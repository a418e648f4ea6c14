// The Run view: patterns and agents of the server, a form to start a run,
// and the run's events live from POST /orchestrate/stream.

import type { ComponentChildren } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api, describeError, streamEvents } from '../api';
import { AgentName, JsonBlock, LedgerPanel, Panel, PlanPanel, ResultPanel, Status, Timeline } from '../components';
import { href, link, navigate } from '../router';
import { InputPanel, cancelRun, followRun } from '../input';
import { RunTimeline } from '../timeline';
import type { AgentListing, PatternListing, Resumed, RunResult } from '../types';

interface Example {
  agents: string[];
  task: string;
  options: Record<string, unknown>;
}

/** A run of each pattern with the server's demo agents. */
const EXAMPLES: Record<string, Example> = {
  sequential: { agents: ['demo_researcher', 'demo_writer'], task: 'Write about tides', options: {} },
  concurrent: {
    agents: ['demo_researcher', 'demo_writer'],
    task: 'Tides',
    options: { aggregator: 'agent', summarizer: 'demo_summarizer' },
  },
  handoff: { agents: ['demo_triage', 'demo_billing'], task: 'Where is my refund?', options: {} },
  group_chat: {
    agents: ['demo_writer', 'demo_critic'],
    task: 'A slogan for a bakery',
    options: { termination: { text_mention: 'APPROVED' }, max_rounds: 6 },
  },
  dynamic: { agents: [], task: 'Research tides, then write an article', options: {} },
};

export function RunView({ keyVersion }: { keyVersion: number }) {
  const [patterns, setPatterns] = useState<PatternListing[]>([]);
  const [agents, setAgents] = useState<AgentListing[]>([]);
  const [loadError, setLoadError] = useState<string>();
  const [pattern, setPattern] = useState('sequential');
  const [chosen, setChosen] = useState<string[]>([]);
  const [task, setTask] = useState('');
  const [options, setOptions] = useState('{}');
  const [sessionId, setSessionId] = useState('');
  const [queued, setQueued] = useState(false);
  const [formError, setFormError] = useState<string>();
  const [timeline, setTimeline] = useState<RunTimeline>();
  const [, setTick] = useState(0);
  const [running, setRunning] = useState(false);
  const [runError, setRunError] = useState<string>();
  const [lanes, setLanes] = useState(false);
  const abort = useRef<AbortController | undefined>(undefined);
  /** Whether the run in view was answered and is followed (not streamed from its start). */
  const following = useRef(false);

  useEffect(() => {
    setLoadError(undefined);
    Promise.all([
      api.get<{ patterns: PatternListing[] }>('/patterns'),
      api.get<{ agents: AgentListing[] }>('/agents'),
    ]).then(
      ([p, a]) => {
        setPatterns(p.patterns);
        setAgents(a.agents);
      },
      (e) => setLoadError(describeError(e)),
    );
  }, [keyVersion]);

  useEffect(() => () => abort.current?.abort(), []);

  const current = patterns.find((p) => p.name === pattern);
  const optionsError = useMemo(() => {
    try {
      const v: unknown = JSON.parse(options || '{}');
      return v && typeof v === 'object' && !Array.isArray(v) ? undefined : 'options must be a JSON object';
    } catch (e) {
      return `options are not valid JSON: ${(e as Error).message}`;
    }
  }, [options]);

  const toggle = (name: string) =>
    setChosen((c) => (c.includes(name) ? c.filter((n) => n !== name) : [...c, name]));

  const loadExample = () => {
    const ex = EXAMPLES[pattern];
    if (!ex) return;
    const known = new Set(agents.map((a) => a.name));
    setChosen(ex.agents.filter((a) => known.has(a)));
    setTask(ex.task);
    setOptions(JSON.stringify(ex.options, null, 2));
  };

  const start = async (e: Event) => {
    e.preventDefault();
    setFormError(undefined);
    setRunError(undefined);
    if (!task.trim()) return setFormError('Write a task.');
    if (optionsError) return setFormError(optionsError);
    const opts = JSON.parse(options || '{}') as Record<string, unknown>;
    const body: Record<string, unknown> = { pattern, task };
    if (chosen.length) body.agents = chosen;
    if (Object.keys(opts).length) body.options = opts;
    if (sessionId.trim()) body.session_id = sessionId.trim();
    if (queued) {
      // Onto the server's run queue: answered 202 with the run id at once.
      body.mode = 'async';
      try {
        const r = await api.post<{ run_id: string }>('/orchestrate', body);
        navigate(href('runs', r.run_id));
      } catch (err) {
        setRunError(describeError(err));
      }
      return;
    }
    abort.current?.abort();
    const controller = new AbortController();
    abort.current = controller;
    const tl = new RunTimeline();
    setTimeline(tl);
    setRunning(true);
    following.current = false;
    try {
      await streamEvents(
        'POST',
        '/orchestrate/stream',
        body,
        (ev) => {
          tl.apply(ev);
          setTick((t) => t + 1);
        },
        controller.signal,
      );
      if (!tl.finished && !tl.waiting && !controller.signal.aborted) setRunError('The stream ended before the run finished.');
    } catch (err) {
      if (!controller.signal.aborted) setRunError(describeError(err));
    } finally {
      if (abort.current === controller) setRunning(false);
    }
  };

  const stop = () => {
    abort.current?.abort();
    setRunning(false);
    if (!following.current || !timeline) {
      setRunError('Stopped: closing the stream cancelled the run on the server.');
      return;
    }
    // A resumed run goes on without this page: cancel it on the server.
    const tl = timeline;
    cancelRun(tl.runId).then(
      () => setRunError('Stopped: the run was cancelled on the server.'),
      (err) => setRunError(describeError(err)),
    );
  };

  /** The run paused and its question was answered: follow it until it ends or asks again. */
  const answered = async (tl: RunTimeline, resumed: Resumed) => {
    abort.current?.abort();
    const controller = new AbortController();
    abort.current = controller;
    setRunError(undefined);
    setRunning(true);
    following.current = true;
    try {
      await followRun(tl.runId, resumed, tl, () => setTick((t) => t + 1), controller.signal);
    } catch (err) {
      if (!controller.signal.aborted) setRunError(describeError(err));
    } finally {
      if (abort.current === controller) setRunning(false);
    }
  };

  const cancelWaiting = async (tl: RunTimeline) => {
    try {
      await cancelRun(tl.runId);
      tl.applyRecord('cancelled', tl.result ? { ...tl.result, status: 'cancelled' } : undefined, undefined);
      setTick((t) => t + 1);
      const rec = await api.get<{ status: string; result?: RunResult | null }>(`/runs/${encodeURIComponent(tl.runId)}`);
      if (rec.result) {
        tl.result = rec.result;
        setTick((t) => t + 1);
      }
    } catch (err) {
      setRunError(describeError(err));
    }
  };

  return (
    <div class="run-view">
      <aside class="sidebar">
        <form class="panel run-form" onSubmit={start} aria-label="Start a run">
          <h3>Start a run</h3>
          {loadError && <p class="error-text">{loadError}</p>}
          <label for="pattern">Pattern</label>
          <div class="row">
            <select id="pattern" value={pattern} onChange={(e) => setPattern(e.currentTarget.value)}>
              {(patterns.length ? patterns.map((p) => p.name) : Object.keys(EXAMPLES)).map((n) => (
                <option key={n} value={n}>
                  {n}
                </option>
              ))}
            </select>
            <button type="button" class="secondary" onClick={loadExample} disabled={!agents.length}>
              Example
            </button>
          </div>
          {current && <p class="muted small">{current.description}</p>}
          <fieldset class="agents-pick">
            <legend>
              Agents <span class="muted small">(in the order picked; none = the pattern's default)</span>
            </legend>
            {agents.map((a) => {
              const i = chosen.indexOf(a.name);
              return (
                <label key={a.name} class="agent-option" title={a.description}>
                  <input type="checkbox" name="agents" value={a.name} checked={i >= 0} onChange={() => toggle(a.name)} />
                  <span class="order">{i >= 0 ? i + 1 : ''}</span>
                  <AgentName name={a.name} />
                  <span class="muted small"> {a.kind}</span>
                  {a.health === 'down' && <span class="error-text small"> down</span>}
                </label>
              );
            })}
          </fieldset>
          <label for="task">Task</label>
          <textarea id="task" rows={3} value={task} onInput={(e) => setTask(e.currentTarget.value)} />
          <label for="options">
            Options <span class="muted small">(JSON)</span>
          </label>
          <textarea
            id="options"
            rows={4}
            class="mono"
            value={options}
            onInput={(e) => setOptions(e.currentTarget.value)}
            aria-invalid={optionsError ? 'true' : undefined}
          />
          {optionsError && <p class="error-text small">{optionsError}</p>}
          <label for="session">
            Session id <span class="muted small">(optional: continue a conversation)</span>
          </label>
          <input id="session" value={sessionId} onInput={(e) => setSessionId(e.currentTarget.value)} />
          <label class="inline">
            <input type="checkbox" checked={queued} onChange={(e) => setQueued(e.currentTarget.checked)} /> Queue it
            <span class="muted small">(runs on the server's run queue; watch it in Runs)</span>
          </label>
          {formError && <p class="error-text">{formError}</p>}
          <div class="row">
            <button type="submit" disabled={running}>
              Start run
            </button>
            {running && (
              <button type="button" class="danger" onClick={stop}>
                Stop
              </button>
            )}
          </div>
        </form>
        {current && <JsonBlock label={`${current.name} options schema`} value={current.options_schema} />}
      </aside>
      <section class="live">
        {!timeline && !runError && (
          <div class="panel empty">
            <h3>Live events</h3>
            <p class="muted">Start a run to watch its events here as the server streams them.</p>
          </div>
        )}
        {runError && <p class="error-text banner">{runError}</p>}
        {timeline && (
          <LiveRun timeline={timeline} running={running} lanes={lanes} setLanes={setLanes}>
            {timeline.waiting && !running && (
              <InputPanel
                key={`${timeline.runId}:${timeline.waiting.key ?? ''}`}
                runId={timeline.runId}
                request={timeline.waiting}
                onAnswered={(r) => void answered(timeline, r)}
                onCancel={() => void cancelWaiting(timeline)}
              />
            )}
          </LiveRun>
        )}
      </section>
    </div>
  );
}

export function LiveRun({
  timeline,
  running,
  lanes,
  setLanes,
  children,
}: {
  timeline: RunTimeline;
  running: boolean;
  lanes: boolean;
  setLanes: (v: boolean) => void;
  /** Shown under the run's header: the answer form of a waiting run. */
  children?: ComponentChildren;
}) {
  const status = timeline.status ?? (running ? 'running' : 'ended');
  return (
    <div class="live-run">
      <div class="panel run-head">
        <div class="row spread">
          <h3>
            {timeline.pattern || 'run'} <Status status={status} />
          </h3>
          <label class="small">
            <input type="checkbox" checked={lanes} onChange={(e) => setLanes(e.currentTarget.checked)} /> one lane per agent
          </label>
        </div>
        {timeline.task && <p class="task">{timeline.task}</p>}
        <div class="ids small muted">
          {timeline.runId && <span>run {timeline.runId}</span>}
          {timeline.sessionId && (
            <span>
              {' '}
              · session <a {...link(href('sessions', timeline.sessionId))}>{timeline.sessionId}</a>
            </span>
          )}
          <span> · {timeline.events.length} events</span>
        </div>
        <div class="agent-strip">
          {timeline.agentSummary().map((a) => (
            <span key={a.agent} class={`chip chip-${a.status}`}>
              <AgentName name={a.agent} /> ×{a.calls}
              {a.tokens ? ` · ${a.tokens} tok` : ''}
            </span>
          ))}
        </div>
      </div>
      {children}
      {timeline.plan && <PlanPanel plan={timeline.plan} reason={timeline.planReason} />}
      {timeline.ledger && !timeline.result && <LedgerPanel ledger={timeline.ledger} />}
      <Panel title="Timeline">
        <Timeline timeline={timeline} lanes={lanes} />
      </Panel>
      {timeline.terminal && timeline.result && <ResultPanel result={timeline.result} reason={timeline.terminalReason} />}
      <JsonBlock label={`raw events (${timeline.events.length})`} value={timeline.events} />
    </div>
  );
}
