//! Python bindings of orchestra-core, imported as `orchestra`.
//!
//! This crate is the private native module `orchestra._orchestra`; the
//! public API is the pure-Python facade in `python/orchestra`, which turns
//! Python functions into agents and core JSON into typed objects.
//!
//! - [`orchestrator`]: the native `Orchestrator` and `RunHandle`.
//! - [`agent`]: Python callables as core agents, managers and planners.
//! - [`driver`]: `await orch.run(...)` polls the run on the caller's loop thread.
//! - [`bridge`]: how a Python call runs (right there, the blocking pool, or the caller's loop).
//! - [`result`]: a run's result, encoded as JSON only when Python reads more than its outline.
//! - [`store`]: memory and Redis session stores.
//! - `remote`: the core's HTTP, OpenAI-compatible and A2A agents (feature `http-agents`).
//! - `queue`: queue agents and `serve_agent` workers (features `redis` / `nats`).
//! - [`future`]: Rust futures as asyncio futures, safe at interpreter exit.
//! - [`error`]: core errors as `orchestra.OrchestraError` subclasses.
//!
//! ```text
//! import orchestra
//! orch = orchestra.Orchestrator()
//! orch.add_agent("echo", lambda inp: inp.task)
//! result = orch.run_sync("sequential", "hello", agents=["echo"])
//! assert result.output == "hello"
//! ```

mod agent;
mod bridge;
mod driver;
mod error;
mod future;
mod orchestrator;
#[cfg(any(feature = "redis", feature = "nats"))]
mod queue;
#[cfg(feature = "http-agents")]
mod remote;
mod result;
mod store;

use pyo3::prelude::*;

/// The five patterns with their descriptions and options' JSON schema (JSON).
#[pyfunction]
fn patterns() -> PyResult<String> {
    use error::PyResultExt;
    serde_json::to_string(&orchestra_core::pattern::catalog()).into_py_result()
}

#[pymodule]
fn _orchestra(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<orchestrator::PyOrchestrator>()?;
    m.add_class::<orchestrator::RunHandle>()?;
    m.add_class::<result::PyRunResult>()?;
    m.add_class::<store::PyStore>()?;
    m.add_class::<bridge::PyAgentContext>()?;
    m.add_function(wrap_pyfunction!(patterns, m)?)?;
    m.add_function(wrap_pyfunction!(future::shutdown, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("EVENT_SCHEMA_VERSION", orchestra_core::EVENT_SCHEMA_VERSION)?;
    m.add("HAS_REDIS", cfg!(feature = "redis"))?;
    m.add("HAS_HTTP_AGENTS", cfg!(feature = "http-agents"))?;
    m.add("HAS_NATS", cfg!(feature = "nats"))?;
    #[cfg(any(feature = "redis", feature = "nats"))]
    {
        m.add_class::<queue::AgentWorker>()?;
        m.add_function(wrap_pyfunction!(queue::serve_agent, m)?)?;
    }
    Ok(())
}
