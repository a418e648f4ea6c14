// Runs: queued, running and waiting runs found in the recent sessions, the
// answer form for each run that waits for input, Cancel, and one run by id.
// Built on GET /runs/{run_id}, POST /runs/{run_id}/input,
// POST /runs/{run_id}/cancel and (with the run queue) /runs/{run_id}/events;
// on a server without them, the view says so instead of guessing.

import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, api, describeError, streamEvents } from '../api';
import { JsonBlock, Panel, ResultPanel, Status, clip, when } from '../components';
import { InputPanel, cancelRun, followRun } from '../input';
import { href, link, navigate } from '../router';
import { RunTimeline } from '../timeline';
import type { Resumed, RunRecord, RunResult, Session, SessionList } from '../types';
import { LiveRun } from './RunView';

type Availability = 'checking' | 'available' | 'unavailable' | 'unauthorized';

/** Statuses of runs that are not finished. */
const OPEN_STATUSES = new Set(['queued', 'pending', 'running', 'retrying', 'waiting_for_input']);

/** Answers taken in the list, for the run's page to follow. */
const answeredInList = new Map<string, Resumed>();

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
  const [listError, setListError] = useState<string>();
  const [lookup, setLookup] = useState(id ?? '');
  const [reload, setReload] = useState(0);

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
    setListError(undefined);
    (async () => {
      const list = await api.get<SessionList>('/sessions?limit=50');
      const sessions = await Promise.all(
        list.sessions.map((s) => api.get<Session>(`/sessions/${encodeURIComponent(s.id)}`).catch(() => undefined)),
      );
      const found: { run: RunResult; session: string }[] = [];
      for (const s of sessions) for (const r of s?.runs ?? []) if (OPEN_STATUSES.has(r.status)) found.push({ run: r, session: s!.id });
      found.sort((x, y) => String(y.run.started_at ?? '').localeCompare(String(x.run.started_at ?? '')));
      setOpen(found);
    })().catch((e) => {
      setOpen([]);
      setListError(describeError(e));
    });
  }, [availability, keyVersion, reload, id]);

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

  const waiting = (open ?? []).filter(({ run }) => run.status === 'waiting_for_input' && run.input);
  const going = (open ?? []).filter(({ run }) => !(run.status === 'waiting_for_input' && run.input));
  const refresh = () => setReload((r) => r + 1);
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
      {id && <RunDetail key={id} id={id} keyVersion={keyVersion} onChange={refresh} />}
      <Panel
        class="waiting-list"
        title={
          <span class="row spread">
            <span>Waiting for input{open ? ` (${waiting.length})` : ''}</span>
            <button type="button" class="secondary" onClick={refresh}>
              Refresh list
            </button>
          </span>
        }
      >
        {listError && <p class="error-text">{listError}</p>}
        {!open && <p class="muted">Loading…</p>}
        {open && waiting.length === 0 && <p class="muted">No run waits for input in the 50 most recent sessions.</p>}
        {waiting.map(({ run }) => (
          <WaitingRun key={`${run.run_id}:${run.input?.key ?? ''}`} run={run} onChange={refresh} />
        ))}
      </Panel>
      <Panel title="Queued and running (from the 50 most recent sessions)">
        {open && going.length === 0 && <p class="muted">None.</p>}
        {open && going.length > 0 && (
          <table class="open-runs">
            <thead>
              <tr>
                <th>run</th>
                <th>status</th>
                <th>pattern</th>
                <th>task</th>
                <th>started</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {going.map(({ run }) => (
                <tr key={run.run_id} data-run={run.run_id}>
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
                  <td>
                    <CancelButton runId={run.run_id} onDone={refresh} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Panel>
    </div>
  );
}

function CancelButton({ runId, onDone }: { runId: string; onDone: () => void }) {
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  return (
    <span class="row">
      <button
        type="button"
        class="danger"
        disabled={busy}
        onClick={async () => {
          setBusy(true);
          setError(undefined);
          try {
            await cancelRun(runId);
            onDone();
          } catch (e) {
            setError(describeError(e));
          } finally {
            setBusy(false);
          }
        }}
      >
        Cancel run
      </button>
      {error && <span class="error-text small">{error}</span>}
    </span>
  );
}

/** One waiting run in the list: what it is, its question and the answer form. */
function WaitingRun({ run, onChange }: { run: RunResult; onChange: () => void }) {
  const [error, setError] = useState<string>();
  return (
    <div class="waiting-run" data-run={run.run_id}>
      <div class="row small">
        <a class="mono" {...link(href('runs', run.run_id))}>
          {run.run_id}
        </a>
        <Status status={run.status} />
        <strong>{run.pattern}</strong>
        <span class="muted">{clip(run.task, 100)}</span>
        <span class="muted">· {when(run.started_at)}</span>
      </div>
      {error && <p class="error-text">{error}</p>}
      <InputPanel
        runId={run.run_id}
        request={run.input!}
        onAnswered={(r) => {
          answeredInList.set(run.run_id, r);
          navigate(href('runs', run.run_id));
        }}
        onCancel={async () => {
          try {
            await cancelRun(run.run_id);
            onChange();
          } catch (e) {
            setError(describeError(e));
          }
        }}
      />
    </div>
  );
}

function RunDetail({ id, keyVersion, onChange }: { id: string; keyVersion: number; onChange: () => void }) {
  const [run, setRun] = useState<RunRecord>();
  const [error, setError] = useState<string>();
  const [actionError, setActionError] = useState<string>();
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

  const start = () => {
    abort.current?.abort();
    const controller = new AbortController();
    abort.current = controller;
    const tl = new RunTimeline();
    tl.runId = id;
    setTimeline(tl);
    setFollowing(true);
    return { controller, tl };
  };
  const done = (controller: AbortController) => {
    if (abort.current === controller) setFollowing(false);
    setReload((r) => r + 1);
    onChange();
  };

  const follow = async () => {
    const { controller, tl } = start();
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
      if (!controller.signal.aborted) setActionError(describeError(e));
    } finally {
      done(controller);
    }
  };

  /** The answer was taken: follow the run until it finishes or asks again. */
  const answered = async (resumed: Resumed, request = run?.input ?? undefined) => {
    const { controller, tl } = start();
    tl.waiting = request;
    try {
      await followRun(id, resumed, tl, () => setTick((t) => t + 1), controller.signal);
    } catch (e) {
      if (!controller.signal.aborted) setActionError(describeError(e));
    } finally {
      done(controller);
    }
  };

  // An answer given in the list: follow the run here.
  useEffect(() => {
    const resumed = answeredInList.get(id);
    if (!resumed) return;
    answeredInList.delete(id);
    void answered(resumed, undefined);
  }, [id]);

  const cancel = async () => {
    setActionError(undefined);
    try {
      await cancelRun(id);
    } catch (e) {
      setActionError(describeError(e));
    }
    setReload((r) => r + 1);
    onChange();
  };

  if (error)
    return (
      <Panel title={`Run ${id}`}>
        <p class="error-text">{error}</p>
      </Panel>
    );
  if (!run) return <Panel title={`Run ${id}`}>Loading…</Panel>;
  const result = run.result ?? undefined;
  const request = run.request && typeof run.request === 'object' ? run.request : undefined;
  const waiting = run.status === 'waiting_for_input' && !following && run.input;
  const shownByTimeline = !!timeline?.terminal;
  return (
    <div class="run-detail">
      <Panel
        title={
          <>
            Run <span class="mono">{id}</span> <Status status={following ? 'running' : run.status} />
          </>
        }
      >
        {request && (
          <p class="run-request">
            <strong>{String(request.pattern ?? '')}</strong> {String(request.task ?? '')}
            {typeof run.attempts === 'number' && <span class="muted small"> · attempt {run.attempts}</span>}
          </p>
        )}
        {!request && result && (
          <p class="run-request">
            <strong>{result.pattern}</strong> {result.task}
          </p>
        )}
        <div class="row">
          <button type="button" class="secondary" onClick={() => setReload((r) => r + 1)}>
            Refresh
          </button>
          {OPEN_STATUSES.has(run.status) && run.status !== 'waiting_for_input' && run.queue_status !== undefined && (
            <button type="button" class="secondary" onClick={follow} disabled={following}>
              Follow events
            </button>
          )}
          {OPEN_STATUSES.has(run.status) && !following && (
            <button type="button" class="danger" onClick={cancel}>
              Cancel run
            </button>
          )}
          {typeof run.session_id === 'string' && <a {...link(href('sessions', run.session_id))}>session {run.session_id}</a>}
        </div>
        {actionError && <p class="error-text">{actionError}</p>}
        <JsonBlock label="run JSON" value={run} />
      </Panel>
      {waiting && run.input && (
        <InputPanel key={run.input.key ?? ''} runId={id} request={run.input} onAnswered={(r) => void answered(r)} />
      )}
      {timeline && <LiveRun timeline={timeline} running={following} lanes={lanes} setLanes={setLanes} />}
      {!shownByTimeline && result && typeof result === 'object' && Array.isArray(result.steps) && !waiting && (
        <ResultPanel result={result} />
      )}
    </div>
  );
}
