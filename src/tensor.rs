//! The safe Rust API, for arrow-rs users: arrays to owned DLPack tensors
//! and back, without copying. Both directions run the C entry points' own
//! code: export reads arrow-rs's C Data Interface structs with the one
//! reader of arrays, and import builds the C structs with the one builder,
//! then wraps them for arrow-rs (never through arrow-rs's `from_ffi`, which
//! copies buffers that are not aligned to their type).

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, StructArray, make_array};
use arrow_buffer::Buffer;
use arrow_data::ffi::FFI_ArrowArray;
use arrow_data::{ArrayData, ArrayDataBuilder};
use arrow_schema::ffi::FFI_ArrowSchema;
use arrow_schema::{DataType, Field, Schema};

use crate::abi::{ArrowArray, ArrowSchema, DLDataType, DLDevice, DLManagedTensorVersioned};
use crate::arrow::read;
use crate::dlpack::read::Memory;
use crate::error::{Error, Term, err};
use crate::options::{self, ArrowDlpackCopy, ArrowDlpackOrder};
use crate::{export, import, managed};

/// An owned DLPack 1.x tensor (`DLManagedTensorVersioned`). Dropping it
/// calls the tensor's deleter, which releases whatever it shares (for a
/// tensor made by [`to_dlpack`], the Arrow buffers).
#[derive(Debug)]
pub struct Tensor(NonNull<DLManagedTensorVersioned>);

// SAFETY: a DLPack tensor is handed over with its ownership, and its
// deleter may run on any thread.
unsafe impl Send for Tensor {}

impl Tensor {
    /// Takes ownership of a tensor from C.
    ///
    /// # Safety
    /// `raw` is NULL or a live tensor that the caller owns and gives up.
    pub unsafe fn from_raw(raw: *mut DLManagedTensorVersioned) -> Option<Tensor> {
        NonNull::new(raw).map(Tensor)
    }

    /// Gives up ownership: the caller must call the deleter.
    pub fn into_raw(self) -> *mut DLManagedTensorVersioned {
        let raw = self.0.as_ptr();
        std::mem::forget(self);
        raw
    }

    pub fn as_raw(&self) -> *const DLManagedTensorVersioned {
        self.0.as_ptr()
    }

    fn inner(&self) -> &DLManagedTensorVersioned {
        // SAFETY: owned and live until drop.
        unsafe { self.0.as_ref() }
    }

    pub fn dtype(&self) -> DLDataType {
        self.inner().dl_tensor.dtype
    }

    pub fn device(&self) -> DLDevice {
        self.inner().dl_tensor.device
    }

    pub fn flags(&self) -> u64 {
        self.inner().flags
    }

    /// The first element (`data + byte_offset`).
    pub fn data_ptr(&self) -> *const c_void {
        let t = &self.inner().dl_tensor;
        t.data
            .cast::<u8>()
            .wrapping_add(t.byte_offset as usize)
            .cast()
    }

    pub fn shape(&self) -> &[i64] {
        let t = &self.inner().dl_tensor;
        match t.ndim {
            0 => &[],
            // SAFETY: a live tensor has `ndim` shape entries.
            n => unsafe { std::slice::from_raw_parts(t.shape, n as usize) },
        }
    }

    /// Strides in elements; `None` when the producer left them NULL
    /// (row-major, DLPack before 1.2). Tensors made here always have them.
    pub fn strides(&self) -> Option<&[i64]> {
        let t = &self.inner().dl_tensor;
        if t.ndim == 0 || t.strides.is_null() {
            return None;
        }
        // SAFETY: a live tensor has `ndim` stride entries.
        Some(unsafe { std::slice::from_raw_parts(t.strides, t.ndim as usize) })
    }
}

impl Drop for Tensor {
    fn drop(&mut self) {
        // SAFETY: owned and live; deleted once.
        unsafe { managed::delete(self.0) };
    }
}

/// Shares an arrow-rs array as a DLPack tensor, without copying: the tensor
/// holds a reference to the array's buffers.
///
/// Same rules as `arrow_dlpack_export_versioned`: fixed-width numbers
/// (1-D) and `fixed_size_list`s of them (N-D), without nulls.
///
/// ```
/// use arrow_array::Float32Array;
/// let array = Float32Array::from(vec![1.0, 2.0, 3.0]);
/// let tensor = arrow_dlpack::to_dlpack(&array).unwrap();
/// assert_eq!(tensor.shape(), &[3]);
/// assert_eq!(tensor.data_ptr(), array.values().as_ptr().cast()); // shared, not copied
/// ```
pub fn to_dlpack(array: &dyn Array) -> Result<Tensor, Error> {
    to_dlpack_with_field(&Field::new("", array.data_type().clone(), true), array)
}

