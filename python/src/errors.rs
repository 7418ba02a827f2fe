//! Rust errors as Python exceptions, and the fence that keeps Rust panics out of Python.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::PyErr;

create_exception!(
    pngcast,
    Error,
    PyException,
    "pngcast's own failures: an internal error (a bug, reported instead of crashing the \
     interpreter) or a server that could not be started or refused a frame. Bad arguments raise \
     TypeError or ValueError instead."
);

/// A core error (bad shape, size, option, text) is the caller's input: `ValueError`.
pub fn core_to_py(e: pngcast_core::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// A protocol error (a server configuration out of range, an encoder option) is the caller's
/// input too: `ValueError`.
pub fn protocol_to_py(e: pngcast_protocol::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// Runs `f`, turning a panic into `pngcast.Error` so that it never unwinds into Python.
pub fn fenced<T>(what: &str, f: impl FnOnce() -> Result<T, PyErr>) -> Result<T, PyErr> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(Error::new_err(format!(
                "internal error in {what}: {msg} (please report this)"
            )))
        }
    }
}
