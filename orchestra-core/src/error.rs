//! Errors, one enum per layer.
//!
//! [`AgentError`] is what an agent returns; [`StoreError`] is what a session
//! store returns; [`OrchestraError`] is what the orchestrator returns and wraps
//! the other two. Every variant has a stable snake_case [`code`](OrchestraError::code)
//! that the server, Python and Node surface unchanged.
//!
//! ```
//! use orchestra_core::{OrchestraError, AgentError};
//! let e = OrchestraError::UnknownAgent { name: "ghost".into() };
//! assert_eq!(e.code(), "unknown_agent");
//! assert!(e.is_invalid_request());
//! assert!(AgentError::retryable("503 from upstream").is_retryable());
//! ```

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A failure inside one agent call.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The agent gave up; `retryable` says whether trying again may help.
    #[error("{message}")]
    Failed { message: String, retryable: bool },
    /// The agent's service is rate limiting; retry after the given delay if known.
    #[error("rate limited")]
    RateLimited { retry_after: Option<Duration> },
    /// The call did not finish within its time limit.
    #[error("agent call timed out after {0:?}")]
    Timeout(Duration),
    /// The run was cancelled while the agent worked.
    #[error("agent call cancelled")]
    Cancelled,
    /// The agent answered with something unusable (bad JSON, wrong shape).
    #[error("invalid agent output: {0}")]
    InvalidOutput(String),
    /// The agent's service could not be reached.
    #[error("transport error: {0}")]
    Transport(String),
    /// The agent's service answered with an HTTP error status.
    #[error("agent service answered HTTP {status}: {message}")]
    Http { status: u16, message: String },
    /// The agent's circuit breaker is open: the call was refused without
    /// reaching the agent (a fallback, if any, is tried next).
    #[error("circuit open for this agent; next probe in {retry_in:?}")]
    CircuitOpen { retry_in: Duration },
    /// The agent needs an answer from a person before it can go on: the run
    /// pauses (status `waiting_for_input`) and calls the agent again with
    /// the answer in [`AgentContext::answer`](crate::AgentContext::answer).
    #[error("input requested: {}", .0.prompt)]
    InputRequired(Box<crate::run::InputRequest>),
}

impl AgentError {
    /// A permanent failure: retrying will not help.
    pub fn msg(message: impl Into<String>) -> Self {
        Self::Failed {
            message: message.into(),
            retryable: false,
        }
    }

    /// Pauses the run until a person answers `request` (see [`AgentError::InputRequired`]).
    pub fn input(request: crate::run::InputRequest) -> Self {
        Self::InputRequired(Box::new(request))
    }

    /// A transient failure that a retry policy may retry.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Failed {
            message: message.into(),
            retryable: true,
        }
    }

    /// Whether a retry policy should try again: timeouts, rate limits, 5xx,
    /// transport errors and failures marked retryable. Never 4xx or bad output.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Failed { retryable, .. } => *retryable,
            Self::RateLimited { .. } | Self::Timeout(_) | Self::Transport(_) => true,
            Self::Http { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            Self::Cancelled
            | Self::InvalidOutput(_)
            | Self::CircuitOpen { .. }
            | Self::InputRequired(_) => false,
        }
    }

    /// Whether this failure says the agent is unwell, and so counts towards
    /// opening its circuit breaker: retryable errors and invalid output, not
    /// cancellations, refusals by an open breaker, or 4xx answers.
    pub fn counts_against_agent(&self) -> bool {
        match self {
            Self::InvalidOutput(_) => true,
            Self::Cancelled | Self::CircuitOpen { .. } | Self::InputRequired(_) => false,
            e => e.is_retryable(),
        }
    }

    /// Stable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Failed { .. } => "agent_error",
            Self::RateLimited { .. } => "rate_limited",
            Self::Timeout(_) => "agent_timeout",
            Self::Cancelled => "cancelled",
            Self::InvalidOutput(_) => "invalid_agent_output",
            Self::Transport(_) => "agent_unreachable",
            Self::Http { .. } => "agent_http_error",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::InputRequired(_) => "input_required",
        }
    }
}

impl From<crate::run::InputRequest> for AgentError {
    fn from(request: crate::run::InputRequest) -> Self {
        Self::input(request)
    }
}

/// A failure of a session store.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An optimistic write lost: the stored version was not the expected one.
    #[error("version conflict on session {id}: expected {expected:?}, found {found:?}")]
    Conflict {
        id: String,
        expected: Option<u64>,
        found: Option<u64>,
    },
    /// The backing service cannot be reached; the caller may retry later.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// Stored bytes could not be read back.
    #[error("stored session is corrupt: {0}")]
    Corrupt(String),
    /// Anything else the backend reported.
    #[error("session store error: {0}")]
    Backend(String),
}

impl StoreError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Conflict { .. } => "session_conflict",
            Self::Unavailable(_) => "store_unavailable",
            Self::Corrupt(_) => "store_corrupt",
            Self::Backend(_) => "store_error",
        }
    }
}

