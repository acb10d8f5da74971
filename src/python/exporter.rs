//! `to_dlpack`, `validity` and `DLPackExporter`: Arrow data on its way to a
//! DLPack consumer.

use std::ffi::c_void;
use std::ptr::{self, NonNull};

use pyo3::exceptions::{PyBufferError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{ffi, intern};

use super::guard::buffer_error;
use super::pyarrow::Structs;
use super::{
    ARROW_ARRAY, ARROW_DEVICE_ARRAY, ARROW_SCHEMA, ARROW_STREAM, CPU, Device, Held,
    capsule_pointer, new_capsule, tensor_name, type_attribute,
};
use std::sync::Arc;

use crate::abi::{
    ArrowArray, ArrowArrayStream, ArrowDeviceArray, ArrowSchema, DLManagedTensor,
    DLManagedTensorVersioned, DLPACK_FLAG_BITMASK_IS_COPIED, K_DL_CPU,
};
use crate::arrow::read::device_facts;
use crate::dtype::{self, DType};
use crate::error::{Error, Face, Term};
use crate::export;
use crate::managed::{self, Managed};
use crate::options::{ArrowDlpackCopy, ArrowDlpackOrder, ExportPolicy};
use crate::owner::{self, Handed};

/// What an exporter holds until a consumer takes it.
enum Producer {
    /// A producer's array: the capsules (they keep the structs alive, and
    /// release the array if it is never moved) and the structs in them.
    /// `device` is the struct ArrowDeviceArray around `array`, or NULL for
    /// a plain `__arrow_c_array__` export.
    Array {
        _capsules: (Held, Held),
        schema: *const ArrowSchema,
        array: *mut ArrowArray,
        device: *mut ArrowDeviceArray,
    },
    /// A pyarrow array, exported by pyarrow's pointer export into structs
    /// the exporter holds (see `super::pyarrow`); released unless moved.
    Structs(Structs),
    /// A producer's stream, read to its end by the export.
    Stream {
        _capsule: Held,
        stream: *mut ArrowArrayStream,
    },
    /// A finished DLPack 1.x tensor (a validity mask, a batch's value, or
    /// a tensor handed over through the exchange API), owned here until
    /// first taken.
    Ready(NonNull<DLManagedTensorVersioned>),
    /// The tensor made (or taken) by the first consumer, held for the
    /// next ones: each consumer gets a view of it (`owner::view`).
    Shared(Arc<Handed>),
    /// A stream whose export failed (it was read), or nothing yet.
    Consumed,
}

// SAFETY: the pointers point into the capsules (or the tensor) the source
// owns; none of it is tied to a thread, and the exporter is only touched
// under PyO3's borrow flag (one `&mut` at a time).
unsafe impl Send for Producer {}
// SAFETY: as above: shared access reads nothing through the pointers.
unsafe impl Sync for Producer {}

impl Producer {
    /// An array source's structs: the schema, the array, and the
    /// `ArrowDeviceArray` around the array (NULL for a plain
    /// `__arrow_c_array__` export); live while the source is.
    fn arrays(&mut self) -> Option<(*const ArrowSchema, *mut ArrowArray, *mut ArrowDeviceArray)> {
        match self {
            Producer::Array {
                schema,
                array,
                device,
                ..
            } => Some((*schema, *array, *device)),
            Producer::Structs(structs) => Some((
                &raw const structs.schema,
                &raw mut structs.device.array,
                &raw mut structs.device,
            )),
            Producer::Stream { .. }
            | Producer::Ready(_)
            | Producer::Shared(_)
            | Producer::Consumed => None,
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if let Producer::Ready(tensor) = *self {
            // SAFETY: owned here and not handed out (taking it replaces
            // the source with `Consumed`).
            unsafe { managed::delete(tensor) };
        }
    }
}

/// The export options of one `to_dlpack` call.
#[derive(Clone, Copy, Default)]
struct Options {
    order: ArrowDlpackOrder,
    fill: Option<f64>,
    dtype: Option<&'static DType>,
    temporal: bool,
    dictionary_as_indices: bool,
}

impl Options {
    fn is_default(&self) -> bool {
        self.order == ArrowDlpackOrder::ARROW_DLPACK_ORDER_ANY
            && self.fill.is_none()
            && self.dtype.is_none()
            && !self.temporal
            && !self.dictionary_as_indices
    }

    /// The library's options for a consumer's `copy` (None, False, True).
    /// Built here, valid by construction: the library's own functions are
    /// called directly, not through the C ABI's checks of C options.
    fn for_copy(self, copy: Option<bool>) -> ExportPolicy {
        ExportPolicy {
            copy: copy_policy(copy),
            order: self.order,
            fill: self.fill,
            temporal_as_integer: self.temporal,
            dtype: self.dtype,
            dictionary_as_indices: self.dictionary_as_indices,
            mask: false,
            threads: 0, // `arrow_dlpack.set_threads`, else the default
            pinned: false,
        }
    }
}

/// The array API's `copy` keyword as the library's copy policy.
pub(super) fn copy_policy(copy: Option<bool>) -> ArrowDlpackCopy {
    match copy {
        None => ArrowDlpackCopy::ARROW_DLPACK_COPY_IF_NEEDED,
        Some(false) => ArrowDlpackCopy::ARROW_DLPACK_COPY_NEVER,
        Some(true) => ArrowDlpackCopy::ARROW_DLPACK_COPY_ALWAYS,
    }
}

/// An Arrow array on its way to a DLPack consumer.
///
/// Ownership: the exporter holds the producer's Arrow structs (through
/// their capsules; a pyarrow array's in its own memory), and so the Arrow
/// data, until a consumer calls
/// `__dlpack__` (or takes it through the DLPack C exchange API). That
/// moves the array into a DLPack tensor owned by the returned capsule, and
/// from there by the consumer, which frees it when done; a copy releases
/// the Arrow data at once. An exporter that is never consumed frees the
/// Arrow data when it is garbage collected. An exporter can be consumed
/// once.
#[pyclass(module = "arrow_dlpack", name = "DLPackExporter", subclass)]
pub struct DLPackExporter {
    source: Producer,
    options: Options,
    /// `(device_type, device_id)`, DLPack numbering; kept after consumption.
    device: Device,
    /// How the data came: the producer's method, for `repr`.
    via: &'static str,
}

impl DLPackExporter {
    /// An exporter of a finished tensor (owned from here on).
    pub(super) fn ready(tensor: NonNull<DLManagedTensorVersioned>) -> DLPackExporter {
        // SAFETY: a live tensor (the caller's).
        let device = unsafe { tensor.as_ref() }.dl_tensor().device;
        DLPackExporter {
            source: Producer::Ready(tensor),
            options: Options::default(),
            device: dlpack_device(device.device_type, i64::from(device.device_id)),
            via: "a finished tensor",
        }
    }

    /// The device of the data, DLPack numbering.
    pub(super) fn device(&self) -> Device {
        self.device
    }

    /// Moves the data into a new tensor, DLPack 1.3 (`versioned`) or
    /// legacy, following the array API's `stream`, `copy` and `dl_device`
    /// rules; returns the tensor (a `DLManagedTensorVersioned` or a
    /// `DLManagedTensor`, the caller's from here on).
    pub(super) fn export(
        &mut self,
        py: Python<'_>,
        versioned: bool,
        stream: Option<&Bound<'_, PyAny>>,
        copy: Option<bool>,
        dl_device: Option<Device>,
    ) -> PyResult<NonNull<c_void>> {
        if let Some(wanted) = dl_device
            && wanted != self.device
        {
            return Err(PyBufferError::new_err(format!(
                "the data is on device {:?}; {wanted:?} would need a copy across devices, \
                 which arrow_dlpack never makes: copy with the consumer's library",
                self.device
            )));
        }
        let arrays = self.source.arrays();
        let tensor = match self.source {
            Producer::Consumed => {
                return Err(PyBufferError::new_err(
                    "this arrow_dlpack exporter's stream failed to export when it was read; call to_dlpack again",
                ));
            }
            Producer::Shared(ref held) => {
                let held = held.clone();
                return self.view_of(&held, versioned, stream, copy);
            }
            Producer::Ready(tensor) => {
                // SAFETY: owned by this exporter, live.
                let copied = unsafe { tensor.as_ref() }.flags & DLPACK_FLAG_BITMASK_IS_COPIED != 0;
                if copy == Some(true) && !copied {
                    return Err(PyBufferError::new_err(
                        "copy=True: this tensor is shared, and arrow_dlpack does not copy it again; \
                         copy it with the consumer's library",
                    ));
                }
                if self.device == CPU {
                    cpu_stream(stream)?;
                }
                // Held from here on (the old source must not delete it).
                std::mem::forget(std::mem::replace(&mut self.source, Producer::Consumed));
                let held = Handed::new(tensor);
                self.source = Producer::Shared(held.clone());
                return Ok(view_in(&held, versioned));
            }
            Producer::Stream { stream: s, .. } => {
                cpu_stream(stream)?;
                let options = self.options.for_copy(copy);
                // SAFETY: a live stream (its capsule is held); the library
                // reads it to its end and never releases it.
                let tensor =
                    unsafe { stream_tensor::<DLManagedTensorVersioned>(&mut *s, &options) };
                self.source = Producer::Consumed; // read, whatever happened
                tensor
            }
            Producer::Array { .. } | Producer::Structs(_) => {
                let (schema, array, device) = arrays.expect("an array source");
                // SAFETY: NULL or the producer's live device struct.
                let on_device = unsafe { device.as_mut() }.filter(|_| self.device != CPU);
                if let Some(struct_) = on_device {
                    let (_, event) = device_facts(struct_);
                    self.device_rules(py, stream, copy, event)?;
                    // SAFETY: live structs (held by the source).
                    unsafe { export_device_tensor::<DLManagedTensorVersioned>(struct_, &*schema) }
                } else {
                    cpu_stream(stream)?;
                    let options = self.options.for_copy(copy);
                    // SAFETY: live structs (held by the source); a struct
                    // ArrowDeviceArray starts with its ArrowArray.
                    unsafe {
                        array_tensor::<DLManagedTensorVersioned>(&mut *array, &*schema, &options)
                    }
                }
            }
        };
        // On failure the array is untouched (the library's contract) and
        // still ours.
        let tensor = tensor.map_err(buffer_error)?;
        // The array moved into the tensor, held for every consumer: the
        // structs (or capsules) go now.
        let held = Handed::new(tensor);
        self.source = Producer::Shared(held.clone());
        Ok(view_in(&held, versioned))
    }

    /// A later consumer's view of the tensor the first one made: shared
    /// memory, so `copy=True` is refused (the consumers share it) and,
    /// for device data, so is a second consumer (its stream could not be
    /// made to wait on the producer's event again).
    fn view_of(
        &self,
        held: &Arc<Handed>,
        versioned: bool,
        stream: Option<&Bound<'_, PyAny>>,
        copy: Option<bool>,
    ) -> PyResult<NonNull<c_void>> {
        if self.device != CPU {
            return Err(PyBufferError::new_err(format!(
                "this exporter's device data (device {:?}) was handed to a consumer already; device data goes \
                 to one consumer (its stream waits on the producer's event): call to_dlpack again",
                self.device
            )));
        }
        cpu_stream(stream)?;
        if copy == Some(true) {
            return Err(PyBufferError::new_err(
                "copy=True: this exporter's data was handed out already and its consumers share it; \
                 copy it with the consumer's library (or call to_dlpack again)",
            ));
        }
        Ok(view_in(held, versioned))
    }

    /// The array API's rules for device data: no copies, no conversions,
    /// and the consumer's stream made to wait on the producer's event.
    fn device_rules(
        &self,
        py: Python<'_>,
        stream: Option<&Bound<'_, PyAny>>,
        copy: Option<bool>,
        event: *mut c_void,
    ) -> PyResult<()> {
        if copy == Some(true) {
            return Err(PyBufferError::new_err(format!(
                "copy=True: arrow_dlpack shares memory and never copies device data (device {:?}); \
                 copy it with the consumer's library (e.g. torch.from_dlpack(x).clone())",
                self.device
            )));
        }
        if !self.options.is_default() {
            return Err(PyBufferError::new_err(format!(
                "null_value, dtype and temporal_as_int need a copy or a host read, and the data is on device \
                 {:?}: arrow_dlpack never copies device data",
                self.device
            )));
        }
        if event.is_null() && stream.is_none() {
            return Ok(()); // nothing to wait on, nothing to check
        }
        let sync = py.import(intern!(py, "arrow_dlpack._sync"))?;
        let (device_type, device_id) = self.device;
        if event.is_null() {
            sync.call_method1(intern!(py, "check_stream"), (device_type, stream))?;
        } else {
            sync.call_method1(
                intern!(py, "wait"),
                (device_type, device_id, event as usize, stream),
            )?;
        }
        Ok(())
    }
}

/// A new view of `held` in the flavour asked for (the caller's).
fn view_in(held: &Arc<Handed>, versioned: bool) -> NonNull<c_void> {
    match versioned {
        true => owner::view::<DLManagedTensorVersioned>(held).cast(),
        false => owner::view::<DLManagedTensor>(held).cast(),
    }
}

/// A tensor (ours, handed over) in a DLPack capsule, which deletes it if
/// no consumer takes it.
fn tensor_capsule<'py>(
    py: Python<'py>,
    tensor: NonNull<c_void>,
    versioned: bool,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: a live tensor of that flavour, the caller's to hand over.
    unsafe { new_capsule(py, tensor, tensor_name(versioned)) }
}

/// Deletes a tensor of either flavour.
///
/// # Safety
/// `tensor` is live, owned by the caller, of the flavour `versioned` says.
pub(super) unsafe fn delete_tensor(tensor: NonNull<c_void>, versioned: bool) {
    // SAFETY: the caller's contract: what a capsule of that name holds.
    unsafe { crate::capsule::destroy_contents(tensor_name(versioned), tensor.as_ptr()) }
}

/// The library's export of device data (the tensor; the `sync_event`,
/// already waited on by `device_rules`, is not needed again).
///
/// # Safety
/// As `export::export_device`.
unsafe fn export_device_tensor<M: Managed>(
    array: &mut ArrowDeviceArray,
    schema: &ArrowSchema,
) -> Result<NonNull<M>, Error> {
    // SAFETY: `export_device_tensor`'s caller promises it: as `export::export_device`.
    unsafe { export::export_device::<M>(array, schema) }.map(|(tensor, _event)| tensor)
}

/// The library's export of host data under options (the tensor: no mask
/// is asked for).
///
/// # Safety
/// As `export::export_with`.
unsafe fn array_tensor<M: Managed>(
    array: &mut ArrowArray,
    schema: &ArrowSchema,
    options: &ExportPolicy,
) -> Result<NonNull<M>, Error> {
    // SAFETY: `array_tensor`'s caller promises it: as `export::export_with`.
    unsafe { export::export_with::<M>(array, schema, options) }.map(|made| made.tensor)
}

/// The library's export of a stream under options (the tensor).
///
/// # Safety
/// As `export::export_stream`.
unsafe fn stream_tensor<M: Managed>(
    stream: &mut ArrowArrayStream,
    options: &ExportPolicy,
) -> Result<NonNull<M>, Error> {
    // SAFETY: `stream_tensor`'s caller promises it: as `export::export_stream`.
    unsafe { export::export_stream::<M>(stream, options) }.map(|made| made.tensor)
}

/// The array API: CPU data takes no stream.
fn cpu_stream(stream: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    match stream {
        None => Ok(()),
        Some(s) => Err(PyBufferError::new_err(format!(
            "stream must be None for CPU data, got {}",
            s.repr()?
        ))),
    }
}

/// `(device_type, device_id)` as `__dlpack_device__` reports it: the CPU
/// is `(1, 0)` whatever its id (Arrow's is -1).
fn dlpack_device(device_type: i32, device_id: i64) -> Device {
    if device_type == K_DL_CPU {
        CPU
    } else {
        (device_type, device_id)
    }
}

#[pymethods]
impl DLPackExporter {
    /// A ``"dltensor_versioned"`` capsule (DLPack 1.3) when
    /// ``max_version >= (1, 0)``, else a legacy ``"dltensor"`` capsule
    /// (JAX asks for no version). The capsule owns the tensor until a
    /// consumer takes it.
    ///
    /// ``copy`` follows the array API: None shares when it can and copies
    /// otherwise (booleans, nulls with ``null_value``, a ``dtype``, several
    /// chunks); False never copies (``BufferError`` where a copy would be
    /// needed); True always returns a private, writable copy. A shared
    /// tensor is read-only (NumPy returns a non-writeable array).
    ///
    /// ``stream`` follows the array API: for CPU data it must be None; for
    /// device data whose producer handed a ``sync_event``, the consumer's
    /// stream is made to wait on it (see ``arrow_dlpack._sync``); -1 means
    /// the consumer synchronizes itself.
    ///
    /// Raises ``BufferError`` when the request cannot be met (a copy that
    /// ``copy=False`` forbids; ``dl_device`` other than the data's, or
    /// ``copy=True`` for device data: copies across devices are the
    /// consumer's library's job), for a stream the array API disallows,
    /// when the array cannot be exported (nulls without ``null_value``,
    /// non-numeric types: the message is the library's), or when the
    /// exporter was already consumed.
    #[pyo3(signature = (*, stream=None, max_version=None, dl_device=None, copy=None))]
    pub(super) fn __dlpack__<'py>(
        &mut self,
        py: Python<'py>,
        stream: Option<Bound<'py, PyAny>>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<Device>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        // (Also the body of the vectorcall method of `fastcall`, on Python
        // 3.10 and later.)
        let versioned = matches!(max_version, Some((major, _)) if major >= 1);
        let tensor = self.export(py, versioned, stream.as_ref(), copy, dl_device)?;
        tensor_capsule(py, tensor, versioned)
    }

    /// ``(device_type, device_id)`` of the data, DLPack numbering (``(1,
    /// 0)`` for the CPU); also after the exporter was consumed.
    fn __dlpack_device__(&self) -> Device {
        self.device
    }

    /// A schema capsule of the Arrow type of the data (a copy), until the
    /// exporter is consumed: ``pyarrow.field(exporter)`` names what a
    /// consumer will receive. ``BufferError`` for a finished tensor (it has
    /// no Arrow type) or a type the library cannot read.
    fn __arrow_c_schema__<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &mut self.source {
            Producer::Stream { stream, .. } => {
                // A stream's schema may be asked for any number of times.
                // SAFETY: a live stream, held by its capsule.
                let reader = unsafe { crate::arrow::stream::Reader::open(&mut **stream) }
                    .map_err(buffer_error)?;
                super::schema_capsule(py, &reader.schema)
            }
            Producer::Consumed | Producer::Shared(_) => Err(PyBufferError::new_err(
                "this arrow_dlpack exporter's data was handed to a DLPack consumer already (its Arrow structs \
                 moved into the tensor); call to_dlpack again",
            )),
            Producer::Ready(_) => Err(PyBufferError::new_err(
                "this exporter holds a finished DLPack tensor, which has no Arrow type",
            )),
            source => {
                let (schema, _, _) = source.arrays().expect("an array source");
                // SAFETY: the producer's live schema, held by the source.
                super::schema_capsule(py, unsafe { &*schema })
            }
        }
    }

    fn __repr__(&self) -> String {
        let state = match &self.source {
            Producer::Consumed => "failed".to_string(),
            Producer::Shared(held) => format!(
                "shared with {} consumer view(s)",
                Arc::strong_count(held) - 1
            ),
            _ => "not consumed".to_string(),
        };
        format!(
            "<arrow_dlpack.DLPackExporter of {}, on device {:?}, {state}>",
            self.via, self.device
        )
    }
}