/// As [`to_dlpack`], with the array's field, so that extension types in its
/// metadata (`arrow.fixed_shape_tensor`) shape the tensor.
pub fn to_dlpack_with_field(field: &Field, array: &dyn Array) -> Result<Tensor, Error> {
    // SAFETY: forwarded structs, valid.
    export_c(field, array, |a, s| unsafe { export::export(a, s) }).map(Tensor)
}

/// Runs an export over arrow-rs's C Data Interface structs for `field` and
/// `array`: on success the array moves into the tensor, on failure the
/// C array still owns it and releases it when dropped.
fn export_c<T>(
    field: &Field,
    array: &dyn Array,
    export: impl FnOnce(&mut ArrowArray, &ArrowSchema) -> Result<T, Error>,
) -> Result<T, Error> {
    let schema =
        FFI_ArrowSchema::try_from(field).map_err(|e| err!(ARROW_DLPACK_UNSUPPORTED_TYPE, "{e}"))?;
    let mut c_array = FFI_ArrowArray::new(&array.to_data());
    // SAFETY: arrow-rs's structs have the C layout (asserted below) and
    // are valid for the call.
    let (c_array, schema) = unsafe {
        (
            &mut *(&raw mut c_array).cast::<ArrowArray>(),
            &*(&raw const schema).cast::<ArrowSchema>(),
        )
    };
    export(c_array, schema)
}

/// Shares a DLPack tensor (in host-readable memory) as an arrow-rs array,
/// without copying; the array owns the tensor, whose deleter runs when the
/// last array sharing it is dropped. On failure the tensor comes back
/// untouched.
///
/// N-D tensors become `arrow.fixed_shape_tensor` arrays: the returned
/// field carries the extension metadata.
///
/// ```
/// use arrow_array::{Array, Int64Array};
/// let tensor = arrow_dlpack::to_dlpack(&Int64Array::from(vec![1, 2, 3])).unwrap();
/// let data = tensor.data_ptr();
/// let (_field, array) = arrow_dlpack::from_dlpack(tensor).map_err(|(e, _)| e).unwrap();
/// let ints = array.as_any().downcast_ref::<Int64Array>().unwrap();
/// assert_eq!(ints.values(), &[1, 2, 3]);
/// assert_eq!(ints.values().as_ptr().cast(), data); // the same memory, round trip
/// ```
pub fn from_dlpack(tensor: Tensor) -> Result<(Field, ArrayRef), (Error, Tensor)> {
    // SAFETY: forwarded: a live tensor of ours, writable out structs.
    import_c(tensor, |t, a, s| unsafe {
        import::import_to_c(t, Memory::HostReadable, a, s)
    })
}

/// Runs an import of `tensor` into arrow-rs's C Data Interface structs and
/// wraps the result for arrow-rs; on failure the tensor comes back.
fn import_c<T>(
    tensor: Tensor,
    import: impl FnOnce(
        NonNull<DLManagedTensorVersioned>,
        &mut ArrowArray,
        &mut ArrowSchema,
    ) -> Result<T, Error>,
) -> Result<(Field, ArrayRef), (Error, Tensor)> {
    let mut c_array = FFI_ArrowArray::empty();
    let mut c_schema = FFI_ArrowSchema::empty();
    // SAFETY: the out structs are writable and have the C layout (asserted
    // below). On failure nothing is written.
    let imported = unsafe {
        import(
            tensor.0,
            &mut *(&raw mut c_array).cast::<ArrowArray>(),
            &mut *(&raw mut c_schema).cast::<ArrowSchema>(),
        )
    };
    if let Err(e) = imported {
        return Err((e, tensor));
    }
    std::mem::forget(tensor); // owned by `c_array` now, or deleted after a copy
    // Built by us: a primitive type or a fixed_size_list of one, with its
    // extension metadata, which arrow-rs reads into the field.
    let field = Field::try_from(&c_schema).expect("a schema this library wrote");
    Ok((field.clone(), wrap(c_array, field.data_type())))
}

