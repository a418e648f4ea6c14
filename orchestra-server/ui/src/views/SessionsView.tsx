// Sessions: the list (GET /sessions), one session (GET /sessions/{id}) with
// its conversation and runs, and delete (DELETE /sessions/{id}).

import { useEffect, useState } from 'preact/hooks';
import { ApiError, api, describeError } from '../api';
import { AgentName, JsonBlock, Panel, ResultPanel, Status, clip, when } from '../components';
import { href, link } from '../router';
import type { Session, SessionList } from '../types';

const PAGE = 25;

export function SessionsView({ keyVersion }: { keyVersion: number }) {
  const [offset, setOffset] = useState(0);
  const [list, setList] = useState<SessionList>();
  const [error, setError] = useState<string>();
  const [reload, setReload] = useState(0);

  useEffect(() => {
    setError(undefined);
    api.get<SessionList>(`/sessions?offset=${offset}&limit=${PAGE}`).then(setList, (e) => setError(describeError(e)));
  }, [offset, keyVersion, reload]);

  return (
    <Panel
      class="sessions"
      title={
        <span class="row spread">
          <span>Sessions</span>
          <button type="button" class="secondary" onClick={() => setReload((r) => r + 1)}>
            Refresh
          </button>
        </span>
      }
    >
      {error && <p class="error-text">{error}</p>}
      {list && list.sessions.length === 0 && <p class="muted">No sessions yet: start a run.</p>}
      {list && list.sessions.length > 0 && (
        <table class="sessions-table">
          <thead>
            <tr>
              <th>session</th>
              <th>updated</th>
              <th>created</th>
              <th>messages</th>
              <th>runs</th>
            </tr>
          </thead>
          <tbody>
            {list.sessions.map((s) => (
              <tr key={s.id}>
                <td>
                  <a class="mono" {...link(href('sessions', s.id))}>
                    {s.id}
                  </a>
                </td>
                <td>{when(s.updated_at)}</td>
                <td>{when(s.created_at)}</td>
                <td>{s.message_count}</td>
                <td>{s.run_count}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <div class="row">
        <button type="button" class="secondary" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>
          Newer
        </button>
        <button
          type="button"
          class="secondary"
          disabled={list?.next_offset === undefined}
          onClick={() => list?.next_offset !== undefined && setOffset(list.next_offset)}
        >
          Older
        </button>
      </div>
    </Panel>
  );
}

export function SessionDetail({ id, keyVersion }: { id: string; keyVersion: number }) {
  const [session, setSession] = useState<Session>();
  const [error, setError] = useState<string>();
  const [missing, setMissing] = useState(false);
  const [confirming, setConfirming] = useState(false);
  const [deleted, setDeleted] = useState(false);

  useEffect(() => {
    setSession(undefined);
    setError(undefined);
    setMissing(false);
    setConfirming(false);
    setDeleted(false);
    api.get<Session>(`/sessions/${encodeURIComponent(id)}`).then(setSession, (e) => {
      if (e instanceof ApiError && e.status === 404) setMissing(true);
      else setError(describeError(e));
    });
  }, [id, keyVersion]);

  const remove = async () => {
    try {
      await api.delete(`/sessions/${encodeURIComponent(id)}`);
      setDeleted(true);
      setSession(undefined);
    } catch (e) {
      setError(describeError(e));
    }
  };

  const back = (
    <a class="small" {...link(href('sessions'))}>
      ← all sessions
    </a>
  );
  if (deleted)
    return (
      <Panel title="Session deleted">
        <p class="deleted-note">
          Session <span class="mono">{id}</span> was deleted.
        </p>
        {back}
      </Panel>
    );
  if (missing)
    return (
      <Panel title="No such session">
        <p>
          The server has no session <span class="mono">{id}</span>.
        </p>
        {back}
      </Panel>
    );
  return (
    <div class="session-detail">
      <div class="panel">
        <div class="row spread">
          <h3>
            Session <span class="mono">{id}</span>
          </h3>
          <div class="row">
            {!confirming && (
              <button type="button" class="danger" onClick={() => setConfirming(true)} disabled={!session}>
                Delete session
              </button>
            )}
            {confirming && (
              <>
                <span>Delete this session and its runs?</span>
                <button type="button" class="danger" onClick={remove}>
                  Yes, delete
                </button>
                <button type="button" class="secondary" onClick={() => setConfirming(false)}>
                  Keep it
                </button>
              </>
            )}
          </div>
        </div>
        {back}
        {error && <p class="error-text">{error}</p>}
        {session && (
          <p class="muted small">
            created {when(session.created_at)} · updated {when(session.updated_at)} · version {session.version ?? '?'} ·{' '}
            {session.messages.length} messages · {session.runs.length} runs
          </p>
        )}
      </div>
      {session && (
        <div class="session-cols">
          <Panel title={`Conversation (${session.messages.length})`} class="conversation">
            {session.messages.map((m, i) => (
              <div key={i} class={`msg msg-${m.role}`}>
                <div class="msg-head small">
                  <span class="role">{m.role}</span>
                  {m.name && <AgentName name={m.name} />}
                  <span class="muted">{when(m.created_at)}</span>
                </div>
                <div class="msg-text">{m.content}</div>
              </div>
            ))}
            {session.state !== undefined && session.state !== null && <JsonBlock label="shared state" value={session.state} />}
            {session.metadata !== undefined && session.metadata !== null && <JsonBlock label="metadata" value={session.metadata} />}
          </Panel>
          <div class="runs-col">
            <h3>Runs ({session.runs.length})</h3>
            {session.runs.map((r) => (
              <details key={r.run_id} class="run-record" open={session.runs.length === 1}>
                <summary>
                  <strong>{r.pattern}</strong> <Status status={r.status} /> <span class="muted">{clip(r.task, 80)}</span>
                  <span class="muted small"> · {when(r.started_at)}</span>
                </summary>
                <ResultPanel result={r} />
              </details>
            ))}
          </div>
        </div>
      )}
    </div>
  );
}
