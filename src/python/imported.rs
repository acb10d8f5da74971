//! `from_dlpack` and `ArrowArrayFromDLPack`: a DLPack producer's tensor
//! shared as an Arrow array.

use std::ffi::{CString, c_void};
use std::ptr::NonNull;

use arrow_schema::Field;
use arrow_schema::ffi::FFI_ArrowSchema;
use pyo3::exceptions::{PyBufferError, PyMemoryError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use pyo3::{ffi, intern};

use super::exporter::{DLPackExporter, copy_policy, delete_tensor, type_name};
use super::{
    ARROW_ARRAY, ARROW_DEVICE_ARRAY, ARROW_SCHEMA, DLTENSOR, DLTENSOR_VERSIONED, Device,
    USED_DLTENSOR, USED_DLTENSOR_VERSIONED, buffer_error, capsule_is, capsule_pointer,
    error_struct, exchange, new_capsule,
};
use crate::abi::{
    ArrowArray, ArrowDeviceArray, ArrowSchema, DLManagedTensor, DLManagedTensorVersioned,
};
use crate::capi;
use crate::device::is_host_readable;
use crate::managed::Managed;
use crate::options::ArrowDlpackImportOptions;

/// A schema this module allocated (`Box`), released when dropped unless a
/// consumer moved it out. `repr(transparent)`: a pointer to it is a
/// pointer to the struct, as the capsules hand it out.
#[repr(transparent)]
struct OwnedSchema(ArrowSchema);

/// A device array this module allocated, as [`OwnedSchema`]; its first
/// member is the struct ArrowArray that `__arrow_c_array__` hands out.
#[repr(transparent)]
struct OwnedArray(ArrowDeviceArray);

impl Drop for OwnedSchema {
    fn drop(&mut self) {
        if let Some(release) = self.0.release {
            // SAFETY: a live schema, released once (its release is the
            // library's, which sets it to NULL).
            unsafe { release(&mut self.0) };
        }
    }
}

impl Drop for OwnedArray {
    fn drop(&mut self) {
        if let Some(release) = self.0.array.release {
            // SAFETY: as for the schema.
            unsafe { release(&mut self.0.array) };
        }
    }
}

/// Empty structs for the library to write.
fn empty_structs() -> (Box<OwnedSchema>, Box<OwnedArray>) {
    // SAFETY: every field of these C structs is an integer, a raw pointer or
    // an `Option` of a function pointer: all zero is a valid value of each
    // (released structs, NULL pointers).
    unsafe { (Box::new(std::mem::zeroed()), Box::new(std::mem::zeroed())) }
}

/// The destructor of the Arrow capsules this module makes: frees the
/// struct, releasing it first unless a consumer moved it out.
unsafe extern "C" fn arrow_capsule_destructor(capsule: *mut ffi::PyObject) {
    // SAFETY: Python calls this with the GIL held on a capsule being
    // destroyed, made by `take`/`__arrow_c_schema__` below: named
    // "arrow_schema" (an `OwnedSchema`) or "arrow_[device_]array" (an
    // `OwnedArray`), each a `Box` leaked into the capsule.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, ARROW_SCHEMA.as_ptr()) == 1 {
            let pointer = ffi::PyCapsule_GetPointer(capsule, ARROW_SCHEMA.as_ptr());
            drop(Box::from_raw(pointer.cast::<OwnedSchema>()));
            return;
        }
        for name in [ARROW_ARRAY, ARROW_DEVICE_ARRAY] {
            if ffi::PyCapsule_IsValid(capsule, name.as_ptr()) == 1 {
                let pointer = ffi::PyCapsule_GetPointer(capsule, name.as_ptr());
                drop(Box::from_raw(pointer.cast::<OwnedArray>()));
                return;
            }
        }
    }
}

/// A Box leaked into a new capsule (or dropped, if the capsule cannot be
/// made).
fn boxed_capsule<'py, T>(
    py: Python<'py>,
    value: Box<T>,
    name: &'static std::ffi::CStr,
) -> PyResult<Bound<'py, PyAny>> {
    let pointer = Box::into_raw(value);
    new_capsule(py, pointer.cast(), name, arrow_capsule_destructor).inspect_err(|_| {
        // SAFETY: the Box leaked just above, not handed out.
        drop(unsafe { Box::from_raw(pointer) });
    })
}