/// What an Arrow producer hands over, written to `slot` (in place: a
/// pyarrow array's structs are exported into it), the data's device, and
/// the method it came by:
/// pyarrow's arrays by pyarrow's pointer export (see `super::pyarrow`),
/// else the device protocol first (the only one that says where the data
/// is), then the array protocol, then the stream.
fn arrow_source(obj: &Bound<'_, PyAny>, slot: &mut Producer) -> PyResult<(Device, &'static str)> {
    if let Some(pyarrow) = super::pyarrow::exporter_of(obj) {
        *slot = Producer::Structs(Structs::empty());
        let Producer::Structs(structs) = slot else {
            unreachable!("just written")
        };
        super::pyarrow::export_into(obj, pyarrow, structs)?;
        let (device, _) = device_facts(&structs.device);
        return Ok((device, "pyarrow's Array._export_to_c_device"));
    }
    let py = obj.py();
    let kind = obj.get_type();
    if let Some(export) = type_attribute(&kind, intern!(py, "__arrow_c_device_array__")) {
        let (schema, array) = capsule_pair(&call_with(&export, obj)?)?;
        let schema_ptr = capsule_pointer(&schema, ARROW_SCHEMA)?.cast::<ArrowSchema>();
        let device = capsule_pointer(&array, ARROW_DEVICE_ARRAY)?.cast::<ArrowDeviceArray>();
        // SAFETY: the producer's live struct, held by its capsule.
        let (facts, _) = device_facts(unsafe { &*device });
        *slot = Producer::Array {
            _capsules: (Held::new(schema), Held::new(array)),
            schema: schema_ptr,
            // SAFETY: a field of the live struct.
            array: unsafe { &raw mut (*device).array },
            device,
        };
        return Ok((facts, "__arrow_c_device_array__"));
    }
    if let Some(export) = type_attribute(&kind, intern!(py, "__arrow_c_array__")) {
        let (schema, array) = capsule_pair(&call_with(&export, obj)?)?;
        *slot = Producer::Array {
            schema: capsule_pointer(&schema, ARROW_SCHEMA)?.cast(),
            array: capsule_pointer(&array, ARROW_ARRAY)?.cast(),
            device: ptr::null_mut(),
            _capsules: (Held::new(schema), Held::new(array)),
        };
        return Ok((CPU, "__arrow_c_array__"));
    }
    if type_attribute(&kind, intern!(py, "__arrow_c_stream__")).is_some() {
        // Read when a consumer asks: by the library, to its end.
        let capsule = obj.call_method0(intern!(py, "__arrow_c_stream__"))?;
        let stream = capsule_pointer(&capsule, ARROW_STREAM)?.cast();
        *slot = Producer::Stream {
            _capsule: Held::new(capsule),
            stream,
        };
        return Ok((CPU, "__arrow_c_stream__"));
    }
    Err(PyTypeError::new_err(format!(
        "arrow_dlpack.to_dlpack needs an Arrow array: an object implementing __arrow_c_device_array__, \
         __arrow_c_array__ or __arrow_c_stream__; got {}",
        type_name(obj)?
    )))
}

