//! The `extern "C"` entry points. Each one guards panics, turns NULL
//! pointers into statuses, calls the core and reports the outcome; none has
//! logic of its own. The panic guard, the NULL checks (and their safety
//! argument) and the report are each written once, below; the entry points
//! of one kind share one generic body.

use std::ffi::{c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::{self, NonNull};

use crate::abi::{
    ArrowArray, ArrowArrayStream, ArrowDeviceArray, ArrowSchema, DLManagedTensor,
    DLManagedTensorVersioned,
};
use crate::dlpack::read::Memory;
use crate::epoch::State;
use crate::error::{ArrowDlpackError, ArrowDlpackStatus, Error, Status, err};
use crate::export::Made;
use crate::managed::Managed;
use crate::options::{ExportPolicy, ImportPolicy, Pad};
use crate::{export, import};

pub use crate::c_loader::{
    ArrowDlpackBatch, ArrowDlpackLoader, ArrowDlpackLoaderOptions, ArrowDlpackOutput,
    ArrowDlpackOutputKind,
};
pub use crate::capsule::arrow_dlpack_capsule_destructor;
pub use crate::options::{
    ArrowDlpackCopy, ArrowDlpackExportOptions, ArrowDlpackImportOptions, ArrowDlpackOrder,
    ArrowDlpackPadding,
};

/// Runs `$body` (a `Result`) behind a panic guard, reports the outcome into
/// `$error` (which may be NULL) and returns the value, or `$failed(status)`.
///
/// The outcome is reported inside the guarded closure, so that only the
/// small success value crosses `catch_unwind` (an `Error` is 264 bytes and
/// would be copied on every call's success path).
macro_rules! ffi_boundary {
    ($name:expr, $error:expr, $failed:expr, $body:expr) => {{
        let error: *mut ArrowDlpackError = $error;
        let guarded = catch_unwind(AssertUnwindSafe(|| {
            let outcome = (|| $body)();
            // SAFETY: `error` is NULL or caller-provided writable storage
            // (every entry point's contract).
            unsafe { report(error, outcome.as_ref().err()) };
            outcome.map_err(|e| e.status())
        }));
        match guarded {
            Ok(Ok(value)) => value,
            Ok(Err(status)) => ($failed)(status),
            Err(_) => {
                let e = err!(
                    ARROW_DLPACK_INTERNAL_ERROR,
                    "panic in {}; please report this bug",
                    $name
                );
                // SAFETY: as for the block above, `error` is NULL or caller-provided writable
                // storage (every entry point's contract).
                unsafe { report(error, Some(&e)) };
                ($failed)(Status::ARROW_DLPACK_INTERNAL_ERROR)
            }
        }
    }};
}

/// `$ptr.$as_ref()` (`as_ref` or `as_mut`) of a pointer argument, or
/// `INVALID_ARGUMENT` naming the parameter.
macro_rules! non_null {
    ($ptr:ident, $as_ref:ident) => {
        // SAFETY: every entry point's contract: a pointer argument is NULL
        // or valid (for reads, and writes where mutable) for the call.
        unsafe { $ptr.$as_ref() }.ok_or_else(|| {
            err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                concat!(stringify!($ptr), " is NULL")
            )
        })
    };
}

/// Writes the outcome of a call, through raw pointers: the caller's struct
/// may hold any bytes, including a status value Rust does not know.
///
/// # Safety
/// `error` is NULL or valid for writes of an `ArrowDlpackError`.
unsafe fn report(error: *mut ArrowDlpackError, outcome: Option<&Error>) {
    if error.is_null() {
        return;
    }
    match outcome {
        // SAFETY: valid for writes (caller's contract).
        None => unsafe {
            (&raw mut (*error).status).write(Status::ARROW_DLPACK_OK);
            (&raw mut (*error).message).cast::<c_char>().write(0);
        },
        // SAFETY: as above; a fresh value is written whole.
        Some(e) => unsafe {
            let mut out = ArrowDlpackError {
                status: e.status(),
                message: [0; 256],
            };
            e.write_to(&mut out);
            error.write(out);
        },
    }
}

// ---- export ----------------------------------------------------------------

/// Shares a host Arrow array as a legacy (pre-1.0) DLPack tensor, without
/// copying.
///
/// `array` must be a valid, unreleased host array; `schema` its type:
/// a fixed-width number (`c C s S i I l L e f g`), or a `fixed_size_list`
/// (`+w:N`, nested to any depth) of one, without nulls.
///
/// On success returns the tensor and **moves** the array into it:
/// `array->release` becomes NULL and the caller must not release it. The
/// tensor's `deleter` releases the array exactly once; call it from any
/// thread. `data` points at the first element (`byte_offset` is 0), `shape`
/// and `strides` (in elements) are never NULL, the device is `{kDLCPU, 0}`;
/// an array without elements has `data` NULL.
///
/// On failure returns NULL; `array` is left byte-for-byte as it was and
/// still belongs to the caller. `schema` is only read, never released.
///
/// Statuses: `INVALID_ARGUMENT` (a NULL or released argument),
/// `INVALID_ARROW`, `HAS_NULLS`, `UNSUPPORTED_TYPE`, `UNSUPPORTED_LAYOUT`,
/// `OUT_OF_MEMORY`, `INTERNAL_ERROR`. `error` may be NULL.
///
/// Thread safety: may be called concurrently on different arrays.
///
/// # Safety
/// Pointers are NULL or valid; the structs follow the C Data Interface.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_export(
    array: *mut ArrowArray,
    schema: *const ArrowSchema,
    error: *mut ArrowDlpackError,
) -> *mut DLManagedTensor {
    // SAFETY: `arrow_dlpack_export`'s caller promises it: pointers are NULL or valid; the
    // structs follow the C Data Interface.
    unsafe { export_host("arrow_dlpack_export", array, schema, error) }
}

/// Shares a host Arrow array as a DLPack 1.3 versioned tensor, without
/// copying. As `arrow_dlpack_export`, and: `version` is `{1, 3}` and
/// `flags` is `DLPACK_FLAG_BITMASK_READ_ONLY` (Arrow buffers are immutable
/// and may be shared; consumers must not write).
///
/// # Safety
/// Pointers are NULL or valid; the structs follow the C Data Interface.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_export_versioned(
    array: *mut ArrowArray,
    schema: *const ArrowSchema,
    error: *mut ArrowDlpackError,
) -> *mut DLManagedTensorVersioned {
    // SAFETY: `arrow_dlpack_export_versioned`'s caller promises it: pointers are NULL or valid;
    // the structs follow the C Data Interface.
    unsafe { export_host("arrow_dlpack_export_versioned", array, schema, error) }
}

