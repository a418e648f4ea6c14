// Runs: queued, running and waiting runs, and the answer form for a run that
// waits for input. Built on GET /runs/{run_id} (and /runs/{run_id}/events,
// POST /runs/{run_id}/input) of servers with the run queue and durable runs;
// on a server without them, the view says so instead of guessing.

import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, api, describeError, streamEvents } from '../api';
import { JsonBlock, Panel, ResultPanel, Status, clip, when } from '../components';
import { href, link, navigate } from '../router';
import { RunTimeline } from '../timeline';
import type { RunResult, Session, SessionList } from '../types';
import { LiveRun } from './RunView';

type Availability = 'checking' | 'available' | 'unavailable' | 'unauthorized';

/** Statuses of runs that are not finished. */
const OPEN_STATUSES = new Set(['queued', 'pending', 'running', 'retrying', 'waiting_for_input']);

interface RunRecord {
  run_id: string;
  status: string;
  [field: string]: unknown;
}

interface InputRequest {
  prompt?: string;
  schema?: unknown;
  [field: string]: unknown;
}

/** The pending question of a waiting run, under whichever name the server uses. */
function pendingInput(run: RunRecord): InputRequest | undefined {
  for (const key of ['input_request', 'pending_input', 'pending', 'question']) {
    const v = run[key];
    if (v && typeof v === 'object') return v as InputRequest;
    if (typeof v === 'string') return { prompt: v };
  }
  return undefined;
}

/**
 * Why this server cannot show runs, or undefined when it can: a route that
 * does not exist answers 404 with the router's generic `not_found` code; a
 * server on the memory store answers 409 `redis_required`.
 */
function unavailableBecause(e: unknown): string | undefined {
  if (!(e instanceof ApiError)) return undefined;
  if ((e.status === 404 && e.code === 'not_found') || e.status === 405)
    return `It has no GET /runs/{run_id} endpoint (it answered ${e.status} ${e.code}).`;
  if (e.code === 'redis_required')
    return `It keeps its state in memory, and queued runs need the Redis store (it answered ${e.status} ${e.code}: ${e.message}).`;
  return undefined;
}