/// An imported C array as an arrow-rs array sharing its memory: every
/// buffer keeps the C array alive, and the last one dropped releases it
/// (and with it the tensor).
fn wrap(c_array: FFI_ArrowArray, data_type: &DataType) -> ArrayRef {
    let keeper = Arc::new(Imported { _array: c_array });
    let data = wrap_data(&keeper._array, data_type, &keeper);
    make_array(data)
}

/// The arrow-rs description of one level of an imported array (a
/// primitive, boolean, `fixed_size_list` or struct array this library
/// built), its buffers held by `keeper`.
fn wrap_data(c: &FFI_ArrowArray, data_type: &DataType, keeper: &Arc<Imported>) -> ArrayData {
    let builder = ArrayDataBuilder::new(data_type.clone())
        .len(c.len())
        .offset(c.offset());
    let builder = match data_type {
        DataType::FixedSizeList(item, _) => {
            builder.add_child_data(wrap_data(c.child(0), item.data_type(), keeper))
        }
        DataType::List(item) | DataType::LargeList(item) => {
            let entry = match data_type {
                DataType::List(_) => 4,
                _ => 8,
            };
            let bytes = (c.offset() + c.len() + 1) * entry;
            let pointer = NonNull::new(c.buffer(1).cast_mut()).unwrap_or(NonNull::dangling());
            // SAFETY: the offsets tensor (or its copy) holds `length + 1`
            // entries (checked by the import), alive until `keeper` goes.
            let offsets = unsafe { Buffer::from_custom_allocation(pointer, bytes, keeper.clone()) };
            builder.add_buffer(offsets).add_child_data(wrap_data(
                c.child(0),
                item.data_type(),
                keeper,
            ))
        }
        DataType::Struct(fields) => builder.child_data(
            fields
                .iter()
                .enumerate()
                .map(|(j, f)| wrap_data(c.child(j), f.data_type(), keeper))
                .collect(),
        ),
        value_type => {
            let end = c.offset() + c.len();
            let bytes = match value_type {
                DataType::Boolean => end.div_ceil(8),
                other => end * other.primitive_width().expect("a primitive value type"),
            };
            let pointer = NonNull::new(c.buffer(1).cast_mut()).unwrap_or(NonNull::dangling());
            // SAFETY: the tensor (or the import's copy) holds `bytes` bytes
            // at `pointer` (checked by the import, trusted as DLPack lets a
            // consumer trust it), alive until `keeper` releases the array.
            let buffer = unsafe { Buffer::from_custom_allocation(pointer, bytes, keeper.clone()) };
            builder.add_buffer(buffer)
        }
    };
    // SAFETY: lengths, offsets and buffers as this library built them, no
    // validity buffer. Validation is skipped because it would reject
    // buffers that are not aligned to the element size, which the C Data
    // Interface allows.
    unsafe { builder.build_unchecked() }
}

/// An imported array, released (by `FFI_ArrowArray`'s `Drop`) when
/// arrow-rs drops its last buffer.
struct Imported {
    _array: FFI_ArrowArray,
}

// SAFETY: its release may run on any thread (the C Data Interface), and it
// is never read through this wrapper.
unsafe impl Send for Imported {}
// SAFETY: as for the block above, its release may run on any thread (the C Data Interface), and
// it is never read through this wrapper.
unsafe impl Sync for Imported {}
impl std::panic::RefUnwindSafe for Imported {}

const _: () = {
    use std::mem::size_of;
    assert!(size_of::<FFI_ArrowArray>() == size_of::<ArrowArray>());
    assert!(size_of::<FFI_ArrowSchema>() == size_of::<ArrowSchema>());
};

// ---- copies -------------------------------------------------------------------

/// When a copy is allowed (the C API's `ArrowDlpackCopy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CopyPolicy {
    /// Share, or fail with `NEEDS_COPY` (the default).
    #[default]
    Never,
    /// Share when possible, else make one copy.
    IfNeeded,
    /// Always a fresh, writable copy.
    Always,
}

impl CopyPolicy {
    fn policy(self) -> ArrowDlpackCopy {
        match self {
            CopyPolicy::Never => ArrowDlpackCopy::ARROW_DLPACK_COPY_NEVER,
            CopyPolicy::IfNeeded => ArrowDlpackCopy::ARROW_DLPACK_COPY_IF_NEEDED,
            CopyPolicy::Always => ArrowDlpackCopy::ARROW_DLPACK_COPY_ALWAYS,
        }
    }
}

