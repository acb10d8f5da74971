//! `DLPackExporter.__dlpack__` and `to_dlpack` as vectorcall functions, on
//! Python 3.10 and later.
//!
//! The extension is built for the stable ABI of Python 3.9 (one wheel for
//! every CPython >= 3.9), where functions receive their arguments as a
//! tuple and their keywords as a dict (`METH_VARARGS | METH_KEYWORDS`):
//! `METH_FASTCALL` joined the stable ABI in 3.10. Every DLPack consumer
//! calls `__dlpack__` with keywords (`max_version=...`), and building,
//! parsing and freeing that dict is a large part of
//! `np.from_dlpack(to_dlpack(a))` (docs/benchmarks.md, "Measured
//! decisions"). So when the running Python is 3.10 or
//! later, module initialization replaces both with `METH_FASTCALL |
//! METH_KEYWORDS` ones: keyword names are matched by pointer against the
//! interned names (CPython and NumPy intern them), else by value; the work
//! is the same functions' as the PyO3 ones', which 3.9 keeps.

use std::ffi::{CStr, c_int};

use pyo3::Borrowed;
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyString;

use super::exporter::{DLPackExporter, to_dlpack};
use super::guard::{guarded, panic_error};

/// `METH_FASTCALL | METH_KEYWORDS` (CPython's values; the constants are
/// not exposed for the 3.9 stable ABI, though 3.9's interpreter has them).
const METH_FASTCALL_KEYWORDS: c_int = 0x0080 | 0x0002;

/// The vectorcall signature CPython calls with those flags.
type FastWithKeywords = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    ffi::Py_ssize_t,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

/// Installs the vectorcall `__dlpack__` on the exporter type and
/// `to_dlpack` in the module, when the running Python has the calling
/// convention in its stable ABI.
pub(super) fn install(py: Python<'_>, module: &Bound<'_, PyModule>) -> PyResult<()> {
    if py.version_info() < (3, 10) {
        return Ok(());
    }
    let kind = py.get_type::<DLPackExporter>();
    let def = method_def(c"__dlpack__", fast_dlpack, &kind.getattr("__dlpack__")?)?;
    // SAFETY: a live type and a definition that outlives the descriptor;
    // NewMethod returns a new reference or NULL with an exception set.
    let descriptor = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(kind.as_ptr().cast(), def))
    }?;
    kind.setattr("__dlpack__", descriptor)?;
    let def = method_def(c"to_dlpack", fast_to_dlpack, &module.getattr("to_dlpack")?)?;
    // SAFETY: as above; a builtin function bound to the module.
    let function = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyCFunction_NewEx(def, module.as_ptr(), module.name()?.as_ptr()),
        )
    }?;
    module.setattr("to_dlpack", function)
}

/// A method definition of a vectorcall function, with the documentation
/// of the function it replaces. It lives as long as what is made of it:
/// for the process (module initialization runs once per interpreter).
fn method_def(
    name: &'static CStr,
    function: FastWithKeywords,
    replaced: &Bound<'_, PyAny>,
) -> PyResult<*mut ffi::PyMethodDef> {
    // CPython reads a signature from a docstring that starts with
    // `name(...)` and a `--` line: the replaced function's, kept.
    let doc: Option<String> = replaced.getattr("__doc__")?.extract()?;
    let signature: Option<String> = replaced.getattr("__text_signature__")?.extract()?;
    let doc = match signature {
        Some(signature) => format!(
            "{}{signature}\n--\n\n{}",
            name.to_string_lossy(),
            doc.unwrap_or_default()
        ),
        None => doc.unwrap_or_default(),
    };
    let doc = std::ffi::CString::new(doc).ok();
    // SAFETY: a function pointer reinterpreted as the field's type; CPython
    // calls it with the signature the flags name, which is its own.
    let function = unsafe { std::mem::transmute::<FastWithKeywords, ffi::PyCFunction>(function) };
    Ok(Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunction: function,
        },
        ml_flags: METH_FASTCALL_KEYWORDS,
        ml_doc: doc.map_or(std::ptr::null(), |d| {
            Box::leak(d.into_boxed_c_str()).as_ptr()
        }),
    })))
}

/// Runs a vectorcall function's body: its error restored as the Python
/// exception, a panic caught.
///
/// CPython calls these functions with the thread attached (holding the
/// GIL), so the body runs on `Python::assume_attached` rather than
/// `Python::attach`: PyO3 was not told (its attach, from a function PyO3
/// did not wrap, is a `PyGILState_Ensure`/`Release` pair, a tenth of the
/// exporter's own time). The cost of not telling it: a `Py<T>` dropped in
/// the body would be queued for PyO3's pool rather than released, so the
/// bodies drop none on their common paths (the exporter holds [`Held`]
/// references; protocol probes make no `PyErr`).
///
/// [`Held`]: super::Held
fn vectorcall(
    body: impl for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyAny>>,
) -> *mut ffi::PyObject {
    // SAFETY: called by CPython (a METH_FASTCALL function), attached.
    let py = unsafe { Python::assume_attached() };
    match guarded(|| body(py), || panic_error("arrow_dlpack")) {
        Ok(result) => result.into_ptr(),
        Err(e) => {
            e.restore(py);
            std::ptr::null_mut()
        }
    }
}