/// The host export of either flavour: the entry points above.
///
/// # Safety
/// As theirs.
unsafe fn export_host<M: Managed>(
    name: &'static str,
    array: *mut ArrowArray,
    schema: *const ArrowSchema,
    error: *mut ArrowDlpackError,
) -> *mut M {
    ffi_boundary!(name, error, |_| ptr::null_mut(), {
        let (array, schema) = (non_null!(array, as_mut)?, non_null!(schema, as_ref)?);
        // SAFETY: valid structs, per the caller's contract.
        unsafe { export::export::<M>(array, schema) }.map(NonNull::as_ptr)
    })
}

/// Shares an Arrow device array as a DLPack 1.3 versioned tensor on the
/// same device, without copying and without ever dereferencing device
/// memory.
///
/// As `arrow_dlpack_export_versioned`, and: the device type maps to the
/// DLPack device type of the same number (the CPU's `device_id` -1 becomes
/// 0); an unknown null count with a validity bitmap on a device that is not
/// host-readable is `UNSUPPORTED_DEVICE`, never a read. On success the
/// inner `array->array` is moved (its `release` becomes NULL) and, when
/// `sync_event` is not NULL, `*sync_event` receives the array's
/// `sync_event`: the consumer must wait on it before reading the data; it
/// stays valid until the tensor is deleted. On failure `*sync_event` is
/// set to NULL and `array` is untouched.
///
/// # Safety
/// Pointers are NULL or valid; the structs follow the C Device Data
/// Interface.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_export_device(
    array: *mut ArrowDeviceArray,
    schema: *const ArrowSchema,
    sync_event: *mut *mut c_void,
    error: *mut ArrowDlpackError,
) -> *mut DLManagedTensorVersioned {
    // SAFETY: `arrow_dlpack_export_device`'s caller promises it: pointers are NULL or valid;
    // the structs follow the C Device Data Interface.
    unsafe {
        export_device(
            "arrow_dlpack_export_device",
            array,
            schema,
            sync_event,
            error,
        )
    }
}

/// As `arrow_dlpack_export_device`, as a legacy (pre-1.0) `DLManagedTensor`,
/// for consumers that only take `"dltensor"` capsules (JAX's `from_dlpack`
/// on GPU data, producers' `__dlpack__` called without `max_version`).
///
/// A legacy tensor has no flags, so it cannot say that the data is
/// read-only: the consumer must not write to it all the same (Arrow
/// buffers are immutable and may be shared). Everything else, the moved
/// array, `*sync_event`, the statuses and the deleter, is as for
/// `arrow_dlpack_export_device`.
///
/// # Safety
/// Pointers are NULL or valid; the structs follow the C Device Data
/// Interface.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_export_device_legacy(
    array: *mut ArrowDeviceArray,
    schema: *const ArrowSchema,
    sync_event: *mut *mut c_void,
    error: *mut ArrowDlpackError,
) -> *mut DLManagedTensor {
    // SAFETY: `arrow_dlpack_export_device_legacy`'s caller promises it: pointers are NULL or
    // valid; the structs follow the C Device Data Interface.
    unsafe {
        export_device(
            "arrow_dlpack_export_device_legacy",
            array,
            schema,
            sync_event,
            error,
        )
    }
}

/// The device export of either flavour: the entry points above.
///
/// # Safety
/// As theirs.
unsafe fn export_device<M: Managed>(
    name: &'static str,
    array: *mut ArrowDeviceArray,
    schema: *const ArrowSchema,
    sync_event: *mut *mut c_void,
    error: *mut ArrowDlpackError,
) -> *mut M {
    let (tensor, event) = ffi_boundary!(name, error, |_| (ptr::null_mut(), ptr::null_mut()), {
        let (array, schema) = (non_null!(array, as_mut)?, non_null!(schema, as_ref)?);
        // SAFETY: valid structs, per the caller's contract.
        unsafe { export::export_device::<M>(array, schema) }.map(|(t, event)| (t.as_ptr(), event))
    });
    if !sync_event.is_null() {
        // SAFETY: non-NULL out-parameter, valid for writes (contract).
        unsafe { sync_event.write(event) };
    }
    tensor
}

/// Shares a host Arrow array as a DLPack 1.3 tensor, or copies it once
/// where sharing is impossible and `options` allow a copy.
///
/// `options` may be NULL: all zero, the defaults. With the defaults the
/// result is `arrow_dlpack_export_versioned`'s for every array that
/// function accepts (shared, read-only); booleans and anything else that
/// needs a copy are `ARROW_DLPACK_NEEDS_COPY`.
///
/// What may copy, each under `ARROW_DLPACK_COPY_IF_NEEDED` (or `ALWAYS`):
/// booleans (`b`, any bit offset) unpacked to kDLBool bytes 0/1; nulls
/// written as `fill_value` (`fill_nulls` 1; nulls of a list level fill
/// their whole row); a `dtype` other than the array's, converted as
/// NumPy's `astype` with unsafe casting. `temporal_as_integer` shares
/// dates, times, timestamps and durations as their int32/int64 storage.
/// `ALWAYS` copies even what could be shared.
///
/// On success returns the tensor and the array is *moved*
/// (`array->release` becomes NULL): a shared tensor (flag READ_ONLY) owns
/// it, and a copy (flag IS_COPIED, writable) released it already, owning
/// only its own 64-byte aligned bytes. When `options->validity` is not
/// NULL, `*options->validity` receives a kDLBool tensor of the same shape,
/// 1 where the value is valid (a copy; the caller deletes it).
///
/// On failure returns NULL and changes nothing: the array is untouched and
/// still the caller's, `*options->validity` is not written. Statuses: as
/// `arrow_dlpack_export_versioned`, and `NEEDS_COPY`; `INVALID_ARGUMENT`
/// for bad options (an unknown enum value, a non-zero reserved field, a
/// `fill_value` the tensor's dtype cannot hold exactly); `HAS_NULLS` for
/// nulls without `fill_nulls`.
///
/// # Safety
/// Pointers are NULL or valid; the structs follow the C Data Interface.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_export_with(
    array: *mut ArrowArray,
    schema: *const ArrowSchema,
    options: *const ArrowDlpackExportOptions,
    error: *mut ArrowDlpackError,
) -> *mut DLManagedTensorVersioned {
    // SAFETY: `arrow_dlpack_export_with`'s caller promises it: pointers are NULL or valid; the
    // structs follow the C Data Interface.
    unsafe { export_with("arrow_dlpack_export_with", array, schema, options, error) }
}

