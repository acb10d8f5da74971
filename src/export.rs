//! Arrow -> DLPack, in one straight line for every input: read
//! (`arrow::read`: types, then pieces), plan (`plan`), make (`owner`, with
//! the kernels of `copy` writing a copy's own bytes). The core returns what
//! it made, the tensor and, when asked, its validity mask, as Rust values:
//! only the C and Python faces write out-parameters.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::abi::{
    ArrowArray, ArrowArrayStream, ArrowDeviceArray, ArrowSchema, DLDevice, DLManagedTensorVersioned,
};
use crate::arrow::read::{self, Accept, Batch, ColumnType, Location, Mode, Piece, TableType, Type};
use crate::arrow::release::Release;
use crate::arrow::stream::Reader;
use crate::copy::jagged::ListRows;
use crate::copy::layout::{Layout, Out, Pick};
use crate::copy::threads;
use crate::dtype;
use crate::error::{Error, err};
use crate::managed::{self, Managed};
use crate::options::{self, ArrowDlpackCopy, ExportPolicy, Pad};
use crate::owner;
use crate::plan::{self, Make, Plan};

/// A tensor made under options, and its validity mask when asked for.
#[derive(Debug)]
pub struct Made<M> {
    pub tensor: NonNull<M>,
    pub mask: Option<NonNull<DLManagedTensorVersioned>>,
}

/// Exports a host array as it is (`arrow_dlpack_export`, `_versioned`):
/// shared, or refused.
///
/// # Safety
/// `array` and `schema` are valid (the C Data Interface's guarantees).
#[inline(always)]
pub unsafe fn export<M: Managed>(
    array: &mut ArrowArray,
    schema: &ArrowSchema,
) -> Result<NonNull<M>, Error> {
    // SAFETY: `export`'s caller promises it: `array` and `schema` are valid (the C Data
    // Interface's guarantees).
    unsafe { share(array, schema, Location::CPU) }
}

/// Exports an array from any device, as either flavour; returns the tensor
/// and the array's `sync_event`. Device memory is never dereferenced.
///
/// # Safety
/// `array` and `schema` are valid (the C Device Data Interface's guarantees).
pub unsafe fn export_device<M: Managed>(
    array: &mut ArrowDeviceArray,
    schema: &ArrowSchema,
) -> Result<(NonNull<M>, *mut c_void), Error> {
    let device = read::device_of(array)?;
    // SAFETY: `export_device`'s caller promises it: `array` and `schema` are valid (the C
    // Device Data Interface's guarantees).
    let tensor = unsafe { share(&mut array.array, schema, Location { device }) }?;
    Ok((tensor, array.sync_event))
}

/// Where the memory a share points into stays alive.
pub enum Hold<'a, 'b> {
    /// The pieces' own arrays (chunk `i` for piece `i`): the one shared is
    /// moved into the tensor (or kept by the tensors of a pair), the rest
    /// released once everything is made; on failure all are untouched.
    Move(&'a mut [&'b mut ArrowArray]),
    /// Arrays already kept (piece `i` in `kept[i]`): a share takes a share
    /// of the keep; nothing is released (the batches of one chunk).
    Kept(&'a [Arc<owner::Kept>]),
}

impl Hold<'_, '_> {
    /// Releases the arrays not moved (`Move`), once everything is made.
    ///
    /// # Safety
    /// The arrays are live.
    unsafe fn finish(self) {
        if let Hold::Move(arrays) = self {
            // SAFETY: `finish`'s caller promises it: the arrays are live.
            unsafe { release_rest(arrays) };
        }
    }
}

/// The plain share: read with nothing beyond shared types accepted, nulls
/// refused, and the array moved into the tensor.
///
/// # Safety
/// As [`export`].
#[inline(always)]
unsafe fn share<M: Managed>(
    array: &mut ArrowArray,
    schema: &ArrowSchema,
    location: Location,
) -> Result<NonNull<M>, Error> {
    // SAFETY: `share`'s caller promises it: as `export`'s: `array` and `schema` are valid (the
    // C Data Interface's guarantees).
    if let Some(flat) = unsafe { read::read_flat(array, schema, location) }? {
        // SAFETY: the data is the array's memory.
        return unsafe { share_flat(array, &flat, location) };
    }
    // SAFETY: `share`'s caller promises it: as `export`'s: `array` and `schema` are valid (the
    // C Data Interface's guarantees).
    let column = unsafe { read::column_type(schema, Accept::default()) }?;
    // SAFETY: as for the block above, `share`'s caller promises it: as `export`'s: `array` and
    // `schema` are valid (the C Data Interface's guarantees).
    let piece = unsafe { read::read_piece(array, &column, None, location, Mode::default()) }?;
    let dtype = column.values.dtype;
    // What only the planner's copy makes: a decimal's float, decoded rows.
    dtype::target_of(dtype, None)?;
    plan::null_type_refused(&column)?;
    if piece.is_encoded() {
        return Err(options::needs_copy(format_args!(
            "decoding run-end encoded values"
        )));
    }
    let dims = plan::shared_dims(column.values, &piece);
    // SAFETY: the piece's data is the array's memory.
    unsafe {
        let dims = (dims.shape(), dims.strides());
        owner::share(array, piece.data, dtype.dl, location.device, dims)
    }
}

/// Moves `array`, read flat, into a tensor sharing its memory.
///
/// # Safety
/// `flat` was read from `array`, live.
#[inline(always)]
unsafe fn share_flat<M: Managed>(
    array: &mut ArrowArray,
    flat: &read::Flat,
    location: Location,
) -> Result<NonNull<M>, Error> {
    let dl = flat.dtype.dl;
    // SAFETY: the data is the array's memory (caller's contract).
    unsafe {
        match flat.size {
            None => owner::share(array, flat.data, dl, location.device, (&[flat.rows], &[1])),
            Some(n) => {
                let dims = ([flat.rows, n], [n, 1]);
                owner::share(array, flat.data, dl, location.device, (&dims.0, &dims.1))
            }
        }
    }
}

