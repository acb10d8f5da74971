//! The DLPack C exchange API (DLPack 1.3, `dlpack.h`'s `DLPackExchangeAPI`):
//! a static table of C functions, exposed on the exporter type as
//! `__dlpack_c_exchange_api__` (a capsule named `"dlpack_exchange_api"`),
//! through which a compiled consumer takes a tensor from a Python object
//! in one C call, without `__dlpack__`'s method call and capsule. And the
//! consumer side, used by `from_dlpack` when a producer's type has it.
//!
//! As a producer (`DLPackExporter`):
//! - `managed_tensor_from_py_object_no_sync`: `__dlpack__(max_version=(1,
//!   3))`, the tensor returned bare; the exporter is consumed. ("No sync":
//!   device data handed over with a `sync_event` is waited on the legacy
//!   default stream all the same, as `stream=None` would: that is the stream
//!   `current_work_stream` reports.)
//! - `managed_tensor_to_py_object_no_sync`: a tensor becomes an exporter of
//!   it, which hands it to the next consumer (`__dlpack__`, or this API).
//! - `managed_tensor_allocator`: a new host tensor (64-byte aligned,
//!   row-major, uninitialized); other devices are refused.
//! - `dltensor_from_py_object_no_sync`: NULL (allowed): an exporter's data is
//!   moved by an export, there is no non-owning view to lend.
//! - `current_work_stream`: NULL, the default stream (this library launches
//!   no work).

use std::ffi::{CStr, c_int, c_void};
use std::ptr::{self, NonNull};
use std::sync::Mutex;

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyType;
use pyo3::{ffi, intern};

use super::exporter::DLPackExporter;
use super::guard::{guarded, panic_error};
use crate::abi::{
    DLDeviceType, DLManagedTensorVersioned, DLPACK_MAJOR_VERSION, DLPACK_MINOR_VERSION,
    DLPackExchangeAPI, DLPackExchangeAPIHeader, DLPackVersion, DLTensor, K_DL_CPU,
};
use crate::managed;

/// The table, for the whole process.
struct Table(DLPackExchangeAPI);

// SAFETY: immutable, and its only pointer (`prev_api`) is NULL.
unsafe impl Sync for Table {}

static API: Table = Table(DLPackExchangeAPI {
    header: DLPackExchangeAPIHeader {
        version: DLPackVersion {
            major: DLPACK_MAJOR_VERSION,
            minor: DLPACK_MINOR_VERSION,
        },
        prev_api: ptr::null_mut(),
    },
    managed_tensor_allocator: Some(allocate),
    managed_tensor_from_py_object_no_sync: Some(from_py_object),
    managed_tensor_to_py_object_no_sync: Some(to_py_object),
    dltensor_from_py_object_no_sync: None,
    current_work_stream: Some(current_work_stream),
});

const CAPSULE_NAME: &CStr = c"dlpack_exchange_api";

/// The capsule of `__dlpack_c_exchange_api__` (no destructor: the table is
/// static).
pub(super) fn api_capsule(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let table: *const DLPackExchangeAPI = &API.0;
    // SAFETY: a static table and name; New returns a new reference or NULL
    // with an exception set. Consumers only read through the pointer.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyCapsule_New(table.cast_mut().cast(), CAPSULE_NAME.as_ptr(), None),
        )
    }
    .map(Bound::unbind)
}

/// Runs one API function on behalf of a Python caller: 0, or -1 with the
/// error set as the Python exception. Never unwinds.
fn python_call(body: impl FnOnce(Python<'_>) -> PyResult<()>) -> c_int {
    // The functions that take or make Python objects are called with the
    // GIL held (the API's contract: they set Python exceptions); `attach`
    // finds it held, and lets PyO3 release references at once.
    Python::attach(|py| python_call_attached(py, body))
}

/// [`python_call`], attached.
fn python_call_attached(py: Python<'_>, body: impl FnOnce(Python<'_>) -> PyResult<()>) -> c_int {
    match guarded(
        || body(py),
        || panic_error("arrow_dlpack's DLPack exchange API"),
    ) {
        Ok(()) => 0,
        Err(e) => {
            e.restore(py);
            -1
        }
    }
}

