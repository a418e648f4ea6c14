//! [`RunContext`]: what a pattern sees while it runs.
//!
//! Patterns never call agents directly: they go through
//! [`RunContext::invoke`], which numbers the step, emits `agent_started` /
//! `agent_completed` / `agent_failed`, enforces the per-call timeout, the
//! iteration limit and cancellation, applies retries and fallbacks, and
//! records the step. That keeps every pattern small and every policy uniform.

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    agent::{AgentContext, AgentInfo, AgentInput, AgentOutput, AgentRef, CallToken, Usage},
    error::{AgentError, ErrorInfo, OrchestraError},
    event::{EventKind, EventSink},
    message::Message,
    pattern::{Pattern, dynamic::Planner, group_chat::GroupChatManager},
    policy::{AgentGuard, Limits, Resilience, RetryPolicy, RunOptions, Transition},
    run::{
        CHECKPOINT_VERSION, Checkpoint, InputKind, InputRequest, PolicyDecision, Step, StepStatus,
    },
    session::{SessionStore, merge_patch},
};

/// Named parts a run can refer to: agents, group chat managers, planners.
/// A run works on a snapshot, so registering agents never disturbs runs in flight.
#[derive(Clone, Default)]
pub struct Components {
    pub agents: HashMap<String, AgentRef>,
    /// Agent names in registration order (for "all agents" defaults).
    pub order: Vec<String>,
    pub managers: HashMap<String, Arc<dyn GroupChatManager>>,
    pub planners: HashMap<String, Arc<dyn Planner>>,
    /// Custom termination predicates, used as `{"custom": name}`.
    pub conditions: HashMap<String, Arc<crate::termination::Condition>>,
    /// Custom termination predicates that answer asynchronously, used as
    /// `{"custom": name}` too (a name is in one map or the other).
    pub async_conditions: HashMap<String, Arc<crate::termination::AsyncCondition>>,
}

impl Components {
    pub fn agent(&self, name: &str) -> Result<AgentRef, OrchestraError> {
        self.agents
            .get(name)
            .cloned()
            .ok_or_else(|| OrchestraError::UnknownAgent { name: name.into() })
    }

    pub(crate) fn insert_agent(&mut self, agent: AgentRef) {
        let name = agent.name().to_owned();
        if self.agents.insert(name.clone(), agent).is_none() {
            self.order.push(name);
        }
    }

    pub(crate) fn remove_agent(&mut self, name: &str) -> bool {
        let removed = self.agents.remove(name).is_some();
        if removed {
            self.order.retain(|n| n != name);
        }
        removed
    }

    /// All registered agents in registration order.
    pub fn all_agents(&self) -> Vec<AgentRef> {
        self.order
            .iter()
            .filter_map(|n| self.agents.get(n).cloned())
            .collect()
    }
}

/// What a pattern runs on: a task and the agents taking part.
/// Nested runs (steps of a dynamic plan) get their own scope.
#[derive(Clone)]
pub struct Scope {
    pub task: String,
    pub agents: Vec<AgentRef>,
}

impl Scope {
    pub fn agent_names(&self) -> Vec<String> {
        self.agents.iter().map(|a| a.name().to_owned()).collect()
    }

    /// The agent of this scope with that name.
    pub fn find(&self, name: &str) -> Option<&AgentRef> {
        self.agents.iter().find(|a| a.name() == name)
    }
}

/// The answer of one step, with the agent that actually gave it.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub index: u32,
    pub agent: String,
    pub output: AgentOutput,
}

impl StepOutcome {
    pub fn message(&self) -> Message {
        self.output.to_message(&self.agent)
    }
}

/// A request to one agent from a pattern.
#[derive(Debug, Clone)]
pub struct Call {
    pub task: String,
    pub messages: Vec<Message>,
    pub label: Option<String>,
    /// Agents the callee may hand off to (handoff runs); see
    /// [`AgentContext::handoff_targets`].
    pub handoff_targets: Vec<AgentInfo>,
    /// The handoff that made the callee active ([`AgentContext::handoff`]).
    pub handoff: Option<Arc<crate::agent::Handoff>>,
    /// Payload schemas of the callee's routes ([`AgentContext::handoff_payload_schema`]).
    pub payload_schemas: Option<Arc<HashMap<String, Value>>>,
}

impl Call {
    pub fn new(task: impl Into<String>, messages: Vec<Message>) -> Self {
        Self {
            task: task.into(),
            messages,
            label: None,
            handoff_targets: Vec::new(),
            handoff: None,
            payload_schemas: None,
        }
    }