/// What a read under `options` accepts.
fn accept(options: &ExportPolicy) -> Accept {
    Accept {
        boolean: true,
        temporal: options.temporal_as_integer,
        table: true,
        variable: false,
        dictionary: options.dictionary_as_indices,
    }
}

/// `arrow_dlpack_export_with[_legacy]`: one array under `options` (a
/// struct array: a record batch as a matrix).
///
/// # Safety
/// As [`export`].
pub unsafe fn export_with<M: Managed>(
    array: &mut ArrowArray,
    schema: &ArrowSchema,
    options: &ExportPolicy,
) -> Result<Made<M>, Error> {
    // A primitive array these options leave as it is (the most common
    // export from Python) is shared as the plain export shares it; any
    // other input, and any failure, takes the path below, which decides
    // and reports with every option in view.
    if options.copy != ArrowDlpackCopy::ARROW_DLPACK_COPY_ALWAYS && !options.mask {
        // SAFETY: `export_with`'s caller promises it: as `export`'s: `array` and `schema` are
        // valid (the C Data Interface's guarantees).
        if let Ok(Some(flat)) = unsafe { read::read_flat(array, schema, Location::CPU) } {
            if options.dtype.is_none_or(|t| t == flat.dtype) {
                // SAFETY: the data is the array's memory.
                let tensor = unsafe { share_flat(array, &flat, Location::CPU) }?;
                return Ok(Made { tensor, mask: None });
            }
        }
    }
    // SAFETY: `export_with`'s caller promises it: as `export`'s: `array` and `schema` are valid
    // (the C Data Interface's guarantees).
    let ty = unsafe { read::read_type(schema, accept(options)) }?;
    // SAFETY: as above: a chunk of one.
    unsafe { export_chunks(&ty, &mut [array], options) }
}

/// `arrow_dlpack_export_stream[_legacy]`: every chunk of a stream,
/// concatenated along the first dimension (one chunk is shared as
/// [`export_with`] would share it). The stream is read to its end (or to
/// the failure) and never released; the chunks read are the library's,
/// released once copied.
///
/// # Safety
/// `stream` is a live C stream.
pub unsafe fn export_stream<M: Managed>(
    stream: &mut ArrowArrayStream,
    options: &ExportPolicy,
) -> Result<Made<M>, Error> {
    // SAFETY: forwarded from the caller; the chunks are of the type.
    unsafe {
        read_stream(stream, dense_type, options, |ty, arrays| {
            export_chunks(ty, arrays, options)
        })
    }
}

/// The one way an export reads a stream: its schema's type through
/// `read_type` (under `options`), checked before any chunk is read, then
/// every chunk; `then` makes what the export makes of them. The stream is
/// borrowed and never released; the chunks are the reader's, released
/// when `then` returns unless it moved them.
///
/// # Safety
/// `stream` is a live C stream.
unsafe fn read_stream<R>(
    stream: &mut ArrowArrayStream,
    read_type: for<'s> unsafe fn(&'s ArrowSchema, &ExportPolicy) -> Result<Type<'s>, Error>,
    options: &ExportPolicy,
    then: impl FnOnce(&Type<'_>, &mut [&mut ArrowArray]) -> Result<R, Error>,
) -> Result<R, Error> {
    // SAFETY: `read_stream`'s caller promises it: `stream` is a live C stream.
    let reader = unsafe { Reader::open(stream) }?;
    // SAFETY: the stream's schema, live while the reader is.
    let ty = unsafe { read_type(&reader.schema, options) }?;
    // SAFETY: the stream is live.
    let mut chunks = unsafe { reader.rest() }?;
    then(&ty, &mut crate::arrow::stream::arrays(&mut chunks))
}

/// The type of what a dense export under `options` reads: a column or a
/// table.
///
/// # Safety
/// `schema` is valid.
unsafe fn dense_type<'s>(
    schema: &'s ArrowSchema,
    options: &ExportPolicy,
) -> Result<Type<'s>, Error> {
    // SAFETY: `dense_type`'s caller promises it: `schema` is valid.
    unsafe { read::read_type(schema, accept(options)) }
}

/// The tensor of `chunks`, arrays of type `ty`, stacked along the first
/// dimension: the one with elements shared, or one copy of them all. On
/// success each array is moved into the tensor or released; on failure
/// each is untouched.
///
/// # Safety
/// `chunks` are live arrays of the schema `ty` was read from.
pub unsafe fn export_chunks<M: Managed>(
    ty: &Type<'_>,
    chunks: &mut [&mut ArrowArray],
    options: &ExportPolicy,
) -> Result<Made<M>, Error> {
    // SAFETY: `export_chunks`'s caller promises it: `chunks` are live arrays of the schema `ty`
    // was read from.
    let input = unsafe { Input::read(ty, chunks) }?;
    // SAFETY: the input was read from `chunks`, in order.
    unsafe { made(&input, options, Hold::Move(chunks), Location::CPU.device) }
}

/// What a dense export read, ready to plan: one column's pieces, or a
/// table's batches (the columns of each chunk), and their rows in all.
pub enum Input<'a, 's> {
    Column(&'a ColumnType<'s>, Vec<Piece>, usize),
    Table(&'a TableType<'s>, Vec<Batch>, usize),
}

impl<'a, 's> Input<'a, 's> {
    /// Reads every chunk of `ty` (nulls kept and counted).
    ///
    /// # Safety
    /// `chunks` are live arrays of the schema `ty` was read from.
    pub unsafe fn read(ty: &'a Type<'s>, chunks: &[&mut ArrowArray]) -> Result<Self, Error> {
        Ok(match ty {
            Type::Column(column) => {
                // SAFETY: `read`'s caller promises it: `chunks` are live arrays of the schema
                // `ty` was read from.
                let (pieces, rows) = unsafe { column_pieces(column, chunks) }?;
                Input::Column(column, pieces, rows)
            }
            Type::Table(table) => {
                // SAFETY: `read`'s caller promises it: `chunks` are live arrays of the schema
                // `ty` was read from.
                let (batches, rows) = unsafe { table_batches(table, chunks) }?;
                Input::Table(table, batches, rows)
            }
        })
    }

