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
    #[serde(serialize_with = "crate::timestamp::serialize")]
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
        Self::terminal_of(result.clone())
    }

    /// [`terminal`](Self::terminal), taking the result instead of copying it.
    pub fn terminal_of(result: RunResult) -> Self {
        use crate::run::RunStatus;
        if let (RunStatus::WaitingForInput, Some(request)) = (result.status, &result.input) {
            return Self::InputRequested {
                request: request.clone(),
                result: Box::new(result),
            };
        }
        match result.status {
            RunStatus::Completed => Self::RunCompleted {
                result: Box::new(result),
            },
            RunStatus::Cancelled => Self::RunCancelled {
                reason: result
                    .error
                    .as_ref()
                    .map_or_else(|| "cancelled".to_owned(), |e| e.message.clone()),
                result: Box::new(result),
            },
            _ => Self::RunFailed {
                error: result
                    .error
                    .clone()
                    .unwrap_or_else(|| crate::error::OrchestraError::Cancelled.info()),
                result: Box::new(result),
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

    /// The run result of a terminal event, taken out of it.
    pub fn into_result(self) -> Option<RunResult> {
        match self {
            Self::RunCompleted { result }
            | Self::RunFailed { result, .. }
            | Self::RunCancelled { result, .. }
            | Self::InputRequested { result, .. } => Some(*result),
            _ => None,
        }
    }
}

/// Called with each event of a run as it happens, on the task that emits it
/// and in `seq` order: for watching a run (metrics, logs, progress) without
/// a stream. It runs inside the run, so it must be quick and must not block.
pub type EventObserver = Arc<dyn Fn(&OrchestrationEvent) + Send + Sync>;

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
    /// `None` once the run has ended or the receiver is gone.
    target: Option<Target>,
}

enum Target {
    Channel(mpsc::UnboundedSender<OrchestrationEvent>),
    Observer(EventObserver),
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
        (Self::to(run_id, session_id, Target::Channel(tx)), rx)
    }

    /// A sink that hands every event to `observer` (see [`EventObserver`]).
    pub(crate) fn observer(run_id: &str, session_id: &str, observer: EventObserver) -> Self {
        Self::to(run_id, session_id, Target::Observer(observer))
    }

    fn to(run_id: &str, session_id: &str, target: Target) -> Self {
        Self {
            inner: Some(Arc::new(SinkInner {
                run_id: run_id.to_owned(),
                session_id: session_id.to_owned(),
                state: Mutex::new(SinkState {
                    seq: 0,
                    target: Some(target),
                }),
            })),
        }
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
        self.deliver(kind, false);
    }

    /// Sends one event, then closes the sink if `last`.
    fn deliver(&self, kind: EventKind, last: bool) {
        let Some(inner) = &self.inner else { return };
        let mut state = inner.lock();
        let Some(target) = &state.target else { return };
        let open = match target {
            Target::Channel(tx) => tx.send(inner.event(state.seq + 1, kind)).is_ok(),
            Target::Observer(observe) => {
                observe(&inner.event(state.seq + 1, kind));
                true
            }
        };
        state.seq += 1;
        if last || !open {
            state.target = None;
        }
    }

    /// Emits the terminal event and closes the stream: later emits are dropped.
    #[cfg(test)]
    pub(crate) fn finish(&self, kind: EventKind) {
        self.deliver(kind, true);
    }

    /// Emits the terminal event for `result` and closes the sink. An
    /// observer is lent the result inside the event instead of a copy.
    pub(crate) fn finish_run(&self, result: RunResult) -> RunResult {
        let Some(inner) = &self.inner else {
            return result;
        };
        let mut state = inner.lock();
        match state.target.take() {
            None => result,
            Some(Target::Channel(tx)) => {
                state.seq += 1;
                let _ = tx.send(inner.event(state.seq, EventKind::terminal(&result)));
                result
            }
            Some(Target::Observer(observe)) => {
                state.seq += 1;
                let event = inner.event(state.seq, EventKind::terminal_of(result));
                observe(&event);
                match event.kind {
                    EventKind::RunCompleted { result }
                    | EventKind::RunFailed { result, .. }
                    | EventKind::RunCancelled { result, .. }
                    | EventKind::InputRequested { result, .. } => *result,
                    other => unreachable!("a terminal event of type {}", other.type_name()),
                }
            }
        }
    }
}

impl SinkInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, SinkState> {
        match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn event(&self, seq: u64, kind: EventKind) -> OrchestrationEvent {
        OrchestrationEvent {
            schema_version: EVENT_SCHEMA_VERSION,
            run_id: self.run_id.clone(),
            session_id: self.session_id.clone(),
            seq,
            timestamp: Utc::now(),
            kind,
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
