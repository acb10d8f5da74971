//! `arrow_dlpack._native`: the compiled core of the Python package (feature
//! `python`, built by maturin from `python/pyproject.toml`).
//!
//! A thin layer over the library, called directly (no foreign-call
//! machinery, no C error buffers): the exporter of Arrow data to DLPack
//! consumers ([`exporter`], over `crate::export`), pyarrow's arrays
//! exported by pyarrow's pointer export ([`pyarrow`]), the Arrow array made
//! from a DLPack producer's tensor ([`imported`], over `crate::import`),
//! and the DLPack C exchange API, as a producer and as a consumer
//! ([`exchange`]). Both directions call the library's Rust functions with
//! options built valid here (the C ABI's checks of C options are for C
//! callers), and turn its errors into Python exceptions in one place
//! ([`guard`], which also holds the one panic guard).
//! Everything the Python protocols decide (which protocol a producer
//! speaks, which stream a consumer names, which capsule names mean what) is
//! here; everything about the data is the library's, with the library's
//! messages.
//!
//! The package's Python part (`python/arrow_dlpack/`) re-exports these and
//! keeps `_sync.py`, the stream waits for device data handed over with a
//! `sync_event` (it loads the GPU driver with ctypes, on first use only).

mod batches;
mod exchange;
mod exporter;
mod fastcall;
mod guard;
mod imported;
mod loader;
mod named;
mod pyarrow;

use std::ffi::{CStr, c_void};
use std::ptr::NonNull;

use pyo3::exceptions::{PyBufferError, PyMemoryError};
use pyo3::ffi;
use pyo3::prelude::*;

use crate::abi::ArrowSchema;

/// Capsule names. `PyCapsule_New` keeps the pointer it is given, so every
/// name is a static.
const DLTENSOR: &CStr = c"dltensor";
const DLTENSOR_VERSIONED: &CStr = c"dltensor_versioned";
const USED_DLTENSOR: &CStr = c"used_dltensor";
const USED_DLTENSOR_VERSIONED: &CStr = c"used_dltensor_versioned";
const ARROW_SCHEMA: &CStr = c"arrow_schema";
const ARROW_ARRAY: &CStr = c"arrow_array";
const ARROW_DEVICE_ARRAY: &CStr = c"arrow_device_array";
const ARROW_STREAM: &CStr = c"arrow_array_stream";

/// `(device_type, device_id)` in DLPack's numbering, as Python sees it.
type Device = (i32, i64);

/// The CPU, as `__dlpack_device__` reports it.
const CPU: Device = (crate::abi::K_DL_CPU, 0);

/// The pointer a capsule holds; the Python error of `PyCapsule_GetPointer`
/// (`ValueError`) when it is not a capsule named `name`.
fn capsule_pointer(capsule: &Bound<'_, PyAny>, name: &CStr) -> PyResult<*mut c_void> {
    // SAFETY: a live object; a NUL-terminated name. GetPointer checks the
    // object's type and name and sets an exception on a mismatch.
    let pointer = unsafe { ffi::PyCapsule_GetPointer(capsule.as_ptr(), name.as_ptr()) };
    if pointer.is_null() {
        return Err(PyErr::fetch(capsule.py()));
    }
    Ok(pointer)
}

/// Whether `object` is a capsule named `name` (never raises).
fn capsule_is(object: &Bound<'_, PyAny>, name: &CStr) -> bool {
    // SAFETY: a live object; IsValid checks type and name, never raises.
    unsafe { ffi::PyCapsule_IsValid(object.as_ptr(), name.as_ptr()) == 1 }
}

/// The capsule name of a tensor of either flavour.
fn tensor_name(versioned: bool) -> &'static CStr {
    if versioned {
        DLTENSOR_VERSIONED
    } else {
        DLTENSOR
    }
}