    /// The handoff that passes control to the callee, and the payload
    /// schemas of the routes the callee may take.
    #[must_use]
    pub fn handoff(
        mut self,
        handoff: Option<crate::agent::Handoff>,
        payload_schemas: Option<Arc<HashMap<String, Value>>>,
    ) -> Self {
        self.handoff = handoff.map(Arc::new);
        self.payload_schemas = payload_schemas;
        self
    }

    #[must_use]
    pub fn handoff_targets(mut self, targets: Vec<AgentInfo>) -> Self {
        self.handoff_targets = targets;
        self
    }

    #[must_use]
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
}

pub(crate) struct RunParams {
    pub run_id: String,
    pub session_id: String,
    pub metadata: Map<String, Value>,
    pub history: Vec<Message>,
    pub state: Value,
    pub components: Arc<Components>,
    pub limits: Limits,
    /// The request's common options (retry, fallbacks, per-agent overrides).
    pub options: RunOptions,
    pub resilience: Arc<Resilience>,
    pub cancel: CancellationToken,
    pub events: EventSink,
    pub deadline: Instant,
    /// Set by `Orchestrator::stop`: end the run cleanly at the next step boundary.
    pub stop: Arc<std::sync::OnceLock<String>>,
    /// Recorded steps by index: when set, a step found here is answered from
    /// the record instead of calling the agent (replay, resume).
    pub recorded: Option<Arc<HashMap<u32, Step>>>,
    /// Recorded steps are answered without events (a resumed run's stream
    /// shows only what happens after the checkpoint).
    pub quiet_replay: bool,
    /// Answers to input requests, by request key (resumed runs).
    pub answers: HashMap<String, Arc<Value>>,
    /// Decisions recorded by earlier attempts of this run, by key.
    pub decided: HashMap<String, Value>,
    /// Where to write a checkpoint after every step, if anywhere.
    pub checkpoint: Option<CheckpointTarget>,
    /// What the session's other runs used (session budgets).
    pub session_usage: Usage,
}

/// Where and how a run's checkpoints are written.
pub(crate) struct CheckpointTarget {
    pub store: Arc<dyn SessionStore>,
    /// The run's record as it started; each checkpoint is this plus progress.
    pub base: crate::run::RunResult,
    pub history_len: usize,
    pub resumes: u32,
    /// Orders the writes, so a slower write never replaces a newer checkpoint.
    pub writing: tokio::sync::Mutex<()>,
}

/// Shared by all the work of one run; patterns take `&RunContext`, so
/// concurrent steps can use it at once.
pub struct RunContext {
    p: RunParams,
    /// The wall clock and the monotonic clock read together when the run
    /// started: steps take their start time from the monotonic clock alone.
    epoch: (chrono::DateTime<Utc>, Instant),
    next_step: AtomicU32,
    iterations: AtomicU32,
    rec: Mutex<Record>,
}

#[derive(Default)]
pub(crate) struct Record {
    pub steps: Vec<Step>,
    pub transcript: Vec<Message>,
    pub usage: Usage,
    pub state: Value,
    pub state_patches: Vec<Value>,
    pub decisions: BTreeMap<String, Value>,
    pub position: Value,
}

impl RunContext {
    pub(crate) fn new(p: RunParams) -> Self {
        let state = p.state.clone();
        Self {
            p,
            epoch: (Utc::now(), Instant::now()),
            next_step: AtomicU32::new(0),
            iterations: AtomicU32::new(0),
            rec: Mutex::new(Record {
                state,
                ..Record::default()
            }),
        }
    }

    /// Takes a decision that is not an agent step (a speaker, a plan) once
    /// per run: a resumed run gets the recorded value instead of asking `f`
    /// again, so it follows the same path as the attempt it continues.
    pub async fn decide<T, F>(&self, key: &str, f: impl FnOnce() -> F) -> Result<T, OrchestraError>
    where
        T: Serialize + DeserializeOwned,
        F: Future<Output = Result<T, OrchestraError>>,
    {
        if let Some(v) = self.p.decided.get(key)
            && let Ok(t) = serde_json::from_value(v.clone())
        {
            self.rec().decisions.insert(key.to_owned(), v.clone());
            return Ok(t);
        }
        let t = f().await?;
        match serde_json::to_value(&t) {
            Ok(v) => {
                self.rec().decisions.insert(key.to_owned(), v);
            }
            Err(e) => tracing::warn!(key, error = %e, "decision not recorded"),
        }
        Ok(t)
    }

    /// Whether this run writes a checkpoint after every step.
    pub fn checkpointing(&self) -> bool {
        self.p.checkpoint.is_some()
    }

    /// Reports where the pattern stands (kept in the checkpoint for people
    /// and tools; resuming does not need it). `f` runs only when the run is
    /// checkpointed.
    pub fn set_position(&self, f: impl FnOnce() -> Value) {
        if self.p.checkpoint.is_some() {
            self.rec().position = f();
        }
    }

