//! The Python faces' two conversions, each written once: a panic caught
//! before it unwinds into CPython (or a C caller of the exchange API), and
//! a library error turned into the Python exception, in the Python
//! package's words (`null_value=`, `copy=False`, `arrow_dlpack.to_jagged`).

use std::panic::{AssertUnwindSafe, catch_unwind};

use pyo3::PyErr;
use pyo3::exceptions::PyBufferError;

use crate::error::{Error, Face};

/// Runs `body`; a panic becomes `panicked()`'s failure instead of
/// unwinding out of the extension.
pub(super) fn guarded<T, E>(
    body: impl FnOnce() -> Result<T, E>,
    panicked: impl FnOnce() -> E,
) -> Result<T, E> {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| Err(panicked()))
}

/// The failure of a panic, as a Python exception.
pub(super) fn panic_error(what: &str) -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err(format!("panic in {what}; please report this bug"))
}

/// A library error as the array API reports DLPack failures: `BufferError`
/// with the library's message, in the Python package's words.
pub(super) fn buffer_error(error: Error) -> PyErr {
    PyBufferError::new_err(error.message_for(Face::Python))
}