/// The layout of a record batch's 2-D tensor (the C API's
/// `ArrowDlpackOrder`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Columns laid end to end are shared column-major; anything else is
    /// copied row-major.
    #[default]
    Any,
    /// Row-major (C order): `[rows, columns]` with strides `[columns, 1]`.
    RowMajor,
    /// Column-major (Fortran order): strides `[1, rows]`.
    ColumnMajor,
}

/// What [`to_dlpack_with_options`] may do (the C API's
/// `ArrowDlpackExportOptions`): `Default` shares, never copies.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportOptions {
    pub copy: CopyPolicy,
    /// For record batches (struct arrays): the 2-D tensor's layout.
    pub order: Order,
    /// `Some(value)`: each null becomes `value` (a copy); it must be exact
    /// in the tensor's dtype.
    pub fill_nulls: Option<f64>,
    /// Dates, times, timestamps and durations shared as their integer
    /// storage.
    pub temporal_as_integer: bool,
    /// The tensor's dtype, if not the array's own (a copy, converted as
    /// NumPy's `astype`).
    pub dtype: Option<DLDataType>,
    /// Dictionary-encoded arrays export their indices.
    pub dictionary_as_indices: bool,
    /// Also make the validity mask (kDLBool, 1 = valid).
    pub validity: bool,
    /// Threads a copy may run on: 0, the default (`ARROW_DLPACK_THREADS`,
    /// else the machine's cores, at most 8); the same bytes whatever the
    /// count.
    pub threads: usize,
}

/// A tensor made under [`ExportOptions`], and its validity mask if asked.
#[derive(Debug)]
pub struct Exported {
    pub tensor: Tensor,
    pub validity: Option<Tensor>,
}

impl ExportOptions {
    /// The validated options of the core.
    fn core(&self) -> Result<options::ExportPolicy, Error> {
        let dtype = match self.dtype {
            None => None,
            Some(t) => Some(crate::dtype::target(t).ok_or_else(|| {
                crate::dtype::unsupported_dlpack(t).context(format_args!("dtype"))
            })?),
        };
        Ok(options::ExportPolicy {
            copy: self.copy.policy(),
            order: match self.order {
                Order::Any => ArrowDlpackOrder::ARROW_DLPACK_ORDER_ANY,
                Order::RowMajor => ArrowDlpackOrder::ARROW_DLPACK_ROW_MAJOR,
                Order::ColumnMajor => ArrowDlpackOrder::ARROW_DLPACK_COLUMN_MAJOR,
            },
            fill: self.fill_nulls,
            temporal_as_integer: self.temporal_as_integer,
            dtype,
            dictionary_as_indices: self.dictionary_as_indices,
            threads: self.threads,
            pinned: false,
            mask: self.validity,
        })
    }
}

impl From<export::Made<DLManagedTensorVersioned>> for Exported {
    fn from(made: export::Made<DLManagedTensorVersioned>) -> Exported {
        Exported {
            tensor: Tensor(made.tensor),
            validity: made.mask.map(Tensor),
        }
    }
}

/// As [`to_dlpack_with_field`], under `options`: booleans, nulls,
/// another dtype are copied once where the options allow it (the rules of
/// `arrow_dlpack_export_with`).
///
/// ```
/// use arrow_array::BooleanArray;
/// use arrow_dlpack::{CopyPolicy, ExportOptions};
/// let array = BooleanArray::from(vec![true, false, true]);
/// let field = arrow_schema::Field::new("", arrow_schema::DataType::Boolean, false);
/// let options = ExportOptions { copy: CopyPolicy::IfNeeded, ..Default::default() };
/// let t = arrow_dlpack::to_dlpack_with_options(&field, &array, &options).unwrap().tensor;
/// assert_eq!((t.dtype().code, t.shape()), (6, &[3][..])); // kDLBool, unpacked
/// ```
pub fn to_dlpack_with_options(
    field: &Field,
    array: &dyn Array,
    options: &ExportOptions,
) -> Result<Exported, Error> {
    let core = options.core()?;
    // SAFETY: forwarded structs, valid.
    export_c(field, array, |a, s| unsafe {
        export::export_with(a, s, &core)
    })
    .map(Exported::from)
}

