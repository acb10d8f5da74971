//! The package's named tuples (`arrow_dlpack.Jagged`, `arrow_dlpack.Padded`),
//! made here, where the tensors are: a `typing.NamedTuple`'s own `__new__`
//! (a Python frame) or `tuple.__new__(Jagged, t)` (a call, an argument
//! tuple and a copy of it) cost as much as the rest of a small `to_jagged`.
//!
//! A named tuple is a tuple subclass adding no field to its instances: one
//! is allocated as `tuple.__new__` allocates it (the class's `tp_alloc`
//! with the item count) and its items set in place, as a new tuple's are.
//! The classes are checked to be so when first found.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyTuple, PyType};

/// A named tuple class of the package, found once it is imported.
struct Class {
    class: Py<PyType>,
    /// The class's `tp_alloc`.
    alloc: ffi::allocfunc,
}

static JAGGED: PyOnceLock<Class> = PyOnceLock::new();
static PADDED: PyOnceLock<Class> = PyOnceLock::new();

/// `arrow_dlpack.<name>` and how to make its instances.
fn find(py: Python<'_>, name: &str) -> PyResult<Class> {
    let class = py
        .import("arrow_dlpack")?
        .getattr(name)?
        .cast_into::<PyType>()?;
    let tuple = py.get_type::<PyTuple>();
    // A plain subclass: a tuple's instance size (no `__dict__`, no slot).
    let plain = class.is_subclass(&tuple)?
        && class
            .getattr("__basicsize__")?
            .eq(tuple.getattr("__basicsize__")?)?;
    // SAFETY: a live type object; a class made by a `class` statement is
    // a heap type, whose slots `PyType_GetSlot` reads on every supported
    // Python (3.9 included).
    let slot = unsafe { ffi::PyType_GetSlot(class.as_ptr().cast(), ffi::Py_tp_alloc) };
    if !plain || slot.is_null() {
        return Err(PyTypeError::new_err(format!(
            "arrow_dlpack.{name} is not a named tuple (a tuple subclass without fields of its own)"
        )));
    }
    Ok(Class {
        class: class.unbind(),
        // SAFETY: the `tp_alloc` slot holds an `allocfunc`.
        alloc: unsafe { std::mem::transmute::<*mut std::ffi::c_void, ffi::allocfunc>(slot) },
    })
}

/// `Jagged(values, offsets, validity)`.
pub(super) fn jagged<'py>(
    py: Python<'py>,
    items: [Bound<'py, PyAny>; 3],
) -> PyResult<Bound<'py, PyAny>> {
    make(
        py,
        JAGGED.get_or_try_init(py, || find(py, "Jagged"))?,
        items,
    )
}

/// `Padded(values, mask)`.
pub(super) fn padded<'py>(
    py: Python<'py>,
    items: [Bound<'py, PyAny>; 2],
) -> PyResult<Bound<'py, PyAny>> {
    make(
        py,
        PADDED.get_or_try_init(py, || find(py, "Padded"))?,
        items,
    )
}

/// An instance of `class` holding `items`.
fn make<'py, const N: usize>(
    py: Python<'py>,
    class: &Class,
    items: [Bound<'py, PyAny>; N],
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: the class's allocator, with the tuple's item count: a new,
    // zeroed instance (NULL items) of one reference, or NULL with an
    // exception set.
    let tuple = unsafe { (class.alloc)(class.class.as_ptr().cast(), N as ffi::Py_ssize_t) };
    if tuple.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: a new reference, owned here.
    let tuple = unsafe { Bound::from_owned_ptr(py, tuple) };
    for (i, item) in items.into_iter().enumerate() {
        // SAFETY: a tuple (subclass) of one reference and `N` items, `i`
        // among them; `SetItem` steals the item's reference (and drops it
        // on failure).
        if unsafe { ffi::PyTuple_SetItem(tuple.as_ptr(), i as ffi::Py_ssize_t, item.into_ptr()) }
            != 0
        {
            return Err(PyErr::fetch(py));
        }
    }
    Ok(tuple)
}
