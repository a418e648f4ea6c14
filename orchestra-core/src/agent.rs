//! The [`Agent`] trait and the data that crosses it.
//!
//! An agent is anything that takes the task plus the conversation so far and
//! answers: a closure ([`FnAgent`]), an HTTP service, an LLM, a Python or JS
//! function behind a binding. Patterns only ever see `Arc<dyn Agent>`.
//!
//! ```
//! use orchestra_core::{FnAgent, AgentOutput, Handoff};
//! // One line per agent; the closure may return a String, an AgentOutput or a Result.
//! let echo = FnAgent::new("echo", "repeats the task", |input, _ctx| async move { input.task });
//! let router = FnAgent::new("router", "sends work on", |_input, _ctx| async move {
//!     AgentOutput::handoff(Handoff::new("billing", "a billing question"))
//! });
//! # let _ = (echo, router);
//! ```

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, OnceLock},
    time::Duration,
};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    error::AgentError,
    event::{EventKind, EventSink},
    message::Message,
};

/// An agent that takes part in orchestrations.
///
/// Implemented by closures ([`FnAgent`]), the built-in HTTP/LLM/A2A agents and
/// the language bindings. `invoke` may be called concurrently from several
/// runs (and several times within one concurrent run), so implementations
/// must be `Send + Sync` and keep per-call state on the stack.
/// Long work should watch [`AgentContext::cancellation`] and stop when it fires.
#[async_trait]
pub trait Agent: Send + Sync {
    /// Unique name within an orchestrator; used in requests, routes and events.
    fn name(&self) -> &str;
    /// What the agent is good at; read by routers, managers and planners.
    fn description(&self) -> &str;
    /// Does one unit of work.
    async fn invoke(&self, input: AgentInput, ctx: AgentContext)
    -> Result<AgentOutput, AgentError>;
}

#[async_trait]
impl<T: Agent + ?Sized> Agent for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn description(&self) -> &str {
        (**self).description()
    }
    async fn invoke(
        &self,
        input: AgentInput,
        ctx: AgentContext,
    ) -> Result<AgentOutput, AgentError> {
        (**self).invoke(input, ctx).await
    }
}

/// A shared agent handle.
pub type AgentRef = Arc<dyn Agent>;

/// What an agent is asked to do.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct AgentInput {
    /// The instruction for this step (the run's task, or a sub-task, or the
    /// previous agent's output in a sequential run).
    pub task: String,
    /// The conversation so far: earlier session messages, then this run's.
    pub messages: Vec<Message>,
    pub session_id: String,
    pub run_id: String,
    /// Shared session state (a JSON object), as of this step.
    #[serde(default)]
    pub state: Value,
    /// Caller-supplied metadata from the request.
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

/// Token counts and cost, summed across a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Cost in millionths of the price table's currency (e.g. micro-USD),
    /// when the agent has a price ([`crate::agent::Price`]); integer so that
    /// sums are exact.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub cost_micros: u64,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// What a model's tokens cost, per million tokens (so also: millionths of
/// the currency per token), as in providers' price lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per million prompt (input) tokens.
    pub prompt: f64,
    /// Per million completion (output) tokens.
    pub completion: f64,
}

impl Price {
    /// The cost of `usage`'s tokens, in millionths of the currency.
    pub fn cost_micros(&self, usage: &Usage) -> u64 {
        let micros = usage.prompt_tokens as f64 * self.prompt.max(0.0)
            + usage.completion_tokens as f64 * self.completion.max(0.0);
        micros.round() as u64
    }
}

impl Usage {
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            cost_micros: 0,
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Self) {
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.total_tokens += o.total_tokens;
        self.cost_micros += o.cost_micros;
    }
}

/// A request to pass control to another agent (handoff pattern).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Handoff {
    /// Name of the agent to hand off to.
    pub to: String,
    /// Why; shown in events and given to the next agent.
    #[serde(default)]
    pub reason: String,
    /// Structured data for the next agent, checked against the route's
    /// schema (handoff option `payload_schemas`) before the next agent runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

impl Handoff {
    pub fn new(to: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            to: to.into(),
            reason: reason.into(),
            payload: None,
        }
    }

    /// Adds structured data for the next agent.
    #[must_use]
    pub fn with_payload(mut self, payload: Value) -> Self {
        self.payload = Some(payload);
        self
    }
}