/// A new capsule owning `pointer`, named `name`: a tensor, or a malloc'd
/// Arrow struct, destroyed by [`capsule_destructor`] unless a consumer
/// takes it. If the capsule cannot be made (out of memory), what it would
/// have owned is destroyed at once.
///
/// # Safety
/// `pointer` is what a capsule named `name` holds (see
/// `crate::capsule::destroy_contents`), owned by the caller, who hands it
/// over.
unsafe fn new_capsule<'py>(
    py: Python<'py>,
    pointer: NonNull<c_void>,
    name: &'static CStr,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: a static name; New returns a new reference or NULL with an
    // exception set.
    let capsule = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyCapsule_New(pointer.as_ptr(), name.as_ptr(), Some(capsule_destructor)),
        )
    };
    capsule.inspect_err(|_| {
        // SAFETY: never handed out: still the caller's (this function's
        // contract), of the kind `name` says.
        unsafe { crate::capsule::destroy_contents(name, pointer.as_ptr()) }
    })
}

/// A schema capsule holding a deep copy of `schema` (malloc'd, as every
/// Arrow struct in this module's capsules), checked by the library's
/// reader before anything else reads it.
fn schema_capsule<'py>(py: Python<'py>, schema: &ArrowSchema) -> PyResult<Bound<'py, PyAny>> {
    use arrow_schema::Field;
    use arrow_schema::ffi::FFI_ArrowSchema;
    // SAFETY: a live schema (the caller's); only read.
    unsafe { crate::arrow::read::read_type(schema, crate::dtype::Accept::ALL) }
        .map_err(guard::buffer_error)?;
    // SAFETY: `ArrowSchema` and arrow-rs's `FFI_ArrowSchema` are the same
    // `repr(C)` struct of the C Data Interface, checked above; only read.
    let ffi_schema = unsafe { &*(schema as *const ArrowSchema).cast::<FFI_ArrowSchema>() };
    let copy = Field::try_from(ffi_schema)
        .and_then(|field| FFI_ArrowSchema::try_from(&field))
        .map_err(|e| PyBufferError::new_err(format!("copying the schema: {e}")))?;
    // SAFETY: calloc has no preconditions; NULL on failure.
    let pointer = NonNull::new(unsafe { libc::calloc(1, std::mem::size_of::<ArrowSchema>()) })
        .ok_or_else(|| PyMemoryError::new_err("allocating an Arrow schema failed"))?
        .cast::<ArrowSchema>();
    // SAFETY: the same struct (as above), moved whole into fresh malloc'd
    // memory: its release callback now belongs to the capsule.
    unsafe {
        pointer
            .as_ptr()
            .write(std::mem::transmute::<FFI_ArrowSchema, ArrowSchema>(copy))
    };
    // SAFETY: a malloc'd schema, handed over.
    unsafe { new_capsule(py, pointer.cast(), ARROW_SCHEMA) }
}

/// The destructor of every capsule this module makes: the C ABI's
/// (`crate::capsule`), reached through PyO3's Python C API rather than
/// `dlsym`.
unsafe extern "C" fn capsule_destructor(capsule: *mut ffi::PyObject) {
    // SAFETY: Python calls this with the GIL held, on a capsule being
    // destroyed, made by `new_capsule`: its name is a static string and it
    // holds what the name says (a consumer that took a tensor renamed it
    // "used_..."); GetName and GetPointer do not fail on it.
    unsafe {
        let name = ffi::PyCapsule_GetName(capsule);
        if name.is_null() {
            return;
        }
        let pointer = ffi::PyCapsule_GetPointer(capsule, name);
        crate::capsule::destroy_contents(CStr::from_ptr(name), pointer);
    }
}

/// A strong reference, released the moment it is dropped.
///
/// `Py<T>` releases at once only where PyO3 knows the thread attached; the
/// vectorcall functions of `fastcall` run attached but unknown to PyO3
/// (they skip its attach for speed), and a `Py<T>` dropped there would be
/// queued for PyO3's pool instead (a mutex, and the object kept until the
/// next PyO3 call). What the exporter holds is therefore `Held`: dropped
/// only with the thread attached (by the exporter's `tp_dealloc`, or in a
/// call from Python).
struct Held(NonNull<ffi::PyObject>);