/// `method(obj)`, the unbound method of `obj`'s type called on it, without
/// an argument tuple (CPython passes `obj` on the stack).
fn call_with<'py>(
    method: &Bound<'py, PyAny>,
    obj: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: live objects; the argument list ends with NULL; the call
    // returns a new reference or NULL with an exception set.
    unsafe {
        Bound::from_owned_ptr_or_err(
            obj.py(),
            ffi::PyObject_CallFunctionObjArgs(
                method.as_ptr(),
                obj.as_ptr(),
                ptr::null_mut::<ffi::PyObject>(),
            ),
        )
    }
}

/// `module.qualname` of an object's type, for messages.
pub(super) fn type_name(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    let kind = obj.get_type();
    Ok(format!("{}.{}", kind.module()?, kind.qualname()?))
}

/// The `(schema, array)` pair of the Arrow PyCapsule protocols.
fn capsule_pair<'py>(pair: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let pair = pair.cast::<PyTuple>().map_err(|_| {
        PyTypeError::new_err("an Arrow PyCapsule export must return a (schema, array) tuple")
    })?;
    if pair.len() != 2 {
        return Err(PyTypeError::new_err(
            "an Arrow PyCapsule export must return a (schema, array) tuple",
        ));
    }
    Ok((pair.get_item(0)?, pair.get_item(1)?))
}

