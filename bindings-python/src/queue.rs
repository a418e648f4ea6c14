//! Queue agents and workers (features `redis` / `nats`): an agent answered by workers
//! behind Redis Streams or NATS, and a Python function served as such a
//! worker (`orchestra.serve_agent`).
//!
//! A served coroutine function runs on the event loop that called
//! `serve_agent`, like the agents of a run started on that loop.

use std::{sync::Mutex, time::Duration};

use async_trait::async_trait;
use orchestra_core::{
    Agent, AgentContext, AgentError, AgentInput, AgentOutput, ErrorInfo, Orchestrator,
    agents::queue::{QueueAgent, QueueAgentError, QueueConfig, QueueTransport},
    worker::{Worker, WorkerError, WorkerHandle},
};
use pyo3::{exceptions::PyRuntimeError, prelude::*};
use pyo3_async_runtimes::TaskLocals;
use tokio_util::sync::CancellationToken;

use crate::{
    agent::PyAgent,
    bridge::{PyCallback, on_loop},
    error::info_to_py,
};

fn queue_error(e: &QueueAgentError) -> PyErr {
    info_to_py(&ErrorInfo {
        code: e.code().to_owned(),
        message: e.to_string(),
        agent: None,
    })
}

fn worker_error(e: &WorkerError) -> PyErr {
    info_to_py(&ErrorInfo {
        code: e.code().to_owned(),
        message: e.to_string(),
        agent: None,
    })
}

fn config(prefix: Option<String>, jetstream: bool, claim_idle_ms: Option<u64>) -> QueueConfig {
    let mut config = QueueConfig::default().jetstream(jetstream);
    if let Some(prefix) = prefix {
        config = config.prefix(prefix);
    }
    if let Some(ms) = claim_idle_ms {
        config = config.claim_idle(Duration::from_millis(ms));
    }
    config
}

/// Registers a queue agent; resolves once its transport is connected.
#[allow(clippy::too_many_arguments)]
pub(crate) fn add_queue_agent<'py>(
    orch: &Orchestrator,
    py: Python<'py>,
    name: String,
    transport: String,
    description: String,
    timeout_ms: Option<u64>,
    prefix: Option<String>,
    jetstream: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let orch = orch.clone();
    let config = config(prefix, jetstream, None);
    crate::future::into_py_future(py, async move {
        let transport = QueueTransport::connect(&transport, config)
            .await
            .map_err(|e| queue_error(&e))?;
        let mut b = QueueAgent::builder(name, transport).description(description);
        if let Some(ms) = timeout_ms {
            b = b.timeout(Duration::from_millis(ms));
        }
        orch.register(b.build().map_err(|e| queue_error(&e))?);
        Ok(())
    })
}

/// A Python agent whose calls run with the serving event loop in scope
/// (workers run each request on a task of their own, outside any run).
struct OnLoopAgent {
    inner: PyAgent,
    locals: TaskLocals,
}

#[async_trait]
impl Agent for OnLoopAgent {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn description(&self) -> &str {
        self.inner.description()
    }

    async fn invoke(
        &self,
        input: AgentInput,
        ctx: AgentContext,
    ) -> Result<AgentOutput, AgentError> {
        let locals = self.locals.clone();
        on_loop(locals, self.inner.invoke(input, ctx)).await
    }
}

/// Serves a wrapped agent callable on a queue; resolves to an
/// [`AgentWorker`] once the worker receives requests.
#[pyfunction]
#[pyo3(signature = (
    name, description, call, is_async, transport,
    prefix = None, jetstream = false, claim_idle_ms = None,
    registry_url = None, registry_prefix = None
))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn serve_agent<'py>(
    py: Python<'py>,
    name: String,
    description: String,
    call: Py<PyAny>,
    is_async: bool,
    transport: String,
    prefix: Option<String>,
    jetstream: bool,
    claim_idle_ms: Option<u64>,
    registry_url: Option<String>,
    registry_prefix: Option<String>,
) -> PyResult<Bound<'py, PyAny>> {
    let locals = TaskLocals::with_running_loop(py)
        .map_err(|_| PyRuntimeError::new_err("no running event loop: call this from async code"))?
        .copy_context(py)?;
    let agent = OnLoopAgent {
        inner: PyAgent::new(name, description, PyCallback::new(call, is_async)),
        locals,
    };
    let config = config(prefix, jetstream, claim_idle_ms);
    crate::future::into_py_future(py, async move {
        let transport = QueueTransport::connect(&transport, config)
            .await
            .map_err(|e| queue_error(&e))?;
        let mut worker = Worker::new(agent, transport);
        if let Some(url) = registry_url {
            worker = register(worker, &url, registry_prefix).await?;
        }
        let stop = CancellationToken::new();
        let handle = worker
            .start(stop.clone())
            .await
            .map_err(|e| worker_error(&e))?;
        Ok(AgentWorker {
            id: handle.id().to_owned(),
            stop,
            handle: Mutex::new(Some(handle)),
        })
    })
}

#[cfg(feature = "redis")]
async fn register(worker: Worker, url: &str, prefix: Option<String>) -> PyResult<Worker> {
    use crate::error::PyResultExt;
    use orchestra_core::{RedisStore, RedisStoreConfig, discovery::RedisAgentRegistry};
    let store = RedisStore::connect(
        url,
        RedisStoreConfig::default().prefix(prefix.unwrap_or_else(|| "orchestra".into())),
    )
    .await
    .into_py_result()?;
    Ok(worker.register(RedisAgentRegistry::new(&store, Duration::from_secs(15))))
}

#[cfg(not(feature = "redis"))]
async fn register(_: Worker, _: &str, _: Option<String>) -> PyResult<Worker> {
    Err(PyRuntimeError::new_err(
        "this build of orchestra has no Redis support for registry_url",
    ))
}

/// A running queue worker.
#[pyclass(frozen, module = "orchestra._orchestra")]
pub(crate) struct AgentWorker {
    id: String,
    stop: CancellationToken,
    handle: Mutex<Option<WorkerHandle>>,
}

impl AgentWorker {
    fn take(&self) -> Option<WorkerHandle> {
        match self.handle.lock() {
            Ok(mut h) => h.take(),
            Err(p) => p.into_inner().take(),
        }
    }
}

#[pymethods]
impl AgentWorker {
    /// The worker's consumer name on the queue.
    #[getter]
    fn id(&self) -> String {
        self.id.clone()
    }

    /// Stops taking requests; resolves once the request in flight is answered.
    fn stop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.stop.cancel();
        self.wait(py)
    }

    /// Resolves when the worker has stopped (after `stop`, or a failure).
    fn wait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.take();
        crate::future::into_py_future(py, async move {
            if let Some(h) = handle {
                h.join().await.map_err(|e| worker_error(&e))?;
            }
            Ok(())
        })
    }

    /// Ends the worker at once without answering the request in flight, as
    /// a crashed process would; another worker takes the request over.
    fn abort(&self) {
        if let Some(h) = self.take() {
            h.abort();
        }
    }

    #[getter]
    fn running(&self) -> bool {
        match self.handle.lock() {
            Ok(h) => h.as_ref().is_some_and(|h| !h.is_finished()),
            Err(p) => p.into_inner().as_ref().is_some_and(|h| !h.is_finished()),
        }
    }
}
