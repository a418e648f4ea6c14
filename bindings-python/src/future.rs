//! Rust futures as asyncio futures, safe at interpreter exit.
//!
//! A native call returns an asyncio future created on the caller's loop; the
//! Rust work runs on the shared Tokio runtime and its result is handed to the
//! loop with `call_soon_threadsafe` from a blocking-pool thread. Cancelling
//! the asyncio future drops the Rust future.
//!
//! Handing over a result briefly makes a native thread run Python code. If
//! the interpreter finalized at that moment, CPython would end that thread
//! with `pthread_exit`, which aborts a Rust thread. So every such hand-over
//! is counted, and [`shutdown`] (registered with `atexit` by the package)
//! stops new ones and waits for those in flight before finalization starts.

use std::{
    future::Future,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use pyo3::{IntoPyObjectExt, prelude::*, sync::PyOnceLock};
use tokio::sync::oneshot;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static CLOSING: AtomicBool = AtomicBool::new(false);
/// `orchestra._bridge.set_future(fut, ok, value)`: resolves an asyncio future on its loop.
pub(crate) static SET_FUTURE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Runs `f` with the GIL from a native thread, unless the interpreter is
/// shutting down (then `None`).
pub(crate) fn attach_counted<R>(f: impl FnOnce(Python<'_>) -> R) -> Option<R> {
    IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    let out = if CLOSING.load(Ordering::SeqCst) {
        None
    } else {
        Some(Python::attach(f))
    };
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    out
}

/// Stops native threads from entering Python and waits (without the GIL,
/// at most `timeout_ms`) for those inside. Called at exit.
#[pyfunction]
#[pyo3(signature = (timeout_ms = 2000))]
pub(crate) fn shutdown(py: Python<'_>, timeout_ms: u64) -> bool {
    CLOSING.store(true, Ordering::SeqCst);
    py.detach(|| {
        let until = Instant::now() + Duration::from_millis(timeout_ms);
        while IN_FLIGHT.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= until {
                return false;
            }
            std::thread::yield_now();
        }
        true
    })
}

/// Drops the Rust future when the asyncio future is cancelled.
#[pyclass(frozen, module = "orchestra._orchestra")]
struct OnDone {
    tx: Mutex<Option<oneshot::Sender<()>>>,
}

#[pymethods]
impl OnDone {
    fn __call__(&self, fut: &Bound<'_, PyAny>) -> PyResult<()> {
        if fut.call_method0("cancelled")?.extract::<bool>()? {
            let tx = match self.tx.lock() {
                Ok(mut g) => g.take(),
                Err(p) => p.into_inner().take(),
            };
            if let Some(tx) = tx {
                let _ = tx.send(());
            }
        }
        Ok(())
    }
}

/// Runs `fut` on the shared runtime; the returned asyncio future (of the
/// running loop) resolves to its output.
pub(crate) fn into_py_future<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let event_loop = pyo3_async_runtimes::get_running_loop(py)?;
    let py_fut = event_loop.call_method0("create_future")?;
    let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
    py_fut.call_method1(
        "add_done_callback",
        (OnDone {
            tx: Mutex::new(Some(cancel_tx)),
        },),
    )?;
    let target = py_fut.clone().unbind();
    let event_loop = event_loop.unbind();
    pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
        let cancelled = async {
            if cancel_rx.await.is_err() {
                // Done without being cancelled: never fire.
                std::future::pending::<()>().await;
            }
        };
        let result = tokio::select! {
            r = fut => r,
            () = cancelled => return,
        };
        tokio::task::spawn_blocking(move || {
            attach_counted(|py| deliver(py, &event_loop, &target, result));
        });
    });
    Ok(py_fut)
}

fn deliver<T>(py: Python<'_>, event_loop: &Py<PyAny>, target: &Py<PyAny>, result: PyResult<T>)
where
    T: for<'a> IntoPyObject<'a>,
{
    let (ok, value) = match result.and_then(|v| v.into_py_any(py)) {
        Ok(v) => (true, v),
        Err(e) => (false, e.into_value(py).into_any()),
    };
    let sent = SET_FUTURE
        .import(py, "orchestra._bridge", "set_future")
        .and_then(|set| {
            event_loop.call_method1(py, "call_soon_threadsafe", (set, target, ok, value))
        });
    if let Err(e) = sent {
        // The loop is closed: nobody is waiting any more.
        if !e.is_instance_of::<pyo3::exceptions::PyRuntimeError>(py) {
            e.write_unraisable(py, None);
        }
    }
}
