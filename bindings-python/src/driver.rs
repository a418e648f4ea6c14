//! Runs driven on the caller's event loop thread.
//!
//! `await orch.run(...)` awaits a [`RunDriver`]: a coroutine-like object
//! that the caller's asyncio task steps. Each step polls the core's run
//! future right there, with the GIL released and inside the shared Tokio
//! runtime's context (so timers and I/O work: the runtime's workers drive
//! them). While it polls, a thread-local names the run's [`LoopWaker`], so
//! Python agents called by the run can tell they are on the loop thread and
//! call their function directly instead of hopping threads (see
//! `bridge::PyCallback::call_in_run`).
//!
//! When the run cannot go on, the step yields an asyncio future of the loop
//! that the run's waker completes: directly on the loop thread, through
//! `call_soon_threadsafe` from any other thread (a Tokio timer, a Redis
//! reply), handed to a blocking-pool thread so that the waking thread never
//! waits for the GIL.

use std::{
    cell::RefCell,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard, TryLockError,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
    thread::{self, ThreadId},
};

use pyo3::{
    exceptions::{PyBaseException, PyRuntimeError, PyStopIteration, asyncio::CancelledError},
    prelude::*,
};
use tokio_util::sync::CancellationToken;

use crate::{
    error::orchestra_error,
    future::{SET_FUTURE, attach_counted},
    orchestrator::lock,
};

/// The result of a finished run, as core JSON (`None` if it ended without one).
pub(crate) type Outcome = Option<Arc<orchestra_core::RunResult>>;

/// A run future polled by a [`RunDriver`].
pub(crate) type RunFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// How often one step polls again when the run woke itself while being
/// polled, before it lets the loop run other tasks.
const MAX_POLLS_PER_STEP: usize = 8;

thread_local! {
    /// The waker of the run being polled on this thread, if any.
    static POLLING: RefCell<Option<Arc<LoopWaker>>> = const { RefCell::new(None) };
}

/// The event loop of the run polled on this thread right now, if any: set
/// only while a [`RunDriver`] polls its run on the loop's own thread.
pub(crate) fn polling_loop() -> Option<Arc<LoopWaker>> {
    POLLING
        .try_with(|p| p.try_borrow().ok().and_then(|p| p.clone()))
        .ok()
        .flatten()
}

/// Wakes a run driven on an event loop.
pub(crate) struct LoopWaker {
    event_loop: Py<PyAny>,
    thread: ThreadId,
    /// Set by every wake; cleared before each poll.
    woken: AtomicBool,
    /// The asyncio future the driving task waits on, taken by the first wake.
    waiting: Mutex<Option<Py<PyAny>>>,
}

impl LoopWaker {
    pub(crate) fn event_loop(&self) -> &Py<PyAny> {
        &self.event_loop
    }

    /// True on the thread that runs the loop.
    pub(crate) fn on_loop_thread(&self) -> bool {
        thread::current().id() == self.thread
    }

    fn polled_here(self: &Arc<Self>) -> bool {
        POLLING
            .try_with(|p| {
                p.try_borrow()
                    .is_ok_and(|p| p.as_ref().is_some_and(|s| Arc::ptr_eq(s, self)))
            })
            .unwrap_or(false)
    }
}

impl Wake for LoopWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if self.polled_here() {
            // The poll in progress sees the flag and polls again.
            return;
        }
        // Taken before entering Python: no lock of ours is held there.
        let Some(fut) = lock(&self.waiting).take() else {
            return;
        };
        if self.on_loop_thread() {
            self.complete(fut);
            return;
        }
        // Another thread may call this while it holds a lock of its own (a
        // cancellation token wakes its children under its parent's lock).
        // Waiting for the GIL there could deadlock with the loop thread, which
        // holds the GIL and may want that lock (an agent asking whether it
        // was cancelled), so the GIL is taken on a blocking-pool thread.
        let this = Arc::clone(self);
        pyo3_async_runtimes::tokio::get_runtime().spawn_blocking(move || this.complete(fut));
    }
}

impl LoopWaker {
    /// Completes the future the driving task waits on: directly on the
    /// loop thread, through `call_soon_threadsafe` from any other.
    fn complete(&self, fut: Py<PyAny>) {
        let on_loop = self.on_loop_thread();
        attach_counted(|py| {
            let done = SET_FUTURE
                .import(py, "orchestra._bridge", "set_future")
                .and_then(|set| {
                    if on_loop {
                        set.call1((fut, true, py.None())).map(drop)
                    } else {
                        self.event_loop
                            .call_method1(py, "call_soon_threadsafe", (set, fut, true, py.None()))
                            .map(drop)
                    }
                });
            if let Err(e) = done {
                // A closed loop: nobody waits for this run any more.
                if !e.is_instance_of::<PyRuntimeError>(py) {
                    e.write_unraisable(py, None);
                }
            }
        });
    }
}

/// Restores the previous polling run when a poll ends (also on panic).
struct PollingScope(Option<Arc<LoopWaker>>);

impl PollingScope {
    fn enter(waker: Arc<LoopWaker>) -> Self {
        Self(POLLING.with(|p| p.replace(Some(waker))))
    }
}

impl Drop for PollingScope {
    fn drop(&mut self) {
        let previous = self.0.take();
        POLLING.with(|p| *p.borrow_mut() = previous);
    }
}