/// The keyword arguments of a vectorcall, by position in `names`: `None`
/// for those not given (or given None); borrowed from the call.
///
/// # Safety
/// `args` holds `nargs` positional values followed by one value per name
/// in `kwnames` (NULL or a tuple of str), as vectorcall passes them.
unsafe fn keywords<'a, 'py, const N: usize>(
    py: Python<'py>,
    function: &str,
    names: [&Bound<'py, PyString>; N],
    args: *const *mut ffi::PyObject,
    nargs: usize,
    kwnames: *mut ffi::PyObject,
) -> PyResult<[Option<Borrowed<'a, 'py, PyAny>>; N]> {
    let mut values = [None; N];
    if kwnames.is_null() {
        return Ok(values);
    }
    // SAFETY: the keyword names, a tuple CPython holds for the call.
    let count = unsafe { ffi::PyTuple_Size(kwnames) };
    for i in 0..count.max(0) {
        // SAFETY: an index in range of a live tuple: a borrowed item.
        let name = unsafe { Borrowed::from_ptr(py, ffi::PyTuple_GetItem(kwnames, i)) };
        // By pointer for the interned names callers pass, else by value.
        let found = match names.iter().position(|n| n.as_ptr() == name.as_ptr()) {
            Some(found) => Some(found),
            None => {
                let name = name.cast::<PyString>()?;
                let text = name.to_cow()?;
                names
                    .iter()
                    .position(|n| n.to_cow().is_ok_and(|n| n == text))
            }
        };
        let Some(found) = found else {
            return Err(PyTypeError::new_err(format!(
                "{function}() got an unexpected keyword argument {}",
                name.repr()?
            )));
        };
        // SAFETY: the value of keyword `i` (the caller's contract),
        // borrowed for the call.
        let value = unsafe { Borrowed::from_ptr(py, *args.add(nargs + i as usize)) };
        values[found] = (!value.is_none()).then_some(value);
    }
    Ok(values)
}

/// `max_version` as `(major, minor)`: a tuple of two small ints, what
/// every consumer passes, read directly; anything else through PyO3's
/// extraction, with its errors.
fn version(value: Borrowed<'_, '_, PyAny>) -> PyResult<(u32, u32)> {
    let small = |item: *mut ffi::PyObject| {
        // SAFETY: a live object (a tuple item); CheckExact reads its type,
        // AsLong cannot fail on an exact int (overflow: -1 with an error,
        // cleared, and the value refused).
        unsafe {
            if ffi::PyLong_CheckExact(item) == 0 {
                return None;
            }
            let n = ffi::PyLong_AsLong(item);
            if n == -1 && !ffi::PyErr_Occurred().is_null() {
                ffi::PyErr_Clear();
            }
            u32::try_from(n).ok()
        }
    };
    let tuple = value.as_ptr();
    // SAFETY: a live object; the items of a 2-tuple are borrowed from it.
    let fast = unsafe {
        if ffi::PyTuple_CheckExact(tuple) != 0 && ffi::PyTuple_Size(tuple) == 2 {
            small(ffi::PyTuple_GetItem(tuple, 0)).zip(small(ffi::PyTuple_GetItem(tuple, 1)))
        } else {
            None
        }
    };
    match fast {
        Some(version) => Ok(version),
        None => value.extract(),
    }
}

/// The vectorcall `DLPackExporter.__dlpack__`.
unsafe extern "C" fn fast_dlpack(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    vectorcall(|py| {
        if nargs != 0 {
            return Err(PyTypeError::new_err(
                "__dlpack__() takes no positional arguments",
            ));
        }
        let names = [
            intern!(py, "stream"),
            intern!(py, "max_version"),
            intern!(py, "dl_device"),
            intern!(py, "copy"),
        ];
        // SAFETY: vectorcall's arguments, as CPython passes them.
        let [stream, max_version, dl_device, copy] =
            unsafe { keywords(py, "__dlpack__", names, args, 0, kwnames) }?;
        let max_version = max_version.map(version).transpose()?;
        let dl_device = dl_device.map(|v| v.extract()).transpose()?;
        let copy = copy.map(|v| v.extract::<bool>()).transpose()?;
        // SAFETY: `self`, a live object of the method's type (or a
        // subclass: the descriptor checks), borrowed for the call.
        let slf = unsafe { Borrowed::from_ptr(py, slf) };
        let mut exporter = slf.cast::<DLPackExporter>()?.try_borrow_mut()?;
        let stream = stream.map(|s| s.to_owned());
        exporter.__dlpack__(py, stream, max_version, dl_device, copy)
    })
}

/// The vectorcall `to_dlpack`.
unsafe extern "C" fn fast_to_dlpack(
    _module: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    vectorcall(|py| {
        if nargs != 1 {
            return Err(PyTypeError::new_err(format!(
                "to_dlpack() takes 1 positional argument, {nargs} given"
            )));
        }
        let names = [
            intern!(py, "order"),
            intern!(py, "null_value"),
            intern!(py, "dtype"),
            intern!(py, "temporal_as_int"),
            intern!(py, "dictionary_as_indices"),
        ];
        // SAFETY: vectorcall's arguments, as CPython passes them.
        let [order, null_value, dtype, temporal, indices] =
            unsafe { keywords(py, "to_dlpack", names, args, 1, kwnames) }?;
        // SAFETY: the one positional argument, borrowed for the call.
        let obj = unsafe { Borrowed::from_ptr(py, *args) };
        let null_value = null_value.map(|v| v.extract::<f64>()).transpose()?;
        let flag = |v: Option<Borrowed<'_, '_, PyAny>>| -> PyResult<bool> {
            Ok(v.map(|v| v.extract::<bool>()).transpose()?.unwrap_or(false))
        };
        let exporter = to_dlpack(
            &obj,
            order.as_deref(),
            null_value,
            dtype.as_deref(),
            flag(temporal)?,
            flag(indices)?,
        )?;
        Ok(exporter.into_any())
    })
}
