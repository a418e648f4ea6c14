//! The native orchestrator: registry calls, runs and sessions.
//!
//! `run()` executes the run inline, polled by the asyncio task that awaits
//! it on the caller's loop thread ([`RunDriver`]), so agent calls need no
//! thread hop. `stream()` and resumed runs are core event streams handed to
//! a forwarding task that owns them and forwards each event as core JSON.
//! Either way the run's result is published after the run is recorded in
//! the session, so "cancelled and then awaited" always finds the session up
//! to date.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use async_trait::async_trait;
use futures::StreamExt;
use orchestra_core::{
    CheckedRun, ErrorInfo, HumanAgent, OrchestraError, Orchestrator, Pattern, PatternOutput,
    RunRequest, RunResult, RunStream,
    context::{Components, RunContext, Scope},
    pattern,
    session::Page,
    termination::TerminationState,
};
use pyo3::{exceptions::PyRuntimeError, prelude::*};
use pyo3_async_runtimes::TaskLocals;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{
    agent::{PyAgent, PyManager, PyPlanner},
    bridge::{PyCallback, RunLoopGuard, loop_for_run, on_loop},
    driver::{Outcome, RunDriver},
    error::{PyResultExt, info_to_py, orchestra_error},
    result::PyRunResult,
    store::PyStore,
};

type Runs = Arc<Mutex<HashMap<String, watch::Receiver<Option<Outcome>>>>>;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// A built-in pattern whose Python callables run on the caller's event loop.
///
/// The pattern itself is built by the core from the request's options (with
/// the orchestrator's own managers and planners); this wrapper only sets the
/// event loop around its future.
struct OnCallerLoop {
    name: &'static str,
    agents_optional: bool,
    pattern: String,
    options: Value,
    built: OnceLock<Arc<dyn Pattern>>,
    locals: TaskLocals,
}

impl OnCallerLoop {
    fn new(pattern: &str, options: &Value, locals: TaskLocals) -> Result<Self, OrchestraError> {
        // Name and defaults only: the real options are checked in `validate`,
        // against the registered managers and planners.
        let probe = pattern::build(pattern, &Value::Object(Map::new()), &Components::default())?;
        Ok(Self {
            name: probe.name(),
            agents_optional: probe.agents_optional(),
            pattern: pattern.to_owned(),
            options: options.clone(),
            built: OnceLock::new(),
            locals,
        })
    }
}

#[async_trait]
impl Pattern for OnCallerLoop {
    fn name(&self) -> &'static str {
        self.name
    }

    fn agents_optional(&self) -> bool {
        self.agents_optional
    }

    fn validate(&self, scope: &Scope, components: &Components) -> Result<(), OrchestraError> {
        let built = pattern::build(&self.pattern, &self.options, components)?;
        built.validate(scope, components)?;
        let _ = self.built.set(built);
        Ok(())
    }

    async fn run(&self, ctx: &RunContext, scope: Scope) -> Result<PatternOutput, OrchestraError> {
        let inner = match self.built.get() {
            Some(p) => Arc::clone(p),
            None => ctx.build_pattern(&self.pattern, &self.options)?,
        };
        on_loop(self.locals.clone(), inner.run(ctx, scope)).await
    }
}

/// Runs orchestrations; the facade's `orchestra.Orchestrator` wraps it.
#[pyclass(frozen, name = "Orchestrator", module = "orchestra._orchestra")]
pub(crate) struct PyOrchestrator {
    inner: Orchestrator,
    runs: Runs,
}

fn parse_json(what: &str, json: Option<&str>) -> PyResult<Value> {
    match json {
        None => Ok(Value::Object(Map::new())),
        Some(s) => serde_json::from_str(s)
            .map_err(|e| orchestra_error("invalid_request", format!("{what}: invalid JSON: {e}"))),
    }
}

#[pymethods]
impl PyOrchestrator {
    #[new]
    #[pyo3(signature = (store = None))]
    fn new(store: Option<&PyStore>) -> Self {
        let mut builder = Orchestrator::builder();
        if let Some(store) = store {
            builder = builder.store(Arc::clone(&store.inner));
        }
        Self {
            inner: builder.build(),
            runs: Arc::default(),
        }
    }