/// A DLPack tensor shared as an Arrow array (see `from_dlpack`).
///
/// Implements `__arrow_c_device_array__` and, for memory the host can
/// read, `__arrow_c_array__`; either can be called once: the consumer
/// takes the array, which owns the tensor, and the tensor's deleter runs
/// when the consumer releases it. If no consumer ever takes it, collecting
/// this object releases everything.
#[pyclass(module = "arrow_dlpack", name = "ArrowArrayFromDLPack")]
pub struct ArrowArrayFromDLPack {
    /// None once a consumer took them.
    structs: Option<(Box<OwnedSchema>, Box<OwnedArray>)>,
    /// `(device_type, device_id)` of the data, DLPack numbering.
    #[pyo3(get)]
    device: Device,
    length: i64,
}

// SAFETY: the structs are owned here (Boxes); their release callbacks are
// the library's, callable from any thread; access goes through PyO3's
// borrow flag.
unsafe impl Send for OwnedSchema {}
// SAFETY: as above.
unsafe impl Send for OwnedArray {}
// SAFETY: shared access reads plain fields only.
unsafe impl Sync for OwnedSchema {}
// SAFETY: as above.
unsafe impl Sync for OwnedArray {}

impl ArrowArrayFromDLPack {
    fn take<'py>(
        &mut self,
        py: Python<'py>,
        array_name: &'static std::ffi::CStr,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let (schema, array) = self.structs.take().ok_or_else(|| {
            PyBufferError::new_err(
                "this arrow_dlpack array was already consumed; call from_dlpack again",
            )
        })?;
        // From here the capsules own the structs (and, through the array,
        // the tensor); their destructor releases whatever a consumer leaves.
        let schema = boxed_capsule(py, schema, ARROW_SCHEMA)?;
        let array = boxed_capsule(py, array, array_name)?;
        Ok((schema, array))
    }
}

#[pymethods]
impl ArrowArrayFromDLPack {
    /// ``(schema capsule, array capsule)``, for memory the host can read.
    /// ``requested_schema`` is ignored: the array is shared as it is.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_array__<'py>(
        &mut self,
        py: Python<'py>,
        requested_schema: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let _ = requested_schema;
        if !is_host_readable(self.device.0) {
            return Err(PyBufferError::new_err(format!(
                "the data is on device {:?}: use __arrow_c_device_array__",
                self.device
            )));
        }
        self.take(py, ARROW_ARRAY)
    }

    /// ``(schema capsule, device array capsule)``; ``sync_event`` is NULL.
    #[pyo3(signature = (requested_schema=None, **kwargs))]
    fn __arrow_c_device_array__<'py>(
        &mut self,
        py: Python<'py>,
        requested_schema: Option<&Bound<'py, PyAny>>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let _ = (requested_schema, kwargs);
        self.take(py, ARROW_DEVICE_ARRAY)
    }

    /// A schema capsule of the array's type (a copy: the array is not
    /// consumed), until the array is consumed.
    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let Some((schema, _)) = &self.structs else {
            return Err(PyBufferError::new_err(
                "this arrow_dlpack array was already consumed; call from_dlpack again",
            ));
        };
        // SAFETY: `ArrowSchema` and arrow-rs's `FFI_ArrowSchema` are the
        // same `repr(C)` struct of the C Data Interface; the schema is live
        // and only read.
        let ffi_schema = unsafe { &*(&raw const schema.0).cast::<FFI_ArrowSchema>() };
        let copy = Field::try_from(ffi_schema)
            .and_then(|field| FFI_ArrowSchema::try_from(&field))
            .map_err(|e| PyBufferError::new_err(format!("copying the schema: {e}")))?;
        // SAFETY: the same struct (as above), moved whole: its release
        // callback now belongs to the `OwnedSchema`.
        let owned =
            OwnedSchema(unsafe { std::mem::transmute::<FFI_ArrowSchema, ArrowSchema>(copy) });
        boxed_capsule(py, Box::new(owned), ARROW_SCHEMA)
    }

    /// The number of elements (rows, for N-D tensors).
    fn __len__(&self) -> usize {
        usize::try_from(self.length).unwrap_or(0)
    }

    fn __repr__(&self) -> String {
        let state = if self.structs.is_some() {
            "not consumed"
        } else {
            "consumed"
        };
        format!(
            "<arrow_dlpack.ArrowArrayFromDLPack on device {:?}, {state}>",
            self.device
        )
    }
}

/// The stream `from_dlpack` passes to `__dlpack__` for device data (the
/// array API's values): CUDA's legacy default stream (1), ROCm's default
/// stream (0).
fn default_stream(device_type: i32) -> Option<i64> {
    match device_type {
        2 | 13 => Some(1), // kDLCUDA, kDLCUDAManaged
        10 => Some(0),     // kDLROCM
        _ => None,
    }
}