/// What an agent answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentOutput {
    /// The answer text.
    #[serde(default)]
    pub content: String,
    /// Set to pass control to another agent instead of (or besides) answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<Handoff>,
    /// More handoffs requested in the same turn, after `handoff`. With the
    /// handoff option `parallel_handoffs` they all run at once and their
    /// answers come back to this agent; otherwise `handoff` wins and a
    /// `handoff_conflict` event names the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handoffs: Vec<Handoff>,
    /// Structured output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// A JSON merge patch (RFC 7396) applied to the shared session state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_patch: Option<Value>,
    #[serde(default, skip_serializing_if = "Usage::is_zero")]
    pub usage: Usage,
}

impl AgentOutput {
    pub fn text(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            ..Self::default()
        }
    }

    pub fn handoff(handoff: Handoff) -> Self {
        Self {
            content: handoff.reason.clone(),
            handoff: Some(handoff),
            ..Self::default()
        }
    }

    #[must_use]
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    #[must_use]
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = usage;
        self
    }

    #[must_use]
    pub fn with_state_patch(mut self, patch: Value) -> Self {
        self.state_patch = Some(patch);
        self
    }

    /// The output as a conversation message written by `agent`.
    pub fn to_message(&self, agent: &str) -> Message {
        let mut m = Message::assistant(agent, self.content.clone());
        m.data = self.data.clone();
        m
    }
}

impl From<String> for AgentOutput {
    fn from(s: String) -> Self {
        Self::text(s)
    }
}

impl From<&str> for AgentOutput {
    fn from(s: &str) -> Self {
        Self::text(s)
    }
}

impl From<Handoff> for AgentOutput {
    fn from(h: Handoff) -> Self {
        Self::handoff(h)
    }
}

/// Per-call context: cancellation, deadline, and a way to stream progress.
#[derive(Clone)]
pub struct AgentContext {
    agent: CallAgent,
    step: u32,
    cancel: CallToken,
    deadline: Option<Instant>,
    events: EventSink,
    handoff_targets: Arc<[AgentInfo]>,
    answer: Option<Arc<serde_json::Value>>,
    handoff: Option<Arc<Handoff>>,
    payload_schemas: Option<Arc<HashMap<String, Value>>>,
}

/// Who a context's call is for: the agent itself, whose name is borrowed
/// (no copy per call), or only a name.
#[derive(Clone)]
enum CallAgent {
    Agent(AgentRef),
    Name(Arc<str>),
}

impl CallAgent {
    fn name(&self) -> &str {
        match self {
            Self::Agent(a) => a.name(),
            Self::Name(n) => n,
        }
    }
}

/// A call's cancellation token, made from the run's token the first time
/// the agent asks for it: most agents never do, and a child token costs an
/// allocation and locks of the run's token.
#[derive(Clone)]
pub(crate) struct CallToken {
    run: CancellationToken,
    own: Arc<OnceLock<CancellationToken>>,
}

impl CallToken {
    /// A token that fires with `run`, or when [`CallToken::end`] is called.
    pub(crate) fn new(run: CancellationToken) -> Self {
        Self {
            run,
            own: Arc::default(),
        }
    }

    /// `token` itself, already made.
    fn made(token: CancellationToken) -> Self {
        Self {
            run: token.clone(),
            own: Arc::new(OnceLock::from(token)),
        }
    }

    fn get(&self) -> &CancellationToken {
        self.own.get_or_init(|| self.run.child_token())
    }

    fn is_cancelled(&self) -> bool {
        self.own
            .get()
            .map_or_else(|| self.run.is_cancelled(), CancellationToken::is_cancelled)
    }

    /// The call is over: its token fires, so that whatever the agent left
    /// running stops. Nothing to do if no token was made and no copy of the
    /// context outlives the call (nobody can ask for one any more).
    pub(crate) fn end(&self) {
        match self.own.get() {
            Some(token) => token.cancel(),
            None if Arc::strong_count(&self.own) > 1 => {
                self.own.get_or_init(CancellationToken::new).cancel();
            }
            None => {}
        }
    }
}

/// The empty handoff target list most calls have, shared (no allocation per call).
fn no_handoff_targets() -> Arc<[AgentInfo]> {
    static EMPTY: std::sync::LazyLock<Arc<[AgentInfo]>> = std::sync::LazyLock::new(|| Arc::new([]));
    EMPTY.clone()
}