impl Held {
    fn new(object: Bound<'_, PyAny>) -> Held {
        Held(NonNull::new(object.into_ptr()).expect("a live object"))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // SAFETY: a strong reference owned here, released once; dropped
        // only with the thread attached (the type's contract).
        unsafe { ffi::Py_DecRef(self.0.as_ptr()) }
    }
}

/// `kind.name`, or None when the type has no such attribute (whatever the
/// lookup raised is cleared: the protocols are probed, not required).
/// Raw, so that no `PyErr` (holding `Py<T>`s) is made and dropped.
fn type_attribute<'py>(
    kind: &Bound<'py, pyo3::types::PyType>,
    name: &Bound<'py, pyo3::types::PyString>,
) -> Option<Bound<'py, PyAny>> {
    // SAFETY: live objects; GetAttr returns a new reference or NULL with
    // an exception set, which is cleared.
    unsafe {
        let found = ffi::PyObject_GetAttr(kind.as_ptr(), name.as_ptr());
        if found.is_null() {
            ffi::PyErr_Clear();
        }
        Bound::from_owned_ptr_or_opt(kind.py(), found)
    }
}

/// Sets how many threads a copy runs on (``n >= 1``; 1: the calling
/// thread only), for every later call; ``ARROW_DLPACK_THREADS`` and the
/// machine's cores (at most 8) are the default. The bytes are the same
/// whatever the count; zero-copy conversions never start a thread.
#[pyfunction]
fn set_threads(n: i64) -> PyResult<()> {
    if n < 1 {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "set_threads takes a positive thread count, got {n}"
        )));
    }
    crate::copy::threads::set_default(usize::try_from(n).unwrap_or(usize::MAX));
    Ok(())
}

/// How many threads a copy runs on: what ``set_threads`` set, else
/// ``ARROW_DLPACK_THREADS``, else the machine's cores, at most 8.
#[pyfunction]
fn threads() -> usize {
    crate::copy::threads::default_count()
}

/// Whether the thread count was chosen: by ``set_threads`` or
/// ``ARROW_DLPACK_THREADS`` (a DataLoader worker's loader otherwise copies
/// on its own thread, as torch runs one thread a worker).
#[pyfunction]
fn threads_chosen() -> bool {
    crate::copy::threads::chosen()
}

/// The Python module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<exporter::DLPackExporter>()?;
    m.add_class::<imported::ArrowArrayFromDLPack>()?;
    m.add_function(wrap_pyfunction!(exporter::to_dlpack, m)?)?;
    m.add_function(wrap_pyfunction!(exporter::validity, m)?)?;
    m.add_function(wrap_pyfunction!(imported::from_dlpack, m)?)?;
    m.add_function(wrap_pyfunction!(imported::from_jagged, m)?)?;
    m.add_function(wrap_pyfunction!(exporter::to_jagged, m)?)?;
    m.add_function(wrap_pyfunction!(exporter::to_padded, m)?)?;
    m.add_function(wrap_pyfunction!(set_threads, m)?)?;
    m.add_function(wrap_pyfunction!(batches::batches, m)?)?;
    m.add_class::<batches::BatchIterator>()?;
    m.add_function(wrap_pyfunction!(loader::loader, m)?)?;
    #[cfg(feature = "files")]
    m.add_function(wrap_pyfunction!(loader::loader_files, m)?)?;
    m.add_class::<loader::NativeLoader>()?;
    m.add_function(wrap_pyfunction!(threads, m)?)?;
    m.add_function(wrap_pyfunction!(threads_chosen, m)?)?;
    // The exporter's producer table of the DLPack C exchange API (set
    // here: the table's functions use the exporter, not the reverse).
    m.py()
        .get_type::<exporter::DLPackExporter>()
        .setattr("__dlpack_c_exchange_api__", exchange::api_capsule(m.py())?)?;
    fastcall::install(m.py(), m)
}
