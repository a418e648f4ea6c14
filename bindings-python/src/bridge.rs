//! Calling Python from the core's Tokio tasks.
//!
//! Every Python callable the core uses (agents, group chat managers,
//! planners) is wrapped by the facade (`orchestra._bridge`) into a function
//! that takes one argument and answers a [`Reply`]: `(kind, payload)`.
//! That keeps the border narrow: the same JSON as REST goes in (for agents,
//! encoded only when the agent reads more than its task), and the Rust side
//! never inspects Python objects beyond a tuple of int and str.
//!
//! How a call runs when the run is polled on its event loop's thread
//! (`await orch.run(...)`, see [`crate::driver`]):
//! - a coroutine function's coroutine runs right here, in a copy of the
//!   caller's `contextvars`, up to its first suspension; one that finishes
//!   there costs no thread hop at all, one that suspends goes on as a task of
//!   that loop, and the run is woken when the task is done;
//! - a plain function runs on Tokio's blocking pool, so the loop is never
//!   blocked.
//!
//! How a call runs otherwise (streams, resumed runs, runs the core spawns):
//! - a plain function runs on Tokio's blocking pool with the GIL, so neither
//!   the runtime's workers nor the caller's event loop are blocked;
//! - a coroutine function is called here (which only creates the coroutine)
//!   and the coroutine is scheduled on the event loop of the Python code that
//!   started the run, with that code's `contextvars`. The loop is found in a
//!   task-local set by [`on_loop`] around the pattern's future.
//!
//! Either way, when the Rust side stops waiting (run cancelled, timed out),
//! the Python task is cancelled too.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, LazyLock, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use orchestra_core::AgentContext;
use pyo3::{
    exceptions::PyRuntimeError,
    prelude::*,
    sync::PyOnceLock,
    types::{PyString, PyTuple},
};
use pyo3_async_runtimes::TaskLocals;
use tokio::sync::oneshot;

use crate::{agent::PyAgentInput, driver::LoopWaker};

tokio::task_local! {
    static EVENT_LOOP: TaskLocals;
}

/// What a wrapped callable answers: a kind tag and a string payload
/// (see `orchestra._bridge` for the kinds).
pub(crate) type Reply = (u8, String);

/// Runs `fut` with `locals` as the event loop for Python coroutines.
pub(crate) async fn on_loop<F: Future>(locals: TaskLocals, fut: F) -> F::Output {
    EVENT_LOOP.scope(locals, fut).await
}

/// Event loops of runs that execute on a task the core spawned (resumed
/// runs), where [`on_loop`] cannot reach: looked up by run id. Several
/// entries may exist for one run while concurrent resumes race (only one
/// wins); the newest is used.
type RunLoops = HashMap<String, Vec<(u64, TaskLocals)>>;
static RUN_LOOPS: LazyLock<Mutex<RunLoops>> = LazyLock::new(Mutex::default);
static NEXT_LOOP_ID: AtomicU64 = AtomicU64::new(0);

fn run_loops() -> std::sync::MutexGuard<'static, RunLoops> {
    match RUN_LOOPS.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Makes `locals` the event loop of run `run_id` until the guard is dropped.
pub(crate) fn loop_for_run(run_id: &str, locals: TaskLocals) -> RunLoopGuard {
    let id = NEXT_LOOP_ID.fetch_add(1, Ordering::Relaxed);
    run_loops()
        .entry(run_id.to_owned())
        .or_default()
        .push((id, locals));
    RunLoopGuard {
        run_id: run_id.to_owned(),
        id,
    }
}

fn loop_of_run(run_id: &str) -> Option<TaskLocals> {
    run_loops()
        .get(run_id)
        .and_then(|v| v.last())
        .map(|(_, l)| l.clone())
}

/// Removes a run's event loop entry (see [`loop_for_run`]).
pub(crate) struct RunLoopGuard {
    run_id: String,
    id: u64,
}