    /// Pauses the run for a person's approval unless `key` was approved
    /// already: `Ok` when approved, [`OrchestraError::InputRequired`] while
    /// nobody answered, [`OrchestraError::ApprovalDenied`] when refused.
    pub fn require_approval(
        &self,
        key: &str,
        kind: InputKind,
        agent: Option<&str>,
        prompt: impl FnOnce() -> String,
        context: impl FnOnce() -> Option<Value>,
    ) -> Result<(), OrchestraError> {
        match self.p.answers.get(key) {
            None => {
                let mut req = InputRequest::new(prompt()).schema(approval_schema());
                req.context = context();
                Err(self.pause(req, key.to_owned(), kind, agent, None))
            }
            Some(answer) => {
                let approved = match answer.as_ref() {
                    Value::Bool(b) => *b,
                    v => v.get("approved").and_then(Value::as_bool).unwrap_or(false),
                };
                if approved {
                    Ok(())
                } else {
                    Err(OrchestraError::ApprovalDenied {
                        what: agent.map_or_else(|| key.to_owned(), |a| format!("'{a}'")),
                        reason: answer
                            .get("reason")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                    })
                }
            }
        }
    }

    /// Turns a question into the error that pauses the run, filling in
    /// where it was asked and when it expires.
    fn pause(
        &self,
        mut req: InputRequest,
        key: String,
        kind: InputKind,
        agent: Option<&str>,
        step: Option<u32>,
    ) -> OrchestraError {
        req.key = key;
        req.kind = kind;
        req.agent = agent.map(str::to_owned);
        req.step = step;
        req.requested_at = Utc::now();
        req.expires_at = self.p.options.input_timeout_ms.and_then(|ms| {
            i64::try_from(ms)
                .ok()
                .map(|ms| req.requested_at + chrono::Duration::milliseconds(ms))
        });
        tracing::info!(key = %req.key, kind = ?req.kind, "run paused for input");
        OrchestraError::InputRequired(Box::new(req))
    }

    /// Writes the run's steps, decisions and position into its record in
    /// the session store. A failed write is logged and the run goes on: the
    /// final write records everything, and a crash before it resumes from
    /// the previous checkpoint.
    async fn save_checkpoint(&self) {
        let Some(target) = &self.p.checkpoint else {
            return;
        };
        let _order = target.writing.lock().await;
        let mut run = target.base.clone();
        {
            let rec = self.rec();
            run.steps.clone_from(&rec.steps);
            run.usage = rec.usage;
            run.decisions.clone_from(&rec.decisions);
            run.checkpoint = Some(Checkpoint {
                version: CHECKPOINT_VERSION,
                steps: rec.steps.len() as u32,
                history_len: target.history_len,
                position: rec.position.clone(),
                resumes: target.resumes,
                updated_at: Utc::now(),
            });
        }
        run.steps.sort_by_key(|st| st.index);
        if let Err(e) = target.store.save_checkpoint(&run).await {
            tracing::warn!(run_id = %run.run_id, error = %e, "could not write a checkpoint");
        }
    }

    /// The wall-clock time of `at`, from the run's epoch (one clock read per step).
    fn wall_time(&self, at: Instant) -> chrono::DateTime<Utc> {
        let (wall, mono) = self.epoch;
        chrono::TimeDelta::from_std(at.saturating_duration_since(mono))
            .ok()
            .and_then(|d| wall.checked_add_signed(d))
            .unwrap_or_else(Utc::now)
    }

    fn rec(&self) -> MutexGuard<'_, Record> {
        // Records are only pushed to, so a poisoned lock holds consistent data.
        match self.rec.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub(crate) fn take_record(&self) -> Record {
        std::mem::take(&mut *self.rec())
    }

    pub fn run_id(&self) -> &str {
        &self.p.run_id
    }

    pub fn session_id(&self) -> &str {
        &self.p.session_id
    }

    /// Why the run was asked to stop from outside (`Orchestrator::stop`), if it was.
    pub fn stop_requested(&self) -> Option<&str> {
        self.p.stop.get().map(String::as_str)
    }

    pub fn cancellation(&self) -> &CancellationToken {
        &self.p.cancel
    }

    /// When the whole run must end.
    pub fn deadline(&self) -> Instant {
        self.p.deadline
    }

    pub fn limits(&self) -> &Limits {
        &self.p.limits
    }

    /// The request's common options (approvals, termination, retries…).
    pub fn options(&self) -> &RunOptions {
        &self.p.options
    }

    pub fn components(&self) -> &Components {
        &self.p.components
    }