/// As `arrow_dlpack_export_with`, as a legacy (pre-1.0) `DLManagedTensor`,
/// for consumers that take only `"dltensor"` capsules (JAX's
/// `from_dlpack`, producers' `__dlpack__` called without `max_version`).
/// A legacy tensor has no flags: a copy is writable, a share must not be
/// written all the same. The validity tensor is a versioned one.
///
/// # Safety
/// As `arrow_dlpack_export_with`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_export_with_legacy(
    array: *mut ArrowArray,
    schema: *const ArrowSchema,
    options: *const ArrowDlpackExportOptions,
    error: *mut ArrowDlpackError,
) -> *mut DLManagedTensor {
    // SAFETY: `arrow_dlpack_export_with_legacy`'s caller promises it: as
    // `arrow_dlpack_export_with`.
    unsafe {
        export_with(
            "arrow_dlpack_export_with_legacy",
            array,
            schema,
            options,
            error,
        )
    }
}

/// The export under options, of either flavour: the entry points above.
///
/// # Safety
/// As theirs.
unsafe fn export_with<M: Managed>(
    name: &'static str,
    array: *mut ArrowArray,
    schema: *const ArrowSchema,
    options: *const ArrowDlpackExportOptions,
    error: *mut ArrowDlpackError,
) -> *mut M {
    ffi_boundary!(name, error, |_| ptr::null_mut(), {
        let (array, schema) = (non_null!(array, as_mut)?, non_null!(schema, as_ref)?);
        // SAFETY: NULL or valid (the caller's contract).
        let c_options = unsafe { options.as_ref() };
        let options = ExportPolicy::from_c(c_options)?;
        // SAFETY: valid structs, per the caller's contract.
        let made = unsafe { export::export_with::<M>(array, schema, &options) }?;
        // SAFETY: as for the block above, valid structs, per the caller's contract.
        Ok(unsafe { hand_out(made, c_options) })
    })
}

/// The tensor of an export under options, its mask written to
/// `*options->validity` (asked for, so made).
///
/// # Safety
/// `options->validity`, when the mask was asked for, is valid for writes.
unsafe fn hand_out<M>(made: Made<M>, options: Option<&ArrowDlpackExportOptions>) -> *mut M {
    if let (Some(mask), Some(o)) = (made.mask, options) {
        // SAFETY: non-NULL (the mask was asked for by it), writable.
        unsafe { o.validity.write(mask.as_ptr()) };
    }
    made.tensor.as_ptr()
}

/// Reads a C stream of arrays to its end and returns one DLPack 1.3
/// tensor of them all, concatenated along the first dimension (1-D and
/// N-D alike). One chunk is shared as `arrow_dlpack_export_with` would
/// share it; several chunks need a copy (`NEEDS_COPY` under the default
/// options, allow it with `ARROW_DLPACK_COPY_IF_NEEDED`); no chunk gives a
/// tensor of shape `[0, ...]` with `data` NULL. `options` (NULL: the
/// defaults) apply as in `arrow_dlpack_export_with`, to every chunk.
///
/// The stream is *borrowed*: read to its end (or to the failure) and never
/// released; release it yourself. The chunks read are the library's: the
/// one shared is moved into the tensor, the others released once copied,
/// or on failure. A chunk that does not match the stream's schema is
/// `INVALID_ARROW` naming the chunk; a stream callback that fails is
/// `INVALID_ARROW` with the stream's own message.
///
/// # Safety
/// Pointers are NULL or valid; the stream follows the C Stream Interface.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_export_stream(
    stream: *mut ArrowArrayStream,
    options: *const ArrowDlpackExportOptions,
    error: *mut ArrowDlpackError,
) -> *mut DLManagedTensorVersioned {
    // SAFETY: `arrow_dlpack_export_stream`'s caller promises it: pointers are NULL or valid;
    // the stream follows the C Stream Interface.
    unsafe { export_stream("arrow_dlpack_export_stream", stream, options, error) }
}

/// As `arrow_dlpack_export_stream`, as a legacy (pre-1.0)
/// `DLManagedTensor` (see `arrow_dlpack_export_with_legacy`).
///
/// # Safety
/// As `arrow_dlpack_export_stream`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_export_stream_legacy(
    stream: *mut ArrowArrayStream,
    options: *const ArrowDlpackExportOptions,
    error: *mut ArrowDlpackError,
) -> *mut DLManagedTensor {
    // SAFETY: `arrow_dlpack_export_stream_legacy`'s caller promises it: as
    // `arrow_dlpack_export_stream`.
    unsafe { export_stream("arrow_dlpack_export_stream_legacy", stream, options, error) }
}

/// The stream export of either flavour: the entry points above.
///
/// # Safety
/// As theirs.
unsafe fn export_stream<M: Managed>(
    name: &'static str,
    stream: *mut ArrowArrayStream,
    options: *const ArrowDlpackExportOptions,
    error: *mut ArrowDlpackError,
) -> *mut M {
    ffi_boundary!(name, error, |_| ptr::null_mut(), {
        let stream = non_null!(stream, as_mut)?;
        // SAFETY: NULL or valid (the caller's contract).
        let c_options = unsafe { options.as_ref() };
        let options = ExportPolicy::from_c(c_options)?;
        // SAFETY: a live stream, per the caller's contract.
        let made = unsafe { export::export_stream::<M>(stream, &options) }?;
        // SAFETY: as for the block above, a live stream, per the caller's contract.
        Ok(unsafe { hand_out(made, c_options) })
    })
}

/// The validity mask of the tensor `arrow_dlpack_export_with` would make
/// of `array` under `options`, without making that tensor: a kDLBool
/// tensor of the same shape and order, 1 where the value is valid (a null
/// at a list level clears its whole row; a struct's null row, its row).
/// One pass over the validity bits; the values are not copied.
///
/// `array` is only read: it stays the caller's, intact, whatever happens.
/// `options` (NULL: the defaults) apply as in `arrow_dlpack_export_with`,
/// except that nulls need no `fill_nulls` and no copy is refused (none is
/// made); `options->validity` is ignored. Returns a fresh, writable
/// DLPack 1.3 tensor (IS_COPIED) that the caller deletes, or NULL on
/// failure. Statuses: as `arrow_dlpack_export_with`, except `HAS_NULLS`
/// and `NEEDS_COPY`.
///
/// # Safety
/// Pointers are NULL or valid; the structs follow the C Data Interface.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_export_validity(
    array: *const ArrowArray,
    schema: *const ArrowSchema,
    options: *const ArrowDlpackExportOptions,
    error: *mut ArrowDlpackError,
) -> *mut DLManagedTensorVersioned {
    ffi_boundary!(
        "arrow_dlpack_export_validity",
        error,
        |_| ptr::null_mut(),
        {
            let (array, schema) = (non_null!(array, as_ref)?, non_null!(schema, as_ref)?);
            // SAFETY: NULL or valid (the caller's contract).
            let options = ExportPolicy::from_c(unsafe { options.as_ref() })?;
            // SAFETY: valid structs, per the caller's contract.
            unsafe { export::validity(array, schema, &options) }.map(NonNull::as_ptr)
        }
    )
}