/// `managed_tensor_from_py_object_no_sync`.
unsafe extern "C" fn from_py_object(
    object: *mut c_void,
    out: *mut *mut DLManagedTensorVersioned,
) -> c_int {
    python_call(|py| {
        if object.is_null() || out.is_null() {
            return Err(PyTypeError::new_err("py_object and out must not be NULL"));
        }
        // SAFETY: a live object the caller holds (the API's contract).
        let object = unsafe { Bound::from_borrowed_ptr(py, object.cast()) };
        let exporter = object.cast::<DLPackExporter>().map_err(|_| {
            PyTypeError::new_err(
                "managed_tensor_from_py_object_no_sync: not an arrow_dlpack.DLPackExporter",
            )
        })?;
        let tensor = exporter
            .try_borrow_mut()?
            .export(py, true, None, None, None)?;
        // SAFETY: checked non-NULL, writable (the API's contract).
        unsafe { out.write(tensor.cast().as_ptr()) };
        Ok(())
    })
}

/// `managed_tensor_to_py_object_no_sync`: the tensor (stolen) becomes an
/// exporter of it.
unsafe extern "C" fn to_py_object(
    tensor: *mut DLManagedTensorVersioned,
    out: *mut *mut c_void,
) -> c_int {
    python_call(|py| {
        let tensor = NonNull::new(tensor).ok_or_else(|| {
            PyTypeError::new_err("managed_tensor_to_py_object_no_sync: tensor is NULL")
        })?;
        // SAFETY: a live tensor handed over (the API's contract); only its
        // version is read before it is trusted.
        let major = unsafe { tensor.as_ref() }.version.major;
        if major != DLPACK_MAJOR_VERSION {
            return Err(PyTypeError::new_err(format!(
                "managed_tensor_to_py_object_no_sync: a DLPack {major}.x tensor; this library reads 1.x"
            )));
        }
        if out.is_null() {
            // SAFETY: stolen: ours to delete.
            unsafe { managed::delete(tensor) };
            return Err(PyTypeError::new_err(
                "managed_tensor_to_py_object_no_sync: out is NULL",
            ));
        }
        // If making the object fails, dropping the exporter deletes the
        // tensor.
        let exporter = Bound::new(py, DLPackExporter::ready(tensor))?;
        // SAFETY: writable (the API's contract); a new reference, the caller's.
        unsafe { out.write(exporter.into_ptr().cast()) };
        Ok(())
    })
}

/// `current_work_stream`: the default stream, NULL.
unsafe extern "C" fn current_work_stream(
    _device_type: DLDeviceType,
    _device_id: i32,
    out: *mut *mut c_void,
) -> c_int {
    if !out.is_null() {
        // SAFETY: writable (the API's contract).
        unsafe { out.write(ptr::null_mut()) };
    }
    0
}

/// `managed_tensor_allocator`: a host tensor of the prototype's dtype and
/// shape, row-major, uninitialized. Touches no Python (it may be called
/// without the GIL): errors go to `set_error`.
unsafe extern "C" fn allocate(
    prototype: *mut DLTensor,
    out: *mut *mut DLManagedTensorVersioned,
    error_ctx: *mut c_void,
    set_error: Option<crate::abi::DLPackSetError>,
) -> c_int {
    let made = guarded(
        // SAFETY: NULL or a valid prototype (the API's contract).
        || allocate_host(unsafe { prototype.as_ref() }),
        || {
            (
                c"RuntimeError",
                "panic in arrow_dlpack's allocator; please report this bug".to_string(),
            )
        },
    );
    let failure = match (made, out.is_null()) {
        (Ok(tensor), false) => {
            // SAFETY: checked non-NULL, writable (the API's contract).
            unsafe { out.write(tensor.as_ptr()) };
            return 0;
        }
        (Ok(tensor), true) => {
            // SAFETY: ours, never handed out.
            unsafe { managed::delete(tensor) };
            (c"ValueError", "out is NULL".to_string())
        }
        (Err(e), _) => e,
    };
    if let Some(set_error) = set_error {
        let message = std::ffi::CString::new(failure.1).unwrap_or_default();
        // SAFETY: the caller's callback with its context, as the API says.
        unsafe { set_error(error_ctx, failure.0.as_ptr(), message.as_ptr()) };
    }
    -1
}

