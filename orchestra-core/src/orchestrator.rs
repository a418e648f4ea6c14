//! [`Orchestrator`]: the facade. It holds the agent registry, the session
//! store and default limits, and runs requests to a result or a stream.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use futures::StreamExt;
//! use orchestra_core::{FnAgent, Orchestrator, RunRequest, RunStatus};
//! let orch = Orchestrator::new();
//! orch.register(FnAgent::new("echo", "repeats", |i, _| async move { i.task }));
//! let mut events = orch.stream(RunRequest::new("sequential", "hello").agents(["echo"])).unwrap();
//! let mut types = vec![];
//! while let Some(ev) = events.next().await { types.push(ev.type_name()); }
//! assert_eq!(types, ["run_started", "agent_started", "agent_completed", "run_completed"]);
//! # });
//! ```

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex, RwLock},
    task::{Context, Poll},
};

use chrono::Utc;
use futures::Stream;
use serde_json::{Map, Value};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument;

use crate::{
    agent::{Agent, AgentInfo, AgentRef, Usage},
    context::{Components, RunContext, RunParams, Scope},
    error::OrchestraError,
    event::{EventKind, EventObserver, EventSink, OrchestrationEvent},
    message::{Message, Role},
    pattern::{self, GroupChatManager, Pattern, PatternOutput, Planner},
    policy::{AgentPolicy, CircuitStatus, Limits, Resilience, RunOptions},
    run::{InputRequest, RunRequest, RunResult, RunStatus},
    session::{
        MemoryStore, Page, Session, SessionStore, SessionSummary, merge_patch, validate_session_id,
    },
};

/// Runs orchestrations. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Orchestrator {
    inner: Arc<Inner>,
}

struct Inner {
    components: RwLock<Arc<Components>>,
    store: Arc<dyn SessionStore>,
    limits: Limits,
    resilience: Arc<Resilience>,
    active: Mutex<HashMap<String, Active>>,
}

impl Default for Orchestrator {
    fn default() -> Self {
        Self::new()
    }
}

/// Builds an [`Orchestrator`] with a custom store or limits.
#[derive(Default)]
pub struct OrchestratorBuilder {
    store: Option<Arc<dyn SessionStore>>,
    limits: Limits,
    components: Components,
    policies: Vec<(String, AgentPolicy)>,
}

impl OrchestratorBuilder {
    /// Where sessions live (default: a [`MemoryStore`]).
    #[must_use]
    pub fn store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Default limits for requests that do not set their own.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    #[must_use]
    pub fn agent(mut self, agent: impl Agent + 'static) -> Self {
        self.components.insert_agent(Arc::new(agent));
        self
    }

    /// One agent's policy (see [`Orchestrator::set_agent_policy`]).
    #[must_use]
    pub fn agent_policy(mut self, agent: impl Into<String>, policy: AgentPolicy) -> Self {
        self.policies.push((agent.into(), policy));
        self
    }

    pub fn build(self) -> Orchestrator {
        let resilience = Arc::new(Resilience::default());
        for (agent, policy) in self.policies {
            resilience.set_policy(&agent, policy);
        }
        Orchestrator {
            inner: Arc::new(Inner {
                components: RwLock::new(Arc::new(self.components)),
                store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
                limits: self.limits,
                resilience,
                active: Mutex::new(HashMap::new()),
            }),
        }
    }
}

/// A run in flight: how to cancel it and how to ask it to stop cleanly.
struct Active {
    cancel: CancellationToken,
    stop: Arc<std::sync::OnceLock<String>>,
}

/// A request checked against an orchestrator, with its run and session
/// ids fixed, not yet running: what [`Orchestrator::check`] returns and
/// [`Orchestrator::run_checked`] runs. For hosts that report a bad request
/// at once, and the run's ids before it ends, and run it afterwards,
/// without checking the request twice.
pub struct CheckedRun {
    prepared: Prepared,
}

impl CheckedRun {
    /// The run's id: the request's, or a new one.
    pub fn run_id(&self) -> &str {
        &self.prepared.run_id
    }

    /// The run's session: the request's, or a new one.
    pub fn session_id(&self) -> &str {
        &self.prepared.session_id
    }
}

impl std::fmt::Debug for CheckedRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedRun")
            .field("run_id", &self.prepared.run_id)
            .field("session_id", &self.prepared.session_id)
            .field("pattern", &self.prepared.pattern.name())
            .finish_non_exhaustive()
    }
}

struct Prepared {
    /// Steps answered from a record instead of agents (replay).
    recorded: Option<Arc<HashMap<u32, crate::run::Step>>>,
    /// The stored record this run continues (resume), if any. Boxed: it
    /// holds a whole run record, and every run's future carries this field.
    resume: Option<Box<Resume>>,
    /// Checkpointing when the request does not say (`None`: the store decides).
    checkpoint_default: Option<bool>,
    /// Answers and decisions of the record being replayed or resumed.
    answers: std::collections::BTreeMap<String, Value>,
    decided: std::collections::BTreeMap<String, Value>,
    pattern: Arc<dyn Pattern>,
    components: Arc<Components>,
    agents: Vec<AgentRef>,
    limits: Limits,
    options: RunOptions,
    run_id: String,
    session_id: String,
    request: RunRequest,
}

impl Orchestrator {
    /// An orchestrator with in-memory sessions and default limits.
    pub fn new() -> Self {
        Self::builder().build()
    }

    pub fn builder() -> OrchestratorBuilder {
        OrchestratorBuilder::default()
    }