    /// The plan of the tensor (and mask) of the input under `options`.
    fn plan(&self, options: &ExportPolicy) -> Result<Plan, Error> {
        match self {
            Input::Column(column, pieces, rows) => {
                plan::tensor(column, pieces, *rows as i64, options)
            }
            Input::Table(table, batches, rows) => plan::matrix(table, batches, *rows, options),
        }
    }

    /// The input's pieces laid out as `plan` makes them (a table shared
    /// as it lies is column-major).
    fn layout(&self, plan: &Plan) -> Layout<'_> {
        match self {
            Input::Column(column, pieces, _) => Layout::tensor(&column.values, pieces),
            Input::Table(table, batches, _) => {
                let order = match plan.make {
                    Make::Copy(order) => order,
                    Make::Share { .. } => plan::Major::Column,
                };
                Layout::matrix(table, batches, order)
            }
        }
    }
}

/// The one export pipeline: an input -> its plan -> the tensor (and mask,
/// when asked for) made from its layout, the memory shared held as `hold`
/// says.
///
/// # Safety
/// The input was read from the live arrays `hold` names, in order.
pub unsafe fn made<M: Managed>(
    input: &Input<'_, '_>,
    options: &ExportPolicy,
    hold: Hold<'_, '_>,
    device: DLDevice,
) -> Result<Made<M>, Error> {
    let plan = input.plan(options)?;
    // SAFETY: `made`'s caller promises it: the input was read from the live arrays `hold`
    // names, in order.
    unsafe { make(&plan, || input.layout(&plan), hold, device) }
}

/// A batch gathered by index: `input`'s pieces (each chunk's whole read,
/// counted at its picks: [`read::Piece::counted_at`]) laid out at `picks`,
/// row `i` of the tensor the picked row `picks[i]`: always one copy, made
/// in the tensor's own bytes (the chunks stay where they are kept).
///
/// # Safety
/// The input's pieces address live memory; each pick names a row of its
/// chunk's pieces; the input's row count is `picks.len()`.
pub unsafe fn gathered<M: Managed>(
    input: &Input<'_, '_>,
    picks: &[Pick],
    options: &ExportPolicy,
) -> Result<Made<M>, Error> {
    let options = ExportPolicy {
        copy: ArrowDlpackCopy::ARROW_DLPACK_COPY_ALWAYS,
        ..*options
    };
    let plan = input.plan(&options)?;
    // SAFETY: a copy (never a share): nothing is held; the layout's pieces
    // and picks as the caller promises.
    unsafe {
        make(
            &plan,
            || input.layout(&plan).picked(picks),
            Hold::Kept(&[]),
            Location::CPU.device,
        )
    }
}

/// The validity mask of what [`made`] would make of `input` under
/// `options`, the tensor planned but not made.
///
/// # Safety
/// The input's pieces address live memory.
unsafe fn mask_of(
    input: &Input<'_, '_>,
    options: &ExportPolicy,
) -> Result<NonNull<DLManagedTensorVersioned>, Error> {
    let plan = input.plan(&for_mask(options))?;
    // SAFETY: `mask_of`'s caller promises it: the input's pieces address live memory.
    unsafe { mask(&plan, &input.layout(&plan)) }
}

/// Reads each chunk of a column (nulls kept and counted); their rows in all.
///
/// # Safety
/// As [`export_chunks`].
unsafe fn column_pieces(
    column: &ColumnType<'_>,
    chunks: &[&mut ArrowArray],
) -> Result<(Vec<Piece>, usize), Error> {
    let many = chunks.len() > 1;
    let mut pieces = Vec::with_capacity(chunks.len());
    let mut rows = 0usize;
    for (i, array) in chunks.iter().enumerate() {
        let at = |e: Error| match many {
            true => e.context(format_args!("chunk {i}")),
            false => e,
        };
        // A run-end encoded chunk is decoded by the copy, straight into
        // the tensor (a column's layout is by row ranges).
        let keep = Mode {
            keep_nulls: true,
            decode_later: true,
        };
        // SAFETY: a live array of the column's schema (caller's contract).
        let piece =
            unsafe { read::read_piece(array, column, None, Location::CPU, keep) }.map_err(at)?;
        // The total is a tensor extent: an i64.
        rows = rows
            .checked_add(piece.rows)
            .filter(|&r| i64::try_from(r).is_ok())
            .ok_or_else(|| {
                err!(
                    ARROW_DLPACK_INVALID_ARROW,
                    "chunk {i}: the stream's length overflows"
                )
            })?;
        pieces.push(piece);
    }
    Ok((pieces, rows))
}

/// Reads each chunk of a table (nulls kept and counted); their rows in all.
///
/// # Safety
/// As [`export_chunks`].
unsafe fn table_batches(
    table: &TableType<'_>,
    chunks: &[&mut ArrowArray],
) -> Result<(Vec<Batch>, usize), Error> {
    let many = chunks.len() > 1;
    let mut batches = Vec::with_capacity(chunks.len());
    let mut rows = 0usize;
    for (i, array) in chunks.iter().enumerate() {
        // SAFETY: a live struct array of the table's schema (caller's
        // contract).
        let batch = unsafe { read::read_batch(array, table) }.map_err(|e| match many {
            true => e.context(format_args!("chunk {i}")),
            false => e,
        })?;
        // The total is a tensor extent: an i64.
        rows = rows
            .checked_add(batch.rows)
            .filter(|&r| i64::try_from(r).is_ok())
            .ok_or_else(|| {
                err!(
                    ARROW_DLPACK_INVALID_ARROW,
                    "chunk {i}: the stream's rows overflow"
                )
            })?;
        batches.push(batch);
    }
    Ok((batches, rows))
}

