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
/** An answer does not satisfy the pending question's schema; the run keeps waiting. */
class InvalidAnswerError extends InvalidRequestError {}
/** The run's question expired (`inputTimeoutMs`); the run ended `timed_out`. */
class InputExpiredError extends TimeoutError {}
/** A person refused an approval (`approveAgents`, `approvePlan`); the run failed. */
class ApprovalDeniedError extends OrchestraError {}
/** No run with this id in the session store. */
class RunNotFoundError extends OrchestraError {}
/**
 * The run is not in a state that allows this: it has finished, another
 * answer was taken first, or it waits for an answer and none was given.
 */
class RunStateError extends OrchestraError {}
/** A stored checkpoint has a format this release cannot read. */
class CheckpointError extends OrchestraError {}
/**
 * A handoff's payload does not satisfy the schema the run sets for its target
 * (`payloadSchemas`); the target did not run and the run failed.
 */
class InvalidHandoffPayloadError extends OrchestraError {}

/**
 * Thrown (or returned) by an agent that needs a person's answer before it can
 * go on: the run pauses (status `waiting_for_input`, event `input_requested`)
 * and, once resumed with `orch.resume(runId, answer)`, calls the agent again
 * with the answer as `input.answer`. `schema` is a JSON schema the answer
 * must satisfy; `context` is any JSON value shown to the person answering.
 */
class InputRequired extends OrchestraError {
  constructor(prompt, { schema, context } = {}) {
    super(String(prompt ?? ''), 'input_required')
    this.prompt = String(prompt ?? '')
    if (schema !== undefined) this.schema = schema
    if (context !== undefined) this.context = context
  }

  /** The question as the core reads it. */
  toJSON() {
    const q = { prompt: this.prompt }
    if (this.schema !== undefined && this.schema !== null) q.schema = this.schema
    if (this.context !== undefined && this.context !== null) q.context = this.context
    return q
  }
}

const BY_CODE = {
  invalid_answer: InvalidAnswerError,
  input_expired: InputExpiredError,
  approval_denied: ApprovalDeniedError,
  run_not_found: RunNotFoundError,
  run_not_waiting: RunStateError,
  checkpoint_unreadable: CheckpointError,
  invalid_handoff_payload: InvalidHandoffPayloadError,
}

function classFor(code) {
  if (Object.prototype.hasOwnProperty.call(BY_CODE, code)) return BY_CODE[code]
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
  InvalidAnswerError,
  InputExpiredError,
  ApprovalDeniedError,
  RunNotFoundError,
  RunStateError,
  CheckpointError,
  InvalidHandoffPayloadError,
  InputRequired,
  fromInfo,
  fromNative,
  INVALID_REQUEST_CODES,
  STORE_CODES,
}