impl Drop for RunLoopGuard {
    fn drop(&mut self) {
        let mut loops = run_loops();
        if let Some(v) = loops.get_mut(&self.run_id) {
            v.retain(|(id, _)| *id != self.id);
            if v.is_empty() {
                loops.remove(&self.run_id);
            }
        }
    }
}

static COROUTINE_TYPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static SPAWN: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static EAGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static WHEN_DONE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A wrapped Python callable, safe to share between runs and threads.
pub(crate) struct PyCallback {
    func: Arc<Py<PyAny>>,
    /// Plain functions run on the blocking pool; coroutine functions do not.
    blocking: bool,
}

/// What a wrapped callable is called with.
pub(crate) enum CallArg {
    /// JSON text (managers and planners).
    Json(String),
    /// An agent's input (see [`PyAgentInput`]).
    Input(Box<PyAgentInput>),
}

enum FirstStep {
    Done(Reply),
    /// The call produced a coroutine that must run on an event loop.
    Pending(Py<PyAny>),
}

fn first_step(
    py: Python<'_>,
    func: &Py<PyAny>,
    arg: CallArg,
    ctx: Option<AgentContext>,
) -> PyResult<FirstStep> {
    let arg = match arg {
        CallArg::Json(json) => PyString::new(py, &json).into_any(),
        CallArg::Input(input) => Bound::new(py, *input)?.into_any(),
    };
    let out = match ctx {
        None => func.bind(py).call1((arg,))?,
        Some(ctx) => func.bind(py).call1((arg, PyAgentContext { inner: ctx }))?,
    };
    let coroutine = COROUTINE_TYPE.import(py, "types", "CoroutineType")?;
    if out.is_instance(coroutine)? {
        return Ok(FirstStep::Pending(out.unbind()));
    }
    Ok(FirstStep::Done(extract_reply(&out)?))
}

fn extract_reply(out: &Bound<'_, PyAny>) -> PyResult<Reply> {
    let tuple = out.cast::<PyTuple>().map_err(|_| {
        PyRuntimeError::new_err("internal: a wrapped callable must answer (kind, payload)")
    })?;
    tuple.extract()
}

impl PyCallback {
    pub(crate) fn new(func: Py<PyAny>, is_async: bool) -> Self {
        Self {
            func: Arc::new(func),
            blocking: !is_async,
        }
    }

    /// Calls the wrapped function with its argument (and, for agents, the
    /// call's context). Coroutines run on the loop set by [`on_loop`]
    /// or, outside it, on the loop registered for run `run_id` with
    /// [`loop_for_run`].
    pub(crate) async fn call_in_run(
        &self,
        arg: CallArg,
        ctx: Option<AgentContext>,
        run_id: Option<&str>,
    ) -> PyResult<Reply> {
        if let Some(here) = crate::driver::polling_loop() {
            return self.call_on_loop_thread(here, arg, ctx).await;
        }
        let locals = EVENT_LOOP
            .try_with(Clone::clone)
            .ok()
            .or_else(|| run_id.and_then(loop_of_run));
        let first = if self.blocking {
            let func = Arc::clone(&self.func);
            tokio::task::spawn_blocking(move || {
                Python::attach(|py| first_step(py, &func, arg, ctx))
            })
            .await
            .map_err(|e| PyRuntimeError::new_err(format!("python call aborted: {e}")))??
        } else {
            Python::attach(|py| first_step(py, &self.func, arg, ctx))?
        };
        match first {
            FirstStep::Done(reply) => Ok(reply),
            FirstStep::Pending(coro) => {
                let Some(locals) = locals else {
                    Python::attach(|py| {
                        // Close it so Python does not warn it was never awaited.
                        let _ = coro.call_method0(py, "close");
                    });
                    return Err(PyRuntimeError::new_err(
                        "an async callable needs the asyncio event loop of the caller; \
                         start runs with `await orch.run(...)` or `orch.stream(...)`",
                    ));
                };
                await_on_loop(&locals, coro).await
            }
        }
    }
}