    fn components(&self) -> Arc<Components> {
        match self.inner.components.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn edit_components(&self, f: impl FnOnce(&mut Components)) {
        let mut guard = match self.inner.components.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        // Copy-on-write: runs in flight keep their snapshot.
        f(Arc::make_mut(&mut guard));
    }

    /// Adds an agent, replacing any agent of the same name.
    pub fn register(&self, agent: impl Agent + 'static) {
        self.register_arc(Arc::new(agent));
    }

    /// Adds a shared agent, replacing any agent of the same name.
    pub fn register_arc(&self, agent: AgentRef) {
        self.edit_components(|c| c.insert_agent(agent));
    }

    /// Removes an agent; `false` if there was none.
    pub fn remove_agent(&self, name: &str) -> bool {
        let mut removed = false;
        self.edit_components(|c| removed = c.remove_agent(name));
        removed
    }

    /// Makes a group chat manager available as `{"manager": name}`.
    pub fn register_manager(&self, name: impl Into<String>, manager: Arc<dyn GroupChatManager>) {
        let name = name.into();
        self.edit_components(|c| {
            c.managers.insert(name, manager);
        });
    }

    /// Makes a planner available as `{"planner": name}`.
    pub fn register_planner(&self, name: impl Into<String>, planner: Arc<dyn Planner>) {
        let name = name.into();
        self.edit_components(|c| {
            c.planners.insert(name, planner);
        });
    }

    /// The registered agents, in registration order.
    pub fn agents(&self) -> Vec<AgentInfo> {
        self.components()
            .all_agents()
            .iter()
            .map(|a| AgentInfo::of(a.as_ref()))
            .collect()
    }

    pub fn agent(&self, name: &str) -> Option<AgentRef> {
        self.components().agents.get(name).cloned()
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Sets one agent's policy: retries, per-call time limit, fallbacks,
    /// circuit breaker and concurrency limit. Fields left `None` use the
    /// orchestrator's [`Limits`]; a request's options still win for retries,
    /// time limits and fallbacks. The agent's breaker and bulkhead start
    /// afresh. The agent need not be registered yet.
    pub fn set_agent_policy(&self, agent: &str, policy: AgentPolicy) {
        self.inner.resilience.set_policy(agent, policy);
    }

    /// The policy set for `agent`, if any.
    pub fn agent_policy(&self, agent: &str) -> Option<AgentPolicy> {
        self.inner.resilience.policy(agent)
    }

    /// Removes an agent's own policy (it falls back to the defaults).
    pub fn remove_agent_policy(&self, agent: &str) -> Option<AgentPolicy> {
        self.inner.resilience.remove_policy(agent)
    }

    /// The circuit breaker and bulkhead state of every registered agent, in
    /// registration order.
    pub fn circuit_states(&self) -> Vec<CircuitStatus> {
        let names = self.components().order.clone();
        self.inner.resilience.statuses(&self.inner.limits, &names)
    }

    /// Runs a request to the end.
    ///
    /// `Err` means the request was invalid and nothing ran. A run that
    /// started always yields `Ok` with its status (completed, failed,
    /// timed out, cancelled) and error; use [`RunResult::into_result`] to
    /// treat a failed run as an error. Dropping the future cancels the run,
    /// which is then recorded as cancelled.
    ///
    /// A request that names neither its session nor its run starts a
    /// session that only the result names, so it is run as a
    /// [`fresh_session`](RunRequest::fresh_session): its session is written
    /// once, when it ends (unless it is checkpointed).
    pub async fn run(&self, request: RunRequest) -> Result<RunResult, OrchestraError> {
        let prepared = self.prepare(request, None)?;
        Ok(self.run_prepared(prepared).await)
    }

    /// Runs a request with a pattern object instead of a pattern name
    /// (for custom patterns, or built-ins configured in code).
    pub async fn run_pattern(
        &self,
        pattern: Arc<dyn Pattern>,
        request: RunRequest,
    ) -> Result<RunResult, OrchestraError> {
        let prepared = self.prepare(request, Some(pattern))?;
        Ok(self.run_prepared(prepared).await)
    }

    /// Checks a request as [`run`](Self::run) does and fixes its ids,
    /// without running it; [`run_checked`](Self::run_checked) runs it.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use orchestra_core::{FnAgent, Orchestrator, RunRequest};
    /// let orch = Orchestrator::new();
    /// orch.register(FnAgent::new("echo", "repeats", |i, _| async move { i.task }));
    /// assert!(orch.check(RunRequest::new("sequential", "hi").agents(["nobody"])).is_err());
    /// let run = orch.check(RunRequest::new("sequential", "hi").agents(["echo"])).unwrap();
    /// let run_id = run.run_id().to_owned();
    /// let result = orch.run_checked(run).await;
    /// assert_eq!((result.run_id.as_str(), result.output.as_deref()), (run_id.as_str(), Some("hi")));
    /// # });
    /// ```
    pub fn check(&self, request: RunRequest) -> Result<CheckedRun, OrchestraError> {
        let prepared = self.prepare(request, None)?;
        Ok(CheckedRun { prepared })
    }

    /// [`check`](Self::check) with a pattern object instead of a pattern name.
    pub fn check_pattern(
        &self,
        pattern: Arc<dyn Pattern>,
        request: RunRequest,
    ) -> Result<CheckedRun, OrchestraError> {
        let prepared = self.prepare(request, Some(pattern))?;
        Ok(CheckedRun { prepared })
    }

    /// Runs a checked request to its end, as [`run`](Self::run) does
    /// (ids fixed by the check count as unnamed when the request named none).
    pub fn run_checked(&self, run: CheckedRun) -> impl Future<Output = RunResult> + Send + '_ {
        self.run_prepared(run.prepared)
    }

    fn run_prepared(&self, mut prepared: Prepared) -> impl Future<Output = RunResult> + Send + '_ {
        // Awaited to its end, a run that names neither its session nor its
        // run has a session only its result names: nobody can look for it.
        let request = &mut prepared.request;
        request.fresh_session |= request.session_id.is_none() && request.run_id.is_none();
        // Runs on the caller's task; if the caller drops this future, the
        // run's guard records it as cancelled.
        self.execute(prepared, EventSink::disabled(), CancellationToken::new())
    }

    /// [`run`](Self::run) that hands every event to `observer` as it
    /// happens and stops when `cancel` is cancelled: for watching a run
    /// (metrics, logs, progress) without a stream. The run stays on the
    /// caller's task, with no channel, and the terminal event lends the
    /// observer the result that this returns.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::sync::{Arc, Mutex};
    /// use orchestra_core::prelude::*;
    /// use tokio_util::sync::CancellationToken;
    /// let orch = Orchestrator::new();
    /// orch.register(FnAgent::new("echo", "repeats", |i, _| async move { i.task }));
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// let result = orch
    ///     .run_observed(
    ///         RunRequest::new("sequential", "hi").agents(["echo"]),
    ///         CancellationToken::new(),
    ///         Arc::new(move |e| log.lock().unwrap().push(e.type_name())),
    ///     )
    ///     .await
    ///     .unwrap();
    /// assert_eq!(result.output.as_deref(), Some("hi"));
    /// assert_eq!(seen.lock().unwrap().last(), Some(&"run_completed"));
    /// # });
    /// ```
    pub async fn run_observed(
        &self,
        request: RunRequest,
        cancel: CancellationToken,
        observer: EventObserver,
    ) -> Result<RunResult, OrchestraError> {
        let prepared = self.prepare(request, None)?;
        Ok(self.run_with_observer(prepared, cancel, observer).await)
    }