    /// Registers a wrapped agent callable (see `orchestra._bridge`).
    fn add_agent(&self, name: String, description: String, call: Py<PyAny>, is_async: bool) {
        self.inner.register(PyAgent::new(
            name,
            description,
            PyCallback::new(call, is_async),
        ));
    }

    fn remove_agent(&self, name: &str) -> bool {
        self.inner.remove_agent(name)
    }

    /// `(name, description)` of each registered agent, in registration order.
    fn agents(&self) -> Vec<(String, String)> {
        self.inner
            .agents()
            .into_iter()
            .map(|a| (a.name, a.description))
            .collect()
    }

    /// Registers a group chat manager; each part is `(wrapped callable, is_async)`.
    #[pyo3(signature = (name, select, terminate = None, filter = None))]
    fn add_manager(
        &self,
        name: String,
        select: (Py<PyAny>, bool),
        terminate: Option<(Py<PyAny>, bool)>,
        filter: Option<(Py<PyAny>, bool)>,
    ) {
        let cb = |(f, a): (Py<PyAny>, bool)| PyCallback::new(f, a);
        self.inner.register_manager(
            name,
            Arc::new(PyManager::new(
                cb(select),
                terminate.map(cb),
                filter.map(cb),
            )),
        );
    }

    fn add_planner(&self, name: String, call: Py<PyAny>, is_async: bool) {
        let planner = PyPlanner::new(name.clone(), PyCallback::new(call, is_async));
        self.inner.register_planner(name, Arc::new(planner));
    }

    /// Registers an agent service reached with one JSON POST per step.
    #[cfg(feature = "http-agents")]
    #[pyo3(signature = (name, url, description, timeout_ms = None, headers = None))]
    fn add_http_agent(
        &self,
        name: String,
        url: String,
        description: String,
        timeout_ms: Option<u64>,
        headers: Option<Vec<(String, String)>>,
    ) -> PyResult<()> {
        crate::remote::add_http_agent(&self.inner, name, url, description, timeout_ms, headers)
    }

    /// Registers an OpenAI-compatible chat model as an agent; returns its name.
    #[cfg(feature = "http-agents")]
    fn add_openai_agent(&self, config_json: &str) -> PyResult<String> {
        crate::remote::add_openai_agent(&self.inner, config_json)
    }

    /// Registers an LLM group chat manager, selected with `{"manager": name}`.
    #[cfg(feature = "http-agents")]
    #[pyo3(signature = (name, model_json, instructions = None))]
    fn add_llm_manager(
        &self,
        name: String,
        model_json: &str,
        instructions: Option<String>,
    ) -> PyResult<()> {
        crate::remote::add_llm_manager(&self.inner, name, model_json, instructions)
    }

    /// Registers an LLM planner, selected with `{"planner": name}`.
    #[cfg(feature = "http-agents")]
    fn add_llm_planner(&self, name: String, model_json: &str) -> PyResult<()> {
        crate::remote::add_llm_planner(&self.inner, name, model_json)
    }