impl AgentContext {
    pub(crate) fn new(
        agent: Arc<str>,
        step: u32,
        cancel: CancellationToken,
        deadline: Option<Instant>,
        events: EventSink,
    ) -> Self {
        Self::with(
            CallAgent::Name(agent),
            step,
            CallToken::made(cancel),
            deadline,
            events,
        )
    }

    /// The context of one call of `agent` within a run.
    pub(crate) fn for_call(
        agent: AgentRef,
        step: u32,
        cancel: CallToken,
        deadline: Option<Instant>,
        events: EventSink,
    ) -> Self {
        Self::with(CallAgent::Agent(agent), step, cancel, deadline, events)
    }

    fn with(
        agent: CallAgent,
        step: u32,
        cancel: CallToken,
        deadline: Option<Instant>,
        events: EventSink,
    ) -> Self {
        Self {
            agent,
            step,
            cancel,
            deadline,
            events,
            handoff_targets: no_handoff_targets(),
            answer: None,
            handoff: None,
            payload_schemas: None,
        }
    }

    /// Gives this call the handoff that made its agent active, and the
    /// payload schemas of the routes it may take.
    #[must_use]
    pub(crate) fn with_handoff(
        mut self,
        handoff: Option<Arc<Handoff>>,
        payload_schemas: Option<Arc<HashMap<String, Value>>>,
    ) -> Self {
        self.handoff = handoff;
        self.payload_schemas = payload_schemas;
        self
    }

    /// The handoff that passed control to this agent (handoff runs): who
    /// asked (the previous message), why, and the typed payload, if any.
    pub fn handoff(&self) -> Option<&Handoff> {
        self.handoff.as_deref()
    }

    /// The JSON schema a handoff to `target` must carry as its payload, if
    /// the run sets one (LLM agents put it in their `transfer_to_` tools).
    pub fn handoff_payload_schema(&self, target: &str) -> Option<&Value> {
        self.payload_schemas.as_ref().and_then(|m| m.get(target))
    }

    /// Gives this call the answer to the question it asked before the run paused.
    #[must_use]
    pub(crate) fn with_answer(mut self, answer: Option<Arc<serde_json::Value>>) -> Self {
        self.answer = answer;
        self
    }

    /// The answer to the input this agent requested at this step, when the
    /// run was paused for it and has been resumed. An agent that needs a
    /// person's input returns [`AgentError::InputRequired`] when this is
    /// `None`, and uses the answer when it is set.
    pub fn answer(&self) -> Option<&serde_json::Value> {
        self.answer.as_deref()
    }

    /// Sets the agents this call may hand off to (done by the handoff pattern).
    #[must_use]
    pub fn with_handoff_targets(mut self, targets: Vec<AgentInfo>) -> Self {
        self.handoff_targets = targets.into();
        self
    }

    /// The agents this call may hand off to: set in handoff runs (the allowed
    /// routes of this agent), empty elsewhere. LLM agents turn them into
    /// `transfer_to_<agent>` tools.
    pub fn handoff_targets(&self) -> &[AgentInfo] {
        &self.handoff_targets
    }

    /// A context for calling an agent outside any run (tests, tools).
    pub fn detached(agent: &str) -> Self {
        Self::new(
            agent.into(),
            0,
            CancellationToken::new(),
            None,
            EventSink::disabled(),
        )
    }