/// The validity mask of the tensor `arrow_dlpack_export_stream` would make
/// of `stream` under `options`, without making that tensor (as
/// `arrow_dlpack_export_validity`). The stream is borrowed: read to its
/// end (or to the failure) and never released; the chunks read are
/// released by the library.
///
/// # Safety
/// Pointers are NULL or valid; the stream follows the C Stream Interface.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_export_validity_stream(
    stream: *mut ArrowArrayStream,
    options: *const ArrowDlpackExportOptions,
    error: *mut ArrowDlpackError,
) -> *mut DLManagedTensorVersioned {
    ffi_boundary!(
        "arrow_dlpack_export_validity_stream",
        error,
        |_| ptr::null_mut(),
        {
            let stream = non_null!(stream, as_mut)?;
            // SAFETY: NULL or valid (the caller's contract).
            let options = ExportPolicy::from_c(unsafe { options.as_ref() })?;
            // SAFETY: a live stream, per the caller's contract.
            unsafe { export::validity_stream(stream, &options) }.map(NonNull::as_ptr)
        }
    )
}

// ---- variable-length columns ------------------------------------------------

/// A variable-length column as two DLPack 1.3 tensors: every row's
/// elements end to end, and where each row starts.
#[repr(C)]
#[derive(Debug)]
pub struct ArrowDlpackJagged {
    /// Every row's elements end to end: `[total]` or `[total, ...]` (the
    /// elements of a list of fixed-size lists or tensors are N-D; the
    /// values of a string or binary are its bytes, kDLUInt 8).
    pub values: *mut DLManagedTensorVersioned,
    /// int32 or int64 `[length + 1]`, `offsets[0] == 0`: row `i` is
    /// `values[offsets[i] : offsets[i + 1]]` (torch's
    /// `nested_tensor_from_jagged`, `EmbeddingBag(include_last_offset=True)`,
    /// flash-attention's `cu_seqlens`).
    pub offsets: *mut DLManagedTensorVersioned,
}

/// Shares a list (`+l`, `+L`), string or binary (`u` `z` `U` `Z`) array as
/// a jagged pair, or copies once where sharing is impossible and `options`
/// allow a copy; list views (`+vl` `+vL`) and string and binary views
/// (`vu` `vz`) are gathered (a copy).
///
/// Shared (READ_ONLY) where the array's first offset is 0: `out->offsets`
/// points into the Arrow offsets buffer, `out->values` at the child's first
/// element; both tensors share the one moved array, released once after
/// the second of them is deleted, in either order. A slice whose first
/// offset is not 0 has its offsets rebased into a fresh tensor (IS_COPIED;
/// the values still shared): a copy in the policy's sense. Several chunks,
/// views, another `options->dtype`, booleans and filled nulls copy the
/// values; the offsets are then rebuilt, from 0.
///
/// Nulls: null elements are `HAS_NULLS` unless `options->fill_nulls`
/// (each written as `fill_value`). Null rows are `HAS_NULLS` unless
/// `options->fill_nulls`; then each null row is an empty row (its elements
/// dropped when its segment is not empty: a copy), and `options->validity`
/// (if set) receives the `[length]` kDLBool row mask, 1 where the row is
/// valid. `options->order` is ignored.
///
/// On success returns `ARROW_DLPACK_OK`, writes `*out` (the caller deletes
/// both tensors) and moves the array (its `release` becomes NULL). On
/// failure the array and `*out` are untouched. Statuses: as
/// `arrow_dlpack_export_with`; `UNSUPPORTED_TYPE` for an array whose rows
/// are all one shape (export it with `arrow_dlpack_export_with`);
/// `INVALID_ARROW` for offsets that decrease or leave the child, naming
/// the row, where a copy follows them (a share checks the first and the
/// last, as Arrow's own minimal validation does).
///
/// # Safety
/// Pointers are NULL or valid; the structs follow the C Data Interface.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_export_jagged(
    array: *mut ArrowArray,
    schema: *const ArrowSchema,
    options: *const ArrowDlpackExportOptions,
    out: *mut ArrowDlpackJagged,
    error: *mut ArrowDlpackError,
) -> ArrowDlpackStatus {
    ffi_boundary!("arrow_dlpack_export_jagged", error, |status| status, {
        let (array, schema) = (non_null!(array, as_mut)?, non_null!(schema, as_ref)?);
        let out = non_null!(out, as_mut)?;
        // SAFETY: NULL or valid (the caller's contract).
        let c_options = unsafe { options.as_ref() };
        let options = ExportPolicy::from_c(c_options)?;
        // SAFETY: valid structs, per the caller's contract.
        let made =
            unsafe { export::export_jagged::<DLManagedTensorVersioned>(array, schema, &options) }?;
        // SAFETY: as for the block above, valid structs, per the caller's contract.
        Ok(unsafe { hand_out_jagged(made, out, c_options) })
    })
}

/// Reads a C stream of list, string or binary arrays to its end and
/// returns one jagged pair of them all: the values appended, the offsets
/// rebased (one copy; one chunk is shared as `arrow_dlpack_export_jagged`
/// shares it; no chunk: `[0]` values and offsets `[0]`). The stream is
/// borrowed (read to its end or to the failure, never released); the
/// chunks read are the library's. Otherwise as `arrow_dlpack_export_jagged`.
///
/// # Safety
/// Pointers are NULL or valid; the stream follows the C Stream Interface.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_export_jagged_stream(
    stream: *mut ArrowArrayStream,
    options: *const ArrowDlpackExportOptions,
    out: *mut ArrowDlpackJagged,
    error: *mut ArrowDlpackError,
) -> ArrowDlpackStatus {
    ffi_boundary!(
        "arrow_dlpack_export_jagged_stream",
        error,
        |status| status,
        {
            let stream = non_null!(stream, as_mut)?;
            let out = non_null!(out, as_mut)?;
            // SAFETY: NULL or valid (the caller's contract).
            let c_options = unsafe { options.as_ref() };
            let options = ExportPolicy::from_c(c_options)?;
            // SAFETY: a live stream, per the caller's contract.
            let made = unsafe {
                export::export_jagged_stream::<DLManagedTensorVersioned>(stream, &options)
            }?;
            // SAFETY: as for the block above, a live stream, per the caller's contract.
            Ok(unsafe { hand_out_jagged(made, out, c_options) })
        }
    )
}