    /// Fetches an A2A agent card and registers the peer; resolves to its name.
    #[cfg(feature = "http-agents")]
    fn add_a2a_agent<'py>(
        &self,
        py: Python<'py>,
        config_json: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        crate::remote::add_a2a_agent(&self.inner, py, config_json)
    }

    /// Registers an agent answered by workers behind a queue; resolves once
    /// its transport is connected.
    #[cfg(any(feature = "redis", feature = "nats"))]
    #[pyo3(signature = (name, transport, description, timeout_ms = None, prefix = None, jetstream = false))]
    #[allow(clippy::too_many_arguments)]
    fn add_queue_agent<'py>(
        &self,
        py: Python<'py>,
        name: String,
        transport: String,
        description: String,
        timeout_ms: Option<u64>,
        prefix: Option<String>,
        jetstream: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        crate::queue::add_queue_agent(
            &self.inner,
            py,
            name,
            transport,
            description,
            timeout_ms,
            prefix,
            jetstream,
        )
    }

    /// Starts a run on the calling event loop. Raises for an invalid request;
    /// otherwise the returned handle reports the run's events and result.
    #[pyo3(signature = (pattern, task, agents, session_id, options_json, metadata_json, events))]
    #[allow(clippy::too_many_arguments)]
    fn start(
        &self,
        py: Python<'_>,
        pattern: &str,
        task: String,
        agents: Option<Vec<String>>,
        session_id: Option<String>,
        options_json: Option<&str>,
        metadata_json: Option<&str>,
        events: bool,
    ) -> PyResult<RunHandle> {
        let locals = TaskLocals::with_running_loop(py)
            .map_err(|_| {
                PyRuntimeError::new_err(
                    "no running event loop: call this from async code, or use run_sync()",
                )
            })?
            .copy_context(py)?;
        let options = parse_json("options", options_json)?;
        let metadata = match parse_json("metadata", metadata_json)? {
            Value::Object(m) => m,
            _ => {
                return Err(orchestra_error(
                    "invalid_request",
                    "metadata must be a dict",
                ));
            }
        };
        let mut request = RunRequest::new(pattern, task).options(options);
        request.agents = agents;
        request.session_id = session_id;
        request.metadata = metadata;
        let wrapped = OnCallerLoop::new(pattern, &request.options, locals).into_py_result()?;
        if !events {
            // Without events the run executes inline, driven by the task
            // that awaits `result()` on this loop's thread, and is cancelled
            // through its run id. Checked once, here, so that a bad request
            // raises at once; the ids the check fixes are the handle's. A
            // request that names no session still counts as unnamed, as in
            // `Orchestrator::run`.
            let run = self
                .inner
                .check_pattern(Arc::new(wrapped), request)
                .into_py_result()?;
            return RunHandle::driven(py, self.inner.clone(), run, Arc::clone(&self.runs));
        }
        let stream = {
            let _runtime = pyo3_async_runtimes::tokio::get_runtime().enter();
            self.inner
                .stream_pattern(Arc::new(wrapped), request)
                .into_py_result()?
        };
        Ok(RunHandle::spawn(stream, events, Arc::clone(&self.runs)))
    }

    /// Waits for a run started by this orchestrator; `None` if it is not in
    /// flight (finished already, or unknown).
    fn wait_run<'py>(&self, py: Python<'py>, run_id: &str) -> PyResult<Bound<'py, PyAny>> {
        let rx = lock(&self.runs).get(run_id).cloned();
        crate::future::into_py_future(py, async move {
            match rx {
                None => Ok(None),
                Some(rx) => Ok(wait_outcome(rx).await.map(PyRunResult::new)),
            }
        })
    }

    /// Cancels a run in flight; False if it is not running here.
    fn cancel(&self, py: Python<'_>, run_id: &str) -> bool {
        // Without the GIL: a Tokio thread may hold the registry of runs in
        // flight while it waits for the GIL to wake a run's event loop.
        py.detach(|| self.inner.cancel(run_id))
    }

    /// Asks a run in flight to stop cleanly at its next step boundary; False
    /// if it is not running here.
    fn stop(&self, py: Python<'_>, run_id: &str, reason: String) -> bool {
        // Without the GIL, as `cancel`.
        py.detach(|| self.inner.stop(run_id, reason))
    }

    /// Registers a termination predicate, used with `{"custom": name}`. The
    /// wrapped callable takes the state as JSON (`rounds`, `messages`,
    /// `tokens`, `cost_micros`, `elapsed_ms`) and answers a bool; it runs with the GIL.
    fn add_condition(&self, name: String, call: Py<PyAny>) {
        let call = Arc::new(call);
        self.inner
            .register_condition(name, move |state: &TerminationState<'_>| {
                let Ok(json) = serde_json::to_string(&serde_json::json!({
                    "rounds": state.rounds,
                    "messages": state.messages,
                    "tokens": state.tokens,
                    "cost_micros": state.cost_micros,
                    "elapsed_ms": u64::try_from(state.elapsed.as_millis()).unwrap_or(u64::MAX),
                })) else {
                    return false;
                };
                crate::future::attach_counted(|py| {
                    call.bind(py)
                        .call1((json,))
                        .and_then(|out| out.extract::<bool>())
                        .unwrap_or(false)
                })
                .unwrap_or(false)
            });
    }

    /// Replays a recorded run (its result as core JSON) without calling any
    /// agent; the handle streams the replay's events.
    fn replay(&self, record_json: &str) -> PyResult<RunHandle> {
        let record: RunResult = serde_json::from_str(record_json)
            .map_err(|e| orchestra_error("invalid_request", format!("not a run result: {e}")))?;
        let stream = {
            let _runtime = pyo3_async_runtimes::tokio::get_runtime().enter();
            self.inner.replay(&record).into_py_result()?
        };
        Ok(RunHandle::spawn(stream, true, Arc::clone(&self.runs)))
    }

    fn active_runs(&self, py: Python<'_>) -> usize {
        // Without the GIL, as `cancel`.
        py.detach(|| self.inner.active_runs())
    }

    /// Registers a person as an agent (the core's `HumanAgent`): each of
    /// its turns pauses the run until it is resumed with the person's answer.
    #[pyo3(signature = (name, description, prompt = None))]
    fn add_human(&self, name: String, description: String, prompt: Option<String>) {
        let human = HumanAgent::new(name, description);
        self.inner.register(match prompt {
            Some(p) => human.prompt(p),
            None => human,
        });
    }

    /// Resumes a paused (or interrupted) run on the calling event loop with
    /// an answer (JSON text), or none. Errors of the resume itself (unknown
    /// run, invalid answer, a run that is not waiting) are raised by the
    /// handle's `result()` and `next_events()`.
    #[pyo3(signature = (run_id, answer_json, events))]
    fn resume(
        &self,
        py: Python<'_>,
        run_id: String,
        answer_json: Option<&str>,
        events: bool,
    ) -> PyResult<RunHandle> {
        let locals = TaskLocals::with_running_loop(py)
            .map_err(|_| {
                PyRuntimeError::new_err("no running event loop: call this from async code")
            })?
            .copy_context(py)?;
        let answer = answer_json
            .map(|json| parse_json("answer", Some(json)))
            .transpose()?;
        // The core runs a resumed run on a task of its own: Python
        // coroutines of the run find the caller's loop by the run's id.
        let on_caller_loop = loop_for_run(&run_id, locals);
        let orch = self.inner.clone();
        let id = run_id.clone();
        let start = async move { orch.resume(&id, answer).await };
        Ok(RunHandle::spawn_started(
            run_id,
            None,
            start,
            Some(on_caller_loop),
            events,
            Arc::clone(&self.runs),
        ))
    }

    /// The stored record of a run (core JSON), found by its id; None if unknown.
    fn get_run<'py>(&self, py: Python<'py>, run_id: String) -> PyResult<Bound<'py, PyAny>> {
        let orch = self.inner.clone();
        crate::future::into_py_future(py, async move {
            let run = orch.get_run(&run_id).await.into_py_result()?;
            run.map(|r| serde_json::to_string(&r))
                .transpose()
                .into_py_result()
        })
    }

    /// Cancels a run in flight here or waiting for input; False otherwise.
    fn cancel_run<'py>(&self, py: Python<'py>, run_id: String) -> PyResult<Bound<'py, PyAny>> {
        let orch = self.inner.clone();
        crate::future::into_py_future(py, async move {
            orch.cancel_run(&run_id).await.into_py_result()
        })
    }

    /// The session as core JSON, or None.
    fn get_session<'py>(&self, py: Python<'py>, session_id: String) -> PyResult<Bound<'py, PyAny>> {
        let orch = self.inner.clone();
        crate::future::into_py_future(py, async move {
            let session = orch.get_session(&session_id).await.into_py_result()?;
            session
                .map(|s| serde_json::to_string(&s))
                .transpose()
                .into_py_result()
        })
    }

    fn delete_session<'py>(
        &self,
        py: Python<'py>,
        session_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let orch = self.inner.clone();
        crate::future::into_py_future(py, async move {
            orch.delete_session(&session_id).await.into_py_result()
        })
    }

    #[pyo3(signature = (offset = 0, limit = 50))]
    fn list_sessions<'py>(
        &self,
        py: Python<'py>,
        offset: usize,
        limit: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let orch = self.inner.clone();
        crate::future::into_py_future(py, async move {
            let list = orch
                .list_sessions(Page { offset, limit })
                .await
                .into_py_result()?;
            serde_json::to_string(&list).into_py_result()
        })
    }
}