    /// Fires when the run is cancelled, when this call's deadline passes,
    /// and when the call has ended (so that work the agent left running
    /// stops). Made on first use.
    pub fn cancellation(&self) -> &CancellationToken {
        self.cancel.get()
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// When this call must be done by, if there is a limit.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The step number of this call within the run.
    pub fn step(&self) -> u32 {
        self.step
    }

    /// Streams a piece of output (e.g. LLM tokens) as an `agent_delta` event.
    pub fn delta(&self, text: impl Into<String>) {
        self.events.emit(EventKind::AgentDelta {
            agent: self.agent.name().to_owned(),
            step: self.step,
            delta: text.into(),
        });
    }

    /// Reports a tool call (`tool_called`).
    pub fn tool_called(&self, tool: &str, call_id: &str, arguments: Value) {
        self.events.emit(EventKind::ToolCalled {
            agent: self.agent.name().to_owned(),
            step: self.step,
            tool: tool.to_owned(),
            call_id: call_id.to_owned(),
            arguments,
        });
    }

    /// Reports a state of this call's remote task (`agent_task_state`), as
    /// the peer reported it.
    pub fn task_state(&self, task_id: Option<&str>, state: &str, message: Option<&str>) {
        self.events.emit(EventKind::AgentTaskState {
            agent: self.agent.name().to_owned(),
            step: self.step,
            task_id: task_id.map(str::to_owned),
            state: state.to_owned(),
            message: message.map(str::to_owned),
        });
    }

    /// Reports a tool result (`tool_completed`).
    pub fn tool_completed(&self, tool: &str, call_id: &str, result: Value) {
        self.events.emit(EventKind::ToolCompleted {
            agent: self.agent.name().to_owned(),
            step: self.step,
            tool: tool.to_owned(),
            call_id: call_id.to_owned(),
            result,
        });
    }
}

/// Anything a closure agent may return.
pub trait IntoAgentResult {
    fn into_agent_result(self) -> Result<AgentOutput, AgentError>;
}

impl IntoAgentResult for AgentOutput {
    fn into_agent_result(self) -> Result<AgentOutput, AgentError> {
        Ok(self)
    }
}
impl IntoAgentResult for String {
    fn into_agent_result(self) -> Result<AgentOutput, AgentError> {
        Ok(self.into())
    }
}
impl IntoAgentResult for &'static str {
    fn into_agent_result(self) -> Result<AgentOutput, AgentError> {
        Ok(self.into())
    }
}
impl IntoAgentResult for Handoff {
    fn into_agent_result(self) -> Result<AgentOutput, AgentError> {
        Ok(self.into())
    }
}
impl<T: Into<AgentOutput>, E: Into<AgentError>> IntoAgentResult for Result<T, E> {
    fn into_agent_result(self) -> Result<AgentOutput, AgentError> {
        self.map(Into::into).map_err(Into::into)
    }
}

/// An agent made from an async closure.
pub struct FnAgent<F> {
    name: String,
    description: String,
    f: F,
}

impl<F, Fut, R> FnAgent<F>
where
    F: Fn(AgentInput, AgentContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoAgentResult,
{
    pub fn new(name: impl Into<String>, description: impl Into<String>, f: F) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            f,
        }
    }

    /// Shorthand for `Arc::new(FnAgent::new(..))`.
    pub fn arc(name: impl Into<String>, description: impl Into<String>, f: F) -> AgentRef {
        Arc::new(Self::new(name, description, f))
    }
}

#[async_trait]
impl<F, Fut, R> Agent for FnAgent<F>
where
    F: Fn(AgentInput, AgentContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoAgentResult,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        &self.description
    }
    async fn invoke(
        &self,
        input: AgentInput,
        ctx: AgentContext,
    ) -> Result<AgentOutput, AgentError> {
        (self.f)(input, ctx).await.into_agent_result()
    }
}

/// Describes an agent for managers, planners and listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentInfo {
    pub name: String,
    pub description: String,
}

impl AgentInfo {
    pub fn of(agent: &dyn Agent) -> Self {
        Self {
            name: agent.name().to_owned(),
            description: agent.description().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closure_returning_a_string_is_an_agent() {
        let a = FnAgent::new("up", "upper-cases", |i: AgentInput, _| async move {
            i.task.to_uppercase()
        });
        let out = a
            .invoke(
                AgentInput {
                    task: "hi".into(),
                    ..Default::default()
                },
                AgentContext::detached("up"),
            )
            .await
            .unwrap();
        assert_eq!(out.content, "HI");
        assert_eq!(a.name(), "up");
    }

    #[tokio::test]
    async fn a_closure_returning_an_error_fails_the_call() {
        let a = FnAgent::new("bad", "fails", |_, _| async {
            Err::<String, _>(AgentError::msg("nope"))
        });
        let err = a
            .invoke(AgentInput::default(), AgentContext::detached("bad"))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "nope");
    }

    #[test]
    fn usage_adds_up() {
        let mut u = Usage::new(1, 2);
        u += Usage::new(3, 4);
        assert_eq!(u, Usage::new(4, 6));
        assert_eq!(u.total_tokens, 10);
    }
}