/// Makes what `plan` says from the pieces `layout()` lays out (made only
/// for a copy or a mask): the mask first (if asked), then the tensor,
/// shared (the chunk's array moved in) or copied. On success the arrays
/// not moved are released; on failure nothing of the caller's has changed.
///
/// # Safety
/// `arrays[i]` is the live array chunk `i` of the layout was read from.
unsafe fn make<'p, M: Managed>(
    plan: &Plan,
    layout: impl FnOnce() -> Layout<'p>,
    hold: Hold<'_, '_>,
    device: DLDevice,
) -> Result<Made<M>, Error> {
    let layout = (plan.mask || matches!(plan.make, Make::Copy(_))).then(layout);
    let mask = match &layout {
        // SAFETY: the pieces address live memory (caller's contract).
        Some(layout) if plan.mask => Some(unsafe { mask(plan, layout) }?),
        _ => None,
    };
    let (made, hold) = match (plan.make, hold) {
        // SAFETY: `arrays[chunk]` is the array `data` was read from.
        (Make::Share { chunk, data }, Hold::Move(arrays)) => unsafe {
            let dims = (plan.dims.shape(), plan.dims.strides());
            let made = owner::share(arrays[chunk], data, plan.dtype.dl, device, dims);
            (made, Hold::Move(arrays))
        },
        // SAFETY: `kept[chunk]` holds the array `data` was read from.
        (Make::Share { chunk, data }, Hold::Kept(kept)) => unsafe {
            let dims = (plan.dims.shape(), plan.dims.strides());
            let made = owner::share_kept(&kept[chunk], data, plan.dtype.dl, device, dims);
            (made, Hold::Kept(kept))
        },
        // SAFETY: as above; a copy's layout was made.
        (Make::Copy(_), hold) => (
            unsafe { copy(plan, layout.as_ref().expect("a copy has a layout")) },
            hold,
        ),
    };
    let tensor = match made {
        Ok(t) => t,
        Err(e) => {
            if let Some(m) = mask {
                // SAFETY: made above, not handed out.
                unsafe { managed::delete(m) };
            }
            return Err(e);
        }
    };
    // The arrays not moved into the tensor: copied (or empty), released now.
    // SAFETY: live arrays (caller's contract).
    unsafe { hold.finish() };
    Ok(Made { tensor, mask })
}

/// Bytes of the layout's tensor of `width`-byte elements, checked.
fn bytes(layout: &Layout<'_>, width: usize) -> Result<usize, Error> {
    let rows = layout.rows();
    layout.row_bytes(width).checked_mul(rows).ok_or_else(|| {
        err!(
            ARROW_DLPACK_OUT_OF_MEMORY,
            "a tensor of {rows} rows of {} bytes overflows",
            layout.row_bytes(width)
        )
    })
}

/// A new tensor of the layout's values, converted to the plan's dtype
/// (nulls filled), in its order.
///
/// # Safety
/// The layout's pieces address live memory.
unsafe fn copy<M: Managed>(plan: &Plan, layout: &Layout<'_>) -> Result<NonNull<M>, Error> {
    let len = bytes(layout, plan.dtype.width())?;
    let (tensor, dst) = owner::own::<M>(plan.dtype.dl, &plan.dims, len, plan.copying.pinned)?;
    if len > 0 {
        let out = Out::Values {
            dst,
            target: plan.dtype,
            fill: plan.fill,
        };
        // SAFETY: the tensor's own bytes hold every row.
        unsafe { layout.write_on(out, plan.copying.threads) };
    }
    Ok(tensor)
}

/// The layout's validity mask: kDLBool, the tensor's shape and order.
///
/// # Safety
/// As [`copy`].
unsafe fn mask(
    plan: &Plan,
    layout: &Layout<'_>,
) -> Result<NonNull<DLManagedTensorVersioned>, Error> {
    let len = bytes(layout, 1)?;
    let (tensor, dst) = owner::own::<DLManagedTensorVersioned>(
        dtype::BOOLEAN.dl,
        &plan.dims,
        len,
        plan.copying.pinned,
    )?;
    if len > 0 {
        let out = Out::Mask { dst };
        // SAFETY: a byte per element, every row.
        unsafe { layout.write_on(out, plan.copying.threads) };
    }
    Ok(tensor)
}

/// The options under which the mask of what `options` would make is
/// planned: nulls as if filled (with 0, which every dtype holds) and a copy
/// allowed (none is made: only the mask is).
fn for_mask(options: &ExportPolicy) -> ExportPolicy {
    ExportPolicy {
        fill: Some(options.fill.unwrap_or(0.0)),
        copy: match options.copy {
            ArrowDlpackCopy::ARROW_DLPACK_COPY_NEVER => {
                ArrowDlpackCopy::ARROW_DLPACK_COPY_IF_NEEDED
            }
            other => other,
        },
        mask: true,
        ..*options
    }
}

/// `arrow_dlpack_export_validity`: the validity mask of the tensor
/// [`export_with`] would make of `array` under `options`, without making
/// the tensor: one pass over the validity bits. The array is only read.
///
/// # Safety
/// As [`export`].
pub unsafe fn validity(
    array: &ArrowArray,
    schema: &ArrowSchema,
    options: &ExportPolicy,
) -> Result<NonNull<DLManagedTensorVersioned>, Error> {
    // SAFETY: `validity`'s caller promises it: as `export`'s: `array` and `schema` are valid
    // (the C Data Interface's guarantees).
    let ty = unsafe { read::read_type(schema, accept(options)) }?;
    // SAFETY: the array is only read; a shallow copy, never released.
    let mut borrowed = unsafe { std::ptr::read(array) };
    // SAFETY: as for the block above, the array is only read; a shallow copy, never released.
    unsafe { validity_of(&ty, &mut [&mut borrowed], options) }
}

/// `arrow_dlpack_export_validity_stream`: the validity mask of the tensor
/// [`export_stream`] would make. The stream is read to its end and never
/// released; its chunks are released.
///
/// # Safety
/// As [`export_stream`].
pub unsafe fn validity_stream(
    stream: &mut ArrowArrayStream,
    options: &ExportPolicy,
) -> Result<NonNull<DLManagedTensorVersioned>, Error> {
    // SAFETY: forwarded from the caller; the chunks, of the type, are
    // only read (released by the reader).
    unsafe {
        read_stream(stream, dense_type, options, |ty, arrays| {
            validity_of(ty, arrays, options)
        })
    }
}