/// The chunks of a column (each of `field`'s type) as one tensor,
/// concatenated along the first dimension: one chunk is shared, several
/// need a copy (`CopyPolicy::IfNeeded`), none give an empty tensor. The rules of
/// `arrow_dlpack_export_stream`.
///
/// ```
/// use std::sync::Arc;
/// use arrow_array::{ArrayRef, Int32Array};
/// use arrow_dlpack::{CopyPolicy, ExportOptions};
/// let field = arrow_schema::Field::new("", arrow_schema::DataType::Int32, false);
/// let chunks: Vec<ArrayRef> = vec![Arc::new(Int32Array::from(vec![1, 2])), Arc::new(Int32Array::from(vec![3]))];
/// let options = ExportOptions { copy: CopyPolicy::IfNeeded, ..Default::default() };
/// let t = arrow_dlpack::chunks_to_dlpack(&field, chunks, &options).unwrap().tensor;
/// assert_eq!(t.shape(), &[3]);
/// ```
pub fn chunks_to_dlpack(
    field: &Field,
    chunks: impl IntoIterator<Item = ArrayRef>,
    options: &ExportOptions,
) -> Result<Exported, Error> {
    let core = options.core()?;
    let chunks: Vec<ArrayRef> = chunks.into_iter().collect();
    // SAFETY: a valid schema, read once; the chunks are arrays of it.
    with_chunks(field, &chunks, |schema, arrays| unsafe {
        let ty = read::read_type(schema, export_accept(&core))?;
        export::export_chunks::<DLManagedTensorVersioned>(&ty, arrays, &core)
    })
    .map(Exported::from)
}

/// Runs an export over arrow-rs's C structs for `field` and `chunks` (of
/// its type): each array moves into what is made or is released; on
/// failure each C array still owns its chunk and releases it when dropped.
fn with_chunks<T>(
    field: &Field,
    chunks: &[ArrayRef],
    export: impl FnOnce(&ArrowSchema, &mut [&mut ArrowArray]) -> Result<T, Error>,
) -> Result<T, Error> {
    if let Some((i, c)) = chunks
        .iter()
        .enumerate()
        .find(|(_, c)| c.data_type() != field.data_type())
    {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "chunk {i} is {}, the field {}",
            c.data_type(),
            field.data_type()
        ));
    }
    let schema =
        FFI_ArrowSchema::try_from(field).map_err(|e| err!(ARROW_DLPACK_UNSUPPORTED_TYPE, "{e}"))?;
    // Released when dropped unless moved into the tensor.
    let mut arrays: Vec<FFI_ArrowArray> = chunks
        .iter()
        .map(|c| FFI_ArrowArray::new(&c.to_data()))
        .collect();
    // SAFETY: arrow-rs's structs have the C layout (asserted below) and
    // are valid for the call.
    let schema = unsafe { &*(&raw const schema).cast::<ArrowSchema>() };
    // SAFETY: as for the block above, arrow-rs's structs have the C layout (asserted below) and
    // are valid for the call.
    let mut c_arrays: Vec<&mut ArrowArray> = arrays
        .iter_mut()
        .map(|a| unsafe { &mut *(a as *mut FFI_ArrowArray).cast::<ArrowArray>() })
        .collect();
    export(schema, &mut c_arrays)
}

/// What `export_with` accepts under `options` (the type of a field is
/// read as the export of one array would read it).
fn export_accept(options: &options::ExportPolicy) -> read::Accept {
    read::Accept {
        boolean: true,
        temporal: options.temporal_as_integer,
        table: true,
        variable: false,
        dictionary: options.dictionary_as_indices,
    }
}

/// What [`from_dlpack_with_options`] may do.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    pub copy: CopyPolicy,
    /// Threads a copy may run on (0: the default), as in [`ExportOptions`].
    pub threads: usize,
}

/// As [`from_dlpack`], under `options`: kDLBool tensors and strides Arrow
/// cannot share are copied once (row-major) where the options allow it;
/// the tensor is then deleted at once.
pub fn from_dlpack_with_options(
    tensor: Tensor,
    options: &ImportOptions,
) -> Result<(Field, ArrayRef), (Error, Tensor)> {
    let core = options::ImportPolicy {
        copy: options.copy.policy(),
        threads: options.threads,
        ..options::ImportPolicy::SHARE
    };
    // SAFETY: as in `from_dlpack`.
    import_c(tensor, |t, a, s| unsafe {
        import::import_with(t, &core, a, s)
    })
}

// ---- record batches -------------------------------------------------------------