/// The jagged pair written to `*out`, its mask to `*options->validity`.
///
/// # Safety
/// `out` is writable; `options->validity`, when the mask was asked for,
/// is valid for writes.
unsafe fn hand_out_jagged(
    made: export::MadeJagged<DLManagedTensorVersioned>,
    out: &mut ArrowDlpackJagged,
    options: Option<&ArrowDlpackExportOptions>,
) -> Status {
    out.values = made.values.as_ptr();
    out.offsets = made.offsets.as_ptr();
    if let (Some(mask), Some(o)) = (made.mask, options) {
        // SAFETY: non-NULL (the mask was asked for by it), writable.
        unsafe { o.validity.write(mask.as_ptr()) };
    }
    Status::ARROW_DLPACK_OK
}

/// Copies a list (`+l`, `+L`, `+vl`, `+vL`), string or binary array into
/// one padded DLPack 1.3 tensor `[length, L, ...]` (IS_COPIED, writable;
/// always a copy: `options->copy` is not consulted), `L` being
/// `padding->length`, or the longest row (0 rows or all empty: `[length,
/// 0]`). Right padding (`padding->side` 0) keeps each row's first `L`
/// elements, left padding (1) its last `L`, its last element in the last
/// column; the rest of a row is `padding->value`, which the dtype must
/// hold exactly. `padding` NULL: all zero (0, right, the longest row).
/// `options->dtype` converts in the same pass; `options->validity` (if
/// set) receives the `[length, L]` kDLBool mask, 1 at each real element
/// that is not null (the attention mask). Nulls: as
/// `arrow_dlpack_export_jagged` (a null row, filled, is all padding).
///
/// On success the array is moved and released (copied); on failure it is
/// untouched. Statuses: as `arrow_dlpack_export_jagged`, and
/// `INVALID_ARGUMENT` for bad padding; `OUT_OF_MEMORY` for a tensor of
/// `length * L` elements that overflows or cannot be allocated.
///
/// # Safety
/// Pointers are NULL or valid; the structs follow the C Data Interface.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_export_padded(
    array: *mut ArrowArray,
    schema: *const ArrowSchema,
    options: *const ArrowDlpackExportOptions,
    padding: *const ArrowDlpackPadding,
    error: *mut ArrowDlpackError,
) -> *mut DLManagedTensorVersioned {
    ffi_boundary!("arrow_dlpack_export_padded", error, |_| ptr::null_mut(), {
        let (array, schema) = (non_null!(array, as_mut)?, non_null!(schema, as_ref)?);
        // SAFETY: NULL or valid (the caller's contract).
        let c_options = unsafe { options.as_ref() };
        let options = ExportPolicy::from_c(c_options)?;
        // SAFETY: as for the block above, nULL or valid (the caller's contract).
        let padding = Pad::from_c(unsafe { padding.as_ref() })?;
        // SAFETY: valid structs, per the caller's contract.
        let made = unsafe { export::export_padded(array, schema, &options, &padding) }?;
        // SAFETY: as for the block above, valid structs, per the caller's contract.
        Ok(unsafe { hand_out(made, c_options) })
    })
}

/// Reads a C stream of list, string or binary arrays to its end and
/// returns one padded tensor of all their rows (as
/// `arrow_dlpack_export_padded`; the stream borrowed, the chunks read
/// released).
///
/// # Safety
/// Pointers are NULL or valid; the stream follows the C Stream Interface.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_export_padded_stream(
    stream: *mut ArrowArrayStream,
    options: *const ArrowDlpackExportOptions,
    padding: *const ArrowDlpackPadding,
    error: *mut ArrowDlpackError,
) -> *mut DLManagedTensorVersioned {
    ffi_boundary!(
        "arrow_dlpack_export_padded_stream",
        error,
        |_| ptr::null_mut(),
        {
            let stream = non_null!(stream, as_mut)?;
            // SAFETY: NULL or valid (the caller's contract).
            let c_options = unsafe { options.as_ref() };
            let options = ExportPolicy::from_c(c_options)?;
            // SAFETY: as for the block above, nULL or valid (the caller's contract).
            let padding = Pad::from_c(unsafe { padding.as_ref() })?;
            // SAFETY: a live stream, per the caller's contract.
            let made = unsafe { export::export_padded_stream(stream, &options, &padding) }?;
            // SAFETY: as for the block above, a live stream, per the caller's contract.
            Ok(unsafe { hand_out(made, c_options) })
        }
    )
}

// ---- import ----------------------------------------------------------------

/// Shares a legacy DLPack tensor as an Arrow array, without copying.
///
/// `tensor` must be a live tensor in host-readable memory (`kDLCPU`,
/// `kDLCUDAHost`, `kDLROCMHost`) of dtype int/uint 8..64 or float 16/32/64
/// with lanes 1. A 0-D tensor becomes a length-1 array; a 1-D tensor with
/// stride 1 (or NULL strides) a primitive array; a dense N-D tensor an
/// `arrow.fixed_shape_tensor` array over its first dimension (with a
/// `permutation` when its strides are a non-row-major order; the first
/// dimension must be outermost). `byte_offset` is honoured.
///
/// On success returns `ARROW_DLPACK_OK` and writes `*out_array` and
/// `*out_schema`; the array owns the tensor: releasing it (and every array
/// that shares its buffers, such as slices made by a consumer) calls the
/// tensor's deleter exactly once, from whichever thread releases last. The
/// schema is independent; release it separately.
///
/// On failure returns the status; the tensor is untouched and still the
/// caller's, and the out structs are not written. Statuses:
/// `INVALID_ARGUMENT` (NULL pointers, negative extents, sizes that
/// overflow), `UNSUPPORTED_TYPE`, `UNSUPPORTED_LAYOUT` (strides that need
/// a copy), `UNSUPPORTED_DEVICE`, `INTERNAL_ERROR`.
///
/// # Safety
/// Pointers are NULL or valid; the tensor follows DLPack.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_import(
    tensor: *mut DLManagedTensor,
    out_array: *mut ArrowArray,
    out_schema: *mut ArrowSchema,
    error: *mut ArrowDlpackError,
) -> ArrowDlpackStatus {
    ffi_boundary!("arrow_dlpack_import", error, |status| status, {
        let out_array = non_null!(out_array, as_mut)?;
        let tensor = NonNull::new(tensor)
            .ok_or_else(|| err!(ARROW_DLPACK_INVALID_ARGUMENT, "tensor is NULL"));
        // SAFETY: a live tensor the caller hands over on success; writable
        // out structs (the caller's contract).
        unsafe { import_into(tensor, Memory::HostReadable, out_array, out_schema) }
            .map(|_| Status::ARROW_DLPACK_OK)
    })
}