/// The mask of the chunks' tensor, which is planned but not made.
///
/// # Safety
/// As [`export_chunks`]; the arrays are only read.
unsafe fn validity_of(
    ty: &Type<'_>,
    chunks: &mut [&mut ArrowArray],
    options: &ExportPolicy,
) -> Result<NonNull<DLManagedTensorVersioned>, Error> {
    // SAFETY: `validity_of`'s caller promises it: as `export_chunks`'s; the arrays are only
    // read: `chunks` are live arrays of the schema `ty` was read from.
    let input = unsafe { Input::read(ty, chunks) }?;
    // SAFETY: the pieces address the live arrays.
    unsafe { mask_of(&input, options) }
}

// ---- variable-length columns ------------------------------------------------

/// A jagged tensor pair, and the rows' validity mask when asked for.
#[derive(Debug)]
pub struct MadeJagged<M> {
    pub values: NonNull<M>,
    pub offsets: NonNull<M>,
    pub mask: Option<NonNull<DLManagedTensorVersioned>>,
    /// Null rows found (made empty).
    pub null_rows: usize,
}

/// What a read of a variable-length column accepts under `options`.
fn accept_variable(options: &ExportPolicy) -> Accept {
    Accept {
        boolean: true,
        temporal: options.temporal_as_integer,
        table: false,
        variable: true,
        dictionary: false,
    }
}

/// The type of a variable-length column: a list, list view, string or
/// binary (and their large and view forms); `UNSUPPORTED_TYPE` for
/// anything else.
///
/// # Safety
/// `schema` is valid.
unsafe fn variable_type<'s>(
    schema: &'s ArrowSchema,
    options: &ExportPolicy,
) -> Result<Type<'s>, Error> {
    // SAFETY: `variable_type`'s caller promises it: `schema` is valid.
    let column = unsafe { read::column_type(schema, accept_variable(options)) }?;
    match column.rows.is_variable() {
        true => Ok(Type::Column(Box::new(column))),
        false => Err(err!(
            ARROW_DLPACK_UNSUPPORTED_TYPE,
            "format '{}' has rows of one shape: jagged and padded tensors are made of lists, strings and binaries (export it as one tensor)",
            crate::dtype::Shown(column.format)
        )),
    }
}

/// `arrow_dlpack_export_jagged`: a list, string or binary array as its
/// values and offsets.
///
/// # Safety
/// As [`export`].
#[inline(always)]
pub unsafe fn export_jagged<M: Managed>(
    array: &mut ArrowArray,
    schema: &ArrowSchema,
    options: &ExportPolicy,
) -> Result<MadeJagged<M>, Error> {
    let plain = options.dtype.is_none()
        && !options.mask
        && options.copy != ArrowDlpackCopy::ARROW_DLPACK_COPY_ALWAYS;
    if plain {
        // SAFETY: `export_jagged`'s caller promises it: as `export`'s: `array` and `schema` are
        // valid (the C Data Interface's guarantees).
        if let Some(flat) = unsafe { read::read_flat_list(array, schema, Location::CPU) }? {
            // SAFETY: read from `array`, live.
            return unsafe { share_flat_list(array, &flat) };
        }
    }
    // SAFETY: forwarded from the caller: a chunk of one.
    unsafe { export_jagged_chunks(schema, &mut [array], options) }
}

/// The jagged pair of a list read flat: both tensors share the array, in
/// one allocation.
///
/// # Safety
/// `flat` was read from `array`, live.
#[inline(always)]
unsafe fn share_flat_list<M: Managed>(
    array: &mut ArrowArray,
    flat: &read::FlatList,
) -> Result<MadeJagged<M>, Error> {
    let cpu = Location::CPU.device;
    let offsets_dtype = match flat.large {
        true => &dtype::INT64,
        false => &dtype::INT32,
    };
    let parts = [
        owner::PairPart {
            data: flat.offsets.cast_mut(),
            dtype: offsets_dtype.dl,
            length: flat.rows + 1,
        },
        owner::PairPart {
            data: flat.values,
            dtype: flat.dtype.dl,
            length: flat.elements,
        },
    ];
    // SAFETY: both parts lie in the array's memory (caller's contract).
    let [offsets, values] = unsafe { owner::share_pair::<M>(array, parts, cpu) }?;
    Ok(MadeJagged {
        values,
        offsets,
        mask: None,
        null_rows: 0,
    })
}

/// The jagged pair of `chunks`, arrays of `schema` (a variable-length
/// column), concatenated (the Rust API's chunks, and a stream's).
///
/// # Safety
/// `schema` is valid; `chunks` are live arrays of it.
pub unsafe fn export_jagged_chunks<M: Managed>(
    schema: &ArrowSchema,
    chunks: &mut [&mut ArrowArray],
    options: &ExportPolicy,
) -> Result<MadeJagged<M>, Error> {
    // SAFETY: `export_jagged_chunks`'s caller promises it: `schema` is valid; `chunks` are live
    // arrays of it.
    let ty = unsafe { variable_type(schema, options) }?;
    // SAFETY: as for the block above, `export_jagged_chunks`'s caller promises it: `schema` is
    // valid; `chunks` are live arrays of it.
    unsafe { jagged_chunks(&ty, chunks, options) }
}

/// `arrow_dlpack_export_jagged_stream`: the chunks of a stream of lists
/// or strings as one jagged pair (values appended, offsets rebased).
///
/// # Safety
/// As [`export_stream`].
pub unsafe fn export_jagged_stream<M: Managed>(
    stream: &mut ArrowArrayStream,
    options: &ExportPolicy,
) -> Result<MadeJagged<M>, Error> {
    // SAFETY: forwarded from the caller; the chunks are of the type.
    unsafe {
        read_stream(stream, variable_type, options, |ty, arrays| {
            jagged_chunks(ty, arrays, options)
        })
    }
}

