//! The event stream: every step of a run as one [`OrchestrationEvent`].
//!
//! Events serialize to the same JSON in Rust, Python, Node and SSE: an object
//! with `type` (snake_case), `schema_version`, `run_id`, `session_id`, a
//! per-run monotonic `seq`, a `timestamp`, and the fields of that type.
//! The last event of every run is `run_completed`, `run_failed` or
//! `run_cancelled`, and carries the [`RunResult`].
//!
//! ```
//! use orchestra_core::{EventKind, OrchestrationEvent};
//! let json = r#"{"type":"handoff","schema_version":1,"run_id":"r","session_id":"s","seq":3,
//!               "timestamp":"2026-01-01T00:00:00Z","from":"triage","to":"billing","reason":"refund"}"#;
//! let ev: OrchestrationEvent = serde_json::from_str(json).unwrap();
//! assert_eq!(ev.type_name(), "handoff");
//! assert!(matches!(ev.kind, EventKind::Handoff { .. }));
//! ```

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::{
    agent::{Handoff, Usage},
    error::ErrorInfo,
    message::Message,
    pattern::dynamic::{Ledger, Plan},
    run::RunResult,
};

/// Bumped when an event's JSON changes incompatibly.
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// The JSON Schema of every event (all types), as published in
/// `docs/events.schema.json` and served by the server.
///
/// ```
/// let schema = orchestra_core::event::event_schema();
/// assert_eq!(schema["title"], "OrchestrationEvent");
/// ```
pub fn event_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(OrchestrationEvent).to_value();
    if let Some(o) = schema.as_object_mut() {
        o.insert(
            "$id".into(),
            format!("https://orchestra.dev/schemas/events/v{EVENT_SCHEMA_VERSION}.json").into(),
        );
        o.insert("x-schema-version".into(), EVENT_SCHEMA_VERSION.into());
    }
    schema
}

/// One step of a run, as streamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrchestrationEvent {
    pub schema_version: u32,
    pub run_id: String,
    pub session_id: String,
    /// 1, 2, 3… within a run, in the order events were emitted.
    pub seq: u64,
    pub timestamp: DateTime<Utc>,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl OrchestrationEvent {
    /// The `type` string of this event.
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }

    /// True for the last event of a run.
    pub fn is_terminal(&self) -> bool {
        self.kind.result().is_some()
    }
}

/// What happened. New variants may be added in minor releases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    RunStarted {
        pattern: String,
        task: String,
        agents: Vec<String>,
    },
    AgentStarted {
        agent: String,
        step: u32,
        input: String,
    },
    /// A streamed piece of an agent's output.
    AgentDelta {
        agent: String,
        step: u32,
        delta: String,
    },
    AgentCompleted {
        agent: String,
        step: u32,
        message: Message,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        handoff: Option<Handoff>,
        duration_ms: u64,
        #[serde(default)]
        usage: Usage,
    },
    AgentFailed {
        agent: String,
        step: u32,
        error: ErrorInfo,
        attempt: u32,
        /// Whether a retry or a fallback follows.
        will_retry: bool,
    },
    ToolCalled {
        agent: String,
        step: u32,
        tool: String,
        call_id: String,
        arguments: Value,
    },
    ToolCompleted {
        agent: String,
        step: u32,
        tool: String,
        call_id: String,
        result: Value,
    },
    /// A remote agent's task changed state as its peer reported it (A2A:
    /// `submitted`, `working`, `input-required`, `auth-required`,
    /// `completed`, `failed`, `canceled`, `rejected`), so a client sees a
    /// long task progress before the agent answers.
    AgentTaskState {
        agent: String,
        step: u32,
        /// The peer's task id, once it named one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task_id: Option<String>,
        state: String,
        /// Text the peer sent with the state, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    Retry {
        agent: String,
        step: u32,
        attempt: u32,
        delay_ms: u64,
        error: ErrorInfo,
    },
    Fallback {
        from: String,
        to: String,
        reason: String,
    },
    /// An agent's circuit breaker opened: its calls fail fast with
    /// `circuit_open` for `cooldown_ms`.
    CircuitOpened {
        agent: String,
        step: u32,
        /// Failures counted in the window when it opened.
        failures: u32,
        cooldown_ms: u64,
    },
    /// The cool-down passed: this step's call is the probe.
    CircuitHalfOpen {
        agent: String,
        step: u32,
    },
    /// The probe succeeded: calls go through again.
    CircuitClosed {
        agent: String,
        step: u32,
    },
    Handoff {
        from: String,
        to: String,
        reason: String,
    },
    /// An agent asked for several handoffs in one turn while the run does
    /// not allow parallel handoffs: the first one requested (`chosen`) is
    /// taken and the others are not.
    HandoffConflict {
        agent: String,
        step: u32,
        requested: Vec<String>,
        chosen: String,
    },
    SpeakerSelected {
        agent: String,
        round: u32,
        reason: String,
    },
    PlanCreated {
        plan: Plan,
    },
    PlanUpdated {
        plan: Plan,
        ledger: Ledger,
        reason: String,
    },
    /// A budget of the run's `termination` condition was used up; the run stops cleanly.
    BudgetExceeded {
        budget: String,
        limit: u64,
        used: u64,
    },
    RunCompleted {
        result: Box<RunResult>,
    },
    RunFailed {
        error: ErrorInfo,
        result: Box<RunResult>,
    },
    RunCancelled {
        reason: String,
        result: Box<RunResult>,
    },
    /// The run paused for input; the last event of this stream (the run goes
    /// on, as a new stream, when it is resumed with an answer).
    InputRequested {
        request: crate::run::InputRequest,
        result: Box<RunResult>,
    },
    /// A paused or interrupted run goes on from its checkpoint; recorded
    /// steps are not run again. Comes first in a resumed run's stream.
    RunResumed {
        pattern: String,
        task: String,
        agents: Vec<String>,
        /// Steps answered from the checkpoint.
        recorded_steps: u32,
        /// The input request answered, if the run was waiting for one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answered: Option<String>,
    },
}

