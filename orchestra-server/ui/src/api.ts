// Calls to the orchestra-server REST API from the console. The page is served
// by the same server, so every path is same-origin. An API key, when the
// user enters one, is kept in localStorage and sent as a Bearer token.

import { SseParser } from './sse';
import type { OrchestrationEvent } from './types';

const KEY_STORAGE = 'orchestra.apiKey';

export function getApiKey(): string {
  try {
    return localStorage.getItem(KEY_STORAGE) ?? '';
  } catch {
    return '';
  }
}

export function setApiKey(key: string): void {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // Storage disabled: the key lives for this page only.
  }
  memoryKey = key;
}

let memoryKey = getApiKey();

/** An error answer of the API: HTTP status plus the body's stable code. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }

  get unauthorized(): boolean {
    return this.status === 401;
  }
}

function headers(json: boolean): Headers {
  const h = new Headers({ Accept: 'application/json' });
  if (json) h.set('Content-Type', 'application/json');
  if (memoryKey) h.set('Authorization', `Bearer ${memoryKey}`);
  return h;
}

async function toError(res: Response): Promise<ApiError> {
  let code = `http_${res.status}`;
  let message = res.statusText || `HTTP ${res.status}`;
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string } };
    if (body.error?.code) code = body.error.code;
    if (body.error?.message) message = body.error.message;
  } catch {
    // Not JSON: keep the status line.
  }
  return new ApiError(res.status, code, message);
}

export async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(path, {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw await toError(res);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

export const api = {
  get: <T>(path: string) => request<T>('GET', path),
  post: <T>(path: string, body: unknown) => request<T>('POST', path, body),
  delete: (path: string) => request<void>('DELETE', path),
};

/**
 * Reads an SSE stream of orchestration events (POST with a body, or GET) and
 * calls `onEvent` for each. Resolves when the stream ends; rejects with an
 * ApiError when the request is refused before the stream starts.
 */
export async function streamEvents(
  method: 'POST' | 'GET',
  path: string,
  body: unknown,
  onEvent: (ev: OrchestrationEvent) => void,
  signal: AbortSignal,
): Promise<void> {
  const h = headers(body !== undefined);
  h.set('Accept', 'text/event-stream');
  const res = await fetch(path, {
    method,
    headers: h,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    cache: 'no-store',
  });
  if (!res.ok) throw await toError(res);
  if (!res.body) throw new ApiError(res.status, 'no_body', 'the server sent no event stream');
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new SseParser();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    for (const msg of parser.push(value)) {
      let ev: OrchestrationEvent;
      try {
        ev = JSON.parse(msg.data) as OrchestrationEvent;
      } catch {
        continue; // Not an event (e.g. a keep-alive written as data).
      }
      if (ev && typeof ev === 'object' && typeof ev.type === 'string') onEvent(ev);
    }
  }
}

export function describeError(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.unauthorized) return 'This server needs an API key: enter it at the top right.';
    return `${e.message} (${e.code})`;
  }
  if (e instanceof Error) return e.message;
  return String(e);
}