/// Reads each chunk of a variable-length column (nulls kept, counted).
///
/// # Safety
/// As [`export_chunks`].
unsafe fn variable_pieces(
    column: &ColumnType<'_>,
    chunks: &[&mut ArrowArray],
) -> Result<Vec<Piece>, Error> {
    // The same reading as a dense column's, rows counted the same way.
    // SAFETY: `variable_pieces`'s caller promises it: as `export_chunks`'s: `chunks` are live
    // arrays of the schema `ty` was read from.
    unsafe { column_pieces(column, chunks) }.map(|(pieces, _)| pieces)
}

/// The jagged pair of `chunks` of a variable-length column.
///
/// # Safety
/// As [`export_chunks`].
unsafe fn jagged_chunks<M: Managed>(
    ty: &Type<'_>,
    chunks: &mut [&mut ArrowArray],
    options: &ExportPolicy,
) -> Result<MadeJagged<M>, Error> {
    let column = ty.column()?;
    // SAFETY: `jagged_chunks`'s caller promises it: as `export_chunks`'s: `chunks` are live
    // arrays of the schema `ty` was read from.
    let pieces = unsafe { variable_pieces(column, chunks) }?;
    // SAFETY: the pieces were read from `chunks`, in order.
    unsafe { jagged_of(column, &pieces, Hold::Move(chunks), options) }
}

/// The jagged pair of a variable-length column's `pieces`, held by `hold`.
///
/// # Safety
/// The pieces were read from the live arrays `hold` holds, in order.
pub unsafe fn jagged_of<M: Managed>(
    column: &ColumnType<'_>,
    pieces: &[Piece],
    hold: Hold<'_, '_>,
    options: &ExportPolicy,
) -> Result<MadeJagged<M>, Error> {
    let facts = match plan::jagged_follows_rows(column, pieces, options) {
        // SAFETY: pieces of live arrays.
        true => Some(unsafe { read::check_rows(column, pieces) }?),
        false => None,
    };
    let plan = plan::jagged(column, pieces, facts.as_deref(), false, options)?;
    // SAFETY: forwarded; the rows checked where the plan follows them.
    unsafe { make_jagged(&plan, column, pieces, ListRows::new(column, pieces), hold) }
}

/// The jagged pair of rows chosen by index (a shuffled batch): `pieces`
/// each chunk's piece counted at its picks, `facts` those rows' facts
/// ([`read::picked_rows`]): always copied row by row.
///
/// # Safety
/// The pieces' arrays are alive and their rows were checked; each pick
/// names a row of its piece.
pub unsafe fn jagged_picked<M: Managed>(
    column: &ColumnType<'_>,
    pieces: &[Piece],
    facts: &[read::RowFacts],
    picks: &[Pick],
    options: &ExportPolicy,
) -> Result<MadeJagged<M>, Error> {
    let plan = plan::jagged(column, pieces, Some(facts), true, options)?;
    let rows = ListRows::picked(column, pieces, picks);
    // SAFETY: a copy of checked rows (caller's contract); nothing held.
    unsafe { make_jagged(&plan, column, pieces, rows, Hold::Kept(&[])) }
}

/// Makes the jagged pair `plan` says: the offsets first (the values of a
/// row copy are placed by them), then the values, then the mask. A part
/// shared holds a share of the one chunk's array, moved in only once every
/// tensor was made; the chunks not shared are released. On failure nothing
/// of the caller's has changed.
///
/// # Safety
/// As [`make`].
unsafe fn make_jagged<M: Managed>(
    plan: &plan::JaggedPlan,
    column: &ColumnType<'_>,
    pieces: &[Piece],
    rows: ListRows<'_>,
    hold: Hold<'_, '_>,
) -> Result<MadeJagged<M>, Error> {
    // A shared part's keep: a keeper of the moved array (committed once
    // everything is made), or the kept array's own.
    let mut hold = hold;
    let (keeper, kept) = match (&mut hold, plan.shared) {
        // SAFETY: the live array the piece was read from; the keeper is
        // committed (before the other arrays are released) or dropped
        // below, while it lives.
        (Hold::Move(chunks), Some(chunk)) => (
            Some(unsafe { owner::Keeper::new(&mut *chunks[chunk]) }),
            None,
        ),
        (Hold::Kept(kept), Some(chunk)) => (None, Some(kept[chunk].clone())),
        (_, None) => (None, None),
    };
    let share = kept.as_ref().or(keeper.as_ref().map(owner::Keeper::kept));
    // The steps, each tensor deleted if a later one fails.
    let mut made: [Option<NonNull<M>>; 2] = [None, None];
    // SAFETY: the pieces address live memory (`make_jagged`'s caller
    // promises it), the shared parts inside `share`'s array.
    let result = unsafe {
        jagged_offsets(plan, pieces, &rows, share).and_then(|(offsets, at)| {
            made[0] = Some(offsets);
            let values = jagged_values(plan, column, pieces, &rows, share, at)?;
            made[1] = Some(values);
            let mask = jagged_mask(plan, &rows)?;
            Ok(MadeJagged {
                values,
                offsets,
                mask,
                null_rows: pieces.iter().map(|p| p.null_rows).sum(),
            })
        })
    };
    match result {
        Ok(jagged) => {
            if let Some(keeper) = keeper {
                keeper.commit();
            }
            // SAFETY: `make_jagged`'s caller promises it: as `make`'s: `arrays[i]` is the live
            // array chunk `i` of the layout was read from.
            unsafe { hold.finish() };
            Ok(jagged)
        }
        Err(e) => {
            for t in made.into_iter().flatten() {
                // SAFETY: made above, not handed out.
                unsafe { managed::delete(t) };
            }
            drop(keeper); // not committed: the caller's array untouched
            Err(e)
        }
    }
}