    /// Looks up any registered agent (e.g. a summarizer or a handoff target).
    pub fn agent(&self, name: &str) -> Result<AgentRef, OrchestraError> {
        self.p.components.agent(name)
    }

    /// Builds a pattern by name from JSON options (for nested steps).
    pub fn build_pattern(
        &self,
        name: &str,
        options: &Value,
    ) -> Result<Arc<dyn Pattern>, OrchestraError> {
        crate::pattern::build(name, options, &self.p.components)
    }

    /// Sends an event to the run's stream.
    pub fn emit(&self, kind: EventKind) {
        self.p.events.emit(kind);
    }

    /// Sends the event built by `make`, building it only when the run is streamed.
    pub fn emit_with(&self, make: impl FnOnce() -> EventKind) {
        self.p.events.emit_with(make);
    }

    /// The session's earlier messages followed by this run's user message.
    pub fn history(&self) -> &[Message] {
        &self.p.history
    }

    /// Messages written by agents in this run so far.
    pub fn transcript(&self) -> Vec<Message> {
        self.rec().transcript.clone()
    }

    /// Runs `f` on this run's transcript without copying it. `f` must not
    /// call back into this context (the transcript is locked meanwhile).
    pub(crate) fn with_transcript<R>(&self, f: impl FnOnce(&[Message]) -> R) -> R {
        f(&self.rec().transcript)
    }

    /// History followed by this run's transcript: what an agent that joins
    /// the conversation now should see.
    pub fn conversation(&self) -> Vec<Message> {
        let rec = self.rec();
        let mut all = Vec::with_capacity(self.p.history.len() + rec.transcript.len());
        all.extend_from_slice(&self.p.history);
        all.extend_from_slice(&rec.transcript);
        all
    }

    /// Puts the messages of the last `k` steps, which all completed, in step
    /// order instead of completion order (steps run at once finish in any
    /// order; the conversation that follows them should not depend on it).
    pub(crate) fn order_last_steps(&self, k: usize) {
        let mut rec = self.rec();
        let (n, m) = (rec.transcript.len(), rec.steps.len());
        if k < 2 || k > n || k > m {
            return;
        }
        // Each completed step pushed its step and its message together.
        let order: Vec<u32> = rec.steps[m - k..].iter().map(|s| s.index).collect();
        let mut tail: Vec<(u32, Message)> = order
            .into_iter()
            .zip(rec.transcript.drain(n - k..))
            .collect();
        tail.sort_by_key(|(index, _)| *index);
        rec.transcript.extend(tail.into_iter().map(|(_, m)| m));
    }

    /// What the session's earlier runs used, this run not included.
    pub fn session_usage(&self) -> Usage {
        self.p.session_usage
    }

    /// Usage so far.
    pub fn usage(&self) -> Usage {
        self.rec().usage
    }

    /// Adds model usage that is not an agent's to the run's (an LLM group
    /// chat manager or planner), so the run's usage, its token budget and
    /// its metrics count every model call the run made.
    pub fn add_usage(&self, usage: Usage) {
        self.rec().usage += usage;
    }