/// As `arrow_dlpack_import`, for a DLPack 1.x tensor. A major version
/// other than 1 is `INVALID_ARGUMENT`, and then nothing but `version` is
/// read.
///
/// # Safety
/// Pointers are NULL or valid; the tensor follows DLPack.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_import_versioned(
    tensor: *mut DLManagedTensorVersioned,
    out_array: *mut ArrowArray,
    out_schema: *mut ArrowSchema,
    error: *mut ArrowDlpackError,
) -> ArrowDlpackStatus {
    ffi_boundary!("arrow_dlpack_import_versioned", error, |status| status, {
        let out_array = non_null!(out_array, as_mut)?;
        // SAFETY: as `arrow_dlpack_import`.
        unsafe {
            import_into(
                import::versioned(tensor),
                Memory::HostReadable,
                out_array,
                out_schema,
            )
        }
        .map(|_| Status::ARROW_DLPACK_OK)
    })
}

/// As `arrow_dlpack_import_versioned`, for a tensor on any device that
/// Arrow can name (DLPack device types 1-4 and 7-16): `*out_array` keeps
/// the device (`device_id` -1 for the CPU), its `sync_event` is NULL, and
/// the memory is never dereferenced.
///
/// # Safety
/// Pointers are NULL or valid; the tensor follows DLPack.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_import_device(
    tensor: *mut DLManagedTensorVersioned,
    out_array: *mut ArrowDeviceArray,
    out_schema: *mut ArrowSchema,
    error: *mut ArrowDlpackError,
) -> ArrowDlpackStatus {
    ffi_boundary!("arrow_dlpack_import_device", error, |status| status, {
        let out_array = non_null!(out_array, as_mut)?;
        let out_schema = non_null!(out_schema, as_mut)?;
        // SAFETY: as `arrow_dlpack_import`.
        unsafe { import::import_device(import::versioned(tensor)?, out_array, out_schema) }
            .map(|_| Status::ARROW_DLPACK_OK)
    })
}

/// As `arrow_dlpack_import_versioned`, under `options` (NULL: all zero,
/// the defaults: the same result for every tensor that function accepts;
/// anything that needs a copy is `NEEDS_COPY`).
///
/// What may copy, under `ARROW_DLPACK_COPY_IF_NEEDED` (or `ALWAYS`, which
/// copies everything): kDLBool tensors, packed into Arrow's boolean bits;
/// strides Arrow cannot share (gaps, reversed, broadcast zeros,
/// Fortran-ordered N-D), gathered row-major. The copy is owned by the
/// Arrow array (64-byte aligned), and the tensor is deleted right after
/// it; success moves the tensor either way. Host memory only (device
/// memory is never copied: `UNSUPPORTED_DEVICE`). With
/// `options->as_columns`, a 2-D tensor `[rows, columns]` becomes a struct
/// array of its columns: shared when each column is dense (column-major),
/// otherwise the columns copied out; not 2-D: `INVALID_ARGUMENT`.
///
/// # Safety
/// Pointers are NULL or valid; the tensor follows DLPack.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_import_with(
    tensor: *mut DLManagedTensorVersioned,
    options: *const ArrowDlpackImportOptions,
    out_array: *mut ArrowArray,
    out_schema: *mut ArrowSchema,
    error: *mut ArrowDlpackError,
) -> ArrowDlpackStatus {
    ffi_boundary!("arrow_dlpack_import_with", error, |status| status, {
        let out_array = non_null!(out_array, as_mut)?;
        let out_schema = non_null!(out_schema, as_mut)?;
        // SAFETY: NULL or valid (the caller's contract).
        let options = ImportPolicy::from_c(unsafe { options.as_ref() })?;
        // SAFETY: as `arrow_dlpack_import`.
        let tensor = unsafe { import::versioned(tensor) }?;
        // SAFETY: a live tensor the caller hands over on success; writable
        // out structs (the caller's contract).
        unsafe { import::import_with(tensor, &options, out_array, out_schema) }
            .map(|_| Status::ARROW_DLPACK_OK)
    })
}

/// Shares a values tensor and an offsets tensor (int32 or int64, 1-D,
/// `length + 1` entries) as an Arrow list array: int32 offsets -> `+l`,
/// int64 -> `+L`; values 1-D become a primitive child, N-D an
/// `arrow.fixed_shape_tensor` child (a list of tensors). Host memory only.
///
/// The offsets are checked before anything changes hands (non-decreasing,
/// the first >= 0, the last <= the values' first dimension): Arrow
/// consumers trust them. On success returns `ARROW_DLPACK_OK` and writes
/// the out structs: the array owns both tensors and deletes each once,
/// when the last array sharing them is released. Values or offsets that
/// need a copy (kDLBool values, strides Arrow cannot share) are copied
/// once where `options->copy` allows it, the tensor then deleted at once.
/// On failure both tensors are untouched and the caller's.
///
/// Statuses: as `arrow_dlpack_import_with`; `INVALID_ARGUMENT` for offsets
/// that decrease, start below 0 or end beyond the values, are not 1-D, or
/// with `options->as_columns`; `UNSUPPORTED_TYPE` for offsets that are not
/// int32 or int64.
///
/// # Safety
/// Pointers are NULL or valid; the tensors follow DLPack.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_import_jagged(
    values: *mut DLManagedTensorVersioned,
    offsets: *mut DLManagedTensorVersioned,
    options: *const ArrowDlpackImportOptions,
    out_array: *mut ArrowArray,
    out_schema: *mut ArrowSchema,
    error: *mut ArrowDlpackError,
) -> ArrowDlpackStatus {
    ffi_boundary!("arrow_dlpack_import_jagged", error, |status| status, {
        let out_array = non_null!(out_array, as_mut)?;
        let out_schema = non_null!(out_schema, as_mut)?;
        // SAFETY: NULL or valid (the caller's contract).
        let options = ImportPolicy::from_c(unsafe { options.as_ref() })?;
        // SAFETY: as `arrow_dlpack_import`.
        let (values, offsets) =
            unsafe { (import::versioned(values)?, import::versioned(offsets)?) };
        // SAFETY: live tensors the caller hands over on success; writable
        // out structs (the caller's contract).
        unsafe { import::import_jagged(values, offsets, &options, out_array, out_schema) }
            .map(|_| Status::ARROW_DLPACK_OK)
    })
}