    /// [`run_observed`](Self::run_observed) for a run tied to its caller,
    /// like [`stream_attached`](Self::stream_attached): not checkpointed
    /// after every step unless the request asks for `checkpoint`.
    pub async fn run_attached(
        &self,
        request: RunRequest,
        cancel: CancellationToken,
        observer: EventObserver,
    ) -> Result<RunResult, OrchestraError> {
        let mut prepared = self.prepare(request, None)?;
        prepared.checkpoint_default = Some(false);
        Ok(self.run_with_observer(prepared, cancel, observer).await)
    }

    fn run_with_observer(
        &self,
        prepared: Prepared,
        cancel: CancellationToken,
        observer: EventObserver,
    ) -> impl Future<Output = RunResult> + Send + '_ {
        let sink = EventSink::observer(&prepared.run_id, &prepared.session_id, observer);
        self.execute(prepared, sink, cancel)
    }

    /// Starts a run and returns its event stream. The request is checked
    /// first: an invalid request returns `Err` and nothing runs. The stream
    /// ends with `run_completed`, `run_failed` or `run_cancelled`; dropping it
    /// cancels the run and the agent calls in flight.
    ///
    /// Must be called from within a Tokio runtime.
    pub fn stream(&self, request: RunRequest) -> Result<RunStream, OrchestraError> {
        let prepared = self.prepare(request, None)?;
        Ok(self.stream_prepared(prepared))
    }

    /// [`stream`](Self::stream) for a run tied to its caller (an HTTP
    /// request that cancels the run when it goes away): unless the request
    /// asks for `checkpoint`, it is not checkpointed after every step, since
    /// a crash ends it together with its caller. It is still recorded when
    /// it ends or pauses for input, and resumes like any other run.
    pub fn stream_attached(&self, request: RunRequest) -> Result<RunStream, OrchestraError> {
        let mut prepared = self.prepare(request, None)?;
        prepared.checkpoint_default = Some(false);
        Ok(self.stream_prepared(prepared))
    }

    /// [`stream`](Self::stream) with a pattern object.
    pub fn stream_pattern(
        &self,
        pattern: Arc<dyn Pattern>,
        request: RunRequest,
    ) -> Result<RunStream, OrchestraError> {
        let prepared = self.prepare(request, Some(pattern))?;
        Ok(self.stream_prepared(prepared))
    }

    fn stream_prepared(&self, prepared: Prepared) -> RunStream {
        let (sink, rx) = EventSink::channel(&prepared.run_id, &prepared.session_id);
        let cancel = CancellationToken::new();
        let run_id = prepared.run_id.clone();
        let session_id = prepared.session_id.clone();
        let this = self.clone();
        let token = cancel.clone();
        let ended = CancellationToken::new();
        // Fires when the task ends however it ends (finished, panicked, or
        // dropped with its runtime).
        let ending = ended.clone().drop_guard();
        tokio::spawn(async move {
            let _ending = ending;
            this.execute(prepared, sink, token).await
        });
        RunStream {
            run_id,
            session_id,
            rx,
            cancel: cancel.clone(),
            ended,
            _guard: cancel.drop_guard(),
        }
    }

    /// Replays a recorded run offline: the same pattern, task, agents and
    /// options, with every agent step answered from the record (no agent is
    /// called; a step missing from the record fails). The replay runs against
    /// a scratch in-memory session, so the original session is untouched, and
    /// keeps the original run and session ids so its events line up with the
    /// original's. Managers and planners registered here take part again
    /// (the built-in ones are deterministic).
    pub fn replay(&self, record: &RunResult) -> Result<RunStream, OrchestraError> {
        let live = self.components();
        let mut components = (*live).clone();
        components.agents.clear();
        components.order.clear();
        let names = record.agents.iter().chain(
            record
                .steps
                .iter()
                .flat_map(|s| std::iter::once(&s.agent).chain(s.fallback_for.iter())),
        );
        for name in names {
            if !components.agents.contains_key(name) {
                // Keep the description: planners and managers read it.
                let description = live
                    .agents
                    .get(name)
                    .map(|a| a.description().to_owned())
                    .unwrap_or_default();
                components.insert_agent(Arc::new(Unrecorded {
                    name: name.clone(),
                    description,
                }));
            }
        }
        let scratch = Orchestrator {
            inner: Arc::new(Inner {
                components: RwLock::new(Arc::new(components)),
                store: Arc::new(MemoryStore::new()),
                limits: self.inner.limits.clone(),
                resilience: self.inner.resilience.clone(),
                active: Mutex::new(HashMap::new()),
            }),
        };
        let request = RunRequest {
            pattern: record.pattern.clone(),
            task: record.task.clone(),
            agents: Some(record.agents.clone()),
            session_id: Some(record.session_id.clone()),
            run_id: Some(record.run_id.clone()),
            options: record.options.clone(),
            metadata: record.metadata.clone(),
            fresh_session: false,
        };
        let mut prepared = scratch.prepare(request, None)?;
        prepared.recorded = Some(Arc::new(
            record.steps.iter().map(|s| (s.index, s.clone())).collect(),
        ));
        prepared.answers = record.answers.clone();
        prepared.decided = record.decisions.clone();
        Ok(scratch.stream_prepared(prepared))
    }

    /// Cancels a run in flight in this process; `false` if it is not running here.
    pub fn cancel(&self, run_id: &str) -> bool {
        let active = match self.inner.active.lock() {
            Ok(a) => a,
            Err(p) => p.into_inner(),
        };
        match active.get(run_id) {
            Some(run) => {
                run.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Asks a run in flight in this process to stop cleanly at its next step
    /// boundary: unlike [`cancel`](Self::cancel), the run completes with what
    /// it has and its `termination` says `stopped: <reason>`. `false` if the
    /// run is not running here.
    pub fn stop(&self, run_id: &str, reason: impl Into<String>) -> bool {
        let active = match self.inner.active.lock() {
            Ok(a) => a,
            Err(p) => p.into_inner(),
        };
        match active.get(run_id) {
            Some(run) => {
                // The first reason wins; a second stop is a no-op.
                let _ = run.stop.set(reason.into());
                true
            }
            None => false,
        }
    }

    /// Makes a predicate available as the termination condition `{"custom": name}`.
    pub fn register_condition(
        &self,
        name: impl Into<String>,
        condition: impl Fn(&crate::termination::TerminationState<'_>) -> bool + Send + Sync + 'static,
    ) {
        let name = name.into();
        let condition: Arc<crate::termination::Condition> = Arc::new(condition);
        self.edit_components(|c| {
            c.async_conditions.remove(&name);
            c.conditions.insert(name, condition);
        });
    }

    /// Makes an asynchronous predicate available as the termination condition
    /// `{"custom": name}` (replacing a condition of that name). It is awaited
    /// after each agent step of a run that uses it, on an owned snapshot of
    /// the run's state; a panic counts as `false`.
    pub fn register_async_condition<F, Fut>(&self, name: impl Into<String>, condition: F)
    where
        F: Fn(crate::termination::TerminationSnapshot) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = bool> + Send + 'static,
    {
        let name = name.into();
        let condition: Arc<crate::termination::AsyncCondition> =
            Arc::new(move |state| Box::pin(condition(state)));
        self.edit_components(|c| {
            c.conditions.remove(&name);
            c.async_conditions.insert(name, condition);
        });
    }

    /// Number of runs in flight in this process.
    pub fn active_runs(&self) -> usize {
        match self.inner.active.lock() {
            Ok(a) => a.len(),
            Err(p) => p.into_inner().len(),
        }
    }

    pub async fn get_session(&self, id: &str) -> Result<Option<Session>, OrchestraError> {
        validate_session_id(id)?;
        Ok(self.inner.store.get(id).await?)
    }

    pub async fn delete_session(&self, id: &str) -> Result<bool, OrchestraError> {
        validate_session_id(id)?;
        Ok(self.inner.store.delete(id).await?)
    }

    pub async fn list_sessions(&self, page: Page) -> Result<Vec<SessionSummary>, OrchestraError> {
        Ok(self.inner.store.list(page).await?)
    }

    /// Checks a request without running it (the same checks `run` makes).
    pub fn validate(&self, request: &RunRequest) -> Result<(), OrchestraError> {
        self.check(request.clone()).map(|_| ())
    }

    fn prepare(
        &self,
        request: RunRequest,
        pattern: Option<Arc<dyn Pattern>>,
    ) -> Result<Prepared, OrchestraError> {
        if request.task.trim().is_empty() {
            return Err(OrchestraError::invalid("task", "must not be empty"));
        }
        if let Some(id) = &request.session_id {
            validate_session_id(id)?;
        }
        if let Some(id) = &request.run_id {
            validate_session_id(id)
                .map_err(|e| OrchestraError::invalid("run_id", e.to_string()))?;
        }
        let components = self.components();
        let pattern = match pattern {
            Some(p) => p,
            None => pattern::build(&request.pattern, &request.options, &components)?,
        };
        let run_options = pattern::parse_run_options(&request.options)?;
        let agents: Vec<AgentRef> = match &request.agents {
            Some(names) if !names.is_empty() => names
                .iter()
                .map(|n| components.agent(n))
                .collect::<Result<_, _>>()?,
            None if pattern.agents_optional() => components.all_agents(),
            _ => Vec::new(),
        };
        if agents.is_empty() {
            return Err(OrchestraError::NoAgents {
                pattern: pattern.name().to_owned(),
            });
        }
        for (from, chain) in &run_options.fallbacks {
            for name in std::iter::once(from).chain(chain) {
                components.agent(name)?;
            }
        }
        for (name, policy) in &run_options.agent_policies {
            components.agent(name)?;
            for fallback in policy.fallbacks.iter().flatten() {
                components.agent(fallback)?;
            }
        }
        let scope = Scope {
            task: request.task.clone(),
            agents: agents.clone(),
        };
        pattern.validate(&scope, &components)?;
        if let Some(name) = run_options
            .termination
            .iter()
            .flat_map(|t| t.custom_names())
            .find(|n| {
                !components.conditions.contains_key(*n)
                    && !components.async_conditions.contains_key(*n)
            })
        {
            return Err(OrchestraError::InvalidOptions {
                field: "options.termination".into(),
                message: format!("unknown custom condition '{name}' (register it first)"),
            });
        }
        let limits = self.inner.limits.merged(&run_options);
        Ok(Prepared {
            recorded: None,
            resume: None,
            checkpoint_default: None,
            answers: Default::default(),
            decided: Default::default(),
            pattern,
            components,
            agents,
            limits,
            options: run_options,
            run_id: request
                .run_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            session_id: request
                .session_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            request,
        })
    }

    fn track(&self, run_id: &str, run: Option<Active>) {
        let mut active = match self.inner.active.lock() {
            Ok(a) => a,
            Err(p) => p.into_inner(),
        };
        match run {
            Some(run) => {
                active.insert(run_id.to_owned(), run);
            }
            None => {
                active.remove(run_id);
            }
        }
    }

    /// The run's future. Not an `async fn`: that would keep its own copy of
    /// `p` next to the run's.
    fn execute(
        &self,
        p: Prepared,
        sink: EventSink,
        cancel: CancellationToken,
    ) -> impl Future<Output = RunResult> + Send + '_ {
        let span = tracing::info_span!(
            "run",
            otel.name = %format_args!("orchestrate {}", p.pattern.name()),
            run_id = %p.run_id,
            session_id = %p.session_id,
            pattern = p.pattern.name(),
            gen_ai.conversation.id = %p.session_id,
        );
        // Boxed: the run's state machine is large (kilobytes), and every
        // caller's future would otherwise hold it and move it around.
        Box::pin(self.execute_inner(p, sink, cancel)).instrument(span)
    }

    async fn execute_inner(
        &self,
        p: Prepared,
        sink: EventSink,
        cancel: CancellationToken,
    ) -> RunResult {
        let clock = Instant::now();
        let deadline = clock + p.limits.timeout;
        let mut result = RunResult {
            run_id: p.run_id.clone(),
            session_id: p.session_id.clone(),
            pattern: p.pattern.name().to_owned(),
            task: p.request.task.clone(),
            agents: p.agents.iter().map(|a| a.name().to_owned()).collect(),
            status: RunStatus::Running,
            output: None,
            data: None,
            error: None,
            termination: None,
            partial: false,
            steps: Vec::new(),
            usage: Usage::default(),
            options: match &p.request.options {
                Value::Null => Value::Object(Map::new()),
                o => o.clone(),
            },
            metadata: Map::new(),
            input: None,
            answers: Default::default(),
            decisions: Default::default(),
            checkpoint: None,
            started_at: Utc::now(),
            finished_at: None,
            duration_ms: 0,
        };
        result.metadata = p.request.metadata.clone();
        let store = self.inner.store.as_ref();
        // Only a session budget needs what the session's other runs used.
        let budgeted = p.options.session_budget.is_some();
        let checkpointing = p
            .options
            .checkpoint
            .or(p.checkpoint_default)
            .unwrap_or_else(|| store.is_durable());
        // Nothing to read and nobody to show the start to; but during an
        // outage, fail on the start record before any agent runs, and a
        // checkpointed run needs its record to be found and resumed by.
        let fresh = p.request.fresh_session
            && p.resume.is_none()
            && !checkpointing
            && !store.unreachable_hint();
        let started = match &p.resume {
            None if fresh => Ok((Vec::new(), Value::Object(Map::new()), Usage::default())),
            None => self.record_start(&result, budgeted).await,
            Some(resume) => {
                let prior = &resume.record;
                result.started_at = prior.started_at;
                result.duration_ms = prior.duration_ms;
                result.answers = prior.answers.clone();
                result.checkpoint = prior.checkpoint.clone();
                let history_len = resume.history_len;
                let mut seen = (Vec::new(), Value::Object(Map::new()), Usage::default());
                store
                    .update(&p.session_id, &mut |s: &mut Session| {
                        let n = history_len.min(s.messages.len());
                        let run_id = prior.run_id.as_str();
                        seen = (
                            s.messages[..n].to_vec(),
                            s.state.clone(),
                            session_usage(s, run_id, budgeted),
                        );
                    })
                    .await
                    .map(|_| seen)
                    .map_err(OrchestraError::from)
            }
        };
        let seen = match started {
            Ok(seen) => seen,
            Err(e) => {
                tracing::error!(error = %e, "could not record the run start");
                result.status = RunStatus::Failed;
                result.error = Some(e.info());
                result.finished_at = Some(Utc::now());
                return sink.finish_run(result);
            }
        };
        let history_len = seen.0.len();
        let (mut history, state, session_usage) = seen;
        history.push(Message::user(p.request.task.clone()));
        match &p.resume {
            None => sink.emit_with(|| EventKind::RunStarted {
                pattern: result.pattern.clone(),
                task: p.request.task.clone(),
                agents: result.agents.clone(),
            }),
            Some(resume) => sink.emit_with(|| EventKind::RunResumed {
                pattern: result.pattern.clone(),
                task: p.request.task.clone(),
                agents: result.agents.clone(),
                recorded_steps: resume.record.steps.len() as u32,
                answered: resume.answered.clone(),
            }),
        }
        let checkpoint = checkpointing.then(|| crate::context::CheckpointTarget {
            store: self.inner.store.clone(),
            base: RunResult {
                status: RunStatus::Running,
                ..result.clone()
            },
            history_len,
            resumes: result.checkpoint.as_ref().map_or(0, |c| c.resumes),
            writing: tokio::sync::Mutex::new(()),
        });
        let run_token = cancel.child_token();
        let stop = Arc::new(std::sync::OnceLock::new());
        let ctx = Arc::new(RunContext::new(RunParams {
            run_id: p.run_id.clone(),
            session_id: p.session_id.clone(),
            metadata: p.request.metadata.clone(),
            history,
            state,
            components: p.components.clone(),
            limits: p.limits.clone(),
            options: p.options,
            resilience: self.inner.resilience.clone(),
            cancel: run_token.clone(),
            events: sink.clone(),
            deadline,
            stop: stop.clone(),
            recorded: p.recorded.clone(),
            quiet_replay: p.resume.is_some(),
            answers: p
                .answers
                .into_iter()
                .map(|(k, v)| (k, Arc::new(v)))
                .collect(),
            decided: p.decided.into_iter().collect(),
            checkpoint,
            session_usage,
        }));
        // If this future is dropped mid-run (the caller went away), the guard
        // records the run as cancelled from a task of its own.
        let mut guard = Unfinished {
            orch: self.clone(),
            ctx: Some(ctx.clone()),
            result: Some(result),
            sink: sink.clone(),
            clock,
            history_len,
            fresh,
        };
        self.track(
            &p.run_id,
            Some(Active {
                cancel: cancel.clone(),
                stop: stop.clone(),
            }),
        );
        let scope = Scope {
            task: p.request.task.clone(),
            agents: p.agents,
        };
        // A session that has used up its budget runs no agent.
        let spent = ctx
            .options()
            .session_budget
            .as_ref()
            .and_then(|b| b.exceeded(&session_usage));
        let outcome: Result<PatternOutput, OrchestraError> = match spent {
            Some((reason, event)) => {
                sink.emit(event);
                Ok(PatternOutput {
                    termination: Some(reason),
                    ..PatternOutput::default()
                })
            }
            None => tokio::select! {
                biased;
                () = cancel.cancelled() => Err(OrchestraError::Cancelled),
                r = tokio::time::timeout_at(deadline, p.pattern.run(&ctx, scope)) => {
                    r.unwrap_or(Err(OrchestraError::Timeout(p.limits.timeout)))
                }
            },
        };
        // Stop whatever agent work outlived the pattern future.
        run_token.cancel();
        let result = guard.disarm();
        let result = self
            .finish(&ctx, result, outcome, clock, history_len, fresh)
            .await;
        sink.finish_run(result)
    }

    /// Completes the run record from the context and the pattern's outcome,
    /// and writes it (with the run's messages and state changes) in one
    /// conditional session write.
    async fn finish(
        &self,
        ctx: &RunContext,
        mut result: RunResult,
        outcome: Result<PatternOutput, OrchestraError>,
        clock: Instant,
        history_len: usize,
        fresh: bool,
    ) -> RunResult {
        self.track(&result.run_id, None);
        let mut rec = ctx.take_record();
        rec.steps.sort_by_key(|s| s.index);
        result.steps = rec.steps;
        result.usage = rec.usage;
        result.decisions = rec.decisions;
        let resumes = result.checkpoint.as_ref().map_or(0, |c| c.resumes);
        result.checkpoint = Some(crate::run::Checkpoint {
            version: crate::run::CHECKPOINT_VERSION,
            steps: result.steps.len() as u32,
            history_len,
            position: rec.position,
            resumes,
            updated_at: Utc::now(),
        });
        result.duration_ms += clock.elapsed().as_millis() as u64;
        if let Err(OrchestraError::InputRequired(request)) = outcome {
            // Boxed: a rare branch, kept out of every run's future.
            let paused = Box::pin(self.pause(result, *request)).await;
            if ctx.checkpointing() && paused.status == RunStatus::WaitingForInput {
                self.clear_checkpoint(&paused.run_id).await;
            }
            return paused;
        }
        match outcome {
            Ok(out) => {
                result.status = RunStatus::Completed;
                result.output = Some(out.content);
                result.data = out.data;
                result.termination = out.termination;
                result.partial = out.partial;
            }
            Err(e) => {
                result.status = match e {
                    OrchestraError::Cancelled => RunStatus::Cancelled,
                    OrchestraError::Timeout(_) => RunStatus::TimedOut,
                    _ => RunStatus::Failed,
                };
                tracing::info!(status = result.status.as_str(), error = %e, "run ended without a result");
                result.error = Some(e.info());
            }
        }
        result.finished_at = Some(Utc::now());

        // The task was asked when the run started, before any answer.
        let user = Message::stamped(Role::User, result.task.clone(), result.started_at);
        let patches = rec.state_patches;
        let record = &result;
        let store = self.inner.store.as_ref();
        // A store that applies the change once gets the messages moved in;
        // one that may retry after a conflict, copies.
        let once = store.updates_in_place();
        let mut messages = Some((user, rec.transcript));
        let mut change = |s: &mut Session| {
            if once && let Some((user, transcript)) = messages.take() {
                s.messages.reserve(transcript.len() + 1);
                s.messages.push(user);
                s.messages.extend(transcript);
            } else if let Some((user, transcript)) = &messages {
                s.messages.push(user.clone());
                s.messages.extend(transcript.iter().cloned());
            }
            for patch in &patches {
                merge_patch(&mut s.state, patch);
            }
            match s.run_mut(&record.run_id) {
                Some(r) => *r = record.clone(),
                None => s.runs.push(record.clone()),
            }
        };
        let write = store.update(&result.session_id, &mut change);
        // A run without a start record has not been indexed by id yet (a
        // store that indexes on every write does it with this one).
        let saved = if fresh && !store.indexes_running_runs() {
            let (saved, indexed) =
                tokio::join!(write, store.index_run(&record.run_id, &record.session_id));
            saved.and_then(|v| indexed.map(|()| v))
        } else {
            write.await
        };
        if let Err(e) = saved {
            tracing::error!(error = %e, "could not record the run result");
            result.status = RunStatus::Failed;
            result.error = Some(OrchestraError::Store(e).info());
        } else if ctx.checkpointing() {
            self.clear_checkpoint(&result.run_id).await;
        }
        result
    }

    async fn clear_checkpoint(&self, run_id: &str) {
        if let Err(e) = self.inner.store.clear_checkpoint(run_id).await {
            tracing::warn!(run_id, error = %e, "could not drop a run's checkpoint");
        }
    }

    /// Records a new run in its session (refusing a run id the session
    /// already has) and indexes it by id; answers the session's messages and
    /// state as the run starts.
    async fn record_start(
        &self,
        record: &RunResult,
        budgeted: bool,
    ) -> Result<(Vec<Message>, Value, Usage), OrchestraError> {
        let store = self.inner.store.as_ref();
        let mut seen = (Vec::new(), Value::Object(Map::new()), Usage::default());
        let mut duplicate = false;
        let mut start = |s: &mut Session| {
            duplicate = s.run(&record.run_id).is_some();
            if !duplicate {
                s.runs.push(record.clone());
            }
            seen = (
                s.messages.clone(),
                s.state.clone(),
                session_usage(s, &record.run_id, budgeted),
            );
        };
        if store.indexes_running_runs() {
            store.update(&record.session_id, &mut start).await?;
        } else {
            let (written, indexed) = tokio::join!(
                store.update(&record.session_id, &mut start),
                store.index_run(&record.run_id, &record.session_id)
            );
            written?;
            indexed?;
        }
        if duplicate {
            return Err(OrchestraError::invalid(
                "run_id",
                format!("run '{}' already exists in this session", record.run_id),
            ));
        }
        Ok(seen)
    }

    /// Records a run that paused for input: its steps and the question, but
    /// not yet its messages (they join the session when the run finishes).
    async fn pause(&self, mut result: RunResult, request: InputRequest) -> RunResult {
        result.status = RunStatus::WaitingForInput;
        result.input = Some(request);
        let record = &result;
        let saved = self
            .inner
            .store
            .update(
                &result.session_id,
                &mut |s: &mut Session| match s.run_mut(&record.run_id) {
                    Some(r) => *r = record.clone(),
                    None => s.runs.push(record.clone()),
                },
            )
            .await;
        if let Err(e) = saved {
            tracing::error!(error = %e, "could not record the paused run");
            result.status = RunStatus::Failed;
            result.input = None;
            result.error = Some(OrchestraError::Store(e).info());
        }
        result
    }

    /// The stored record of a run, found by its id alone.
    pub async fn get_run(&self, run_id: &str) -> Result<Option<RunResult>, OrchestraError> {
        let Some(session_id) = self.inner.store.find_run(run_id).await? else {
            return Ok(None);
        };
        let Some(session) = self.inner.store.get(&session_id).await? else {
            return Ok(None);
        };
        match session.run(run_id).cloned() {
            Some(record) => Ok(Some(self.with_checkpoint(record).await?)),
            None => Ok(None),
        }
    }

    /// A run's record with its latest separate checkpoint, if the store keeps
    /// one and the run is still in progress, brought to the current format.
    async fn with_checkpoint(&self, mut record: RunResult) -> Result<RunResult, OrchestraError> {
        if record.status == RunStatus::Running
            && let Some(cp) = self.inner.store.load_checkpoint(&record.run_id).await?
            && cp.steps.len() >= record.steps.len()
        {
            record.steps = cp.steps;
            record.usage = cp.usage;
            record.decisions = cp.decisions;
            record.checkpoint = cp.checkpoint;
        }
        migrate_record(record)
    }

    /// Resumes a paused or interrupted run and streams the rest of it.
    ///
    /// A run `waiting_for_input` needs `answer`: it is checked against the
    /// pending request's schema (a bad answer is refused with
    /// [`OrchestraError::InvalidAnswer`] and the run keeps waiting) and given
    /// to the step that asked. A run left `running` by a process that died
    /// is resumed with `answer = None`; the caller must know that its
    /// previous executor is gone (the run queue does). Either way the
    /// recorded steps are answered from the checkpoint, so no completed agent
    /// step runs again, and the run goes on live from there. Only one resume
    /// of a waiting run wins; the others get [`OrchestraError::RunState`].
    pub async fn resume(
        &self,
        run_id: &str,
        answer: Option<Value>,
    ) -> Result<RunStream, OrchestraError> {
        let prepared = self.prepare_resume(run_id, answer).await?;
        Ok(self.stream_prepared(prepared))
    }

    /// Records the answer of a waiting run without continuing it: the run is
    /// claimed (marked `running`, so no other answer is taken) and must then
    /// be continued with `resume(run_id, None)`, here or in another process
    /// (the server queues the continuation so that any instance may run it).
    /// Returns the claimed record.
    pub async fn answer(&self, run_id: &str, answer: Value) -> Result<RunResult, OrchestraError> {
        let prepared = self.prepare_resume(run_id, Some(answer)).await?;
        Ok(prepared.resume.map(|r| r.record).unwrap_or_default())
    }

    /// [`resume`](Self::resume), run to its end (or its next pause).
    pub async fn resume_run(
        &self,
        run_id: &str,
        answer: Option<Value>,
    ) -> Result<RunResult, OrchestraError> {
        let prepared = self.prepare_resume(run_id, answer).await?;
        Ok(self.run_prepared(prepared).await)
    }

    async fn prepare_resume(
        &self,
        run_id: &str,
        answer: Option<Value>,
    ) -> Result<Prepared, OrchestraError> {
        validate_session_id(run_id)
            .map_err(|e| OrchestraError::invalid("run_id", e.to_string()))?;
        let unknown = || OrchestraError::UnknownRun {
            run_id: run_id.to_owned(),
        };
        let store = &self.inner.store;
        let session_id = store.find_run(run_id).await?.ok_or_else(unknown)?;
        let session = store.get(&session_id).await?.ok_or_else(unknown)?;
        let record = self
            .with_checkpoint(session.run(run_id).cloned().ok_or_else(unknown)?)
            .await?;
        let not = |message: &str| OrchestraError::RunState {
            run_id: run_id.to_owned(),
            status: record.status.as_str().to_owned(),
            message: message.to_owned(),
        };
        let pending = match (record.status, &answer) {
            (RunStatus::WaitingForInput, Some(answer)) => {
                let pending = record
                    .input
                    .clone()
                    .ok_or_else(|| not("no pending question"))?;
                if pending.expires_at.is_some_and(|t| t <= Utc::now()) {
                    self.expire(&session_id, run_id, &pending.key).await?;
                    return Err(OrchestraError::InputExpired {
                        run_id: run_id.to_owned(),
                    });
                }
                pending.check_answer(answer)?;
                Some(pending)
            }
            (RunStatus::WaitingForInput, None) => {
                return Err(not("it waits for an answer"));
            }
            (RunStatus::Running, None) => None,
            (RunStatus::Running, Some(_)) => return Err(not("it is not waiting for input")),
            _ => return Err(not("it has finished")),
        };
        let request = RunRequest {
            pattern: record.pattern.clone(),
            task: record.task.clone(),
            agents: Some(record.agents.clone()),
            session_id: Some(session_id.clone()),
            run_id: Some(run_id.to_owned()),
            options: record.options.clone(),
            metadata: record.metadata.clone(),
            fresh_session: false,
        };
        let mut prepared = self.prepare(request, None)?;
        // Claim the run: only one resume of a waiting run may win.
        let key = pending.as_ref().map(|p| p.key.clone());
        let expected = record.status;
        let mut claimed: Option<RunResult> = None;
        store
            .update(&session_id, &mut |s: &mut Session| {
                claimed = None;
                let Some(r) = s.run_mut(run_id) else { return };
                let same_question = r.input.as_ref().map(|i| &i.key) == key.as_ref();
                if r.status != expected || !same_question {
                    return;
                }
                if let (Some(k), Some(a)) = (&key, &answer) {
                    r.answers.insert(k.clone(), a.clone());
                }
                if expected == RunStatus::Running {
                    // Progress from the separate checkpoint, if the store keeps one.
                    r.steps.clone_from(&record.steps);
                    r.usage = record.usage;
                    r.decisions.clone_from(&record.decisions);
                    r.checkpoint.clone_from(&record.checkpoint);
                }
                r.status = RunStatus::Running;
                r.input = None;
                let cp = r.checkpoint.get_or_insert_with(|| crate::run::Checkpoint {
                    version: crate::run::CHECKPOINT_VERSION,
                    steps: r.steps.len() as u32,
                    history_len: 0,
                    position: Value::Null,
                    resumes: 0,
                    updated_at: Utc::now(),
                });
                cp.resumes += 1;
                claimed = Some(r.clone());
            })
            .await?;
        let claimed = claimed.ok_or_else(|| not("another resume was first"))?;
        let history_len = claimed
            .checkpoint
            .as_ref()
            .map_or(session.messages.len(), |c| c.history_len);
        prepared.recorded = Some(Arc::new(
            claimed.steps.iter().map(|s| (s.index, s.clone())).collect(),
        ));
        prepared.answers = claimed.answers.clone();
        prepared.decided = claimed.decisions.clone();
        prepared.resume = Some(Box::new(Resume {
            history_len,
            answered: key,
            record: claimed,
        }));
        tracing::info!(run_id, session_id = %session_id, "resuming run");
        Ok(prepared)
    }

    /// Ends a waiting run whose question expired.
    async fn expire(
        &self,
        session_id: &str,
        run_id: &str,
        key: &str,
    ) -> Result<(), OrchestraError> {
        self.inner
            .store
            .update(session_id, &mut |s: &mut Session| {
                let Some(r) = s.run_mut(run_id) else { return };
                if r.status == RunStatus::WaitingForInput
                    && r.input.as_ref().is_some_and(|i| i.key == key)
                {
                    r.status = RunStatus::TimedOut;
                    r.error = Some(
                        OrchestraError::InputExpired {
                            run_id: run_id.to_owned(),
                        }
                        .info(),
                    );
                    r.input = None;
                    r.finished_at = Some(Utc::now());
                }
            })
            .await?;
        Ok(())
    }

    /// Cancels a run wherever it stands in this process's view: a run in
    /// flight here is cancelled at once; a run waiting for input is recorded
    /// as cancelled. `Ok(false)` when the run is neither (unknown, finished,
    /// or running in another process: see the server's cross-instance cancel).
    pub async fn cancel_run(&self, run_id: &str) -> Result<bool, OrchestraError> {
        if self.cancel(run_id) {
            return Ok(true);
        }
        let Some(session_id) = self.inner.store.find_run(run_id).await? else {
            return Ok(false);
        };
        let mut cancelled = false;
        self.inner
            .store
            .update(&session_id, &mut |s: &mut Session| {
                cancelled = false;
                let Some(r) = s.run_mut(run_id) else { return };
                if r.status == RunStatus::WaitingForInput {
                    r.status = RunStatus::Cancelled;
                    r.error = Some(OrchestraError::Cancelled.info());
                    r.input = None;
                    r.finished_at = Some(Utc::now());
                    cancelled = true;
                }
            })
            .await?;
        Ok(cancelled)
    }
}

/// What the session's other runs used, for session budgets.
fn session_usage(s: &Session, except_run: &str, needed: bool) -> Usage {
    let mut used = Usage::default();
    if !needed {
        return used;
    }
    for r in s.runs.iter().filter(|r| r.run_id != except_run) {
        used += r.usage;
    }
    used
}

/// A stored run record this run continues.
struct Resume {
    record: RunResult,
    history_len: usize,
    answered: Option<String>,
}

/// Brings a stored run record to the current checkpoint format.
///
/// Version 0 is a record from before checkpoints (no `checkpoint` field):
/// its steps were only written when the run ended, so an unfinished one
/// resumes from its first step. Newer versions than this release knows are
/// refused rather than misread.
pub fn migrate_record(mut record: RunResult) -> Result<RunResult, OrchestraError> {
    let version = record.checkpoint.as_ref().map_or(0, |c| c.version);
    if version > crate::run::CHECKPOINT_VERSION {
        return Err(OrchestraError::Checkpoint {
            run_id: record.run_id.clone(),
            message: format!(
                "format version {version} is newer than this release reads ({})",
                crate::run::CHECKPOINT_VERSION
            ),
        });
    }
    if version == 0 && !record.status.is_finished() {
        record.steps.clear();
        record.checkpoint = Some(crate::run::Checkpoint {
            version: crate::run::CHECKPOINT_VERSION,
            steps: 0,
            history_len: usize::MAX,
            position: Value::Null,
            resumes: 0,
            updated_at: Utc::now(),
        });
    }
    Ok(record)
}

/// Records a run as cancelled if its future is dropped before it finished.
struct Unfinished {
    orch: Orchestrator,
    ctx: Option<Arc<RunContext>>,
    result: Option<RunResult>,
    sink: EventSink,
    clock: Instant,
    history_len: usize,
    /// The run has no start record ([`RunRequest::fresh_session`]).
    fresh: bool,
}

impl Unfinished {
    /// The run finished normally: hand back its record.
    fn disarm(&mut self) -> RunResult {
        self.ctx = None;
        self.result.take().unwrap_or_default()
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        let (Some(ctx), Some(result)) = (self.ctx.take(), self.result.take()) else {
            return;
        };
        ctx.cancellation().cancel();
        let orch = self.orch.clone();
        let sink = self.sink.clone();
        let clock = self.clock;
        let history_len = self.history_len;
        let fresh = self.fresh;
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let result = orch
                        .finish(
                            &ctx,
                            result,
                            Err(OrchestraError::Cancelled),
                            clock,
                            history_len,
                            fresh,
                        )
                        .await;
                    sink.finish_run(result);
                });
            }
            Err(_) => {
                orch.track(&result.run_id, None);
                tracing::warn!(run_id = %result.run_id, "run dropped outside a runtime; not recorded as cancelled");
            }
        }
    }
}

