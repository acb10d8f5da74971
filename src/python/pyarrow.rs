//! pyarrow's arrays exported by pyarrow's own pointer export,
//! `Array._export_to_c_device(array_ptr, schema_ptr)`, into structs of
//! ours, rather than through `__arrow_c_device_array__`.
//!
//! Why: both run the same C++ export (`arrow::ExportDeviceArray`, with the
//! schema), but the capsule protocol wraps it in two capsules (a `malloc`
//! and a capsule object each, made by pyarrow and destroyed when the
//! exporter is done), a result tuple and a `**kwargs` dict: a tenth of
//! the path's instructions (docs/benchmarks.md, "Measured decisions";
//! the per-call steps: its "Per call, from Python"). The pointer export is documented pyarrow API ("a low-level
//! function intended for expert users"; the way Arrow libraries exchanged
//! arrays before the capsules).
//!
//! When: the object's type is `pyarrow.lib.Array` or one of pyarrow's own
//! subclasses (`DoubleArray`, ...), which are static types whose methods
//! no one can replace. A Python subclass (a heap type, which may override
//! the protocol), any other producer, and a pyarrow without the method
//! take the protocol. pyarrow is never imported here: the path exists once
//! the program imported it.
//!
//! The device export is the one used (never `_export_to_c`), for the same
//! reason the protocol path asks for `__arrow_c_device_array__`: only it
//! says where the data is, and `_export_to_c` hands out device pointers of
//! a GPU array as if they were host memory.

use std::ffi::{CStr, c_void};
use std::ptr;

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::abi::{ARROW_FLAG_NULLABLE, ArrowDeviceArray, ArrowSchema};
use crate::arrow::release::Release;
use crate::arrow::write::static_schema;

