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

use std::collections::BTreeMap;

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
    /// The caller promises that the session does not exist yet (a fresh
    /// id, or none) and that nobody will look for the run until it ends,
    /// which lets it skip the start record: the run reads nothing and
    /// writes its session once, when it ends (one store write instead of
    /// two). The cost: while it runs, the run cannot be found by id or seen
    /// in the session, and a process that dies mid-run leaves no trace of
    /// it. Ignored by a checkpointed run (it needs its record to be resumed
    /// from) and while the store reports itself unreachable. Not part of
    /// the JSON form.
    #[serde(skip)]
    #[schemars(skip)]
    pub fresh_session: bool,
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
            fresh_session: false,
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

    /// Sets [`fresh_session`](Self::fresh_session).
    #[must_use]
    pub fn fresh_session(mut self) -> Self {
        self.fresh_session = true;
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
    /// Paused until someone answers the run's pending [`InputRequest`];
    /// resumed with `Orchestrator::resume`.
    WaitingForInput,
}

impl RunStatus {
    /// Final: the run will not change any more (a waiting run is not final).
    pub fn is_finished(self) -> bool {
        !matches!(self, Self::Running | Self::WaitingForInput)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::WaitingForInput => "waiting_for_input",
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
    #[serde(serialize_with = "crate::timestamp::serialize")]
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
    /// The request's metadata, kept so the run can be resumed.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    /// The question the run waits on (status `waiting_for_input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<InputRequest>,
    /// Answers given to the run's input requests, by request key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub answers: BTreeMap<String, Value>,
    /// Decisions taken outside agent steps (speakers chosen by a group chat
    /// manager, plans written by a planner), by key, so a resumed run makes
    /// the same ones without asking again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub decisions: BTreeMap<String, Value>,
    /// Where the run stands, written after every step (see docs/durability.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
    #[serde(serialize_with = "crate::timestamp::serialize")]
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "crate::timestamp::serialize_option")]
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: u64,
}

/// The version of the checkpoint format written by this release; older
/// versions are migrated when read (see [`RunResult::migrate`]).
pub const CHECKPOINT_VERSION: u32 = 1;

/// The resumable position of a run. A run's state is a function of its
/// request, its recorded steps, decisions and answers: a resumed run replays
/// those (no agent is called again for a recorded step) and goes on live.
/// `position` is what the pattern reported after the last step (group chat
/// round, handoff holder, plan ledger…), for people and tools to read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Checkpoint {
    /// Format version ([`CHECKPOINT_VERSION`] when written by this release).
    pub version: u32,
    /// Steps recorded so far (completed or failed).
    pub steps: u32,
    /// How many messages of the session came before this run: a resumed run
    /// sees the same history even if the session moved on meanwhile.
    pub history_len: usize,
    /// The pattern's own view of where it is.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub position: Value,
    /// Times the run was resumed (after input, or after its process died).
    #[serde(default)]
    pub resumes: u32,
    #[serde(serialize_with = "crate::timestamp::serialize")]
    pub updated_at: DateTime<Utc>,
}

/// What kind of pause an [`InputRequest`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// An agent asked a question while working on its step.
    Agent,
    /// A policy requires approval before the agent acts (`approve_agents`).
    Approval,
    /// A policy requires approval of a dynamic plan before it runs (`approve_plan`).
    Plan,
    /// A human participant's turn (a [`HumanAgent`](crate::HumanAgent)).
    Human,
}

/// A question a paused run waits on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InputRequest {
    /// Identifies the pause point within the run ("step:3", "approve:2", "plan:0").
    pub key: String,
    pub kind: InputKind,
    /// The agent that asked, or the one waiting for approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The step the answer belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    /// What to show the person answering.
    pub prompt: String,
    /// A JSON schema the answer must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// Extra facts for the person answering (the plan to approve, the transcript…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    #[serde(default)]
    #[serde(serialize_with = "crate::timestamp::serialize")]
    pub requested_at: DateTime<Utc>,
    /// After this, answers are refused and the run ends `timed_out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "crate::timestamp::serialize_option")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl InputRequest {
    /// A question from an agent; the answer may be any JSON unless a schema is set.
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            key: String::new(),
            kind: InputKind::Agent,
            agent: None,
            step: None,
            prompt: prompt.into(),
            schema: None,
            context: None,
            requested_at: Utc::now(),
            expires_at: None,
        }
    }

    #[must_use]
    pub fn schema(mut self, schema: Value) -> Self {
        self.schema = Some(schema);
        self
    }

    #[must_use]
    pub fn context(mut self, context: Value) -> Self {
        self.context = Some(context);
        self
    }

    /// Checks an answer against the request's schema.
    pub fn check_answer(&self, answer: &Value) -> Result<(), OrchestraError> {
        let Some(schema) = &self.schema else {
            return Ok(());
        };
        let problems = crate::schema::problems(schema, answer).map_err(|e| {
            OrchestraError::invalid("schema", format!("the request's schema is invalid: {e}"))
        })?;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(OrchestraError::InvalidAnswer {
                message: problems.join("; "),
            })
        }
    }
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