/// The events of one run, ending with its terminal event.
/// Dropping the stream cancels the run.
pub struct RunStream {
    run_id: String,
    session_id: String,
    rx: mpsc::UnboundedReceiver<OrchestrationEvent>,
    cancel: CancellationToken,
    ended: CancellationToken,
    _guard: DropGuard,
}

impl RunStream {
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Cancels the run; the stream then ends with `run_cancelled`.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Resolves once the run's task has ended (its terminal event sent and
    /// the session written), whether or not anyone reads the stream. For
    /// hosts that must keep running while a run is in flight, such as an
    /// event loop that would otherwise exit.
    pub fn ended(&self) -> impl Future<Output = ()> + Send + 'static {
        self.ended.clone().cancelled_owned()
    }

    /// Drains the stream and returns the run's result.
    pub async fn result(mut self) -> Option<RunResult> {
        let mut last = None;
        while let Some(ev) = self.rx.recv().await {
            if let Some(r) = ev.kind.result() {
                last = Some(r.clone());
            }
        }
        last
    }
}

impl Stream for RunStream {
    type Item = OrchestrationEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// Stands in for an agent during a replay: every step should come from the
/// record, so a call reaching this agent means the replay left the recording.
struct Unrecorded {
    name: String,
    description: String,
}

#[async_trait::async_trait]
impl Agent for Unrecorded {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        &self.description
    }
    async fn invoke(
        &self,
        _input: crate::agent::AgentInput,
        _ctx: crate::agent::AgentContext,
    ) -> Result<crate::agent::AgentOutput, crate::error::AgentError> {
        Err(crate::error::AgentError::msg(format!(
            "'{}' was called during a replay but this step is not in the recording",
            self.name
        )))
    }
}