async fn wait_outcome(mut rx: watch::Receiver<Option<Outcome>>) -> Outcome {
    match rx.wait_for(Option::is_some).await {
        Ok(v) => v.clone().flatten(),
        // The forwarding task ended without publishing: no result.
        Err(_) => None,
    }
}

/// One run in flight: its events (when asked for) and its result.
/// Dropping the handle cancels the run.
#[pyclass(frozen, module = "orchestra._orchestra")]
pub(crate) struct RunHandle {
    run_id: String,
    /// Known from the start, except for a resumed run (once it resumed).
    session_id: Arc<OnceLock<String>>,
    events: Option<Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>>>,
    outcome: watch::Receiver<Option<Outcome>>,
    /// Why the run could not be started (a resume that was refused).
    refused: Arc<OnceLock<ErrorInfo>>,
    /// The run itself, for runs driven by the task awaiting `result()`.
    driver: Mutex<Option<Py<RunDriver>>>,
    cancel: CancellationToken,
    _guard: DropGuard,
}

/// Publishes a run's outcome and unlists it; a run dropped before it
/// finished publishes "no result".
struct Publish {
    tx: Option<watch::Sender<Option<Outcome>>>,
    runs: Runs,
    run_id: String,
}

impl Publish {
    fn send(&mut self, outcome: Outcome) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Some(outcome));
            lock(&self.runs).remove(&self.run_id);
        }
    }
}

