'use strict'
// Error classes; every error carries the core's stable snake_case `code`.

const INVALID_REQUEST_CODES = [
  'invalid_request',
  'unknown_pattern',
  'unknown_agent',
  'no_agents',
  'invalid_options',
  'invalid_session_id',
]
const STORE_CODES = ['session_conflict', 'store_unavailable', 'store_corrupt', 'store_error']

/** Base class of every error this package throws. */
class OrchestraError extends Error {
  constructor(message, code = 'internal_error', details = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause })
    this.name = new.target.name
    /** The core's stable error code, e.g. "unknown_agent". */
    this.code = code
    if (details.field !== undefined) this.field = details.field
    if (details.agent !== undefined) this.agent = details.agent
    if (details.agentCode !== undefined) this.agentCode = details.agentCode
    if (details.result !== undefined) this.result = details.result
  }
}

/** The request was invalid; nothing ran. */
class InvalidRequestError extends OrchestraError {}
/** An agent failed after its retries and fallbacks. */
class AgentError extends OrchestraError {}
/** The run's time limit passed. */
class TimeoutError extends OrchestraError {}
/** The run was cancelled. */
class CancelledError extends OrchestraError {}
/** The session store failed (unreachable, conflict, corrupt data). */
class StoreError extends OrchestraError {}

function classFor(code) {
  if (INVALID_REQUEST_CODES.includes(code)) return InvalidRequestError
  if (STORE_CODES.includes(code)) return StoreError
  switch (code) {
    case 'agent_failed':
      return AgentError
    case 'timeout':
    case 'timed_out':
      return TimeoutError
    case 'cancelled':
      return CancelledError
    default:
      return OrchestraError
  }
}

/** The error for a core error envelope `{code, message, field?, agent?}`. */
function fromInfo(info, extra = {}) {
  const Cls = classFor(info.code)
  return new Cls(info.message, info.code, {
    field: info.field,
    agent: info.agent,
    agentCode: info.agent_code ?? info.agentCode,
    ...extra,
  })
}

let marker = null

/** Converts an error thrown by the native addon; other errors pass through. */
function fromNative(err) {
  if (marker === null) marker = require('./native').errorMarker()
  const message = err && typeof err.message === 'string' ? err.message : ''
  const at = message.indexOf(marker)
  if (at === -1) {
    if (err instanceof Error && !(err instanceof OrchestraError)) {
      return new OrchestraError(message || String(err), 'internal_error', { cause: err })
    }
    return err
  }
  let info
  try {
    info = JSON.parse(message.slice(at + marker.length))
  } catch {
    return new OrchestraError(message, 'internal_error', { cause: err })
  }
  return fromInfo(info)
}

module.exports = {
  OrchestraError,
  InvalidRequestError,
  AgentError,
  TimeoutError,
  CancelledError,
  StoreError,
  fromInfo,
  fromNative,
  INVALID_REQUEST_CODES,
  STORE_CODES,
}
