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
  PATTERNS,
  EVENT_SCHEMA_VERSION,
} = sdk

export default sdk
