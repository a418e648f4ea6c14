// Runs that wait for a person: the pending question with a form to answer it
// (POST /runs/{run_id}/input), cancelling a run (POST /runs/{run_id}/cancel),
// and following a run after its answer until it finishes or asks again.

import { Fragment } from 'preact';
import { useState } from 'preact/hooks';
import { api, describeError, streamEvents } from './api';
import { AgentName, JsonBlock, PlanPanel, when } from './components';
import type { RunTimeline } from './timeline';
import type { InputRequest, Plan, Resumed, RunRecord } from './types';

/** Statuses of a run that is still going (neither finished nor waiting). */
const GOING = new Set(['queued', 'pending', 'running', 'retrying']);

type Schema = { type?: string | string[]; anyOf?: Schema[]; oneOf?: Schema[] };

/** The JSON types a schema accepts at its top level ('any' when it says nothing). */
export function schemaTypes(schema: unknown): Set<string> {
  const out = new Set<string>();
  const walk = (s: unknown) => {
    if (!s || typeof s !== 'object') {
      out.add('any');
      return;
    }
    const sc = s as Schema;
    if (typeof sc.type === 'string') out.add(sc.type);
    else if (Array.isArray(sc.type)) sc.type.forEach((t) => out.add(t));
    const alts = [...(sc.anyOf ?? []), ...(sc.oneOf ?? [])];
    alts.forEach(walk);
    if (sc.type === undefined && alts.length === 0) out.add('any');
  };
  walk(schema);
  return out;
}

/**
 * The JSON value to send for what was typed. Text stays text when the schema
 * takes a string (unless it is a JSON object the schema also takes);
 * otherwise the text is read as JSON (a number, true, {"…": …}). Text that is
 * not JSON is sent as a string, so the server's check explains what it wants.
 */
export function encodeAnswer(text: string, schema: unknown): unknown {
  const types = schemaTypes(schema);
  const trimmed = text.trim();
  let parsed: { value: unknown } | undefined;
  try {
    parsed = { value: JSON.parse(trimmed) };
  } catch {
    parsed = undefined;
  }
  if (types.has('string')) {
    const v = parsed?.value;
    const isObject = !!v && typeof v === 'object' && !Array.isArray(v);
    return isObject && (types.has('object') || types.has('any')) ? v : text;
  }
  return parsed ? parsed.value : text;
}

function describeSchema(schema: unknown): string {
  const types = [...schemaTypes(schema)].filter((t) => t !== 'any');
  return types.length ? types.join(' or ') : 'any JSON';
}

function Context({ request }: { request: InputRequest }) {
  const ctx = request.context;
  if (ctx === undefined || ctx === null) return null;
  const c = ctx as { plan?: Plan; last_message?: { name?: string; role?: string; content?: string }; input?: string };
  return (
    <div class="input-context">
      {c.plan && Array.isArray(c.plan.steps) && <PlanPanel plan={c.plan} />}
      {c.last_message && (
        <div class="msg small">
          <span class="label">last message</span>
          {c.last_message.name && <AgentName name={c.last_message.name} />} {c.last_message.content}
        </div>
      )}
      {typeof c.input === 'string' && (
        <div class="small">
          <span class="label">the agent would act on</span> {c.input}
        </div>
      )}
      <JsonBlock label="context JSON" value={ctx} />
    </div>
  );
}

/**
 * The question a waiting run asks and the form that answers it: Approve and
 * Deny for `approval` and `plan`, a text box for `human` and `agent`. A
 * refused answer (422 `invalid_answer`) is shown here; the run keeps waiting.
 */