/// `columns=`: None, or the names (empty for `True`: "0", "1", ...).
fn column_names(columns: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<CString>>> {
    let Some(columns) = columns else {
        return Ok(None);
    };
    if columns.is_instance_of::<pyo3::types::PyBool>() {
        return Ok(columns.is_truthy()?.then(Vec::new));
    }
    let wrong = || -> PyResult<PyErr> {
        Ok(PyTypeError::new_err(format!(
            "columns must be True or a list of names, got {}",
            columns.repr()?
        )))
    };
    if columns.is_instance_of::<PyString>() || columns.is_instance_of::<PyBytes>() {
        return Err(wrong()?);
    }
    let Ok(names) = columns.try_iter() else {
        return Err(wrong()?);
    };
    let mut out = Vec::new();
    for name in names {
        let name = name?;
        let bytes = match name.extract::<String>() {
            Ok(s) => s.into_bytes(),
            Err(_) => name.extract::<Vec<u8>>().map_err(|_| {
                PyTypeError::new_err("columns: each name is a str (or bytes)".to_string())
            })?,
        };
        out.push(
            CString::new(bytes)
                .map_err(|_| PyValueError::new_err("a column name holds a NUL character"))?,
        );
    }
    Ok(Some(out))
}

/// A tensor taken from a producer: through `__dlpack__` (still its
/// capsule's until imported) or through the exchange API (ours).
enum Taken<'py> {
    Capsule {
        capsule: Bound<'py, PyAny>,
        tensor: NonNull<c_void>,
        versioned: bool,
    },
    Owned(NonNull<DLManagedTensorVersioned>),
}

/// Shares any DLPack producer's tensor as an Arrow array, or copies it
/// once where Arrow cannot share it.
///
/// ``columns``: None, the tensor is one array; True or a list of names
/// (one per column), a 2-D tensor ``[rows, columns]`` becomes a struct
/// array of its columns, named "0", "1", ... or as given, so that
/// ``pyarrow.record_batch(...)`` and ``pyarrow.table(...)`` take it. A
/// column-major (Fortran-order) tensor is shared: each column points into
/// it. A row-major one is copied out column by column (``copy=False``:
/// ``BufferError``).
///
/// ``copy`` follows the array API: None shares when it can and copies
/// otherwise (bool tensors, which Arrow packs into bits; strides Arrow
/// cannot describe: gaps, reversed, broadcast, Fortran order); False never
/// copies (``BufferError`` instead); True always copies. A copy is
/// row-major, owned by the Arrow array, and the producer's tensor is
/// released at once. Device tensors are never copied.
///
/// When the producer's type offers the DLPack C exchange API
/// (``__dlpack_c_exchange_api__``, DLPack 1.3: PyTorch >= 2.10,
/// apache-tvm-ffi...), the tensor of host memory is taken through it, one
/// C call; otherwise (and for device tensors, which the API hands over
/// unsynchronized) asks ``x.__dlpack__(max_version=(1, 3))`` (legacy ``x.__dlpack__()`` for
/// producers that reject the keyword). 0-D and 1-D contiguous tensors
/// become primitive arrays; dense N-D tensors become
/// ``arrow.fixed_shape_tensor`` arrays over their first dimension (with a
/// permutation for transposed inner dimensions). The result implements
/// ``__arrow_c_array__`` (or ``__arrow_c_device_array__``), so that
/// ``pyarrow.array(from_dlpack(np_array))`` shares NumPy's memory.
///
/// Device data: ``x.__dlpack__`` is given the ``stream`` the array API
/// prescribes for a consumer without a stream of its own, the default one
/// (CUDA: ``1``, the legacy default stream; ROCm: ``0``), so the producer
/// orders its pending work before that stream. The Arrow array's
/// ``sync_event`` is then NULL, which means: work on the legacy default
/// stream, or on any blocking stream (which synchronizes with it), sees
/// the data; a consumer reading on a non-blocking stream, or from the
/// host, synchronizes with the device first.
///
/// Raises ``TypeError`` for objects without ``__dlpack__`` and
/// ``BufferError`` with the library's message for tensors Arrow cannot
/// hold (complex dtypes...) or that need a copy ``copy`` forbids; the
/// producer's tensor is then left to its capsule.
///
/// >>> import numpy as np, pyarrow as pa
/// >>> pa.array(from_dlpack(np.arange(3)))
/// <pyarrow.lib.Int64Array object at ...>
/// [
///   0,
///   1,
///   2
/// ]
#[pyfunction]
#[pyo3(signature = (x, *, columns=None, copy=None))]
pub fn from_dlpack<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    columns: Option<&Bound<'py, PyAny>>,
    copy: Option<bool>,
) -> PyResult<ArrowArrayFromDLPack> {
    let kind = x.get_type();
    let api = exchange::api_of(&kind)?;
    if api.is_none() && kind.getattr(intern!(py, "__dlpack__")).is_err() {
        return Err(PyTypeError::new_err(format!(
            "arrow_dlpack.from_dlpack needs an object with __dlpack__, got {}",
            type_name(x)?
        )));
    }
    // Checked before the producer is asked for anything.
    let names = column_names(columns)?;
    let mut taken = None;
    if let Some(api) = api {
        // The exchange API: one C call, no capsule. Host memory only: its
        // functions never synchronize, and device data must be ordered
        // before the stream Arrow consumers use (see below). Our own
        // exporter says where its data is without being asked.
        let host = match x.cast::<DLPackExporter>() {
            Ok(ours) => is_host_readable(ours.try_borrow()?.device().0),
            Err(_) => true,
        };
        if host {
            let tensor = exchange::take(x, api)?;
            // SAFETY: a live tensor, ours.
            let device = unsafe { tensor.as_ref() }.dl_tensor.device;
            if is_host_readable(device.device_type) {
                taken = Some((
                    Taken::Owned(tensor),
                    (device.device_type, i64::from(device.device_id)),
                ));
            } else {
                // Not ordered for Arrow consumers: given back, and asked
                // again through `__dlpack__` with the default stream (a
                // framework's tensor is not consumed by an export).
                // SAFETY: ours, never handed out.
                unsafe { delete_tensor(tensor.cast(), true) };
            }
        }
    }
    let (taken, device) = match taken {
        Some(t) => t,
        None => dunder_dlpack(x)?,
    };
    import(taken, device, names, copy)
}

