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

function convert(value, keyFn, opaque) {
  if (Array.isArray(value)) return value.map((v) => convert(v, keyFn, opaque))
  if (value === null || typeof value !== 'object') return value
  const out = {}
  for (const k in value) {
    if (!Object.prototype.hasOwnProperty.call(value, k)) continue
    const v = value[k]
    if (v === undefined) continue
    const snake = toSnakeKey(k)
    const key = keyFn(k)
    if (OPAQUE.has(snake) || opaque.has(snake)) {
      out[key] = v
    } else if (NAME_KEYED.has(snake) && v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const inner = {}
      for (const [name, x] of Object.entries(v)) inner[name] = convert(x, keyFn, opaque)
      out[key] = inner
    } else {
      out[key] = convert(v, keyFn, opaque)
    }
  }
  return out
}

const NONE = new Set()
const TOOL_RESULT = new Set(['result'])

/** Core JSON (snake_case) to the JS shape (camelCase). */
function toCamel(value) {
  return convert(value, toCamelKey, NONE)
}

/** JS shape (camelCase, snake_case accepted) to core JSON (snake_case). */
function toSnake(value) {
  return convert(value, toSnakeKey, NONE)
}

/** An event's camelCase view; a tool result is user data. */
function eventToCamel(raw) {
  return convert(raw, toCamelKey, raw.type === 'tool_completed' ? TOOL_RESULT : NONE)
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
// then on (or once assigned) a plain data property.
function lazyMessages(out, json) {
  const settle = (value) => {
    Object.defineProperty(out, 'messages', { value, writable: true, enumerable: true, configurable: true })
    return value
  }
  Object.defineProperty(out, 'messages', {
    get: () => settle(JSON.parse(json).map(messageToCamel)),
    set: settle,
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
  const out = {}
  if (raw.task !== undefined) out.task = raw.task
  if (messagesJson !== undefined) lazyMessages(out, messagesJson)
  else if (raw.messages !== undefined) out.messages = raw.messages.map(messageToCamel)
  if (raw.session_id !== undefined) out.sessionId = raw.session_id
  if (raw.run_id !== undefined) out.runId = raw.run_id
  if (raw.state !== undefined) out.state = raw.state
  if (raw.metadata !== undefined) out.metadata = raw.metadata
  if (raw.answer !== undefined) out.answer = raw.answer
  if (raw.handoff !== undefined) out.handoff = raw.handoff
  return out
}

module.exports = { toCamel, toSnake, eventToCamel, agentInputToCamel, toCamelKey, toSnakeKey }