/// The allocation of [`allocate`]: the Python exception kind and a message
/// on failure.
fn allocate_host(
    prototype: Option<&DLTensor>,
) -> Result<NonNull<DLManagedTensorVersioned>, (&'static CStr, String)> {
    let invalid = |message: String| (c"ValueError", message);
    let prototype = prototype.ok_or_else(|| invalid("prototype is NULL".into()))?;
    if prototype.device.device_type != K_DL_CPU {
        return Err((
            c"BufferError",
            format!(
                "arrow_dlpack allocates host memory only (kDLCPU), not device type {}",
                prototype.device.device_type
            ),
        ));
    }
    // SAFETY: the API's contract: a live tensor (only its dtype and shape
    // are read, through the one DLPack reader).
    let (dtype, dims, bytes) =
        unsafe { crate::dlpack::read::prototype(prototype) }.map_err(|e| invalid(e.message()))?;
    let len = usize::try_from(bytes)
        .ok()
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| {
            (
                c"MemoryError",
                format!("{bytes} bytes exceed what one allocation may hold"),
            )
        })?;
    let (tensor, _) = crate::owner::own::<DLManagedTensorVersioned>(dtype, &dims, len, false)
        .map_err(|e| (c"MemoryError", e.to_string()))?;
    // SAFETY: ours, live: a fresh tensor is not a copy of anything.
    unsafe { (*tensor.as_ptr()).flags = 0 };
    Ok(tensor)
}

/// Types seen by `from_dlpack`, with their exchange API or none: the
/// DLPack spec lets a consumer cache the lookup per type. A handful of
/// entries (NumPy, a framework's tensor, this exporter...); the types are
/// held, so an address is never reused while cached.
static SEEN: Mutex<Vec<(Py<PyType>, usize)>> = Mutex::new(Vec::new());
const SEEN_MAX: usize = 8;

/// The exchange API of a producer's type, if it has one this library can
/// use (major version 1, walking `prev_api` for it).
pub(super) fn api_of(kind: &Bound<'_, PyType>) -> PyResult<Option<&'static DLPackExchangeAPI>> {
    let address = {
        let seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .find(|(t, _)| t.as_ptr() == kind.as_ptr())
            .map(|(_, a)| *a)
    };
    let address = match address {
        Some(a) => a,
        None => {
            let a = lookup(kind)?;
            let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
            if seen.len() == SEEN_MAX {
                seen.remove(0);
            }
            seen.push((kind.clone().unbind(), a));
            a
        }
    };
    // SAFETY: a table that lives for the whole process (the API's
    // contract), found by `lookup`.
    Ok((address != 0).then(|| unsafe { &*(address as *const DLPackExchangeAPI) }))
}

/// The address of a type's usable exchange API table, 0 if none.
fn lookup(kind: &Bound<'_, PyType>) -> PyResult<usize> {
    let py = kind.py();
    let Some(capsule) = super::type_attribute(kind, intern!(py, "__dlpack_c_exchange_api__"))
    else {
        return Ok(0);
    };
    if !super::capsule_is(&capsule, CAPSULE_NAME) {
        return Ok(0); // not the API: ignored, `__dlpack__` it is
    }
    let mut header =
        super::capsule_pointer(&capsule, CAPSULE_NAME)?.cast::<DLPackExchangeAPIHeader>();
    // SAFETY: a static table and its chain of older versions (the API's
    // contract); only headers are read until the major version matches.
    unsafe {
        while !header.is_null() && (*header).version.major != DLPACK_MAJOR_VERSION {
            header = (*header).prev_api;
        }
        let api = header.cast::<DLPackExchangeAPI>();
        if api.is_null() || (*api).managed_tensor_from_py_object_no_sync.is_none() {
            return Ok(0);
        }
    }
    Ok(header as usize)
}

/// A tensor of `x` through its type's exchange API (the caller's).
pub(super) fn take(
    x: &Bound<'_, PyAny>,
    api: &DLPackExchangeAPI,
) -> PyResult<NonNull<DLManagedTensorVersioned>> {
    let from = api
        .managed_tensor_from_py_object_no_sync
        .expect("checked by lookup");
    let mut out: *mut DLManagedTensorVersioned = ptr::null_mut();
    // SAFETY: the producer's function, called with the GIL held on an
    // object of its type, as the API says.
    let status = unsafe { from(x.as_ptr().cast(), &mut out) };
    if status != 0 {
        return Err(PyErr::take(x.py()).unwrap_or_else(|| {
            PyRuntimeError::new_err(
                "the producer's DLPack exchange API failed without an exception",
            )
        }));
    }
    NonNull::new(out).ok_or_else(|| {
        PyRuntimeError::new_err("the producer's DLPack exchange API returned no tensor")
    })
}