/// The library's dtype of a `dtype=` argument: a name NumPy or PyTorch
/// gives a type (`"float32"`, `"bool"`, `"double"`, `"bfloat16"`, and
/// `"torch.float32"`), a NumPy dtype or scalar type, a PyTorch dtype, or
/// one of Python's `bool`, `int` and `float`.
pub(super) fn dtype_of(dtype: &Bound<'_, PyAny>) -> PyResult<&'static DType> {
    let py = dtype.py();
    let name = if let Ok(name) = dtype.extract::<String>() {
        Some(name)
    } else if let Ok(name) = dtype.getattr(intern!(py, "name")) {
        // A NumPy dtype (`np.dtype("float32").name`).
        name.extract::<String>().ok()
    } else if let Ok(name) = dtype.getattr(intern!(py, "__name__")) {
        // A NumPy scalar type (`np.float32`) or a Python type.
        name.extract::<String>().ok()
    } else {
        // A PyTorch dtype prints as `torch.float32`.
        dtype.str().ok().map(|s| s.to_string())
    };
    let found = name
        .as_deref()
        .map(|name| name.strip_prefix("torch.").unwrap_or(name))
        .and_then(dtype::by_name);
    match found {
        Some(dtype) => Ok(dtype),
        None => {
            let names: Vec<&str> = dtype::names().collect();
            Err(PyTypeError::new_err(format!(
                "unsupported dtype {}: one of {} (or their NumPy and PyTorch dtypes)",
                dtype.repr()?,
                names.join(", ")
            )))
        }
    }
}

/// Wraps an Arrow array so that DLPack consumers share its memory, or
/// get one copy of it where sharing is impossible.
///
/// ``obj`` implements ``__arrow_c_device_array__`` (data on any device,
/// the CPU included), ``__arrow_c_array__`` (CPU data), or
/// ``__arrow_c_stream__`` (pyarrow ChunkedArray and Table, polars Series,
/// RecordBatchReader...: one chunk is shared, several are concatenated by
/// one copy). Raises ``TypeError`` for anything else.
///
/// ``null_value``: None, nulls raise ``BufferError``; a number, each null
/// becomes it (a copy; it must be exact in the tensor's dtype).
/// ``dtype``: a name (``"float32"``, ``"int64"``, ``"bool"``,
/// ``"bfloat16"``...), a NumPy dtype or scalar type or a PyTorch dtype,
/// converted as ``astype`` would (bfloat16: as ``Tensor.to`` rounds;
/// a copy); None keeps the array's own. ``temporal_as_int``: dates, times,
/// timestamps and durations are shared as their int32/int64 storage.
/// ``dictionary_as_indices``: a dictionary-encoded column exports its
/// indices (shared; export its dictionary with ``to_dlpack(col.dictionary)``).
/// ``order`` ("any", "C", "F") is for tables (2-D tensors).
///
/// >>> import numpy as np, pyarrow as pa
/// >>> np.from_dlpack(to_dlpack(pa.array([1, 2, 3], pa.int32())))
/// array([1, 2, 3], dtype=int32)
/// >>> np.from_dlpack(to_dlpack(pa.array([True, None, False]), null_value=0))
/// array([ True, False, False])
#[pyfunction]
#[pyo3(signature = (obj, *, order=None, null_value=None, dtype=None, temporal_as_int=false, dictionary_as_indices=false))]
pub fn to_dlpack<'py>(
    obj: &Bound<'py, PyAny>,
    order: Option<&Bound<'py, PyAny>>,
    null_value: Option<f64>,
    dtype: Option<&Bound<'py, PyAny>>,
    temporal_as_int: bool,
    dictionary_as_indices: bool,
) -> PyResult<Bound<'py, DLPackExporter>> {
    let order = match order {
        None => ArrowDlpackOrder::ARROW_DLPACK_ORDER_ANY,
        Some(order) => match order.extract::<String>().as_deref() {
            Ok("any") => ArrowDlpackOrder::ARROW_DLPACK_ORDER_ANY,
            Ok("C") => ArrowDlpackOrder::ARROW_DLPACK_ROW_MAJOR,
            Ok("F") => ArrowDlpackOrder::ARROW_DLPACK_COLUMN_MAJOR,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "order must be 'any', 'C' or 'F', got {}",
                    order.repr()?
                )));
            }
        },
    };
    let options = Options {
        order,
        fill: null_value,
        dtype: dtype.map(dtype_of).transpose()?,
        temporal: temporal_as_int,
        dictionary_as_indices,
    };
    let exporter = Bound::new(
        obj.py(),
        DLPackExporter {
            source: Producer::Consumed,
            options,
            device: CPU,
            via: "",
        },
    )?;
    // Filled in place: pyarrow exports into the object's own memory.
    let mut filling = exporter.borrow_mut();
    (filling.device, filling.via) = arrow_source(obj, &mut filling.source)?;
    drop(filling);
    Ok(exporter)
}

