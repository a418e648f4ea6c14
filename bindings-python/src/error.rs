//! Errors crossing into Python: one extension trait turns every core error
//! into the matching `orchestra.OrchestraError` subclass, carrying the core's
//! stable `code`.
//!
//! The class for a code is chosen in one place, `orchestra._errors._from_info`,
//! which also builds the error of a failed run (`RunResult.raise_for_status`),
//! so both paths raise the same exception for the same code.

use orchestra_core::{ErrorInfo, OrchestraError, StoreError};
use pyo3::{exceptions::PyRuntimeError, prelude::*, sync::PyOnceLock};

static FROM_INFO: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Converts core results into Python results.
pub(crate) trait PyResultExt<T> {
    fn into_py_result(self) -> PyResult<T>;
}

impl<T> PyResultExt<T> for Result<T, OrchestraError> {
    fn into_py_result(self) -> PyResult<T> {
        self.map_err(|e| info_to_py(&e.info()))
    }
}

impl<T> PyResultExt<T> for Result<T, StoreError> {
    fn into_py_result(self) -> PyResult<T> {
        self.map_err(|e| info_to_py(&OrchestraError::from(e).info()))
    }
}

impl<T> PyResultExt<T> for Result<T, serde_json::Error> {
    fn into_py_result(self) -> PyResult<T> {
        self.map_err(|e| {
            info_to_py(&ErrorInfo {
                code: "invalid_request".to_owned(),
                message: format!("invalid JSON: {e}"),
                agent: None,
            })
        })
    }
}

/// The Python exception for an error summary.
pub(crate) fn info_to_py(info: &ErrorInfo) -> PyErr {
    Python::attach(|py| {
        let made = FROM_INFO
            .import(py, "orchestra._errors", "_from_info")
            .and_then(|f| f.call1((&info.code, &info.message, info.agent.as_deref())));
        match made {
            Ok(exc) => PyErr::from_value(exc),
            // The facade is missing or broken: still say what went wrong.
            Err(e) => PyRuntimeError::new_err(format!(
                "{}: {} (and the error could not be mapped: {e})",
                info.code, info.message
            )),
        }
    })
}

/// An error that did not come from the core (e.g. a run that ended without a
/// result), in the same tree.
pub(crate) fn orchestra_error(code: &str, message: impl Into<String>) -> PyErr {
    info_to_py(&ErrorInfo {
        code: code.to_owned(),
        message: message.into(),
        agent: None,
    })
}