export function InputPanel({
  runId,
  request,
  onAnswered,
  onCancel,
}: {
  runId: string;
  request: InputRequest;
  onAnswered: (r: Resumed) => void;
  onCancel?: () => void;
}) {
  const [text, setText] = useState('');
  const [reason, setReason] = useState('');
  const [error, setError] = useState<string>();
  const [sending, setSending] = useState(false);
  const kind = request.kind ?? 'agent';
  const approval = kind === 'approval' || kind === 'plan';
  const expired = !!request.expires_at && new Date(request.expires_at).getTime() < Date.now();

  const send = async (answer: unknown) => {
    setError(undefined);
    setSending(true);
    try {
      const r = await api.post<Resumed>(`/runs/${encodeURIComponent(runId)}/input`, { answer });
      setText('');
      onAnswered(r);
    } catch (err) {
      setError(describeError(err));
    } finally {
      setSending(false);
    }
  };
  const decide = (approved: boolean) => send(reason.trim() ? { approved, reason: reason.trim() } : approved);
  const submit = (e: Event) => {
    e.preventDefault();
    if (approval) return;
    if (!text.trim()) return setError('Write an answer.');
    void send(encodeAnswer(text, request.schema));
  };
  const id = `answer-${runId}`;
  const asText = schemaTypes(request.schema).has('string');

  return (
    <section class={`panel input-request input-${kind}`} data-kind={kind} data-run={runId} aria-label="Input request">
      <h3>
        {kind === 'plan' ? 'Approve the plan?' : kind === 'approval' ? 'Approve this agent?' : 'The run asks for input'}{' '}
        <span class="chip input-kind">{kind}</span>
      </h3>
      <div class="small muted input-facts">
        {[
          request.agent && (
            <span key="agent">
              agent <AgentName name={request.agent} />
            </span>
          ),
          request.step !== undefined && <span key="step">step {request.step}</span>,
          request.requested_at && <span key="asked">asked {when(request.requested_at)}</span>,
          request.expires_at && (
            <span key="expires" class={expired ? 'error-text' : ''}>
              {expired ? 'expired' : 'expires'} {when(request.expires_at)}
            </span>
          ),
        ]
          .filter(Boolean)
          .map((part, i) => (
            <Fragment key={i}>
              {i > 0 && ' · '}
              {part}
            </Fragment>
          ))}
      </div>
      {request.prompt && <p class="prompt">{request.prompt}</p>}
      <Context request={request} />
      <form onSubmit={submit} aria-label="Answer the input request">
        {approval ? (
          <>
            <label for={id}>
              Reason <span class="muted small">(optional)</span>
            </label>
            <input id={id} class="reason" value={reason} onInput={(e) => setReason(e.currentTarget.value)} />
            <div class="row answer-buttons">
              <button type="button" disabled={sending} onClick={() => decide(true)}>
                Approve
              </button>
              <button type="button" class="danger" disabled={sending} onClick={() => decide(false)}>
                Deny
              </button>
              {onCancel && (
                <button type="button" class="secondary" disabled={sending} onClick={onCancel}>
                  Cancel run
                </button>
              )}
            </div>
          </>
        ) : (
          <>
            <label for={id}>
              Answer{' '}
              <span class="muted small">
                ({asText ? 'text' : 'read as JSON'}; the question takes {describeSchema(request.schema)})
              </span>
            </label>
            <textarea
              id={id}
              rows={3}
              class={asText ? '' : 'mono'}
              value={text}
              onInput={(e) => setText(e.currentTarget.value)}
              aria-invalid={error ? 'true' : undefined}
            />
            <div class="row answer-buttons">
              <button type="submit" disabled={sending}>
                Send answer
              </button>
              {onCancel && (
                <button type="button" class="secondary" disabled={sending} onClick={onCancel}>
                  Cancel run
                </button>
              )}
            </div>
          </>
        )}
        {error && (
          <p class="error-text answer-error" role="alert">
            {error}
          </p>
        )}
        {request.schema !== undefined && <JsonBlock label="answer schema" value={request.schema} />}
      </form>
    </section>
  );
}

export async function cancelRun(runId: string): Promise<void> {
  await api.post(`/runs/${encodeURIComponent(runId)}/cancel`, {});
}

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

/**
 * Follows a run after its answer was taken: streams the continuation's
 * events when the server offers them (`events_url`, with Redis), then reads
 * `GET /runs/{run_id}` until the run finishes or asks again, and folds what
 * it learns into the timeline. Answers the run's last record.
 */
export async function followRun(
  runId: string,
  resumed: Resumed,
  timeline: RunTimeline,
  tick: () => void,
  signal: AbortSignal,
): Promise<RunRecord | undefined> {
  const answeredKey = timeline.waiting?.key;
  timeline.waiting = undefined;
  tick();
  if (resumed.events_url) {
    try {
      await streamEvents(
        'GET',
        resumed.events_url,
        undefined,
        (ev) => {
          timeline.apply(ev);
          tick();
        },
        signal,
      );
    } catch {
      // The record below still tells how the run ended.
    }
  }
  const url = `/runs/${encodeURIComponent(runId)}`;
  for (let delay = 200; !signal.aborted; delay = Math.min(delay * 2, 1000)) {
    const rec = await api.get<RunRecord>(url);
    const stale = rec.status === 'waiting_for_input' && rec.input?.key === answeredKey;
    if (!GOING.has(rec.status) && !stale) {
      timeline.applyRecord(rec.status, rec.result ?? undefined, rec.input ?? undefined);
      tick();
      return rec;
    }
    await sleep(delay);
  }
  return undefined;
}