/// The struct field of a record batch's schema: what its `StructArray` is
/// exported with.
fn batch_field(schema: &Schema) -> Field {
    Field::new("", DataType::Struct(schema.fields().clone()), false)
}

/// A record batch as one 2-D tensor `[rows, columns]` (the rules of
/// `arrow_dlpack_export_with` for a struct array): columns of one dtype,
/// without nulls, laid end to end in memory are shared column-major
/// (under `Order::Any` and `Order::ColumnMajor`, even with
/// `CopyPolicy::Never`); anything else is one copy, row-major under
/// `Order::Any`, where `options.copy` allows it. Mixed dtypes promote as
/// NumPy's `result_type`.
///
/// ```
/// use std::sync::Arc;
/// use arrow_array::{Float32Array, Int16Array, RecordBatch};
/// use arrow_dlpack::{CopyPolicy, ExportOptions};
/// let batch = RecordBatch::try_from_iter([
///     ("a", Arc::new(Int16Array::from(vec![1, 2])) as _),
///     ("b", Arc::new(Float32Array::from(vec![0.5, 1.5])) as _),
/// ]).unwrap();
/// let options = ExportOptions { copy: CopyPolicy::IfNeeded, ..Default::default() };
/// let t = arrow_dlpack::record_batch_to_dlpack(&batch, &options).unwrap().tensor;
/// assert_eq!(t.shape(), &[2, 2]);
/// assert_eq!((t.dtype().code, t.dtype().bits), (2, 32)); // int16 + float32 -> float32
/// assert_eq!(t.strides(), Some(&[2, 1][..])); // a row-major copy
/// ```
pub fn record_batch_to_dlpack(
    batch: &RecordBatch,
    options: &ExportOptions,
) -> Result<Exported, Error> {
    let array = StructArray::from(batch.clone());
    to_dlpack_with_options(&batch_field(&batch.schema()), &array, options)
}

/// Record batches of one schema as one 2-D tensor, stacked row after row
/// (the rules of `arrow_dlpack_export_stream`): one batch is shared as
/// [`record_batch_to_dlpack`] would; several need a copy; none give a
/// `[0, columns]` tensor.
pub fn record_batches_to_dlpack(
    schema: &Schema,
    batches: impl IntoIterator<Item = RecordBatch>,
    options: &ExportOptions,
) -> Result<Exported, Error> {
    let chunks = batches
        .into_iter()
        .map(|b| Arc::new(StructArray::from(b)) as ArrayRef);
    chunks_to_dlpack(&batch_field(schema), chunks, options)
}

/// A 2-D tensor `[rows, columns]` as a record batch of its columns, named
/// `names` (`None`: "0", "1", ...). A column-major tensor (each column
/// dense) is shared: every column points into the tensor, which is deleted
/// when the last column is dropped; otherwise the columns are copied out
/// once where `options.copy` allows it. Not 2-D: `INVALID_ARGUMENT`.
///
/// ```
/// use std::sync::Arc;
/// use arrow_array::{Float64Array, RecordBatch};
/// use arrow_dlpack::{CopyPolicy, ExportOptions, ImportOptions};
/// let batch = RecordBatch::try_from_iter([
///     ("x", Arc::new(Float64Array::from(vec![1.0, 2.0])) as _),
///     ("y", Arc::new(Float64Array::from(vec![3.0, 4.0])) as _),
/// ]).unwrap();
/// let options = ExportOptions { copy: CopyPolicy::IfNeeded, ..Default::default() };
/// let matrix = arrow_dlpack::record_batch_to_dlpack(&batch, &options).unwrap().tensor;
/// let options = ImportOptions { copy: CopyPolicy::IfNeeded, ..Default::default() };
/// let back = arrow_dlpack::record_batch_from_dlpack(matrix, Some(&["x", "y"]), &options)
///     .map_err(|(e, _)| e)
///     .unwrap();
/// assert_eq!(back, batch);
/// ```
pub fn record_batch_from_dlpack(
    tensor: Tensor,
    names: Option<&[&str]>,
    options: &ImportOptions,
) -> Result<RecordBatch, (Error, Tensor)> {
    let owned: Option<Vec<std::ffi::CString>> = match names {
        None => None,
        Some(names) => {
            let owned: Result<Vec<_>, _> =
                names.iter().map(|n| std::ffi::CString::new(*n)).collect();
            match owned {
                Ok(o) => Some(o),
                Err(e) => {
                    return Err((
                        err!(
                            ARROW_DLPACK_INVALID_ARGUMENT,
                            "a column name holds a NUL: {e}"
                        ),
                        tensor,
                    ));
                }
            }
        }
    };
    let pointers: Option<Vec<*const std::ffi::c_char>> = owned
        .as_ref()
        .map(|o| o.iter().map(|n| n.as_ptr()).collect());
    if let Some(p) = &pointers {
        let columns = tensor.shape().get(1).copied();
        if tensor.shape().len() == 2 && columns != Some(p.len() as i64) {
            let e = err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "{} names for {} columns",
                p.len(),
                columns.unwrap_or(0)
            );
            return Err((e, tensor));
        }
    }
    let core = options::ImportPolicy {
        copy: options.copy.policy(),
        as_columns: true,
        column_names: pointers.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()),
        threads: options.threads,
    };
    // SAFETY: as in `from_dlpack`; the names outlive the call.
    let (_, array) = import_c(tensor, |t, a, s| unsafe {
        import::import_with(t, &core, a, s)
    })?;
    let columns = array
        .as_any()
        .downcast_ref::<StructArray>()
        .expect("as_columns builds a struct array")
        .clone();
    Ok(RecordBatch::from(columns))
}

