//! `from_dlpack` and `ArrowArrayFromDLPack`: a DLPack producer's tensor
//! shared as an Arrow array.

use std::ffi::{CString, c_void};
use std::ptr::NonNull;

use pyo3::exceptions::{PyBufferError, PyMemoryError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use pyo3::{ffi, intern};

use super::exporter::{DLPackExporter, copy_policy, delete_tensor, type_name};
use super::guard::buffer_error;
use super::{
    ARROW_ARRAY, ARROW_DEVICE_ARRAY, ARROW_SCHEMA, DLTENSOR_VERSIONED, Device, USED_DLTENSOR,
    USED_DLTENSOR_VERSIONED, capsule_is, capsule_pointer, exchange, new_capsule, tensor_name,
    type_attribute,
};
use crate::abi::{ArrowDeviceArray, ArrowSchema, DLManagedTensor, DLManagedTensorVersioned};
use crate::capsule::{free_device_array, free_schema};
use crate::device::is_host_readable;
use crate::dlpack::read::Memory;
use crate::import;
use crate::managed::Managed;
use crate::options::ImportPolicy;

/// The structs of an imported array, malloc'd (the C ABI's capsule
/// destructor frees them with `free`: see `crate::capsule`): released and
/// freed when dropped, unless handed to capsules first.
struct CapsuleStructs {
    schema: NonNull<ArrowSchema>,
    /// A struct ArrowDeviceArray; its first member is the struct ArrowArray
    /// that `__arrow_c_array__` hands out.
    array: NonNull<ArrowDeviceArray>,
}

// SAFETY: owned here alone; their release callbacks are the library's,
// callable from any thread; access goes through PyO3's borrow flag.
unsafe impl Send for CapsuleStructs {}
// SAFETY: shared access reads plain fields only.
unsafe impl Sync for CapsuleStructs {}

impl CapsuleStructs {
    /// Zeroed structs (released, NULL pointers: a valid value of every
    /// field) for the library to write; MemoryError if malloc fails.
    fn new() -> PyResult<CapsuleStructs> {
        let allocate = |size| NonNull::new(calloc(size));
        match (
            allocate(std::mem::size_of::<ArrowSchema>()),
            allocate(std::mem::size_of::<ArrowDeviceArray>()),
        ) {
            (Some(schema), Some(array)) => Ok(CapsuleStructs {
                schema: schema.cast(),
                array: array.cast(),
            }),
            (schema, array) => {
                // SAFETY: NULL or allocated just above, unused.
                unsafe {
                    libc::free(schema.map_or(std::ptr::null_mut(), NonNull::as_ptr));
                    libc::free(array.map_or(std::ptr::null_mut(), NonNull::as_ptr));
                }
                Err(PyMemoryError::new_err(
                    "allocating the Arrow structs failed",
                ))
            }
        }
    }
}

/// `calloc(1, size)`: zeroed memory, or NULL.
fn calloc(size: usize) -> *mut c_void {
    // SAFETY: calloc has no preconditions; NULL on failure.
    unsafe { libc::calloc(1, size) }
}

impl Drop for CapsuleStructs {
    fn drop(&mut self) {
        // SAFETY: malloc'd, owned here, not freed yet.
        unsafe {
            free_schema(self.schema);
            free_device_array(self.array.cast());
        }
    }
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
    structs: Option<CapsuleStructs>,
    /// `(device_type, device_id)` of the data, DLPack numbering.
    #[pyo3(get)]
    device: Device,
    length: i64,
}

impl ArrowArrayFromDLPack {
    fn take<'py>(
        &mut self,
        py: Python<'py>,
        array_name: &'static std::ffi::CStr,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let structs = self.structs.take().ok_or_else(consumed)?;
        // From here the capsules own the structs (and, through the array,
        // the tensor); their destructor releases whatever a consumer leaves.
        let (schema, array) = (structs.schema, structs.array);
        std::mem::forget(structs);
        // SAFETY: malloc'd structs of those kinds, handed over.
        let schema = unsafe { new_capsule(py, schema.cast(), ARROW_SCHEMA) };
        // SAFETY: as for the block above, malloc'd structs of those kinds, handed over.
        let array = unsafe { new_capsule(py, array.cast(), array_name) };
        Ok((schema?, array?))
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
        let structs = self.structs.as_ref().ok_or_else(consumed)?;
        // SAFETY: the schema the import wrote, live and ours.
        super::schema_capsule(py, unsafe { structs.schema.as_ref() })
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

/// The error of an array already handed to a consumer.
fn consumed() -> PyErr {
    PyBufferError::new_err("this arrow_dlpack array was already consumed; call from_dlpack again")
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
    // Checked before the producer is asked for anything.
    let names = column_names(columns)?;
    let (taken, device) = take(py, x, "from_dlpack")?;
    import(taken, device, names, copy)
}

/// The tensor of a DLPack producer, and its device: through its type's
/// exchange API for host memory (one C call, no capsule), else
/// `x.__dlpack__(...)`. `TypeError` for an object without either.
fn take<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    function: &str,
) -> PyResult<(Taken<'py>, Device)> {
    let kind = x.get_type();
    let api = exchange::api_of(&kind)?;
    if api.is_none() && type_attribute(&kind, intern!(py, "__dlpack__")).is_none() {
        return Err(PyTypeError::new_err(format!(
            "arrow_dlpack.{function} needs an object with __dlpack__, got {}",
            type_name(x)?
        )));
    }
    if let Some(api) = api {
        // The exchange API: one C call, no capsule. Host memory only: its
        // functions never synchronize, and device data must be ordered
        // before the stream Arrow consumers use (see `dunder_dlpack`). Our
        // own exporter says where its data is without being asked.
        let host = match x.cast::<DLPackExporter>() {
            Ok(ours) => is_host_readable(ours.try_borrow()?.device().0),
            Err(_) => true,
        };
        if host {
            let tensor = exchange::take(x, api)?;
            // SAFETY: a live tensor, ours.
            let device = unsafe { tensor.as_ref() }.dl_tensor.device;
            if is_host_readable(device.device_type) {
                return Ok((
                    Taken::Owned(tensor),
                    (device.device_type, i64::from(device.device_id)),
                ));
            }
            // Not ordered for Arrow consumers: given back, and asked again
            // through `__dlpack__` with the default stream (a framework's
            // tensor is not consumed by an export).
            // SAFETY: ours, never handed out.
            unsafe { delete_tensor(tensor.cast(), true) };
        }
    }
    dunder_dlpack(x)
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
    let name = tensor_name(versioned);
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
    settle(&taken, result.is_ok())?;
    result
}

/// After an import of a taken tensor: on success the Arrow array owns it
/// (the producer's capsule renamed `used_...`, so that it does not delete
/// it); on failure a capsule's tensor is left to it, and one taken through
/// the exchange API (ours) deleted.
fn settle(taken: &Taken<'_>, imported: bool) -> PyResult<()> {
    match (taken, imported) {
        (
            Taken::Capsule {
                capsule, versioned, ..
            },
            true,
        ) => {
            let used = if *versioned {
                USED_DLTENSOR_VERSIONED
            } else {
                USED_DLTENSOR
            };
            // SAFETY: a live capsule; a static name.
            if unsafe { ffi::PyCapsule_SetName(capsule.as_ptr(), used.as_ptr()) } != 0 {
                return Err(PyErr::fetch(capsule.py()));
            }
        }
        (Taken::Capsule { .. }, false) | (Taken::Owned(_), true) => {}
        // SAFETY: untouched by the failed import, and ours.
        (Taken::Owned(tensor), false) => unsafe { delete_tensor(tensor.cast(), true) },
    }
    Ok(())
}

/// A DLPack 1.x host tensor of `taken`, or `BufferError`.
fn versioned_host(
    taken: &Taken<'_>,
    device: Device,
    what: &str,
) -> PyResult<NonNull<DLManagedTensorVersioned>> {
    let (tensor, versioned) = match taken {
        Taken::Capsule {
            tensor, versioned, ..
        } => (*tensor, *versioned),
        Taken::Owned(tensor) => (tensor.cast(), true),
    };
    if !versioned || !is_host_readable(device.0) {
        return Err(PyBufferError::new_err(format!(
            "{what}: a list array is made of DLPack 1.x tensors in host memory; this one is {}",
            if versioned {
                format!("on device {device:?}")
            } else {
                "a legacy (pre-1.0) capsule".into()
            }
        )));
    }
    Ok(tensor.cast())
}

/// A values tensor and an offsets tensor (int32 or int64, ``length + 1``
/// entries, as ``to_jagged`` gives them) as an Arrow list array sharing
/// both: int32 offsets make a ``list``, int64 a ``large_list``; N-D values
/// a list of ``arrow.fixed_shape_tensor``. The offsets are checked first
/// (non-decreasing, the first >= 0, the last <= the values' rows), because
/// Arrow consumers trust them. Any DLPack 1.x producers of host memory
/// (NumPy, PyTorch, JAX...). The result implements ``__arrow_c_array__``:
/// ``pyarrow.array(from_jagged(values, offsets))``.
#[pyfunction]
pub fn from_jagged<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyAny>,
    offsets: &Bound<'py, PyAny>,
) -> PyResult<ArrowArrayFromDLPack> {
    let (values, values_device) = take(py, values, "from_jagged")?;
    let (offsets, offsets_device) = match take(py, offsets, "from_jagged") {
        Ok(t) => t,
        Err(e) => {
            settle(&values, false)?;
            return Err(e);
        }
    };
    let imported = (|| {
        let v = versioned_host(&values, values_device, "values")?;
        let o = versioned_host(&offsets, offsets_device, "offsets")?;
        let structs = CapsuleStructs::new()?;
        // SAFETY: malloc'd, zeroed structs, ours alone: writable.
        let (schema, struct_) =
            unsafe { (&mut *structs.schema.as_ptr(), &mut *structs.array.as_ptr()) };
        let options = ImportPolicy {
            copy: copy_policy(None),
            ..ImportPolicy::SHARE
        };
        // SAFETY: live tensors, moved on success only; writable structs.
        unsafe { import::import_jagged(v, o, &options, &mut struct_.array, schema) }
            .map_err(buffer_error)?;
        (struct_.device_type, struct_.device_id) = (crate::abi::K_DL_CPU, -1);
        let length = struct_.array.length;
        Ok(ArrowArrayFromDLPack {
            structs: Some(structs),
            device: values_device,
            length,
        })
    })();
    settle(&values, imported.is_ok())?;
    settle(&offsets, imported.is_ok())?;
    imported
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
        // SAFETY: as above (read through the one DLPack reader).
        let columns = unsafe { crate::dlpack::read::extent(t, 1) }.filter(|_| t.ndim == 2);
        if let Some(columns) = columns.filter(|&c| c != names.len() as i64) {
            return Err(PyValueError::new_err(format!(
                "columns: {} names for a tensor of {columns} columns",
                names.len(),
            )));
        }
    }
    let pointers: Vec<*const std::ffi::c_char> = names.iter().map(|n| n.as_ptr()).collect();
    let structs = CapsuleStructs::new()?;
    // SAFETY: malloc'd, zeroed structs, ours alone: writable.
    let (schema, struct_) =
        unsafe { (&mut *structs.schema.as_ptr(), &mut *structs.array.as_ptr()) };
    // SAFETY: a live tensor of the flavour `versioned` says, moved on
    // success only; writable out structs; the names outlive the call.
    let imported = unsafe {
        if versioned && host {
            let options = ImportPolicy {
                copy: copy_policy(copy),
                as_columns: columns,
                column_names: match names.is_empty() {
                    true => std::ptr::null(),
                    false => pointers.as_ptr(),
                },
                threads: 0, // `arrow_dlpack.set_threads`, else the default
            };
            import::versioned(tensor.cast().as_ptr())
                .and_then(|t| import::import_with(t, &options, &mut struct_.array, schema))
        } else if versioned {
            import::versioned(tensor.cast().as_ptr())
                .and_then(|t| import::import_device(t, struct_, schema))
        } else {
            import::import_to_c(
                tensor.cast::<DLManagedTensor>(),
                Memory::HostReadable,
                &mut struct_.array,
                schema,
            )
        }
    };
    imported.map_err(buffer_error)?;
    if host {
        // The plain imports write host arrays: the device fields are ours.
        struct_.device_type = device.0;
        struct_.device_id = if device.0 == crate::abi::K_DL_CPU {
            -1
        } else {
            device.1
        };
        struct_.sync_event = std::ptr::null_mut();
        struct_.reserved = [0; 3];
    }
    let length = struct_.array.length;
    Ok(ArrowArrayFromDLPack {
        structs: Some(structs),
        device,
        length,
    })
}