impl EventKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::RunStarted { .. } => "run_started",
            Self::AgentStarted { .. } => "agent_started",
            Self::AgentDelta { .. } => "agent_delta",
            Self::AgentCompleted { .. } => "agent_completed",
            Self::AgentFailed { .. } => "agent_failed",
            Self::ToolCalled { .. } => "tool_called",
            Self::ToolCompleted { .. } => "tool_completed",
            Self::AgentTaskState { .. } => "agent_task_state",
            Self::Retry { .. } => "retry",
            Self::Fallback { .. } => "fallback",
            Self::CircuitOpened { .. } => "circuit_opened",
            Self::CircuitHalfOpen { .. } => "circuit_half_open",
            Self::CircuitClosed { .. } => "circuit_closed",
            Self::Handoff { .. } => "handoff",
            Self::HandoffConflict { .. } => "handoff_conflict",
            Self::SpeakerSelected { .. } => "speaker_selected",
            Self::PlanCreated { .. } => "plan_created",
            Self::PlanUpdated { .. } => "plan_updated",
            Self::BudgetExceeded { .. } => "budget_exceeded",
            Self::RunCompleted { .. } => "run_completed",
            Self::RunFailed { .. } => "run_failed",
            Self::RunCancelled { .. } => "run_cancelled",
            Self::InputRequested { .. } => "input_requested",
            Self::RunResumed { .. } => "run_resumed",
        }
    }

    /// The event that ends a stream for a run in this state: `run_completed`,
    /// `run_cancelled`, `input_requested` (a paused run) or `run_failed`.
    pub fn terminal(result: &RunResult) -> Self {
        use crate::run::RunStatus;
        let boxed = || Box::new(result.clone());
        if let (RunStatus::WaitingForInput, Some(request)) = (result.status, &result.input) {
            return Self::InputRequested {
                request: request.clone(),
                result: boxed(),
            };
        }
        match result.status {
            RunStatus::Completed => Self::RunCompleted { result: boxed() },
            RunStatus::Cancelled => Self::RunCancelled {
                reason: result
                    .error
                    .as_ref()
                    .map_or_else(|| "cancelled".to_owned(), |e| e.message.clone()),
                result: boxed(),
            },
            _ => Self::RunFailed {
                error: result
                    .error
                    .clone()
                    .unwrap_or_else(|| crate::error::OrchestraError::Cancelled.info()),
                result: boxed(),
            },
        }
    }

    /// The run result, for the terminal events.
    pub fn result(&self) -> Option<&RunResult> {
        match self {
            Self::RunCompleted { result }
            | Self::RunFailed { result, .. }
            | Self::RunCancelled { result, .. }
            | Self::InputRequested { result, .. } => Some(result),
            _ => None,
        }
    }
}

/// Where a run's events go. Cheap to clone; a disabled sink drops everything.
///
/// Sequence numbers are assigned under one lock together with the send, so
/// `seq` order is delivery order even when concurrent agents emit at once.
#[derive(Clone, Default)]
pub struct EventSink {
    inner: Option<Arc<SinkInner>>,
}