    /// Calls one agent as a recorded step, with the run's policies.
    ///
    /// The step index is taken when this is called, not when the future is
    /// first polled, so steps started together are numbered in call order.
    pub fn invoke<'a>(
        &'a self,
        agent: &AgentRef,
        call: Call,
    ) -> impl Future<Output = Result<StepOutcome, OrchestraError>> + Send + 'a {
        let index = self.next_step.fetch_add(1, Ordering::Relaxed);
        // A combinator rather than an async block awaiting the step: the
        // step's future is not stored twice, and moving this one stays cheap.
        futures::FutureExt::then(
            self.invoke_step(index, agent.clone(), call),
            move |result| async move {
                let recorded = matches!(result, Ok(_) | Err(OrchestraError::AgentFailed { .. }));
                let replayed = self
                    .p
                    .recorded
                    .as_ref()
                    .is_some_and(|r| r.contains_key(&index));
                if recorded && !replayed && self.p.checkpoint.is_some() {
                    // Boxed: the write's future stays out of every step's future.
                    Box::pin(self.save_checkpoint()).await;
                }
                result
            },
        )
    }

    async fn invoke_step(
        &self,
        index: u32,
        mut agent: AgentRef,
        mut call: Call,
    ) -> Result<StepOutcome, OrchestraError> {
        if self.p.cancel.is_cancelled() {
            return Err(OrchestraError::Cancelled);
        }
        let n = self.iterations.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.p.limits.max_iterations {
            return Err(OrchestraError::MaxIterations {
                limit: self.p.limits.max_iterations,
            });
        }
        let clock = Instant::now();
        let started_at = self.wall_time(clock);
        if let Some(step) = self.p.recorded.as_ref().and_then(|r| r.get(&index)) {
            return self.replay_step(index, step, call, started_at, clock);
        }
        // The agent first asked (its name is borrowed from it, not copied).
        let first = agent.clone();
        let first_name = first.name();
        if self
            .p
            .options
            .approve_agents
            .iter()
            .any(|a| a == first_name)
        {
            self.require_approval(
                &format!("approve:{index}"),
                InputKind::Approval,
                Some(first_name),
                || format!("Approve '{first_name}' to act on: {}", call.task),
                || Some(serde_json::json!({"input": call.task, "step": index})),
            )?;
        }
        let answer = match self.p.answers.is_empty() {
            true => None,
            false => self.p.answers.get(&format!("step:{index}")).cloned(),
        };
        let mut chain = self.fallbacks(first_name).into_iter();
        let mut attempts = 0u32;
        let mut decisions = Vec::new();
        loop {
            let name = agent.name();
            let (retry_policy, timeout) = self.call_policy(name);
            self.p.events.emit_with(|| EventKind::AgentStarted {
                agent: name.to_string(),
                step: index,
                input: call.task.clone(),
            });
            let mut retry = 0u32;
            let err = loop {
                attempts += 1;
                // The last possible attempt may take the conversation instead of copying it.
                let last = retry >= retry_policy.max_retries && chain.len() == 0;
                match self
                    .attempt(
                        index,
                        &agent,
                        &mut call,
                        last,
                        timeout,
                        &mut decisions,
                        answer.clone(),
                    )
                    .await
                {
                    Ok(output) => {
                        let fallback_for = (*name != *first_name).then(|| first_name.to_owned());
                        return Ok(self.complete(
                            index,
                            name,
                            fallback_for,
                            call,
                            output,
                            attempts,
                            decisions,
                            started_at,
                            clock,
                        ));
                    }
                    Err(AgentError::Cancelled) if self.p.cancel.is_cancelled() => {
                        return Err(OrchestraError::Cancelled);
                    }
                    Err(AgentError::InputRequired(req)) => {
                        let kind = req.kind;
                        return Err(self.pause(
                            *req,
                            format!("step:{index}"),
                            kind,
                            Some(name),
                            Some(index),
                        ));
                    }
                    // The run's own deadline passed: that is the run timing out,
                    // not this agent failing.
                    Err(AgentError::Timeout(_)) if Instant::now() >= self.p.deadline => {
                        return Err(OrchestraError::Timeout(self.p.limits.timeout));
                    }
                    Err(e) if e.is_retryable() && retry < retry_policy.max_retries => {
                        retry += 1;
                        let delay = retry_policy.backoff(retry, &e);
                        decisions.push(PolicyDecision::Retry {
                            agent: name.to_string(),
                            attempt: attempts + 1,
                            delay_ms: delay.as_millis() as u64,
                            error: (&e).into(),
                        });
                        self.emit(EventKind::AgentFailed {
                            agent: name.to_string(),
                            step: index,
                            error: (&e).into(),
                            attempt: attempts,
                            will_retry: true,
                        });
                        self.emit(EventKind::Retry {
                            agent: name.to_string(),
                            step: index,
                            attempt: attempts + 1,
                            delay_ms: delay.as_millis() as u64,
                            error: (&e).into(),
                        });
                        tracing::debug!(agent = %name, step = index, retry, ?delay, error = %e, "retrying agent call");
                        if !Box::pin(self.back_off(delay)).await {
                            return Err(OrchestraError::Cancelled);
                        }
                    }
                    Err(e) => break e,
                }
            };
            let next = chain.next();
            self.emit(EventKind::AgentFailed {
                agent: name.to_string(),
                step: index,
                error: (&err).into(),
                attempt: attempts,
                will_retry: next.is_some(),
            });
            match next {
                Some(fallback) => {
                    let to = self.agent(&fallback)?;
                    decisions.push(PolicyDecision::Fallback {
                        from: name.to_string(),
                        to: fallback.clone(),
                        reason: err.to_string(),
                    });
                    self.emit(EventKind::Fallback {
                        from: name.to_string(),
                        to: fallback.clone(),
                        reason: err.to_string(),
                    });
                    tracing::info!(from = %name, to = %fallback, error = %err, "falling back");
                    agent = to;
                }
                None => {
                    tracing::warn!(agent = %name, step = index, error = %err, "agent step failed");
                    self.record_failure(
                        index, name, first_name, &call, &err, attempts, decisions, started_at,
                        clock,
                    );
                    return Err(OrchestraError::AgentFailed {
                        agent: name.to_string(),
                        source: err,
                    });
                }
            }
        }
    }

    /// Waits `delay` before a retry; `false` when the run was cancelled meanwhile.
    async fn back_off(&self, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = self.p.cancel.cancelled() => false,
        }
    }

    /// Waits for a slot of an agent's bulkhead within `deadline`.
    async fn acquire_slot(
        &self,
        slots: &Arc<tokio::sync::Semaphore>,
        deadline: Instant,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, Option<AgentError>> {
        tokio::select! {
            r = tokio::time::timeout_at(deadline, slots.clone().acquire_owned()) => match r {
                Ok(Ok(permit)) => Ok(Some(permit)),
                // The semaphore is never closed; go on without a slot if it were.
                Ok(Err(_)) => Ok(None),
                Err(_) => Err(None),
            },
            () = self.p.cancel.cancelled() => Err(Some(AgentError::Cancelled)),
        }
    }

    /// The agents to try after `agent`: the request's per-agent override,
    /// the request's `fallbacks`, then the agent's own policy.
    fn fallbacks(&self, agent: &str) -> Vec<String> {
        let o = &self.p.options;
        if let Some(f) = o
            .agent_policies
            .get(agent)
            .and_then(|p| p.fallbacks.clone())
        {
            return f;
        }
        if let Some(f) = o.fallbacks.get(agent) {
            return f.clone();
        }
        self.p
            .resilience
            .policy(agent)
            .and_then(|p| p.fallbacks)
            .unwrap_or_default()
    }

    /// The retry policy and per-call time limit of `agent`, most specific
    /// first: the request's per-agent override, the request, the agent's
    /// policy, the orchestrator's defaults.
    fn call_policy(&self, agent: &str) -> (RetryPolicy, Option<Duration>) {
        let o = &self.p.options;
        let req = o.agent_policies.get(agent);
        let own = self.p.resilience.policy(agent);
        let retry = req
            .and_then(|p| p.retry)
            .or(o.retry)
            .or_else(|| own.as_ref().and_then(|p| p.retry))
            .unwrap_or(self.p.limits.retry);
        let timeout = req
            .and_then(|p| p.agent_timeout_ms)
            .or(o.agent_timeout_ms)
            .or_else(|| own.as_ref().and_then(|p| p.agent_timeout_ms))
            .map(Duration::from_millis)
            .or(self.p.limits.agent_timeout);
        (retry, timeout)
    }

    /// Emits a breaker's change of state and records it in the step.
    fn report(&self, index: u32, name: &str, t: Transition, decisions: &mut Vec<PolicyDecision>) {
        let agent = name.to_owned();
        let (event, decision) = match t {
            Transition::Opened { failures, cooldown } => {
                let cooldown_ms = cooldown.as_millis() as u64;
                tracing::warn!(agent = %name, failures, cooldown_ms, "circuit opened");
                (
                    EventKind::CircuitOpened {
                        agent: agent.clone(),
                        step: index,
                        failures,
                        cooldown_ms,
                    },
                    PolicyDecision::CircuitOpened {
                        agent,
                        failures,
                        cooldown_ms,
                    },
                )
            }
            Transition::HalfOpen => {
                tracing::info!(agent = %name, "circuit half-open: probing");
                (
                    EventKind::CircuitHalfOpen {
                        agent: agent.clone(),
                        step: index,
                    },
                    PolicyDecision::CircuitHalfOpen { agent },
                )
            }
            Transition::Closed => {
                tracing::info!(agent = %name, "circuit closed");
                (
                    EventKind::CircuitClosed {
                        agent: agent.clone(),
                        step: index,
                    },
                    PolicyDecision::CircuitClosed { agent },
                )
            }
        };
        self.emit(event);
        decisions.push(decision);
    }

    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        index: u32,
        agent: &AgentRef,
        call: &mut Call,
        last: bool,
        timeout: Option<Duration>,
        decisions: &mut Vec<PolicyDecision>,
        answer: Option<Arc<Value>>,
    ) -> Result<AgentOutput, AgentError> {
        let deadline = match timeout {
            Some(t) => self.p.deadline.min(Instant::now() + t),
            None => self.p.deadline,
        };
        let timed_out = || AgentError::Timeout(timeout.unwrap_or(self.p.limits.timeout));
        let name = agent.name();
        let guard = self.p.resilience.guard(name, &self.p.limits);
        // Bulkhead: wait for a slot, within this call's deadline.
        // Boxed: most agents have no bulkhead, and their calls' futures stay small.
        let _slot = match &guard.bulkhead {
            Some((slots, _)) => match Box::pin(self.acquire_slot(slots, deadline)).await {
                Ok(slot) => slot,
                Err(Some(e)) => return Err(e),
                Err(None) => return Err(timed_out()),
            },
            None => None,
        };
        let mut verdict = match guard.breaker.acquire() {
            Ok((probe, transition)) => {
                if let Some(t) = transition {
                    self.report(index, name, t, decisions);
                }
                Verdict {
                    guard: guard.clone(),
                    probe,
                    done: false,
                }
            }
            Err(rejected) => {
                decisions.push(PolicyDecision::CircuitRejected {
                    agent: name.to_string(),
                    retry_in_ms: rejected.retry_in.as_millis() as u64,
                });
                return Err(AgentError::CircuitOpen {
                    retry_in: rejected.retry_in,
                });
            }
        };
        let cancel = CallToken::new(self.p.cancel.clone());
        let ctx = AgentContext::for_call(
            agent.clone(),
            index,
            cancel.clone(),
            Some(deadline),
            self.p.events.clone(),
        )
        .with_handoff(call.handoff.clone(), call.payload_schemas.clone())
        .with_answer(answer);
        // Most calls have no handoff targets: keep the context's empty list.
        let ctx = if call.handoff_targets.is_empty() {
            ctx
        } else {
            ctx.with_handoff_targets(call.handoff_targets.clone())
        };
        let input = AgentInput {
            task: call.task.clone(),
            messages: if last {
                std::mem::take(&mut call.messages)
            } else {
                call.messages.clone()
            },
            session_id: self.p.session_id.clone(),
            run_id: self.p.run_id.clone(),
            state: self.rec().state.clone(),
            metadata: self.p.metadata.clone(),
        };
        // One span per attempt, named and attributed after the OpenTelemetry
        // GenAI semantic conventions (exported when the server's `otel` feature is on).
        let span = tracing::span!(
            crate::telemetry::SPAN_LEVEL,
            "invoke_agent",
            otel.name = %format_args!("invoke_agent {name}"),
            gen_ai.operation.name = "invoke_agent",
            gen_ai.agent.name = %name,
            gen_ai.conversation.id = %self.p.session_id,
            orchestra.run_id = %self.p.run_id,
            orchestra.step = index,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        // A panicking agent fails its own call, not the run's task.
        let fut = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
            tracing::Instrument::instrument(agent.invoke(input, ctx), span.clone()),
        ));
        let fut = async move {
            fut.await.unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                Err(AgentError::msg(format!("agent panicked: {what}")))
            })
        };
        let result = tokio::select! {
            r = tokio::time::timeout_at(deadline, fut) => match r {
                Ok(r) => r,
                Err(_) => Err(timed_out()),
            },
            () = self.p.cancel.cancelled() => Err(AgentError::Cancelled),
        };
        // Tell the agent's own background work (if any) to stop.
        cancel.end();
        match &result {
            Ok(out) => {
                span.record("gen_ai.usage.input_tokens", tokens(out.usage.prompt_tokens));
                span.record(
                    "gen_ai.usage.output_tokens",
                    tokens(out.usage.completion_tokens),
                );
            }
            Err(e) => {
                span.record("error.type", e.code());
                span.record("otel.status_code", "ERROR");
            }
        }
        let outcome = match &result {
            Ok(_) => Some(true),
            Err(AgentError::Cancelled) => None,
            // The run ran out of time: that says nothing about the agent.
            Err(AgentError::Timeout(_)) if Instant::now() >= self.p.deadline => None,
            Err(e) => Some(!e.counts_against_agent()),
        };
        if let Some(t) = verdict.give(outcome) {
            self.report(index, name, t, decisions);
        }
        result
    }

    /// Answers a step from its record: the same events and step record as the
    /// original call, without calling any agent.
    fn replay_step(
        &self,
        index: u32,
        step: &Step,
        call: Call,
        started_at: chrono::DateTime<Utc>,
        clock: Instant,
    ) -> Result<StepOutcome, OrchestraError> {
        let announce = !self.p.quiet_replay;
        if announce {
            self.p.events.emit_with(|| EventKind::AgentStarted {
                agent: step.agent.clone(),
                step: index,
                input: call.task.clone(),
            });
        }
        match (&step.status, &step.output) {
            (StepStatus::Completed, Some(output)) => Ok(self.complete_as(
                announce,
                index,
                &step.agent,
                step.fallback_for.clone(),
                call,
                output.clone(),
                step.attempts,
                step.policy.clone(),
                started_at,
                clock,
            )),
            _ => {
                let message = step
                    .error
                    .as_ref()
                    .map_or_else(|| "failed (recorded)".to_owned(), |e| e.message.clone());
                let err = AgentError::msg(message);
                if announce {
                    self.emit(EventKind::AgentFailed {
                        agent: step.agent.clone(),
                        step: index,
                        error: (&err).into(),
                        attempt: step.attempts,
                        will_retry: false,
                    });
                }
                let first = step.fallback_for.as_deref().unwrap_or(&step.agent);
                self.record_failure(
                    index,
                    &step.agent,
                    first,
                    &call,
                    &err,
                    step.attempts,
                    step.policy.clone(),
                    started_at,
                    clock,
                );
                Err(OrchestraError::AgentFailed {
                    agent: step.agent.clone(),
                    source: err,
                })
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn complete(
        &self,
        index: u32,
        name: &str,
        fallback_for: Option<String>,
        call: Call,
        output: AgentOutput,
        attempts: u32,
        policy: Vec<PolicyDecision>,
        started_at: chrono::DateTime<Utc>,
        clock: Instant,
    ) -> StepOutcome {
        self.complete_as(
            true,
            index,
            name,
            fallback_for,
            call,
            output,
            attempts,
            policy,
            started_at,
            clock,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn complete_as(
        &self,
        announce: bool,
        index: u32,
        name: &str,
        fallback_for: Option<String>,
        call: Call,
        output: AgentOutput,
        attempts: u32,
        policy: Vec<PolicyDecision>,
        started_at: chrono::DateTime<Utc>,
        clock: Instant,
    ) -> StepOutcome {
        // One clock read ends the step and stamps its message.
        let now = Instant::now();
        let duration_ms = now.saturating_duration_since(clock).as_millis() as u64;
        let created_at = self.wall_time(now);
        let message = answer_message(name, &output, created_at);
        {
            let mut rec = self.rec();
            rec.usage += output.usage;
            if let Some(patch) = &output.state_patch {
                merge_patch(&mut rec.state, patch);
                rec.state_patches.push(patch.clone());
            }
            rec.transcript.push(message);
            rec.steps.push(Step {
                index,
                agent: name.to_owned(),
                fallback_for,
                label: call.label,
                input: call.task,
                status: StepStatus::Completed,
                output: Some(output.clone()),
                error: None,
                attempts,
                started_at,
                duration_ms,
                policy,
            });
        }
        if !announce {
            return StepOutcome {
                index,
                agent: name.to_owned(),
                output,
            };
        }
        self.p.events.emit_with(|| EventKind::AgentCompleted {
            agent: name.to_owned(),
            step: index,
            message: answer_message(name, &output, created_at),
            handoff: output.handoff.clone(),
            duration_ms,
            usage: output.usage,
        });
        StepOutcome {
            index,
            agent: name.to_owned(),
            output,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record_failure(
        &self,
        index: u32,
        name: &str,
        first: &str,
        call: &Call,
        err: &AgentError,
        attempts: u32,
        policy: Vec<PolicyDecision>,
        started_at: chrono::DateTime<Utc>,
        clock: Instant,
    ) {
        let mut info = ErrorInfo::from(err);
        info.agent = Some(name.to_owned());
        self.rec().steps.push(Step {
            index,
            agent: name.to_owned(),
            fallback_for: (name != first).then(|| first.to_owned()),
            label: call.label.clone(),
            input: call.task.clone(),
            status: StepStatus::Failed,
            output: None,
            error: Some(info),
            attempts,
            started_at,
            duration_ms: clock.elapsed().as_millis() as u64,
            policy,
        });
    }

    /// Time left in the run.
    pub fn remaining(&self) -> Duration {
        self.p.deadline.saturating_duration_since(Instant::now())
    }
}

/// A call let through by a breaker; tells the breaker how it ended, even when
/// the call's future is dropped halfway (then with no verdict, which frees a
/// half-open probe slot).
struct Verdict {
    guard: Arc<AgentGuard>,
    probe: bool,
    done: bool,
}

impl Verdict {
    fn give(&mut self, outcome: Option<bool>) -> Option<Transition> {
        self.done = true;
        self.guard.breaker.record(self.probe, outcome)
    }
}

impl Drop for Verdict {
    fn drop(&mut self) {
        if !self.done {
            self.guard.breaker.record(self.probe, None);
        }
    }
}

/// `output.to_message(name)`, stamped with a time the caller already has.
fn answer_message(name: &str, output: &AgentOutput, created_at: chrono::DateTime<Utc>) -> Message {
    Message {
        name: Some(name.to_owned()),
        data: output.data.clone(),
        ..Message::stamped(crate::message::Role::Assistant, &output.content, created_at)
    }
}

/// The answers an approval accepts: `true`/`false`, or
/// `{"approved": bool, "reason": text}`.
pub fn approval_schema() -> Value {
    serde_json::json!({
        "anyOf": [
            {"type": "boolean"},
            {
                "type": "object",
                "required": ["approved"],
                "properties": {"approved": {"type": "boolean"}, "reason": {"type": "string"}},
            },
        ]
    })
}

/// A token count as the signed integer OpenTelemetry attributes carry.
pub(crate) fn tokens(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