impl Drop for Publish {
    fn drop(&mut self) {
        self.send(None);
    }
}

/// Runs `request` to its end on the polling task; cancelling `token`
/// cancels it by id and lets it finish, so it is recorded as cancelled.
async fn inline_run(
    orch: Orchestrator,
    run: CheckedRun,
    token: CancellationToken,
    mut publish: Publish,
) -> Outcome {
    let id = publish.run_id.clone();
    let run = orch.run_checked(run);
    tokio::pin!(run);
    let result = tokio::select! {
        biased;
        r = &mut run => r,
        () = token.cancelled() => {
            // The run is registered once polled (above).
            orch.cancel(&id);
            run.await
        }
    };
    let result = Arc::new(result);
    publish.send(Some(result.clone()));
    Some(result)
}

impl RunHandle {
    /// A run executed inline by a [`RunDriver`] on the caller's loop
    /// thread; its first `result()` returns the driver.
    fn driven(py: Python<'_>, orch: Orchestrator, run: CheckedRun, runs: Runs) -> PyResult<Self> {
        let run_id = run.run_id().to_owned();
        let session_id = run.session_id().to_owned();
        let (outcome_tx, outcome) = watch::channel(None);
        lock(&runs).insert(run_id.clone(), outcome.clone());
        let cancel = CancellationToken::new();
        let publish = Publish {
            tx: Some(outcome_tx),
            runs,
            run_id: run_id.clone(),
        };
        let run = inline_run(orch, run, cancel.clone(), publish);
        let driver = Py::new(py, RunDriver::new(Box::pin(run), cancel.clone()))?;
        Ok(Self {
            run_id,
            session_id: Arc::new(OnceLock::from(session_id)),
            events: None,
            outcome,
            refused: Arc::default(),
            driver: Mutex::new(Some(driver)),
            _guard: cancel.clone().drop_guard(),
            cancel,
        })
    }

    fn spawn(stream: RunStream, forward: bool, runs: Runs) -> Self {
        let run_id = stream.run_id().to_owned();
        let session_id = stream.session_id().to_owned();
        Self::spawn_started(
            run_id,
            Some(session_id),
            std::future::ready(Ok(stream)),
            None,
            forward,
            runs,
        )
    }