struct SinkInner {
    run_id: String,
    session_id: String,
    state: Mutex<SinkState>,
}

struct SinkState {
    seq: u64,
    tx: Option<mpsc::UnboundedSender<OrchestrationEvent>>,
}

impl EventSink {
    /// A sink that drops every event.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    pub(crate) fn channel(
        run_id: &str,
        session_id: &str,
    ) -> (Self, mpsc::UnboundedReceiver<OrchestrationEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = Self {
            inner: Some(Arc::new(SinkInner {
                run_id: run_id.to_owned(),
                session_id: session_id.to_owned(),
                state: Mutex::new(SinkState {
                    seq: 0,
                    tx: Some(tx),
                }),
            })),
        };
        (sink, rx)
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Emits the event built by `make`, building it only if someone listens.
    pub fn emit_with(&self, make: impl FnOnce() -> EventKind) {
        if self.inner.is_some() {
            self.emit(make());
        }
    }

    /// Emits one event (no-op when disabled or when the receiver is gone).
    pub fn emit(&self, kind: EventKind) {
        let Some(inner) = &self.inner else { return };
        let mut state = match inner.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if state.tx.is_none() {
            return;
        }
        state.seq += 1;
        let event = OrchestrationEvent {
            schema_version: EVENT_SCHEMA_VERSION,
            run_id: inner.run_id.clone(),
            session_id: inner.session_id.clone(),
            seq: state.seq,
            timestamp: Utc::now(),
            kind,
        };
        if state.tx.as_ref().is_some_and(|tx| tx.send(event).is_err()) {
            state.tx = None;
        }
    }

    /// Emits the terminal event and closes the stream: later emits are dropped.
    pub(crate) fn finish(&self, kind: EventKind) {
        self.emit(kind);
        if let Some(inner) = &self.inner {
            let mut state = match inner.state.lock() {
                Ok(s) => s,
                Err(poisoned) => poisoned.into_inner(),
            };
            state.tx = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_event_schema_is_current() {
        // Regenerate with: ORCHESTRA_WRITE_SCHEMA=1 cargo test -p orchestra-core the_published_event_schema
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/events.schema.json");
        let current = serde_json::to_string_pretty(&event_schema()).unwrap() + "\n";
        if std::env::var_os("ORCHESTRA_WRITE_SCHEMA").is_some() {
            std::fs::write(path, &current).unwrap();
        }
        let published: serde_json::Value = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        // Compared as values: key order depends on serde_json's features.
        assert!(
            published == event_schema(),
            "docs/events.schema.json is out of date; regenerate it (see the comment above)"
        );
    }

    #[test]
    fn every_event_type_is_in_the_schema() {
        let schema = serde_json::to_string(&event_schema()).unwrap();
        for t in [
            "run_started",
            "agent_started",
            "agent_delta",
            "agent_completed",
            "agent_failed",
            "tool_called",
            "tool_completed",
            "retry",
            "fallback",
            "handoff",
            "speaker_selected",
            "plan_created",
            "plan_updated",
            "budget_exceeded",
            "circuit_opened",
            "run_completed",
            "run_failed",
            "run_cancelled",
        ] {
            assert!(schema.contains(&format!("\"{t}\"")), "{t}");
        }
    }

    #[test]
    fn events_serialize_with_type_and_envelope_fields() {
        let (sink, mut rx) = EventSink::channel("r1", "s1");
        sink.emit(EventKind::Handoff {
            from: "a".into(),
            to: "b".into(),
            reason: "why".into(),
        });
        let ev = rx.try_recv().unwrap();
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["type"], "handoff");
        assert_eq!(v["seq"], 1);
        assert_eq!(v["run_id"], "r1");
        assert_eq!(v["schema_version"], EVENT_SCHEMA_VERSION);
        let back: OrchestrationEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn nothing_is_emitted_after_finish() {
        let (sink, mut rx) = EventSink::channel("r", "s");
        sink.emit(EventKind::Fallback {
            from: "a".into(),
            to: "b".into(),
            reason: String::new(),
        });
        sink.finish(EventKind::Fallback {
            from: "a".into(),
            to: "c".into(),
            reason: String::new(),
        });
        sink.emit(EventKind::Fallback {
            from: "x".into(),
            to: "y".into(),
            reason: String::new(),
        });
        assert_eq!(rx.try_recv().unwrap().seq, 1);
        assert_eq!(rx.try_recv().unwrap().seq, 2);
        assert!(rx.try_recv().is_err());
    }
}