/// The import of every entry point above, once `out_array` is known not to
/// be NULL: checks `out_schema`, then the tensor (NULL, version), then
/// imports.
///
/// # Safety
/// `tensor`, when `Ok`, is live and the caller's to hand over;
/// `out_schema` is NULL or valid for writes.
unsafe fn import_into<M: Managed + 'static>(
    tensor: Result<NonNull<M>, Error>,
    memory: Memory,
    out_array: &mut ArrowArray,
    out_schema: *mut ArrowSchema,
) -> Result<crate::abi::DLDevice, Error> {
    let out_schema = non_null!(out_schema, as_mut)?;
    // SAFETY: `import_into`'s caller promises it: `tensor`, when `Ok`, is live and the caller's
    // to hand over; `out_schema` is NULL or valid for writes.
    unsafe { import::import_to_c(tensor?, memory, out_array, out_schema) }
}

// ---- loader ----------------------------------------------------------------

/// A loader of `stream`'s record batches: training epochs (shuffled,
/// split over ranks, resumable) or, in order on one rank, the stream's
/// batches as it is read (the C batches API). `options` is required
/// (`batch_size` has no default); see `ArrowDlpackLoaderOptions`.
///
/// In order (`shuffle` 0) with one rank, the stream is read as batches are
/// asked for, once: one epoch, `arrow_dlpack_loader_len` -1, `num_rows` -1
/// in its state, a second epoch `INVALID_ARGUMENT`. Shuffled, or over
/// several ranks (whose split needs the row count), the stream is read
/// into memory once, when the loader is made, and released.
///
/// On success returns the loader and **moves** the stream into it
/// (`stream->release` becomes NULL). On failure returns NULL and the stream
/// is left with the caller, who releases it (read up to where it failed:
/// a refused option or schema reads no chunk); an option is
/// `INVALID_ARGUMENT` naming its field, a malformed stream or chunk
/// `INVALID_ARROW`, a column no batch can hold `UNSUPPORTED_TYPE`.
///
/// # Safety
/// `stream` and `options` are NULL or valid (the stream live, valid for
/// reads and writes); `options.columns` points at `n_columns` NUL-terminated
/// names; `error` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_loader_new(
    stream: *mut ArrowArrayStream,
    options: *const ArrowDlpackLoaderOptions,
    error: *mut ArrowDlpackError,
) -> *mut ArrowDlpackLoader {
    ffi_boundary!("arrow_dlpack_loader_new", error, |_| ptr::null_mut(), {
        let stream = non_null!(stream, as_mut)?;
        let options = non_null!(options, as_ref)?;
        // SAFETY: a live stream and valid options (the caller's contract).
        unsafe { ArrowDlpackLoader::from_stream(stream, options) }
            .map(|l| Box::into_raw(Box::new(l)))
    })
}

/// A loader of Arrow IPC files (the file format, `.arrow` / Feather v2):
/// `n_paths` paths, each a file, a directory (its files, not recursively,
/// byte-sorted, names starting with `.` or `_` skipped) or a glob (`*`,
/// `?`, `[...]`; expanded and sorted), read in that order. Each file is
/// memory-mapped and its record batches shared from the map (a batch
/// lying inside one record batch is the map's memory); only the columns
/// `options.columns` names are read. Files may differ in column order and
/// in columns not read. `options.window` takes whole record batches: runs
/// of consecutive ones, each the fewest holding `window` rows.
///
/// On failure returns NULL: a path naming nothing, or an option,
/// `INVALID_ARGUMENT`; a file that is not an Arrow IPC file, or whose
/// columns differ from the first file's (missing, or of another type),
/// `INVALID_ARROW` naming the file and the column; a Parquet file
/// `UNSUPPORTED_TYPE` (not read yet by this version).
///
/// # Safety
/// `paths` is NULL or points at `n_paths` NUL-terminated strings;
/// `options` is NULL or valid (as in `arrow_dlpack_loader_new`); `error`
/// is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_loader_open(
    paths: *const *const c_char,
    n_paths: i64,
    options: *const ArrowDlpackLoaderOptions,
    error: *mut ArrowDlpackError,
) -> *mut ArrowDlpackLoader {
    ffi_boundary!("arrow_dlpack_loader_open", error, |_| ptr::null_mut(), {
        let options = non_null!(options, as_ref)?;
        if paths.is_null() {
            return Err(err!(ARROW_DLPACK_INVALID_ARGUMENT, "paths is NULL"));
        }
        // SAFETY: `n_paths` NUL-terminated strings (the caller's contract).
        let paths = unsafe { crate::c_loader::c_strings(paths, n_paths, "paths", "n_paths") }?;
        ArrowDlpackLoader::open(&paths, options).map(|l| Box::into_raw(Box::new(l)))
    })
}

/// The next batch of this rank into `*out`, which the caller owns and
/// releases with `arrow_dlpack_batch_release` (a batch with 0 outputs, the
/// epoch's end, holds nothing). After the end, the next call begins the
/// next epoch (or the one `arrow_dlpack_loader_set_epoch` set). With
/// `prefetch`, the batch was made ahead on the loader's thread.
///
/// On failure `*out` is left as it was and the loader stays on the batch
/// that failed: `HAS_NULLS` for a null without `fill_nulls`,
/// `INVALID_ARROW` for a malformed chunk of a stream read as it goes (the
/// stream is then closed), `INVALID_ARGUMENT` for a second epoch of such a
/// stream.
///
/// # Safety
/// `loader` is NULL or a live loader, used by no other thread during the
/// call; `out` is NULL or writable; `error` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_loader_next(
    loader: *mut ArrowDlpackLoader,
    out: *mut ArrowDlpackBatch,
    error: *mut ArrowDlpackError,
) -> ArrowDlpackStatus {
    ffi_boundary!("arrow_dlpack_loader_next", error, |s| s, {
        let loader = non_null!(loader, as_mut)?;
        let out = non_null!(out, as_mut)?;
        loader.next(out).map(|()| Status::ARROW_DLPACK_OK)
    })
}