/// pyarrow's array type and its pointer export, found once the program
/// imported pyarrow.
pub(super) struct Pyarrow {
    array: Py<PyType>,
    /// `pyarrow.lib.Array._export_to_c_device`, unbound.
    export: Py<PyAny>,
    /// The classes of pyarrow's arrays of parameter-free types, and their
    /// types' formats (`DoubleArray`: `"g"`): an array of such a class has
    /// that type and no other (pyarrow wraps an array by its type's id:
    /// extension and dictionary arrays have classes of their own).
    primitive: Vec<(Py<PyType>, &'static CStr)>,
}

/// The parameter-free types whose schema is their format alone (no name,
/// no metadata, no children), by the class of pyarrow's arrays of them.
const PRIMITIVE: [(&str, &CStr); 14] = [
    ("DoubleArray", c"g"),
    ("Int64Array", c"l"),
    ("FloatArray", c"f"),
    ("Int32Array", c"i"),
    ("BooleanArray", c"b"),
    ("Int8Array", c"c"),
    ("UInt8Array", c"C"),
    ("Int16Array", c"s"),
    ("UInt16Array", c"S"),
    ("UInt32Array", c"I"),
    ("UInt64Array", c"L"),
    ("HalfFloatArray", c"e"),
    ("Date32Array", c"tdD"),
    ("Date64Array", c"tdm"),
];

/// Set once pyarrow's module is found: `None` when that pyarrow has no
/// pointer export (then it never will).
static PYARROW: PyOnceLock<Option<Pyarrow>> = PyOnceLock::new();

/// The structs pyarrow exports into: an `ArrowDeviceArray` and its
/// `ArrowSchema`, released when dropped unless moved out (their `release`
/// NULL). Exported into where they stay, the exporter object's memory:
/// no allocation, no move.
pub(super) struct Structs {
    pub(super) device: ArrowDeviceArray,
    pub(super) schema: ArrowSchema,
}

// SAFETY: plain data and release callbacks, tied to no thread (the C Data
// Interface lets any thread release); one owner.
unsafe impl Send for Structs {}

impl Structs {
    /// Both structs released (`release` NULL): what pyarrow writes into,
    /// and what `Drop` leaves alone.
    pub(super) fn empty() -> Structs {
        Structs {
            device: ArrowDeviceArray::released(),
            schema: ArrowSchema::released(),
        }
    }
}

impl Drop for Structs {
    fn drop(&mut self) {
        // SAFETY: the array pyarrow exported into these structs, unless an
        // export moved it out (then released); the schema, never moved (the
        // library reads schemas, it does not take them).
        unsafe {
            self.device.array.release_once();
            self.schema.release_once();
        }
    }
}

/// pyarrow's pointer export, if `obj` is one of pyarrow's own arrays.
pub(super) fn exporter_of(obj: &Bound<'_, PyAny>) -> Option<&'static Pyarrow> {
    let py = obj.py();
    // SAFETY: a live object; its type is live while it is.
    let kind = unsafe { ffi::Py_TYPE(obj.as_ptr()) };
    // SAFETY: a live type object.
    if unsafe { ffi::PyType_GetFlags(kind) } & ffi::Py_TPFLAGS_HEAPTYPE != 0 {
        return None; // a Python class: whatever it overrides is honoured
    }
    let pyarrow = match PYARROW.get(py) {
        Some(found) => found.as_ref()?,
        None => {
            let found = find(py)?; // not imported: look again next time
            PYARROW.get_or_init(py, || found).as_ref()?
        }
    };
    // SAFETY: live type objects.
    let is_array = unsafe { ffi::PyType_IsSubtype(kind, pyarrow.array.as_ptr().cast()) } != 0;
    is_array.then_some(pyarrow)
}

/// pyarrow's array type and pointer export, if the program imported
/// pyarrow: `Some(None)` when that pyarrow has no pointer export, `None`
/// (look again next time) when pyarrow is not imported.
fn find(py: Python<'_>) -> Option<Option<Pyarrow>> {
    let name = intern!(py, "pyarrow.lib");
    // SAFETY: a live str; GetModule returns a new reference or NULL (with
    // an exception set only on an internal error, cleared).
    let module = unsafe {
        let module = ffi::PyImport_GetModule(name.as_ptr());
        if module.is_null() {
            ffi::PyErr_Clear();
        }
        Bound::from_owned_ptr_or_opt(py, module)?
    };
    let found = (|| {
        let array = module.getattr("Array").ok()?.cast_into::<PyType>().ok()?;
        let export = array.getattr("_export_to_c_device").ok()?;
        let primitive = PRIMITIVE
            .iter()
            .filter_map(|&(name, format)| {
                let class = module.getattr(name).ok()?.cast_into::<PyType>().ok()?;
                Some((class.unbind(), format))
            })
            .collect();
        Some(Pyarrow {
            array: array.unbind(),
            export: export.unbind(),
            primitive,
        })
    })();
    Some(found)
}

/// `obj`, one of pyarrow's arrays, exported by pyarrow's pointer export
/// into `structs` (released, as [`Structs::empty`] makes them; where they
/// will stay, so that nothing moves 200 bytes around: the exporter's own).
/// On an error they are left released.
pub(super) fn export_into(
    obj: &Bound<'_, PyAny>,
    pyarrow: &Pyarrow,
    structs: &mut Structs,
) -> PyResult<()> {
    let py = obj.py();
    let format = primitive_format(obj, pyarrow);
    let device = address(py, (&raw mut structs.device).cast())?;
    // A primitive type's schema is written here (exporting and releasing
    // pyarrow's would be an eighth of the path); pyarrow writes any other.
    let schema = match format {
        Some(_) => None,
        None => Some(address(py, (&raw mut structs.schema).cast())?),
    };
    // SAFETY: live objects; the argument list ends with NULL (after the
    // device struct's address when there is no schema's); the call returns
    // a new reference (None) or NULL with an exception set. pyarrow writes
    // the structs whose addresses it is given, or none.
    let result = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyObject_CallFunctionObjArgs(
                pyarrow.export.as_ptr(),
                obj.as_ptr(),
                device.as_ptr(),
                schema.as_ref().map_or(ptr::null_mut(), Bound::as_ptr),
                ptr::null_mut::<ffi::PyObject>(),
            ),
        )
    };
    result?;
    if let Some(format) = format {
        // The schema pyarrow would export: the format, an empty name,
        // nullable. (Written over the empty one: nothing to release.)
        structs.schema = static_schema(format, c"");
        structs.schema.flags = ARROW_FLAG_NULLABLE;
    }
    if structs.device.array.release.is_none() || structs.schema.release.is_none() {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "pyarrow's Array._export_to_c_device returned without exporting the array",
        ));
    }
    Ok(())
}

/// An address as the Python int pyarrow's pointer export takes.
fn address<'py>(py: Python<'py>, address: *mut c_void) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: FromVoidPtr returns a new reference or NULL with an
    // exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyLong_FromVoidPtr(address)) }
}

/// The format of `obj`'s type when it is one of the parameter-free types
/// of [`PRIMITIVE`], by `obj`'s class (a pointer comparison: cheaper
/// than reading `obj.type.id`, which measured too costly beside what
/// writing the schema saves); None for any other.
fn primitive_format(obj: &Bound<'_, PyAny>, pyarrow: &Pyarrow) -> Option<&'static CStr> {
    // SAFETY: a live object.
    let class = unsafe { ffi::Py_TYPE(obj.as_ptr()) };
    let (_, format) = pyarrow
        .primitive
        .iter()
        .find(|(known, _)| known.as_ptr().cast() == class)?;
    Some(format)
}
