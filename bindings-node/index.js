'use strict'
// orchestra-sdk: multi-agent orchestration on the Orchestra Rust core.

const { Orchestrator, RunStream, PATTERNS } = require('./lib/orchestrator')
const { Handoff } = require('./lib/handoff')
const { MemoryStore, RedisStore } = require('./lib/stores')
const { AgentWorker, serveAgent } = require('./lib/queue')
const errors = require('./lib/errors')
const native = require('./lib/native')

module.exports = {
  Orchestrator,
  RunStream,
  Handoff,
  MemoryStore,
  RedisStore,
  AgentWorker,
  serveAgent,
  OrchestraError: errors.OrchestraError,
  InvalidRequestError: errors.InvalidRequestError,
  AgentError: errors.AgentError,
  TimeoutError: errors.TimeoutError,
  CancelledError: errors.CancelledError,
  StoreError: errors.StoreError,
  InvalidAnswerError: errors.InvalidAnswerError,
  InputExpiredError: errors.InputExpiredError,
  ApprovalDeniedError: errors.ApprovalDeniedError,
  RunNotFoundError: errors.RunNotFoundError,
  RunStateError: errors.RunStateError,
  CheckpointError: errors.CheckpointError,
  InvalidHandoffPayloadError: errors.InvalidHandoffPayloadError,
  InputRequired: errors.InputRequired,
  PATTERNS,
  EVENT_SCHEMA_VERSION: native.eventSchemaVersion(),
}