/// Deletes every tensor left in the batch's slots (those the caller took,
/// setting the slot to NULL, are the caller's), frees the batch's own
/// memory and zeroes it: releasing it again, or releasing a zeroed batch,
/// does nothing. NULL is fine. Any thread; the loader may be freed.
///
/// # Safety
/// `batch` is NULL, zeroed, or a batch `arrow_dlpack_loader_next` wrote,
/// whose slots hold NULL or the tensors it handed out.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_batch_release(batch: *mut ArrowDlpackBatch) {
    // A panic cannot unwind into C: a deleter's (foreign, `extern "C"`)
    // cannot, and nothing else here panics.
    // SAFETY: NULL or the caller's batch (the contract above).
    if let Some(batch) = unsafe { batch.as_mut() } {
        // SAFETY: as above.
        unsafe { crate::c_loader::release_batch(batch) };
    }
}

/// Sets the epoch the next `arrow_dlpack_loader_next` begins, from its
/// first step (the rest of a current epoch dropped). `set_epoch(e)` after
/// a restore to epoch `e` keeps the restored step. A stream read in order
/// takes only epoch 0 before its first batch.
///
/// # Safety
/// `loader` is NULL or a live loader; `error` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_loader_set_epoch(
    loader: *mut ArrowDlpackLoader,
    epoch: u64,
    error: *mut ArrowDlpackError,
) -> ArrowDlpackStatus {
    ffi_boundary!("arrow_dlpack_loader_set_epoch", error, |s| s, {
        let loader = non_null!(loader, as_mut)?;
        loader.set_epoch(epoch).map(|()| Status::ARROW_DLPACK_OK)
    })
}

/// This rank's batches in a whole epoch; -1 when unknown (a stream read
/// in order) or `loader` is NULL.
///
/// # Safety
/// `loader` is NULL or a live loader.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_loader_len(loader: *const ArrowDlpackLoader) -> i64 {
    // SAFETY: NULL or live (the caller's contract).
    match unsafe { loader.as_ref() }.and_then(ArrowDlpackLoader::epoch_len) {
        Some(n) => i64::try_from(n).unwrap_or(i64::MAX),
        None => -1,
    }
}

/// The loader's state as JSON text (not NUL-terminated), the same object
/// as Python's `state_dict()`: either face resumes the other. `*len`
/// receives its size in bytes; with `cap` too small (NULL `buf` and 0
/// `cap` included) nothing is written to `buf`, the status is
/// `INVALID_ARGUMENT` and `*len` the size needed. It counts the batches
/// handed out, never those made ahead.
///
/// # Safety
/// `loader` is NULL or live; `buf` is NULL or writable for `cap` bytes;
/// `len` is NULL or writable; `error` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_loader_state(
    loader: *const ArrowDlpackLoader,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
    error: *mut ArrowDlpackError,
) -> ArrowDlpackStatus {
    ffi_boundary!("arrow_dlpack_loader_state", error, |s| s, {
        let loader = non_null!(loader, as_ref)?;
        let len = non_null!(len, as_mut)?;
        let text = loader.state().to_json();
        *len = text.len();
        if buf.is_null() || cap < text.len() {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "the state is {} bytes; cap is {cap}{}",
                text.len(),
                if buf.is_null() { " and buf NULL" } else { "" }
            ));
        }
        // SAFETY: `buf` is writable for `cap >= text.len()` bytes (the
        // caller's contract), and cannot overlap our fresh string.
        unsafe { ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len()) };
        Ok(Status::ARROW_DLPACK_OK)
    })
}

/// Continues from a state (JSON text of `len` bytes, from either face) at
/// the next `arrow_dlpack_loader_next`, by the rules of Python's
/// `load_state_dict`: the rest of a current epoch dropped; a state
/// taken after an epoch's last batch resumes at the next epoch's start. A
/// malformed state, or one another source or other options took, is
/// `INVALID_ARGUMENT` naming the key, and leaves the loader as it was.
///
/// # Safety
/// `loader` is NULL or live; `state` is NULL or readable for `len` bytes;
/// `error` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_loader_restore(
    loader: *mut ArrowDlpackLoader,
    state: *const c_char,
    len: usize,
    error: *mut ArrowDlpackError,
) -> ArrowDlpackStatus {
    ffi_boundary!("arrow_dlpack_loader_restore", error, |s| s, {
        let loader = non_null!(loader, as_mut)?;
        if state.is_null() {
            return Err(err!(ARROW_DLPACK_INVALID_ARGUMENT, "state is NULL"));
        }
        // SAFETY: readable for `len` bytes (the caller's contract).
        let bytes = unsafe { std::slice::from_raw_parts(state.cast::<u8>(), len) };
        let text = std::str::from_utf8(bytes).map_err(|e| {
            err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "the state is not UTF-8 (byte {})",
                e.valid_up_to()
            )
        })?;
        let state = State::from_json(text)?;
        loader.restore(&state).map(|()| Status::ARROW_DLPACK_OK)
    })
}

/// Frees the loader: its prefetch thread joined, the batches made ahead
/// deleted, its source released. Batches handed out stay valid. NULL is
/// fine.
///
/// # Safety
/// `loader` is NULL or a live loader, freed once, used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn arrow_dlpack_loader_free(loader: *mut ArrowDlpackLoader) {
    if loader.is_null() {
        return;
    }
    // The drop joins a thread and releases producers' structs: guarded, a
    // panic is swallowed rather than unwound into C.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: made by `Box::into_raw` in `arrow_dlpack_loader_new`,
        // freed once (the caller's contract).
        drop(unsafe { Box::from_raw(loader) });
    }));
}

// ---- misc ------------------------------------------------------------------

/// The library's version, `"MAJOR.MINOR.PATCH"`: a static string.
#[unsafe(no_mangle)]
pub extern "C" fn arrow_dlpack_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// A static description of a status. Accepts any integer, since values
/// arrive from C and other runtimes: one that is not an `ArrowDlpackStatus`
/// gives `"unknown status"`. (The parameter is an `int` rather than the enum
/// so that an out-of-range value is well-defined on the Rust side; C and
/// C++ pass an `ArrowDlpackStatus` to it unchanged.)
#[unsafe(no_mangle)]
pub extern "C" fn arrow_dlpack_status_string(status: c_int) -> *const c_char {
    match Status::from_raw(status) {
        Some(s) => s.description().as_ptr(),
        None => c"unknown status".as_ptr(),
    }
}