export function RunsView({ id, keyVersion }: { id?: string; keyVersion: number }) {
  const [availability, setAvailability] = useState<Availability>('checking');
  const [why, setWhy] = useState<string>();
  const [open, setOpen] = useState<{ run: RunResult; session: string }[]>();
  const [lookup, setLookup] = useState(id ?? '');

  useEffect(() => {
    setAvailability('checking');
    // An id no server issues: a server with the endpoint answers with its own
    // "no such run" error, a server without it with the router's not_found.
    api.get('/runs/00000000-0000-0000-0000-000000000000').then(
      () => setAvailability('available'),
      (e) => {
        const reason = unavailableBecause(e);
        setWhy(reason);
        if (e instanceof ApiError && e.unauthorized) setAvailability('unauthorized');
        else setAvailability(reason ? 'unavailable' : 'available');
      },
    );
  }, [keyVersion]);

  useEffect(() => {
    if (availability !== 'available') return;
    // No list endpoint: collect unfinished runs from the recent sessions.
    (async () => {
      const list = await api.get<SessionList>('/sessions?limit=50');
      const sessions = await Promise.all(
        list.sessions.map((s) => api.get<Session>(`/sessions/${encodeURIComponent(s.id)}`).catch(() => undefined)),
      );
      const found: { run: RunResult; session: string }[] = [];
      for (const s of sessions) for (const r of s?.runs ?? []) if (OPEN_STATUSES.has(r.status)) found.push({ run: r, session: s!.id });
      setOpen(found);
    })().catch(() => setOpen([]));
  }, [availability, keyVersion]);

  if (availability === 'checking') return <Panel title="Runs">Checking whether this server keeps runs…</Panel>;
  if (availability === 'unauthorized')
    return (
      <Panel title="Runs">
        <p class="error-text">This server needs an API key: enter it at the top right.</p>
      </Panel>
    );
  if (availability === 'unavailable')
    return (
      <Panel title="Runs" class="runs-unavailable">
        <p>
          <strong>Runs are not available on this server.</strong> {why}
        </p>
        <p>There are no queued or waiting runs to show or answer here.</p>
        <p class="muted">
          Queued runs and runs waiting for input come with the run queue and durable runs. Runs started from the Run view
          are streamed there and recorded in their <a {...link(href('sessions'))}>sessions</a>.
        </p>
      </Panel>
    );

  return (
    <div class="runs-view">
      <Panel title="Find a run">
        <form
          class="row"
          onSubmit={(e) => {
            e.preventDefault();
            if (lookup.trim()) navigate(href('runs', lookup.trim()));
          }}
        >
          <input aria-label="run id" placeholder="run id" value={lookup} onInput={(e) => setLookup(e.currentTarget.value)} />
          <button type="submit">Open</button>
        </form>
      </Panel>
      {id && <RunDetail id={id} keyVersion={keyVersion} />}
      <Panel title="Queued, running and waiting runs (from the 50 most recent sessions)">
        {!open && <p class="muted">Loading…</p>}
        {open && open.length === 0 && <p class="muted">None.</p>}
        {open && open.length > 0 && (
          <table>
            <thead>
              <tr>
                <th>run</th>
                <th>status</th>
                <th>pattern</th>
                <th>task</th>
                <th>started</th>
              </tr>
            </thead>
            <tbody>
              {open.map(({ run }) => (
                <tr key={run.run_id}>
                  <td>
                    <a class="mono" {...link(href('runs', run.run_id))}>
                      {run.run_id}
                    </a>
                  </td>
                  <td>
                    <Status status={run.status} />
                  </td>
                  <td>{run.pattern}</td>
                  <td>{clip(run.task, 80)}</td>
                  <td>{when(run.started_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Panel>
    </div>
  );
}

function RunDetail({ id, keyVersion }: { id: string; keyVersion: number }) {
  const [run, setRun] = useState<RunRecord>();
  const [error, setError] = useState<string>();
  const [reload, setReload] = useState(0);
  const [timeline, setTimeline] = useState<RunTimeline>();
  const [following, setFollowing] = useState(false);
  const [, setTick] = useState(0);
  const [lanes, setLanes] = useState(false);
  const abort = useRef<AbortController | undefined>(undefined);

  useEffect(() => {
    setError(undefined);
    api.get<RunRecord>(`/runs/${encodeURIComponent(id)}`).then(setRun, (e) => {
      setRun(undefined);
      setError(describeError(e));
    });
  }, [id, keyVersion, reload]);

  useEffect(() => () => abort.current?.abort(), [id]);

  const follow = async () => {
    abort.current?.abort();
    const controller = new AbortController();
    abort.current = controller;
    const tl = new RunTimeline();
    setTimeline(tl);
    setFollowing(true);
    try {
      await streamEvents(
        'GET',
        `/runs/${encodeURIComponent(id)}/events`,
        undefined,
        (ev) => {
          tl.apply(ev);
          setTick((t) => t + 1);
        },
        controller.signal,
      );
    } catch (e) {
      if (!controller.signal.aborted) setError(describeError(e));
    } finally {
      setFollowing(false);
      setReload((r) => r + 1);
    }
  };

  if (error) return <Panel title={`Run ${id}`}><p class="error-text">{error}</p></Panel>;
  if (!run) return <Panel title={`Run ${id}`}>Loading…</Panel>;
  const result = (run.result ?? undefined) as RunResult | undefined;
  const request = run.request && typeof run.request === 'object' ? (run.request as Record<string, unknown>) : undefined;
  return (
    <div class="run-detail">
      <Panel
        title={
          <>
            Run <span class="mono">{id}</span> <Status status={run.status} />
          </>
        }
      >
        {request && (
          <p class="run-request">
            <strong>{String(request.pattern ?? '')}</strong> {String(request.task ?? '')}
            {typeof run.attempts === 'number' && <span class="muted small"> · attempt {run.attempts}</span>}
          </p>
        )}
        <div class="row">
          <button type="button" class="secondary" onClick={() => setReload((r) => r + 1)}>
            Refresh
          </button>
          {OPEN_STATUSES.has(run.status) && (
            <button type="button" class="secondary" onClick={follow} disabled={following}>
              Follow events
            </button>
          )}
          {typeof run.session_id === 'string' && <a {...link(href('sessions', run.session_id))}>session {run.session_id}</a>}
        </div>
        {run.status === 'waiting_for_input' && (
          <InputForm id={id} request={pendingInput(run)} onAnswered={() => setReload((r) => r + 1)} />
        )}
        <JsonBlock label="run JSON" value={run} />
      </Panel>
      {timeline && <LiveRun timeline={timeline} running={following} lanes={lanes} setLanes={setLanes} />}
      {result && typeof result === 'object' && Array.isArray(result.steps) && <ResultPanel result={result} />}
    </div>
  );
}

function InputForm({ id, request, onAnswered }: { id: string; request?: InputRequest; onAnswered: () => void }) {
  const [answer, setAnswer] = useState('');
  const [error, setError] = useState<string>();
  const [sending, setSending] = useState(false);
  const schema = request?.schema as { type?: string } | undefined;
  const wantsJson = !!schema && schema.type !== 'string';
  const send = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    let value: unknown = answer;
    if (wantsJson) {
      try {
        value = JSON.parse(answer);
      } catch (err) {
        return setError(`The answer must be JSON: ${(err as Error).message}`);
      }
    }
    setSending(true);
    try {
      await api.post(`/runs/${encodeURIComponent(id)}/input`, { answer: value });
      setAnswer('');
      onAnswered();
    } catch (err) {
      setError(describeError(err));
    } finally {
      setSending(false);
    }
  };
  return (
    <form class="input-form panel" onSubmit={send} aria-label="Answer the input request">
      <h4>The run waits for input</h4>
      {request?.prompt && <p class="prompt">{request.prompt}</p>}
      {request?.schema !== undefined && <JsonBlock label="answer schema" value={request.schema} />}
      <label for="answer">Answer {wantsJson && <span class="muted small">(JSON)</span>}</label>
      <textarea id="answer" rows={3} class={wantsJson ? 'mono' : ''} value={answer} onInput={(e) => setAnswer(e.currentTarget.value)} />
      {error && <p class="error-text">{error}</p>}
      <button type="submit" disabled={sending}>
        Send answer
      </button>
    </form>
  );
}
