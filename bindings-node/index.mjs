// ESM entry point: the same objects as the CommonJS entry.
import sdk from './index.js'

export const {
  Orchestrator,
  RunStream,
  Handoff,
  MemoryStore,
  RedisStore,
  AgentWorker,
  serveAgent,
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
  PATTERNS,
  EVENT_SCHEMA_VERSION,
} = sdk

export default sdk