/// A jagged pair's first step, the offsets tensor: shared (`share` holds
/// the array they lie in) or written from the rows (compacted and rebased
/// as the plan says). Also where its entries lie, for the values' step.
///
/// # Safety
/// The rows were checked (`read::check_rows`) where the plan writes
/// offsets; a shared part lies in `share`'s array.
unsafe fn jagged_offsets<M: Managed>(
    plan: &plan::JaggedPlan,
    pieces: &[Piece],
    rows: &ListRows<'_>,
    share: Option<&Arc<owner::Kept>>,
) -> Result<(NonNull<M>, *const u8), Error> {
    let count = rows.len();
    let (dtype, width) = match plan.large {
        true => (&dtype::INT64, 8),
        false => (&dtype::INT32, 4),
    };
    let dims = vector(count + 1);
    if let plan::Part::Share = plan.offsets {
        let o = pieces[plan.shared.unwrap_or(0)]
            .offsets
            .expect("a shared list has offsets");
        let keeper = share.expect("a shared part has a keeper");
        // SAFETY: the offsets lie in the kept array (caller's contract).
        let t = unsafe {
            owner::share_kept::<M>(
                keeper,
                o.data.cast_mut().cast(),
                dtype.dl,
                Location::CPU.device,
                (dims.shape(), dims.strides()),
            )
        }?;
        return Ok((t, o.data));
    }
    let (t, dst) = owner::own::<M>(
        dtype.dl,
        &dims,
        bytes_of(count + 1, width, "offsets")?,
        plan.copying.pinned,
    )?;
    // SAFETY: room for `count + 1` entries; the rows checked (caller's
    // contract).
    unsafe { crate::copy::jagged::offsets(rows, plan.compact, plan.large, dst) };
    Ok((t, dst.cast_const()))
}

/// A jagged pair's second step, the values tensor: shared, the pieces'
/// covered values copied end to end (converted, nulls filled), or row by
/// row where rows are dropped or gathered (placed by the offsets at
/// `offsets_at`, on the copy's threads).
///
/// # Safety
/// As [`jagged_offsets`]; `offsets_at` holds the offsets it made.
unsafe fn jagged_values<M: Managed>(
    plan: &plan::JaggedPlan,
    column: &ColumnType<'_>,
    pieces: &[Piece],
    rows: &ListRows<'_>,
    share: Option<&Arc<owner::Kept>>,
    offsets_at: *const u8,
) -> Result<NonNull<M>, Error> {
    use plan::Part;
    let element = column.values.row_elements() * plan.dtype.width();
    let total = plan.dims.shape()[0] as usize;
    if let Part::Share = plan.values {
        let keeper = share.expect("a shared part has a keeper");
        let data = pieces[plan.shared.unwrap_or(0)].data;
        // SAFETY: the values lie in the kept array (caller's contract).
        return unsafe {
            owner::share_kept::<M>(
                keeper,
                data,
                plan.dtype.dl,
                Location::CPU.device,
                (plan.dims.shape(), plan.dims.strides()),
            )
        };
    }
    let len = bytes_of(total, element, "list elements")?;
    let (t, dst) = owner::own::<M>(plan.dtype.dl, &plan.dims, len, plan.copying.pinned)?;
    match plan.values {
        Part::Range if len > 0 => {
            // Each chunk's covered values, a dense run of value rows.
            let runs: Vec<Piece> = pieces.iter().map(Piece::values_run).collect();
            let out = Out::Values {
                dst,
                target: plan.dtype,
                fill: plan.fill,
            };
            // SAFETY: the tensor's own bytes hold every value row.
            unsafe { Layout::tensor(&column.values, &runs).write_on(out, plan.copying.threads) };
        }
        Part::Rows => {
            let count = rows.len();
            let out = crate::copy::jagged::ValuesOut {
                dst,
                target: plan.dtype,
                fill: plan.fill,
            };
            let at = threads::Src(offsets_at);
            // SAFETY: the offsets written place every row; the rows
            // checked (caller's contract); each range written by one
            // thread.
            let write = |r| unsafe {
                crate::copy::jagged::values(rows, r, plan.compact, (at.get(), plan.large), &out)
            };
            // Bytes a row, on average: what the split weighs.
            threads::split(count, len / count.max(1), plan.copying.threads, write);
        }
        _ => {}
    }
    Ok(t)
}

/// A jagged pair's third step, when asked for: the rows' validity mask
/// (kDLBool, a byte a row).
///
/// # Safety
/// The rows address live memory.
unsafe fn jagged_mask(
    plan: &plan::JaggedPlan,
    rows: &ListRows<'_>,
) -> Result<Option<NonNull<DLManagedTensorVersioned>>, Error> {
    if !plan.mask {
        return Ok(None);
    }
    let count = rows.len();
    let (m, dst) = owner::own::<DLManagedTensorVersioned>(
        dtype::BOOLEAN.dl,
        &vector(count),
        count,
        plan.copying.pinned,
    )?;
    // SAFETY: a byte a row; the rows' maps hold their bits (caller's
    // contract).
    unsafe { crate::copy::jagged::row_mask(rows, 0..count, dst) };
    Ok(Some(m))
}

/// The dims of a 1-D tensor of `n` elements.
fn vector(n: usize) -> crate::dims::Dims {
    let mut dims = crate::dims::Dims::matrix(n as i64, 1, true);
    dims.truncate(1);
    dims
}

/// `count` elements of `width` bytes, checked: the one size helper of the
/// variable-length makers.
fn bytes_of(count: usize, width: usize, what: &str) -> Result<usize, Error> {
    count
        .checked_mul(width)
        .filter(|&n| n <= isize::MAX as usize)
        .ok_or_else(|| {
            err!(
                ARROW_DLPACK_OUT_OF_MEMORY,
                "{count} {what} of {width} bytes overflow"
            )
        })
}

/// Releases the arrays not moved into a tensor.
///
/// # Safety
/// The arrays are live.
unsafe fn release_rest(arrays: &mut [&mut ArrowArray]) {
    for array in arrays.iter_mut() {
        // SAFETY: the caller's live arrays, moved in by the export.
        unsafe { array.release_once() };
    }
}

/// `arrow_dlpack_export_padded`: a list, string or binary array as one
/// padded tensor `[rows, length, ...]` (always a copy), and its mask when
/// asked for.
///
/// # Safety
/// As [`export`].
pub unsafe fn export_padded<M: Managed>(
    array: &mut ArrowArray,
    schema: &ArrowSchema,
    options: &ExportPolicy,
    padding: &Pad,
) -> Result<Made<M>, Error> {
    // SAFETY: forwarded from the caller: a chunk of one.
    unsafe { export_padded_chunks(schema, &mut [array], options, padding) }
}