/// The validity of an Arrow array as a DLPack exporter of a kDLBool
/// tensor of the shape ``to_dlpack(obj)`` has: True where the value is
/// valid (nulls at a list level cover their whole row). Always a fresh,
/// writable copy; a DLPack 1.x tensor (its consumer passes
/// ``max_version``, as NumPy and PyTorch do).
///
/// >>> import numpy as np, pyarrow as pa
/// >>> np.from_dlpack(validity(pa.array([1, None, 3])))
/// array([ True, False,  True])
#[pyfunction]
pub fn validity(obj: &Bound<'_, PyAny>) -> PyResult<DLPackExporter> {
    let mut source = Producer::Consumed;
    let (device, _) = arrow_source(obj, &mut source)?;
    // The mask of what `to_dlpack(obj)` gives its consumers (`copy=None`),
    // made without making that tensor.
    let options = Options::default().for_copy(None);
    let mask = match source.arrays() {
        Some(_) if device != CPU => {
            return Err(PyBufferError::new_err(
                "the validity of device data would need a host read: arrow_dlpack never reads device memory",
            ));
        }
        // SAFETY: live structs, held by `source`; the library only reads
        // the array (the source still releases it).
        Some((schema, array, _)) => unsafe { export::validity(&*array, &*schema, &options) },
        None => match source {
            // SAFETY: a live stream, held by `source`'s capsule.
            Producer::Stream { stream, .. } => unsafe {
                export::validity_stream(&mut *stream, &options)
            },
            _ => unreachable!("a producer's source"),
        },
    };
    Ok(DLPackExporter::ready(mask.map_err(buffer_error)?))
}

