//! # orchestra-core
//!
//! Coordinates several agents on one task. The same core runs linked into a
//! Rust program, inside Python and Node through the bindings, and behind the
//! REST server.
//!
//! ## Contents
//! - [`agent`]: the [`Agent`] trait, [`AgentInput`] / [`AgentOutput`], [`FnAgent`].
//! - [`pattern`]: the [`Pattern`] trait and the five patterns
//!   (sequential, concurrent, handoff, group_chat, dynamic).
//! - [`orchestrator`]: [`Orchestrator`], the facade: registry, store, `run`, `stream`.
//! - [`event`]: [`OrchestrationEvent`], the stream of every step.
//! - [`session`]: [`SessionStore`], [`MemoryStore`], optimistic versioning.
//! - [`policy`]: limits, retries, fallbacks, circuit breakers, bulkheads.
//! - [`error`]: one error enum per layer, each with stable codes.
//! - `agents::queue` and `worker` (features `redis` / `nats`): agents served
//!   by workers behind Redis Streams or NATS.
//! - `llm` (feature `http-agents`): the `ChatModel` trait, `LlmAgent`, `LlmManager`, `LlmPlanner`.
//!
//! ## Quick start
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use orchestra_core::prelude::*;
//!
//! let orch = Orchestrator::new();
//! orch.register(FnAgent::new("researcher", "finds facts", |i, _| async move {
//!     format!("facts about {}", i.task)
//! }));
//! orch.register(FnAgent::new("writer", "writes prose", |i, _| async move {
//!     format!("An article based on {}", i.task)
//! }));
//! let result = orch
//!     .run(RunRequest::new("sequential", "tides").agents(["researcher", "writer"]))
//!     .await?;
//! assert_eq!(result.status, RunStatus::Completed);
//! assert_eq!(result.output.as_deref(), Some("An article based on facts about tides"));
//!
//! // Continue the same session: agents now see the earlier conversation.
//! let again = orch
//!     .run(RunRequest::new("sequential", "more").agents(["writer"]).session(&result.session_id))
//!     .await?;
//! let session = orch.get_session(&again.session_id).await?.unwrap();
//! assert_eq!(session.runs.len(), 2);
//! # Ok::<_, OrchestraError>(()) }).unwrap();
//! ```

pub mod agent;
pub mod agents;
pub mod context;
pub mod discovery;
pub mod error;
pub mod event;
pub mod human;
#[cfg(feature = "http-agents")]
pub mod llm;
pub mod message;
pub mod orchestrator;
pub mod pattern;
pub mod policy;
pub mod queue;
pub mod run;
mod schema;
pub mod session;
pub mod telemetry;
pub mod termination;
mod timestamp;
#[cfg(any(feature = "redis", feature = "nats"))]
pub mod worker;

#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;

pub use agent::{
    Agent, AgentContext, AgentInfo, AgentInput, AgentOutput, AgentRef, FnAgent, Handoff,
    IntoAgentResult, Price, Usage,
};
pub use context::{Call, Components, RunContext, Scope, StepOutcome};
pub use error::{AgentError, ErrorInfo, OrchestraError, StoreError};
pub use event::{EVENT_SCHEMA_VERSION, EventKind, EventObserver, EventSink, OrchestrationEvent};
pub use human::HumanAgent;
pub use message::{Message, Role};
pub use orchestrator::{CheckedRun, Orchestrator, OrchestratorBuilder, RunStream};
pub use pattern::{Pattern, PatternInfo, PatternOutput};
pub use policy::{
    AgentPolicy, CallPolicy, CircuitBreakerPolicy, CircuitState, CircuitStatus, Limits,
    RetryPolicy, RunOptions,
};
pub use run::{
    CHECKPOINT_VERSION, Checkpoint, InputKind, InputRequest, PolicyDecision, RunRequest, RunResult,
    RunStatus, Step, StepStatus,
};
pub use session::{MemoryStore, Session, SessionStore};
#[cfg(feature = "redis")]
pub use session::{RedisStore, RedisStoreConfig};
pub use termination::{SessionBudget, Termination};

/// The names most programs need.
pub mod prelude {
    pub use crate::{
        Agent, AgentContext, AgentError, AgentInput, AgentOutput, FnAgent, Handoff, Message,
        OrchestraError, OrchestrationEvent, Orchestrator, RunRequest, RunResult, RunStatus,
    };
}
