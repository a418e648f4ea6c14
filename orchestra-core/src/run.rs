//! What a run is asked ([`RunRequest`]) and what it leaves behind ([`RunResult`]).
//!
//! A request can be built in code or parsed whole from JSON (the REST body and
//! the bindings' keyword arguments have the same shape):
//!
//! ```
//! use orchestra_core::RunRequest;
//! let a = RunRequest::new("sequential", "Write about tides").agents(["researcher", "writer"]);
//! let b = RunRequest::from_json(r#"{"pattern":"sequential","task":"Write about tides",
//!                                  "agents":["researcher","writer"]}"#).unwrap();
//! assert_eq!(a.agents, b.agents);
//! ```

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    agent::{AgentOutput, Usage},
    error::{ErrorInfo, OrchestraError},
};

/// A request to run one pattern over some agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// "sequential", "concurrent", "handoff", "group_chat" or "dynamic".
    pub pattern: String,
    pub task: String,
    /// Agent names, in order. Optional for handoff and dynamic (default: all registered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<String>>,
    /// Continue this session (created if unknown); a new one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Use this run id (same rules as session ids) instead of a generated one,
    /// e.g. when a queue or a client has already named the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Pattern options plus the common limits (`timeout_ms`, `max_iterations`, …).
    #[serde(default = "empty_object")]
    pub options: Value,
    /// Passed to every agent in `AgentInput::metadata`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

fn is_empty_value(v: &Value) -> bool {
    v.is_null() || v.as_object().is_some_and(Map::is_empty)
}

impl RunRequest {
    pub fn new(pattern: impl Into<String>, task: impl Into<String>) -> Self {
        Self {
            pattern: pattern.into(),
            task: task.into(),
            agents: None,
            session_id: None,
            run_id: None,
            options: empty_object(),
            metadata: Map::new(),
        }
    }

    /// Parses a request from JSON; errors name the offending field.
    pub fn from_json(json: &str) -> Result<Self, OrchestraError> {
        let de = &mut serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            OrchestraError::invalid(
                if field == "." { "body".into() } else { field },
                e.into_inner().to_string(),
            )
        })
    }

    /// Same as [`from_json`](Self::from_json), from a parsed value.
    pub fn from_value(value: Value) -> Result<Self, OrchestraError> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let field = e.path().to_string();
            OrchestraError::invalid(
                if field == "." { "body".into() } else { field },
                e.into_inner().to_string(),
            )
        })
    }

    #[must_use]
    pub fn agents<I, S>(mut self, agents: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.agents = Some(agents.into_iter().map(Into::into).collect());
        self
    }

    #[must_use]
    pub fn session(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    #[must_use]
    pub fn run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    /// Replaces the options object.
    #[must_use]
    pub fn options(mut self, options: Value) -> Self {
        self.options = options;
        self
    }

    /// Sets one option key.
    #[must_use]
    pub fn option(mut self, key: &str, value: impl Into<Value>) -> Self {
        if !self.options.is_object() {
            self.options = empty_object();
        }
        if let Value::Object(m) = &mut self.options {
            m.insert(key.to_owned(), value.into());
        }
        self
    }

    #[must_use]
    pub fn metadata(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.to_owned(), value.into());
        self
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunStatus {
    #[default]
    Running,
    Completed,
    Failed,
    TimedOut,
    Cancelled,
}

impl RunStatus {
    pub fn is_finished(self) -> bool {
        self != Self::Running
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
        }
    }
}

/// How one agent step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Completed,
    Failed,
}

/// One agent call of a run (after its retries), as recorded in the result and the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Step {
    /// 0, 1, 2… in the order steps were started.
    pub index: u32,
    /// The agent that answered (a fallback's name when one stood in).
    pub agent: String,
    /// The agent first asked, when a fallback answered instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_for: Option<String>,
    /// Where in the pattern the step ran (e.g. "round 3", "plan step 2").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The instruction the agent got.
    pub input: String,
    pub status: StepStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<AgentOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// Attempts made, retries included.
    pub attempts: u32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// Retries, fallbacks and circuit breaker decisions taken in this step, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy: Vec<PolicyDecision>,
}

/// A decision a policy took during a step; the same facts as the
/// `retry`, `fallback` and `circuit_*` events, kept in the run record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PolicyDecision {
    /// Attempt `attempt` follows after `delay_ms`.
    Retry {
        agent: String,
        attempt: u32,
        delay_ms: u64,
        error: ErrorInfo,
    },
    Fallback {
        from: String,
        to: String,
        reason: String,
    },
    CircuitOpened {
        agent: String,
        failures: u32,
        cooldown_ms: u64,
    },
    CircuitHalfOpen {
        agent: String,
    },
    CircuitClosed {
        agent: String,
    },
    /// The call was refused by an open breaker without reaching the agent.
    CircuitRejected {
        agent: String,
        retry_in_ms: u64,
    },
}

/// The outcome of a run; also the run's record inside its session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunResult {
    pub run_id: String,
    pub session_id: String,
    pub pattern: String,
    pub task: String,
    pub agents: Vec<String>,
    pub status: RunStatus,
    /// The final answer (absent when the run failed before producing one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Structured final output (aggregations, votes, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// Why the run stopped, when a condition ended it (e.g. "text_mention: APPROVED").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination: Option<String>,
    /// True when some agents failed and the result is built from the rest.
    #[serde(default)]
    pub partial: bool,
    pub steps: Vec<Step>,
    pub usage: Usage,
    /// The request's options (always an object), kept so the run can be replayed.
    #[serde(default = "empty_object", skip_serializing_if = "is_empty_value")]
    pub options: Value,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: u64,
}

impl RunResult {
    /// `Ok` for a completed run, the run's error otherwise.
    pub fn into_result(self) -> Result<Self, ErrorInfo> {
        match (self.status, &self.error) {
            (RunStatus::Completed, _) => Ok(self),
            (_, Some(e)) => Err(e.clone()),
            (status, None) => Err(ErrorInfo {
                code: status.as_str().to_owned(),
                message: format!("run ended {}", status.as_str()),
                agent: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_request_fields_are_named() {
        let e = RunRequest::from_json(r#"{"pattern":"sequential","task":"t","agnets":[]}"#)
            .unwrap_err();
        assert_eq!(e.code(), "invalid_request");
        assert!(e.to_string().contains("agnets"), "{e}");
    }

    #[test]
    fn wrong_types_name_the_path() {
        let e = RunRequest::from_json(r#"{"pattern":"sequential","task":"t","agents":[1]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("agents[0]"), "{e}");
    }

    #[test]
    fn builder_sets_options() {
        let r = RunRequest::new("concurrent", "t").option("aggregator", "vote");
        assert_eq!(r.options["aggregator"], "vote");
    }
}
