'use strict'
// The one place keys change case at the border.
//
// The core's JSON is snake_case; the JS API is camelCase. Conversion is
// structural: keys of user data (`data`, `state`, `metadata`, `statePatch`,
// tool `arguments`/`result`, a model's `extraBody`, a question's `schema` and
// `context`, answers, handoff `payload`s and the `payloadSchemas` option) are
// never touched, and maps keyed by agent names
// (`fallbacks`, `routes`) and header/query maps keep their keys while their
// values are converted.

const OPAQUE = new Set([
  'data',
  'state',
  'metadata',
  'state_patch',
  'arguments',
  'extra_body',
  'schema',
  'context',
  'answer',
  'answers',
  'payload',
  'payload_schemas',
])
const NAME_KEYED = new Set(['fallbacks', 'routes', 'headers', 'query'])

// Keys come from a small vocabulary, so conversions are memoized (bounded).
function memo(fn) {
  const cache = new Map()
  return (k) => {
    let v = cache.get(k)
    if (v === undefined) {
      v = fn(k)
      if (cache.size < 4096) cache.set(k, v)
    }
    return v
  }
}

const toCamelKey = memo((k) => k.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase()))
const toSnakeKey = memo((k) =>
  k
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/([A-Z])(?=[A-Z][a-z])/g, '$1_')
    .toLowerCase(),
)

// What a key becomes and how its value is treated, per direction: one
// memoized lookup per key instead of one per rule.
const PLAIN = 0
const KEEP = 1 // user data: the value is not converted
const NAMED = 2 // a map keyed by names: only its values are converted

function keyInfo(keyFn) {
  return memo((k) => {
    const snake = toSnakeKey(k)
    const kind = OPAQUE.has(snake) ? KEEP : NAME_KEYED.has(snake) ? NAMED : PLAIN
    return { key: keyFn(k), snake, kind }
  })
}
const CAMEL_INFO = keyInfo(toCamelKey)
const SNAKE_INFO = keyInfo(toSnakeKey)

function convert(value, info, opaque) {
  if (Array.isArray(value)) {
    const out = new Array(value.length)
    for (let i = 0; i < value.length; i++) out[i] = convert(value[i], info, opaque)
    return out
  }
  if (value === null || typeof value !== 'object') return value
  const out = {}
  for (const k in value) {
    if (!Object.prototype.hasOwnProperty.call(value, k)) continue
    const v = value[k]
    if (v === undefined) continue
    const { key, snake, kind } = info(k)
    if (kind === KEEP || (opaque.size !== 0 && opaque.has(snake))) {
      out[key] = v
    } else if (kind === NAMED && v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const inner = {}
      for (const [name, x] of Object.entries(v)) inner[name] = convert(x, info, opaque)
      out[key] = inner
    } else {
      out[key] = convert(v, info, opaque)
    }
  }
  return out
}

const NONE = new Set()
const TOOL_RESULT = new Set(['result'])

/** Core JSON (snake_case) to the JS shape (camelCase). */
function toCamel(value) {
  return convert(value, CAMEL_INFO, NONE)
}

/** JS shape (camelCase, snake_case accepted) to core JSON (snake_case). */
function toSnake(value) {
  return convert(value, SNAKE_INFO, NONE)
}

/** An event's camelCase view; a tool result is user data. */
function eventToCamel(raw) {
  return convert(raw, CAMEL_INFO, raw.type === 'tool_completed' ? TOOL_RESULT : NONE)
}

// Agent inputs cross once per agent call, so their (fixed) shape has a
// direct conversion; it gives exactly what `toCamel` gives (tested), and falls
// back to `toCamel` for anything it does not know.
const INPUT_KEYS = new Set(['task', 'messages', 'session_id', 'run_id', 'state', 'metadata', 'answer', 'handoff'])
const MESSAGE_KEYS = new Set(['role', 'content', 'name', 'data', 'created_at'])

function messageToCamel(m) {
  for (const k in m) if (!MESSAGE_KEYS.has(k)) return toCamel(m)
  const out = { role: m.role, content: m.content }
  if (m.name !== undefined) out.name = m.name
  if (m.data !== undefined) out.data = m.data
  if (m.created_at !== undefined) out.createdAt = m.created_at
  return out
}

// `input.messages` from the conversation's JSON, parsed on first read; from
// then on (or once assigned) a plain data property. An object literal with
// an accessor is much cheaper to create than a `defineProperty` call.
function settleMessages(target, value) {
  Object.defineProperty(target, 'messages', { value, writable: true, enumerable: true, configurable: true })
  return value
}

function withLazyMessages(raw, json) {
  return {
    task: raw.task,
    get messages() {
      return settleMessages(this, JSON.parse(json).map(messageToCamel))
    },
    set messages(value) {
      settleMessages(this, value)
    },
    sessionId: raw.session_id,
    runId: raw.run_id,
    state: raw.state,
    metadata: raw.metadata,
  }
}

function lazyMessages(out, json) {
  Object.defineProperty(out, 'messages', {
    get: () => settleMessages(out, JSON.parse(json).map(messageToCamel)),
    set: (value) => settleMessages(out, value),
    enumerable: true,
    configurable: true,
  })
}

/**
 * An AgentInput's camelCase view. With `messagesJson` (the conversation as
 * its own JSON string), `messages` is parsed when first read.
 */
function agentInputToCamel(raw, messagesJson) {
  for (const k in raw) {
    if (!INPUT_KEYS.has(k)) {
      const converted = toCamel(raw)
      if (messagesJson !== undefined) lazyMessages(converted, messagesJson)
      return converted
    }
  }
  if (messagesJson !== undefined) {
    // the direct path always sends task, ids, state and metadata
    const out = withLazyMessages(raw, messagesJson)
    if (raw.answer !== undefined) out.answer = raw.answer
    if (raw.handoff !== undefined) out.handoff = raw.handoff
    return out
  }
  const out = {}
  if (raw.task !== undefined) out.task = raw.task
  if (raw.messages !== undefined) out.messages = raw.messages.map(messageToCamel)
  if (raw.session_id !== undefined) out.sessionId = raw.session_id
  if (raw.run_id !== undefined) out.runId = raw.run_id
  if (raw.state !== undefined) out.state = raw.state
  if (raw.metadata !== undefined) out.metadata = raw.metadata
  if (raw.answer !== undefined) out.answer = raw.answer
  if (raw.handoff !== undefined) out.handoff = raw.handoff
  return out
}

module.exports = { toCamel, toSnake, eventToCamel, agentInputToCamel, toCamelKey, toSnakeKey }