    /// Forwards the events of the stream `start` resolves to. A run whose
    /// session is not known yet (a resume) is listed in `runs` once it
    /// started, so that a refused resume never shadows the run in flight.
    fn spawn_started<F>(
        run_id: String,
        session_id: Option<String>,
        start: F,
        on_loop: Option<RunLoopGuard>,
        forward: bool,
        runs: Runs,
    ) -> Self
    where
        F: std::future::Future<Output = Result<RunStream, OrchestraError>> + Send + 'static,
    {
        let (outcome_tx, outcome) = watch::channel(None);
        let listed_now = session_id.is_some();
        if listed_now {
            lock(&runs).insert(run_id.clone(), outcome.clone());
        }
        let session = Arc::new(OnceLock::new());
        if let Some(s) = session_id {
            let _ = session.set(s);
        }
        let refused: Arc<OnceLock<ErrorInfo>> = Arc::default();
        let (tx, rx) = if forward {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(Arc::new(tokio::sync::Mutex::new(rx))))
        } else {
            (None, None)
        };
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let id = run_id.clone();
        let (session_cell, refused_cell) = (Arc::clone(&session), Arc::clone(&refused));
        let listed = outcome.clone();
        let _runtime = pyo3_async_runtimes::tokio::get_runtime().enter();
        tokio::spawn(async move {
            // Kept until the run's stream ends.
            let _on_loop = on_loop;
            let mut stream = match start.await {
                Ok(stream) => stream,
                Err(e) => {
                    let _ = refused_cell.set(e.info());
                    drop(tx);
                    let _ = outcome_tx.send(Some(None));
                    return;
                }
            };
            if !listed_now {
                let _ = session_cell.set(stream.session_id().to_owned());
                lock(&runs).insert(id.clone(), listed.clone());
            }
            let mut result: Outcome = None;
            let mut cancel_sent = false;
            loop {
                let event = tokio::select! {
                    biased;
                    () = token.cancelled(), if !cancel_sent => {
                        stream.cancel();
                        cancel_sent = true;
                        continue;
                    }
                    event = stream.next() => event,
                };
                let Some(event) = event else { break };
                if let Some(tx) = &tx {
                    match serde_json::to_string(&event) {
                        Ok(json) => {
                            let _ = tx.send(json);
                        }
                        Err(e) => tracing_free_log(&format!("event not encodable: {e}")),
                    }
                }
                // The terminal event's result is taken, not copied.
                if let Some(r) = event.kind.into_result() {
                    result = Some(Arc::new(r));
                }
            }
            drop(tx);
            let _ = outcome_tx.send(Some(result));
            {
                let mut runs = lock(&runs);
                if runs.get(&id).is_some_and(|rx| rx.same_channel(&listed)) {
                    runs.remove(&id);
                }
            }
        });
        Self {
            run_id,
            session_id: session,
            events: rx,
            outcome,
            refused,
            driver: Mutex::new(None),
            _guard: cancel.clone().drop_guard(),
            cancel,
        }
    }
}

/// Events are plain serde structs, so encoding cannot fail in practice;
/// if it ever does, say so on stderr rather than drop it silently.
fn tracing_free_log(message: &str) {
    eprintln!("orchestra: {message}");
}

#[pymethods]
impl RunHandle {
    #[getter]
    fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Empty for a resumed run until it has resumed (its first event).
    #[getter]
    fn session_id(&self) -> String {
        self.session_id.get().cloned().unwrap_or_default()
    }

    /// Asks the run to stop; it ends with `run_cancelled` once its agents stop.
    fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The next events (core JSON), as many as are ready; an empty list at the end.
    fn next_events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let rx = self.events.clone();
        let refused = Arc::clone(&self.refused);
        crate::future::into_py_future(py, async move {
            let Some(rx) = rx else {
                return Err(PyRuntimeError::new_err(
                    "this run was started without events",
                ));
            };
            let mut rx = rx.lock().await;
            let mut batch = Vec::new();
            if let Some(first) = rx.recv().await {
                batch.push(first);
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
            } else if let Some(info) = refused.get() {
                return Err(info_to_py(info));
            }
            Ok(batch)
        })
    }

    /// The run's result as core JSON, once the run is over and recorded.
    fn result<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Some(driver) = lock(&self.driver).take() {
            return Ok(driver.into_bound(py).into_any());
        }
        let rx = self.outcome.clone();
        let refused = Arc::clone(&self.refused);
        crate::future::into_py_future(py, async move {
            match wait_outcome(rx).await {
                Some(result) => Ok(PyRunResult::new(result)),
                None => Err(refused.get().map_or_else(
                    || orchestra_error("internal", "the run ended without a result"),
                    info_to_py,
                )),
            }
        })
    }

    /// True once the run is over and its result is available.
    fn done(&self) -> bool {
        self.outcome.borrow().is_some()
    }
}