impl PyCallback {
    /// The call of a run polled on its event loop's thread: a coroutine
    /// runs here up to its first suspension (most agents finish there) and
    /// the rest runs as a task of that loop; a plain function runs on the
    /// blocking pool, which hands its reply back while it holds the GIL.
    async fn call_on_loop_thread(
        &self,
        here: Arc<LoopWaker>,
        arg: CallArg,
        ctx: Option<AgentContext>,
    ) -> PyResult<Reply> {
        let first = if self.blocking {
            let (tx, rx) = oneshot::channel();
            let func = Arc::clone(&self.func);
            tokio::task::spawn_blocking(move || {
                Python::attach(|py| {
                    // Sent (and the run woken) before the GIL is released.
                    let _ = tx.send(first_step(py, &func, arg, ctx));
                });
            });
            rx.await
                .map_err(|_| PyRuntimeError::new_err("python call aborted"))??
        } else {
            Python::attach(|py| first_step(py, &self.func, arg, ctx))?
        };
        match first {
            FirstStep::Done(reply) => Ok(reply),
            FirstStep::Pending(coro) => run_eagerly(here, coro).await,
        }
    }
}

enum Eager {
    Done(Reply),
    Suspended(Py<PyAny>, oneshot::Receiver<Option<Reply>>),
}

/// Runs `coro` on this thread (its loop's) up to its first suspension;
/// if it suspends, waits for the task that runs the rest.
async fn run_eagerly(here: Arc<LoopWaker>, coro: Py<PyAny>) -> PyResult<Reply> {
    let started = Python::attach(|py| -> PyResult<Eager> {
        let eager = EAGER.import(py, "orchestra._bridge", "eager")?;
        let out = eager.call1((here.event_loop().bind(py), coro))?;
        if let Ok(reply) = out.cast::<PyTuple>() {
            return Ok(Eager::Done(reply.extract()?));
        }
        let (tx, rx) = oneshot::channel();
        let done = Py::new(
            py,
            Completion {
                tx: Mutex::new(Some(tx)),
            },
        )?;
        WHEN_DONE
            .import(py, "orchestra._bridge", "when_done")?
            .call1((&out, done))?;
        Ok(Eager::Suspended(out.unbind(), rx))
    })?;
    let (task, rx) = match started {
        Eager::Done(reply) => return Ok(reply),
        Eager::Suspended(task, rx) => (task, rx),
    };
    let mut guard = CancelTaskOnDrop {
        task: Some(task),
        here,
    };
    let reply = rx.await;
    guard.task = None;
    delivered(reply)
}

/// What a Python task delivered through its [`Completion`]: its reply,
/// or why there is none.
fn delivered(reply: Result<Option<Reply>, oneshot::error::RecvError>) -> PyResult<Reply> {
    match reply {
        Ok(Some(reply)) => Ok(reply),
        Ok(None) => Err(pyo3::exceptions::asyncio::CancelledError::new_err(
            "the python task was cancelled",
        )),
        Err(_) => Err(PyRuntimeError::new_err(
            "the event loop dropped the call (was it closed?)",
        )),
    }
}

/// Cancels an agent's task when the run stops waiting for it: directly on
/// the loop thread, through the loop from any other.
struct CancelTaskOnDrop {
    task: Option<Py<PyAny>>,
    here: Arc<LoopWaker>,
}

impl Drop for CancelTaskOnDrop {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else {
            return;
        };
        let on_loop = self.here.on_loop_thread();
        crate::future::attach_counted(|py| {
            let cancelled = if on_loop {
                task.call_method0(py, "cancel").map(drop)
            } else {
                task.getattr(py, "cancel").and_then(|cancel| {
                    self.here
                        .event_loop()
                        .call_method1(py, "call_soon_threadsafe", (cancel,))
                        .map(drop)
                })
            };
            if let Err(e) = cancelled
                && !e.is_instance_of::<PyRuntimeError>(py)
            {
                e.write_unraisable(py, None);
            }
        });
    }
}