/// The options of `to_jagged` and `to_padded`.
fn variable_options(
    null_value: Option<f64>,
    dtype: Option<&Bound<'_, PyAny>>,
    copy: Option<bool>,
    mask: bool,
) -> PyResult<ExportPolicy> {
    let mut options = Options {
        fill: null_value,
        dtype: dtype.map(dtype_of).transpose()?,
        ..Options::default()
    }
    .for_copy(copy);
    options.mask = mask;
    Ok(options)
}

/// A host array source's structs, or its stream; `BufferError` for
/// device data (a variable-length column's offsets would be read).
fn host_source(obj: &Bound<'_, PyAny>, source: &mut Producer) -> PyResult<()> {
    let (device, _) = arrow_source(obj, source)?;
    if device != CPU {
        return Err(PyBufferError::new_err(format!(
            "the data is on device {device:?}: a variable-length column's offsets would be read, \
             and arrow_dlpack never reads device memory"
        )));
    }
    Ok(())
}

/// A variable-length column (a list, string or binary array, or a stream
/// of them: pyarrow ChunkedArray, polars Series...) as the jagged tensors
/// ML code takes: ``Jagged(values, offsets, validity)``, exporters of every
/// row's elements end to end and of the int32 or int64 offsets (from 0:
/// row ``i`` is ``values[offsets[i]:offsets[i + 1]]``, as
/// ``torch.nested.nested_tensor_from_jagged`` and
/// ``EmbeddingBag(include_last_offset=True)`` take them). Shared where
/// Arrow's memory allows (one chunk whose first offset is 0, nothing to
/// convert or fill), else copied once (``copy=False``: ``BufferError``).
/// ``null_value``: None, nulls raise; a number, null elements become it
/// and null rows become empty, ``validity`` the rows' mask (None without
/// null rows). ``dtype`` converts the values (a copy).
#[pyfunction]
// Positional (the package's `to_jagged` passes them so: keyword parsing
// costs a fifth of a small export).
#[pyo3(signature = (obj, null_value=None, dtype=None, copy=None))]
pub fn to_jagged<'py>(
    obj: &Bound<'py, PyAny>,
    null_value: Option<f64>,
    dtype: Option<&Bound<'_, PyAny>>,
    copy: Option<bool>,
) -> PyResult<Bound<'py, PyAny>> {
    let options = variable_options(null_value, dtype, copy, null_value.is_some())?;
    let mut source = Producer::Consumed;
    host_source(obj, &mut source)?;
    let made = match source.arrays() {
        // SAFETY: live structs, held by `source`; moved on success.
        Some((schema, array, _)) => unsafe {
            export::export_jagged::<DLManagedTensorVersioned>(&mut *array, &*schema, &options)
        },
        None => match &source {
            // SAFETY: a live stream, held by `source`'s capsule.
            Producer::Stream { stream, .. } => unsafe {
                export::export_jagged_stream::<DLManagedTensorVersioned>(&mut **stream, &options)
            },
            _ => unreachable!("a producer's source"),
        },
    }
    .map_err(buffer_error)?;
    let validity = match (made.mask, made.null_rows) {
        (Some(mask), 0) => {
            // SAFETY: ours, not handed out: no null row, no mask.
            unsafe { managed::delete(mask) };
            None
        }
        (mask, _) => mask.map(DLPackExporter::ready),
    };
    let py = obj.py();
    let validity = match validity {
        Some(v) => Bound::new(py, v)?.into_any(),
        None => py.None().into_bound(py),
    };
    let values = Bound::new(py, DLPackExporter::ready(made.values))?.into_any();
    let offsets = Bound::new(py, DLPackExporter::ready(made.offsets))?.into_any();
    super::named::jagged(py, [values, offsets, validity])
}