/// The tensor of `x.__dlpack__(...)`, and its device.
fn dunder_dlpack<'py>(x: &Bound<'py, PyAny>) -> PyResult<(Taken<'py>, Device)> {
    let py = x.py();
    let device: Device = if x.hasattr(intern!(py, "__dlpack_device__"))? {
        x.call_method0(intern!(py, "__dlpack_device__"))?
            .extract()?
    } else {
        (crate::abi::K_DL_CPU, 0)
    };
    // The array API's consumer side: the stream the data will be used on.
    // Arrow consumers have none to name, so the default one: the producer
    // orders its work before it, and the array carries no sync_event.
    let stream = default_stream(device.0);
    let kwargs = PyDict::new(py);
    kwargs.set_item(intern!(py, "max_version"), (1, 3))?;
    if let Some(stream) = stream {
        kwargs.set_item(intern!(py, "stream"), stream)?;
    }
    let method = intern!(py, "__dlpack__");
    let capsule = match x.call_method(method, (), Some(&kwargs)) {
        Ok(capsule) => capsule,
        Err(e) if e.is_instance_of::<PyTypeError>(py) => {
            // A producer written before DLPack 1.0.
            kwargs.del_item(intern!(py, "max_version"))?;
            x.call_method(method, (), Some(&kwargs))?
        }
        Err(e) => return Err(e),
    };
    let versioned = capsule_is(&capsule, DLTENSOR_VERSIONED);
    let name = if versioned {
        DLTENSOR_VERSIONED
    } else {
        DLTENSOR
    };
    let tensor = NonNull::new(capsule_pointer(&capsule, name)?)
        .ok_or_else(|| PyValueError::new_err("the producer's capsule holds NULL"))?;
    Ok((
        Taken::Capsule {
            capsule,
            tensor,
            versioned,
        },
        device,
    ))
}

/// Imports a taken tensor under the call's options.
fn import(
    taken: Taken<'_>,
    device: Device,
    names: Option<Vec<CString>>,
    copy: Option<bool>,
) -> PyResult<ArrowArrayFromDLPack> {
    let (tensor, versioned) = match &taken {
        Taken::Capsule {
            tensor, versioned, ..
        } => (*tensor, *versioned),
        Taken::Owned(tensor) => (tensor.cast(), true),
    };
    let result = import_tensor(tensor, versioned, device, names, copy);
    match (&taken, &result) {
        // The Arrow array owns the tensor now: the producer's capsule must
        // not delete it.
        (Taken::Capsule { capsule, .. }, Ok(_)) => {
            let used = if versioned {
                USED_DLTENSOR_VERSIONED
            } else {
                USED_DLTENSOR
            };
            // SAFETY: a live capsule; a static name.
            if unsafe { ffi::PyCapsule_SetName(capsule.as_ptr(), used.as_ptr()) } != 0 {
                return Err(PyErr::fetch(capsule.py()));
            }
        }
        // Untouched, and still the producer capsule's.
        (Taken::Capsule { .. }, Err(_)) => {}
        // SAFETY: untouched by the failed import, and ours.
        (Taken::Owned(tensor), Err(_)) => unsafe { delete_tensor(tensor.cast(), true) },
        (Taken::Owned(_), Ok(_)) => {}
    }
    result
}

