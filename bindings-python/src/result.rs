//! [`PyRunResult`]: a finished run's result as handed to Python.

use std::sync::Arc;

use orchestra_core::RunResult;
use pyo3::prelude::*;

/// A run's result: its ids, status and output at once, the whole record as
/// JSON only when Python reads more (most callers read the output and the
/// status; encoding and decoding every step is most of what a short run
/// costs after the core).
#[pyclass(frozen, name = "RunOutcome", module = "orchestra._orchestra")]
pub(crate) struct PyRunResult(Arc<RunResult>);

impl PyRunResult {
    pub(crate) fn new(result: Arc<RunResult>) -> Self {
        Self(result)
    }
}

#[pymethods]
impl PyRunResult {
    #[getter]
    fn run_id(&self) -> &str {
        &self.0.run_id
    }

    #[getter]
    fn session_id(&self) -> &str {
        &self.0.session_id
    }

    #[getter]
    fn status(&self) -> &'static str {
        self.0.status.as_str()
    }

    #[getter]
    fn output(&self) -> Option<&str> {
        self.0.output.as_deref()
    }

    /// The whole record as the core's JSON.
    fn json(&self) -> PyResult<String> {
        serde_json::to_string(&*self.0).map_err(|e| {
            pyo3::exceptions::PyValueError::new_err(format!("run result not encodable: {e}"))
        })
    }
}