/// A variable-length column (a list, string or binary array, or a stream
/// of them) as one padded tensor ``[rows, length, ...]`` and its
/// ``[rows, length]`` mask (True at each real element): always one copy.
/// ``length``: None pads to the longest row; a number cuts or pads every
/// row to it. ``side``: "right" pads (and cuts) at the end, "left" at the
/// start (each row's last element in the last column). ``value``: the
/// padding, exact in the dtype. ``null_value`` and ``dtype`` as in
/// ``to_jagged`` (a null row, filled, is all padding).
#[pyfunction]
// Positional, as `to_jagged`.
#[pyo3(signature = (obj, length=None, value=0.0, side=None, null_value=None, dtype=None))]
pub fn to_padded<'py>(
    obj: &Bound<'py, PyAny>,
    length: Option<i64>,
    value: f64,
    side: Option<&str>,
    null_value: Option<f64>,
    dtype: Option<&Bound<'_, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    use crate::options::{Pad, Side};
    let padding = Side::named(side.unwrap_or("right"), Term::PadSide)
        .and_then(|side| Pad::new(length, side, value, Term::PadLength))
        .map_err(|e| PyValueError::new_err(e.message_for(Face::Python)))?;
    let options = variable_options(null_value, dtype, None, true)?;
    let mut source = Producer::Consumed;
    host_source(obj, &mut source)?;
    let made = match source.arrays() {
        // SAFETY: live structs, held by `source`; moved on success.
        Some((schema, array, _)) => unsafe {
            export::export_padded::<DLManagedTensorVersioned>(
                &mut *array,
                &*schema,
                &options,
                &padding,
            )
        },
        None => match &source {
            // SAFETY: a live stream, held by `source`'s capsule.
            Producer::Stream { stream, .. } => unsafe {
                export::export_padded_stream::<DLManagedTensorVersioned>(
                    &mut **stream,
                    &options,
                    &padding,
                )
            },
            _ => unreachable!("a producer's source"),
        },
    }
    .map_err(buffer_error)?;
    let mask = made.mask.expect("the mask was asked for");
    let py = obj.py();
    let values = Bound::new(py, DLPackExporter::ready(made.tensor))?.into_any();
    let mask = Bound::new(py, DLPackExporter::ready(mask))?.into_any();
    super::named::padded(py, [values, mask])
}