/// The import proper: checks what the Python API adds to the library's
/// rules, then calls the library; the tensor is moved only on success.
fn import_tensor(
    tensor: NonNull<c_void>,
    versioned: bool,
    device: Device,
    names: Option<Vec<CString>>,
    copy: Option<bool>,
) -> PyResult<ArrowArrayFromDLPack> {
    let host = is_host_readable(device.0);
    if !host && !versioned {
        return Err(PyBufferError::new_err(
            "device tensors are imported from DLPack 1.x producers only",
        ));
    }
    if !host && copy == Some(true) {
        return Err(PyBufferError::new_err(format!(
            "copy=True: arrow_dlpack never copies device data (device {device:?}); copy it with the producer's library"
        )));
    }
    let columns = names.is_some();
    if columns && !(versioned && host) {
        let what = if host {
            "a legacy (pre-1.0) capsule".to_string()
        } else {
            format!("on device {device:?}")
        };
        return Err(PyBufferError::new_err(format!(
            "columns: a table is made from a DLPack 1.x tensor in host memory; this one is {what}"
        )));
    }
    let names = names.unwrap_or_default();
    if columns && !names.is_empty() {
        // The library reads one name per column: the count must match.
        // SAFETY: a live versioned tensor.
        let t = unsafe { tensor.cast::<DLManagedTensorVersioned>().as_ref() }.dl_tensor();
        // SAFETY: a 2-D tensor's shape holds two extents.
        if t.ndim == 2 && unsafe { *t.shape.add(1) } != names.len() as i64 {
            return Err(PyValueError::new_err(format!(
                "columns: {} names for a tensor of {} columns",
                names.len(),
                // SAFETY: as above.
                unsafe { *t.shape.add(1) }
            )));
        }
    }
    let pointers: Vec<*const std::ffi::c_char> = names.iter().map(|n| n.as_ptr()).collect();
    let (mut schema, mut array) = empty_structs();
    let mut error = error_struct();
    let schema_ptr: *mut ArrowSchema = &mut schema.0;
    let array_ptr: *mut ArrowArray = &mut array.0.array;
    // SAFETY: a live tensor of the flavour `versioned` says, moved on
    // success only; writable out structs; the names outlive the call.
    let status = unsafe {
        if versioned && host {
            let options = ArrowDlpackImportOptions {
                copy: copy_policy(copy) as i32,
                as_columns: i32::from(columns),
                column_names: if names.is_empty() {
                    std::ptr::null()
                } else {
                    pointers.as_ptr()
                },
                reserved: [0; 4],
            };
            capi::arrow_dlpack_import_with(
                tensor.cast().as_ptr(),
                &options,
                array_ptr,
                schema_ptr,
                &mut error,
            )
        } else if versioned {
            capi::arrow_dlpack_import_device(
                tensor.cast().as_ptr(),
                &mut array.0,
                schema_ptr,
                &mut error,
            )
        } else {
            capi::arrow_dlpack_import(
                tensor.cast::<DLManagedTensor>().as_ptr(),
                array_ptr,
                schema_ptr,
                &mut error,
            )
        }
    };
    if status != crate::Status::ARROW_DLPACK_OK {
        if status == crate::Status::ARROW_DLPACK_OUT_OF_MEMORY && error.message[0] == 0 {
            return Err(PyMemoryError::new_err(
                "allocating the Arrow structs failed",
            ));
        }
        return Err(buffer_error(&error));
    }
    if host {
        // The plain imports write host arrays: the device fields are ours.
        let struct_ = &mut array.0;
        struct_.device_type = device.0;
        struct_.device_id = if device.0 == crate::abi::K_DL_CPU {
            -1
        } else {
            device.1
        };
        struct_.sync_event = std::ptr::null_mut();
        struct_.reserved = [0; 3];
    }
    let length = array.0.array.length;
    Ok(ArrowArrayFromDLPack {
        structs: Some((schema, array)),
        device,
        length,
    })
}