// ---- variable-length columns ----------------------------------------------------

/// A variable-length column as two tensors (the C API's
/// `ArrowDlpackJagged`): every row's elements end to end, the offsets from
/// 0; and the rows' validity when [`ExportOptions::validity`] asks for it.
#[derive(Debug)]
pub struct Jagged {
    pub values: Tensor,
    pub offsets: Tensor,
    pub validity: Option<Tensor>,
}

impl From<export::MadeJagged<DLManagedTensorVersioned>> for Jagged {
    fn from(made: export::MadeJagged<DLManagedTensorVersioned>) -> Jagged {
        Jagged {
            values: Tensor(made.values),
            offsets: Tensor(made.offsets),
            validity: made.mask.map(Tensor),
        }
    }
}

/// A list, string or binary array as its values and offsets (the rules of
/// `arrow_dlpack_export_jagged`): shared, both tensors holding the array,
/// where its first offset is 0 and nothing needs converting; else the
/// parts that must be are copied once (`CopyPolicy::IfNeeded`).
///
/// ```
/// use arrow_array::{Array, ListArray, types::Int32Type};
/// let tokens = ListArray::from_iter_primitive::<Int32Type, _, _>([
///     Some(vec![Some(7), Some(8)]),
///     Some(vec![Some(9)]),
/// ]);
/// let field = arrow_schema::Field::new("", tokens.data_type().clone(), false);
/// let j = arrow_dlpack::to_jagged(&field, &tokens, &Default::default()).unwrap();
/// assert_eq!((j.values.shape(), j.offsets.shape()), (&[3][..], &[3][..]));
/// assert_eq!(j.values.data_ptr(), tokens.values().to_data().buffers()[0].as_ptr().cast()); // shared
/// ```
pub fn to_jagged(
    field: &Field,
    array: &dyn Array,
    options: &ExportOptions,
) -> Result<Jagged, Error> {
    chunks_to_jagged(field, [make_array(array.to_data())], options)
}

/// The chunks of a variable-length column (each of `field`'s type) as one
/// jagged pair: one chunk as [`to_jagged`] makes it, several concatenated
/// (values appended, offsets rebased: one copy).
pub fn chunks_to_jagged(
    field: &Field,
    chunks: impl IntoIterator<Item = ArrayRef>,
    options: &ExportOptions,
) -> Result<Jagged, Error> {
    let core = options.core()?;
    let chunks: Vec<ArrayRef> = chunks.into_iter().collect();
    // SAFETY: a valid schema; the chunks are arrays of it.
    with_chunks(field, &chunks, |schema, arrays| unsafe {
        export::export_jagged_chunks::<DLManagedTensorVersioned>(schema, arrays, &core)
    })
    .map(Jagged::from)
}

/// Which end of a row padding goes to (the C API's `padding->side`).
pub use crate::options::Side;

/// How [`to_padded`] pads (the C API's `ArrowDlpackPadding`): `Default`
/// pads with 0, on the right, to the longest row.
#[derive(Debug, Clone, Copy, Default)]
pub struct Padding {
    /// `None`: the longest row; else every row cut or padded to it.
    pub length: Option<usize>,
    pub side: Side,
    /// The padding, exact in the tensor's dtype.
    pub value: f64,
}