/// The padded tensor of `chunks`, arrays of `schema` (a variable-length
/// column), row after row.
///
/// # Safety
/// `schema` is valid; `chunks` are live arrays of it.
pub unsafe fn export_padded_chunks<M: Managed>(
    schema: &ArrowSchema,
    chunks: &mut [&mut ArrowArray],
    options: &ExportPolicy,
    padding: &Pad,
) -> Result<Made<M>, Error> {
    // SAFETY: `export_padded_chunks`'s caller promises it: `schema` is valid; `chunks` are live
    // arrays of it.
    let ty = unsafe { variable_type(schema, options) }?;
    // SAFETY: as for the block above, `export_padded_chunks`'s caller promises it: `schema` is
    // valid; `chunks` are live arrays of it.
    unsafe { padded_chunks(&ty, chunks, options, padding) }
}

/// `arrow_dlpack_export_padded_stream`: the chunks of a stream of lists
/// or strings as one padded tensor.
///
/// # Safety
/// As [`export_stream`].
pub unsafe fn export_padded_stream<M: Managed>(
    stream: &mut ArrowArrayStream,
    options: &ExportPolicy,
    padding: &Pad,
) -> Result<Made<M>, Error> {
    // SAFETY: forwarded from the caller; the chunks are of the type.
    unsafe {
        read_stream(stream, variable_type, options, |ty, arrays| {
            padded_chunks(ty, arrays, options, padding)
        })
    }
}

/// The padded tensor of `chunks` of a variable-length column.
///
/// # Safety
/// As [`export_chunks`].
unsafe fn padded_chunks<M: Managed>(
    ty: &Type<'_>,
    chunks: &mut [&mut ArrowArray],
    options: &ExportPolicy,
    padding: &Pad,
) -> Result<Made<M>, Error> {
    let column = ty.column()?;
    // SAFETY: `padded_chunks`'s caller promises it: as `export_chunks`'s: `chunks` are live
    // arrays of the schema `ty` was read from.
    let pieces = unsafe { variable_pieces(column, chunks) }?;
    // SAFETY: pieces of live arrays.
    let made = unsafe { padded_of(column, &pieces, options, padding) }?;
    // SAFETY: forwarded from the caller: copied, released now.
    unsafe { release_rest(chunks) };
    Ok(made)
}

/// The padded tensor (and mask) of a variable-length column's `pieces`.
///
/// # Safety
/// The pieces address live memory.
pub unsafe fn padded_of<M: Managed>(
    column: &ColumnType<'_>,
    pieces: &[Piece],
    options: &ExportPolicy,
    padding: &Pad,
) -> Result<Made<M>, Error> {
    // SAFETY: pieces of live arrays.
    let facts = unsafe { read::check_rows(column, pieces) }?;
    // SAFETY: the rows just checked.
    unsafe {
        padded_rows(
            column,
            pieces,
            &facts,
            ListRows::new(column, pieces),
            options,
            padding,
        )
    }
}

/// The padded tensor (and mask) of rows chosen by index (a shuffled
/// batch): `pieces` and `facts` as [`jagged_picked`] takes them.
///
/// # Safety
/// As [`jagged_picked`].
pub unsafe fn padded_picked<M: Managed>(
    column: &ColumnType<'_>,
    pieces: &[Piece],
    facts: &[read::RowFacts],
    picks: &[Pick],
    options: &ExportPolicy,
    padding: &Pad,
) -> Result<Made<M>, Error> {
    let rows = ListRows::picked(column, pieces, picks);
    // SAFETY: forwarded: checked rows (caller's contract).
    unsafe { padded_rows(column, pieces, facts, rows, options, padding) }
}

/// The padded tensor (and mask) of `rows` of `pieces`, whose `facts`
/// the plan sizes it by.
///
/// # Safety
/// The rows were checked; the pieces' arrays are alive.
unsafe fn padded_rows<M: Managed>(
    column: &ColumnType<'_>,
    pieces: &[Piece],
    facts: &[read::RowFacts],
    rows: ListRows<'_>,
    options: &ExportPolicy,
    padding: &Pad,
) -> Result<Made<M>, Error> {
    use crate::copy::jagged;
    let plan = plan::padded(column, pieces, facts, padding, options)?;
    let count = rows.len();
    let mask = match plan.mask {
        true => {
            let dims = crate::dims::Dims::matrix(count as i64, plan.length as i64, true);
            let (m, dst) = owner::own::<DLManagedTensorVersioned>(
                dtype::BOOLEAN.dl,
                &dims,
                count * plan.length,
                plan.copying.pinned,
            )?;
            let dst = threads::Dst(dst);
            // SAFETY: a byte an element; the rows checked; each range
            // written by one thread.
            let write =
                |r| unsafe { jagged::padded_mask(&rows, r, plan.length, plan.side, dst.get()) };
            threads::split(count, plan.length, plan.copying.threads, write);
            Some(m)
        }
        false => None,
    };
    // `count * length` elements of a row's values (the plan checked the
    // whole product).
    let element = column.values.row_elements() * plan.dtype.width();
    let made = bytes_of(count * plan.length, element, "padded elements")
        .and_then(|bytes| owner::own::<M>(plan.dtype.dl, &plan.dims, bytes, plan.copying.pinned));
    let tensor = match made {
        Ok((t, dst)) => {
            let out = jagged::ValuesOut {
                dst,
                target: plan.dtype,
                fill: plan.fill,
            };
            // SAFETY: the tensor's bytes hold every padded row; checked
            // rows; each range written by one thread.
            let write =
                |r| unsafe { jagged::padded(&rows, r, plan.length, plan.side, plan.pad, &out) };
            threads::split(count, plan.length * element, plan.copying.threads, write);
            t
        }
        Err(e) => {
            if let Some(m) = mask {
                // SAFETY: made above, not handed out.
                unsafe { managed::delete(m) };
            }
            return Err(e);
        }
    };
    Ok(Made { tensor, mask })
}