fn poll_here(run: &mut RunFuture, waker: &Arc<LoopWaker>) -> Poll<Outcome> {
    let _runtime = pyo3_async_runtimes::tokio::get_runtime().enter();
    let _scope = PollingScope::enter(Arc::clone(waker));
    let w = Waker::from(Arc::clone(waker));
    let mut cx = Context::from_waker(&w);
    run.as_mut().poll(&mut cx)
}

/// A run awaited on the caller's event loop (what `RunHandle.result()`
/// returns for `orch.run`). Cancelling the awaiting task cancels the run and
/// re-raises once the run is recorded as cancelled; closing or dropping it
/// drops the run (the core then records it as cancelled).
#[pyclass(frozen, module = "orchestra._orchestra")]
pub(crate) struct RunDriver {
    state: Mutex<DriverState>,
}

struct DriverState {
    run: Option<RunFuture>,
    waker: Option<Arc<LoopWaker>>,
    /// Cancels the run (it then finishes and is recorded as cancelled).
    cancel: CancellationToken,
    /// The cancellation to raise once the run is over.
    cancelled: Option<PyErr>,
}

impl RunDriver {
    pub(crate) fn new(run: RunFuture, cancel: CancellationToken) -> Self {
        Self {
            state: Mutex::new(DriverState {
                run: Some(run),
                waker: None,
                cancel,
                cancelled: None,
            }),
        }
    }

    fn state(&self) -> PyResult<MutexGuard<'_, DriverState>> {
        match self.state.try_lock() {
            Ok(g) => Ok(g),
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(TryLockError::WouldBlock) => {
                Err(PyRuntimeError::new_err("this run is already being awaited"))
            }
        }
    }
}

impl DriverState {
    /// Polls the run; raises `StopIteration(result)` once it is over,
    /// otherwise returns what the task should wait for.
    fn step(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let waker = match &self.waker {
            Some(w) => Arc::clone(w),
            None => {
                let event_loop = pyo3_async_runtimes::get_running_loop(py)?.unbind();
                let w = Arc::new(LoopWaker {
                    event_loop,
                    thread: thread::current().id(),
                    woken: AtomicBool::new(false),
                    waiting: Mutex::new(None),
                });
                self.waker = Some(Arc::clone(&w));
                w
            }
        };
        drop(lock(&waker.waiting).take());
        let Some(run) = self.run.as_mut() else {
            return Err(PyRuntimeError::new_err(
                "cannot reuse an already awaited run",
            ));
        };
        let mut polls = 0;
        let ready = loop {
            waker.woken.store(false, Ordering::SeqCst);
            if let Poll::Ready(outcome) = py.detach(|| poll_here(run, &waker)) {
                break Some(outcome);
            }
            polls += 1;
            if !waker.woken.load(Ordering::SeqCst) || polls >= MAX_POLLS_PER_STEP {
                break None;
            }
        };
        let Some(outcome) = ready else {
            if waker.woken.load(Ordering::SeqCst) {
                // Let the loop run other tasks, then come back at once.
                return Ok(py.None());
            }
            let fut = waker.event_loop.bind(py).call_method0("create_future")?;
            fut.setattr("_asyncio_future_blocking", true)?;
            *lock(&waker.waiting) = Some(fut.clone().unbind());
            if waker.woken.load(Ordering::SeqCst) {
                // Woken before the future was in place.
                return Ok(py.None());
            }
            return Ok(fut.unbind());
        };
        self.run = None;
        if let Some(cancelled) = self.cancelled.take() {
            return Err(cancelled);
        }
        match outcome {
            Some(result) => Err(PyStopIteration::new_err((Py::new(
                py,
                crate::result::PyRunResult::new(result),
            )?,))),
            None => Err(orchestra_error(
                "internal",
                "the run ended without a result",
            )),
        }
    }

    fn drop_run(&mut self, py: Python<'_>) {
        if let Some(run) = self.run.take() {
            py.detach(|| drop_in_runtime(run));
        }
    }
}

fn drop_in_runtime(run: RunFuture) {
    // The core records a dropped run as cancelled from a task it spawns.
    let _runtime = pyo3_async_runtimes::tokio::get_runtime().enter();
    drop(run);
}

impl Drop for DriverState {
    fn drop(&mut self) {
        if let Some(run) = self.run.take() {
            drop_in_runtime(run);
        }
    }
}

#[pymethods]
impl RunDriver {
    fn __await__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.state()?.step(py)
    }

    fn send(&self, py: Python<'_>, _value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.state()?.step(py)
    }

    /// A `CancelledError` cancels the run, which goes on until it is
    /// recorded as cancelled; any other exception drops the run.
    #[pyo3(signature = (typ, val = None, _tb = None))]
    fn throw(
        &self,
        py: Python<'_>,
        typ: &Bound<'_, PyAny>,
        val: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let err = if typ.is_instance_of::<PyBaseException>() {
            PyErr::from_value(typ.clone())
        } else {
            match val {
                Some(v) if v.is_instance(typ)? => PyErr::from_value(v.clone()),
                Some(v) if !v.is_none() => PyErr::from_value(typ.call1((v,))?),
                _ => PyErr::from_value(typ.call0()?),
            }
        };
        let mut state = self.state()?;
        if state.run.is_some() && err.is_instance_of::<CancelledError>(py) {
            // A repeated cancellation changes nothing: the run is ending.
            state.cancelled = Some(err);
            state.cancel.cancel();
            return state.step(py);
        }
        state.drop_run(py);
        Err(err)
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.state()?.drop_run(py);
        Ok(())
    }
}