/// Everything the orchestrator can fail with.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OrchestraError {
    /// A request field is missing or malformed.
    #[error("invalid request: {field}: {message}")]
    InvalidRequest { field: String, message: String },
    #[error(
        "unknown pattern '{name}' (expected one of: sequential, concurrent, handoff, group_chat, dynamic)"
    )]
    UnknownPattern { name: String },
    #[error("unknown agent '{name}'")]
    UnknownAgent { name: String },
    #[error("pattern '{pattern}' needs at least one agent")]
    NoAgents { pattern: String },
    /// Options failed to parse; `field` is the JSON path of the culprit.
    #[error("invalid options: {field}: {message}")]
    InvalidOptions { field: String, message: String },
    #[error("invalid session id: {reason}")]
    InvalidSessionId { reason: String },
    /// An agent call failed after its retries and fallbacks.
    #[error("agent '{agent}' failed: {source}")]
    AgentFailed {
        agent: String,
        #[source]
        source: AgentError,
    },
    /// The run's total time limit passed.
    #[error("run timed out after {0:?}")]
    Timeout(Duration),
    #[error("run cancelled")]
    Cancelled,
    /// More agent steps than `max_iterations` allow.
    #[error("run exceeded max_iterations ({limit})")]
    MaxIterations { limit: u32 },
    /// Handoffs went round in a circle without progress.
    #[error("handoff cycle detected: {path}")]
    HandoffCycle { path: String },
    /// Too many handoffs in one run.
    #[error("run exceeded max_handoffs ({limit})")]
    MaxHandoffs { limit: u32 },
    /// An agent handed off along a route that is not allowed.
    #[error("agent '{from}' may not hand off to '{to}'")]
    InvalidHandoff { from: String, to: String },
    /// A handoff's payload does not satisfy its route's schema.
    #[error("handoff from '{from}' to '{to}' carries an invalid payload: {message}")]
    InvalidHandoffPayload {
        from: String,
        to: String,
        message: String,
    },
    #[error("group chat manager failed: {0}")]
    Manager(String),
    #[error("planner failed: {0}")]
    Planner(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The run paused for input (not a failure: the run's status is
    /// `waiting_for_input` and it resumes when answered).
    #[error("waiting for input: {}", .0.prompt)]
    InputRequired(Box<crate::run::InputRequest>),
    /// An answer does not satisfy the pending request's schema; the run keeps waiting.
    #[error("invalid answer: {message}")]
    InvalidAnswer { message: String },
    /// A person refused an approval; the run ends failed.
    #[error("approval denied for {what}{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    ApprovalDenied {
        what: String,
        reason: Option<String>,
    },
    /// No run with this id (in the session store).
    #[error("unknown run '{run_id}'")]
    UnknownRun { run_id: String },
    /// The run is not in a state that allows this (e.g. answering a run that is not waiting).
    #[error("run '{run_id}' is {status}: {message}")]
    RunState {
        run_id: String,
        status: String,
        message: String,
    },
    /// The pending input request's deadline passed; the run ended timed out.
    #[error("the input request of run '{run_id}' expired")]
    InputExpired { run_id: String },
    /// A stored checkpoint has a format this release cannot read.
    #[error("checkpoint of run '{run_id}': {message}")]
    Checkpoint { run_id: String, message: String },
}

impl OrchestraError {
    /// A stable snake_case code, the same in every language and over HTTP.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. } => "invalid_request",
            Self::UnknownPattern { .. } => "unknown_pattern",
            Self::UnknownAgent { .. } => "unknown_agent",
            Self::NoAgents { .. } => "no_agents",
            Self::InvalidOptions { .. } => "invalid_options",
            Self::InvalidSessionId { .. } => "invalid_session_id",
            Self::AgentFailed { .. } => "agent_failed",
            Self::Timeout(_) => "timeout",
            Self::Cancelled => "cancelled",
            Self::MaxIterations { .. } => "max_iterations_exceeded",
            Self::HandoffCycle { .. } => "handoff_cycle",
            Self::MaxHandoffs { .. } => "max_handoffs_exceeded",
            Self::InvalidHandoff { .. } => "invalid_handoff",
            Self::InvalidHandoffPayload { .. } => "invalid_handoff_payload",
            Self::Manager(_) => "manager_failed",
            Self::Planner(_) => "planner_failed",
            Self::Store(e) => e.code(),
            Self::InputRequired(_) => "input_required",
            Self::InvalidAnswer { .. } => "invalid_answer",
            Self::ApprovalDenied { .. } => "approval_denied",
            Self::UnknownRun { .. } => "run_not_found",
            Self::RunState { .. } => "run_not_waiting",
            Self::InputExpired { .. } => "input_expired",
            Self::Checkpoint { .. } => "checkpoint_unreadable",
        }
    }

    /// True for errors caused by the request itself (the caller must change it);
    /// these are raised before any agent runs.
    pub fn is_invalid_request(&self) -> bool {
        matches!(
            self,
            Self::InvalidRequest { .. }
                | Self::UnknownPattern { .. }
                | Self::UnknownAgent { .. }
                | Self::NoAgents { .. }
                | Self::InvalidOptions { .. }
                | Self::InvalidSessionId { .. }
        )
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The serializable summary carried by events and results.
    pub fn info(&self) -> ErrorInfo {
        let agent = match self {
            Self::AgentFailed { agent, .. } => Some(agent.clone()),
            _ => None,
        };
        ErrorInfo {
            code: self.code().to_owned(),
            message: self.to_string(),
            agent,
        }
    }
}

/// An error as data: what events, run records and HTTP bodies carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

impl From<&AgentError> for ErrorInfo {
    fn from(e: &AgentError) -> Self {
        Self {
            code: e.code().to_owned(),
            message: e.to_string(),
            agent: None,
        }
    }
}
