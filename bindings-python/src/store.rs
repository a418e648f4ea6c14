//! Session stores: where an orchestrator keeps its sessions.

use std::{sync::Arc, time::Duration};

use orchestra_core::{
    MemoryStore, SessionStore,
    session::{MemoryStoreConfig, Page},
};
use pyo3::{exceptions::PyValueError, prelude::*};

use crate::error::PyResultExt;

/// A session store, shared by the orchestrators it is given to.
#[pyclass(frozen, name = "Store", module = "orchestra._orchestra")]
pub(crate) struct PyStore {
    pub(crate) inner: Arc<dyn SessionStore>,
    kind: &'static str,
}

fn ttl_from(ttl_seconds: Option<f64>) -> PyResult<Option<Duration>> {
    match ttl_seconds {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(PyValueError::new_err(format!(
            "ttl_seconds must be a positive number or None, got {s}"
        ))),
    }
}

#[pymethods]
impl PyStore {
    /// Sessions in this process, with idle expiry and LRU eviction.
    #[staticmethod]
    #[pyo3(signature = (ttl_seconds = Some(86400.0), max_sessions = 10_000))]
    fn memory(ttl_seconds: Option<f64>, max_sessions: usize) -> PyResult<Self> {
        let config = MemoryStoreConfig {
            ttl: ttl_from(ttl_seconds)?,
            max_sessions,
        };
        Ok(Self {
            inner: Arc::new(MemoryStore::with_config(config)),
            kind: "memory",
        })
    }

    /// Sessions in Redis. Connects on first use.
    #[cfg(feature = "redis")]
    #[staticmethod]
    #[pyo3(signature = (url, prefix = "orchestra", ttl_seconds = Some(86400.0)))]
    fn redis(url: &str, prefix: &str, ttl_seconds: Option<f64>) -> PyResult<Self> {
        let config = orchestra_core::session::RedisStoreConfig::default()
            .prefix(prefix)
            .ttl(ttl_from(ttl_seconds)?);
        let _runtime = pyo3_async_runtimes::tokio::get_runtime().enter();
        let store =
            orchestra_core::session::RedisStore::connect_lazy(url, config).into_py_result()?;
        Ok(Self {
            inner: Arc::new(store),
            kind: "redis",
        })
    }

    /// Sessions in Redis; the returned awaitable fails if Redis does not answer.
    #[cfg(feature = "redis")]
    #[staticmethod]
    #[pyo3(signature = (url, prefix = String::from("orchestra"), ttl_seconds = Some(86400.0)))]
    fn connect_redis<'py>(
        py: Python<'py>,
        url: String,
        prefix: String,
        ttl_seconds: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let config = orchestra_core::session::RedisStoreConfig::default()
            .prefix(prefix)
            .ttl(ttl_from(ttl_seconds)?);
        crate::future::into_py_future(py, async move {
            let store = orchestra_core::session::RedisStore::connect(&url, config)
                .await
                .into_py_result()?;
            Ok(Self {
                inner: Arc::new(store),
                kind: "redis",
            })
        })
    }

    #[getter]
    fn kind(&self) -> &'static str {
        self.kind
    }

    /// Summaries of stored sessions (JSON list), most recently updated first.
    #[pyo3(signature = (offset = 0, limit = 50))]
    fn list<'py>(
        &self,
        py: Python<'py>,
        offset: usize,
        limit: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = Arc::clone(&self.inner);
        crate::future::into_py_future(py, async move {
            let list = store.list(Page { offset, limit }).await.into_py_result()?;
            serde_json::to_string(&list).into_py_result()
        })
    }

    fn __repr__(&self) -> String {
        format!("Store(kind={:?})", self.kind)
    }
}