/// A list, string or binary array as one padded tensor `[rows, L, ...]`
/// (always one copy), and with [`ExportOptions::validity`] the `[rows, L]`
/// mask of real elements (the rules of `arrow_dlpack_export_padded`).
///
/// ```
/// use arrow_array::{Array, ListArray, types::Int32Type};
/// use arrow_dlpack::{ExportOptions, Padding, Side};
/// let tokens = ListArray::from_iter_primitive::<Int32Type, _, _>([
///     Some(vec![Some(7), Some(8)]),
///     Some(vec![Some(9)]),
/// ]);
/// let field = arrow_schema::Field::new("", tokens.data_type().clone(), false);
/// let padding = Padding { side: Side::Left, ..Default::default() };
/// let options = ExportOptions { validity: true, ..Default::default() };
/// let made = arrow_dlpack::to_padded(&field, &tokens, &options, &padding).unwrap();
/// assert_eq!(made.tensor.shape(), &[2, 2]); // [[7, 8], [0, 9]]
/// ```
pub fn to_padded(
    field: &Field,
    array: &dyn Array,
    options: &ExportOptions,
    padding: &Padding,
) -> Result<Exported, Error> {
    chunks_to_padded(field, [make_array(array.to_data())], options, padding)
}

/// The chunks of a variable-length column as one padded tensor, row after
/// row.
pub fn chunks_to_padded(
    field: &Field,
    chunks: impl IntoIterator<Item = ArrayRef>,
    options: &ExportOptions,
    padding: &Padding,
) -> Result<Exported, Error> {
    let core = options.core()?;
    // A length past i64 is cut or padded to at most that many elements.
    let length = padding.length.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let padding = options::Pad::new(length, padding.side, padding.value, Term::PadLength)?;
    let chunks: Vec<ArrayRef> = chunks.into_iter().collect();
    // SAFETY: a valid schema; the chunks are arrays of it.
    with_chunks(field, &chunks, |schema, arrays| unsafe {
        export::export_padded_chunks::<DLManagedTensorVersioned>(schema, arrays, &core, &padding)
    })
    .map(Exported::from)
}

/// A values tensor and an offsets tensor (int32 or int64, `length + 1`
/// entries) as a list array sharing both (the rules of
/// `arrow_dlpack_import_jagged`: the offsets checked first); on failure
/// both tensors come back.
///
/// ```
/// use arrow_array::{Array, ListArray, types::Int32Type};
/// let tokens = ListArray::from_iter_primitive::<Int32Type, _, _>([Some(vec![Some(7), Some(8)])]);
/// let field = arrow_schema::Field::new("", tokens.data_type().clone(), false);
/// let j = arrow_dlpack::to_jagged(&field, &tokens, &Default::default()).unwrap();
/// let (_, back) = arrow_dlpack::from_jagged(j.values, j.offsets).map_err(|(e, ..)| e).unwrap();
/// let back = back.as_any().downcast_ref::<ListArray>().unwrap();
/// assert_eq!(back.value_offsets(), tokens.value_offsets()); // the same memory, round trip
/// assert_eq!(back.values().to_data().buffers()[0].as_ptr(), tokens.values().to_data().buffers()[0].as_ptr());
/// ```
pub fn from_jagged(
    values: Tensor,
    offsets: Tensor,
) -> Result<(Field, ArrayRef), (Error, Tensor, Tensor)> {
    let core = options::ImportPolicy::SHARE;
    let mut c_array = FFI_ArrowArray::empty();
    let mut c_schema = FFI_ArrowSchema::empty();
    // SAFETY: live tensors of ours, handed over on success; writable out
    // structs of the C layout (asserted below).
    let imported = unsafe {
        import::import_jagged(
            values.0,
            offsets.0,
            &core,
            &mut *(&raw mut c_array).cast::<ArrowArray>(),
            &mut *(&raw mut c_schema).cast::<ArrowSchema>(),
        )
    };
    if let Err(e) = imported {
        return Err((e, values, offsets));
    }
    // Owned by the list array now.
    std::mem::forget(values);
    std::mem::forget(offsets);
    let field = Field::try_from(&c_schema).expect("a schema this library wrote");
    Ok((field.clone(), wrap(c_array, field.data_type())))
}