/// Schedules `coro` on the loop of `locals` and waits for its reply.
async fn await_on_loop(locals: &TaskLocals, coro: Py<PyAny>) -> PyResult<Reply> {
    let (tx, rx) = oneshot::channel();
    let handle = Python::attach(|py| -> PyResult<Py<PyAny>> {
        let spawn = SPAWN.import(py, "orchestra._bridge", "spawn")?;
        let done = Py::new(
            py,
            Completion {
                tx: Mutex::new(Some(tx)),
            },
        )?;
        Ok(spawn
            .call1((locals.event_loop(py), locals.context(py), coro, done))?
            .unbind())
    })?;
    let mut guard = CancelOnDrop {
        handle: Some(handle),
    };
    let reply = rx.await;
    guard.handle = None;
    delivered(reply)
}

/// Cancels the Python task when the Rust side stops waiting for it.
struct CancelOnDrop {
    handle: Option<Py<PyAny>>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            Python::attach(|py| {
                if let Err(e) = handle.call_method0(py, "cancel") {
                    e.write_unraisable(py, None);
                }
            });
        }
    }
}

/// Receives the reply of a coroutine from the event loop thread.
#[pyclass(frozen, module = "orchestra._orchestra")]
struct Completion {
    tx: Mutex<Option<oneshot::Sender<Option<Reply>>>>,
}

#[pymethods]
impl Completion {
    /// `reply` is None when the task was cancelled.
    fn __call__(&self, reply: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let reply = reply.map(extract_reply).transpose()?;
        let tx = match self.tx.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(tx) = tx {
            // The receiver is gone when the run stopped waiting: nothing to do.
            let _ = tx.send(reply);
        }
        Ok(())
    }
}

/// What a Python agent can do besides answering: stream partial output,
/// report tool calls, and check for cancellation and its deadline.
#[pyclass(frozen, name = "AgentContext", module = "orchestra._orchestra")]
pub(crate) struct PyAgentContext {
    inner: AgentContext,
}

fn json_arg(what: &str, json: &str) -> PyResult<serde_json::Value> {
    serde_json::from_str(json)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("{what}: invalid JSON: {e}")))
}

#[pymethods]
impl PyAgentContext {
    /// Streams a piece of output as an `agent_delta` event.
    fn delta(&self, text: String) {
        self.inner.delta(text);
    }

    /// Reports a tool call (`tool_called`); `arguments_json` is JSON text.
    fn tool_called(&self, tool: &str, call_id: &str, arguments_json: &str) -> PyResult<()> {
        let arguments = json_arg("arguments", arguments_json)?;
        self.inner.tool_called(tool, call_id, arguments);
        Ok(())
    }

    /// Reports a tool result (`tool_completed`); `result_json` is JSON text.
    fn tool_completed(&self, tool: &str, call_id: &str, result_json: &str) -> PyResult<()> {
        let result = json_arg("result", result_json)?;
        self.inner.tool_completed(tool, call_id, result);
        Ok(())
    }

    /// True once the run is cancelled or this call's deadline has passed.
    #[getter]
    fn cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    /// Milliseconds left before this call's deadline, if it has one.
    #[getter]
    fn remaining_ms(&self) -> Option<u64> {
        self.inner
            .remaining()
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// The step number of this call within the run.
    #[getter]
    fn step(&self) -> u32 {
        self.inner.step()
    }

    /// The answer (JSON text) to the input this agent requested at this
    /// step, once the run was resumed with it; None otherwise.
    #[getter]
    fn answer_json(&self) -> PyResult<Option<String>> {
        self.inner
            .answer()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| PyRuntimeError::new_err(format!("answer: {e}")))
    }
}
