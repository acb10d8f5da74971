//! Struct arrays (record batches), and streams of them, as 2-D tensors
//! `[rows, columns]`.
//!
//! Each column is read as a 1-D array of the batch's rows (the struct's
//! offset applied to the child, as the C Data Interface says) by the one
//! reader, `arrow::read`, so every column passes the checks a plain export
//! makes. Then:
//!
//! - shared, column-major (strides `[1, rows]`), when the columns need no
//!   conversion, hold no nulls and lie end to end in memory (column `j + 1`
//!   starts right after column `j`'s last row): the struct array is moved
//!   into the tensor, as a plain export moves an array;
//! - otherwise one copy, into the order asked for: column-major is one
//!   conversion (a `memcpy` when the dtype is the column's) per column,
//!   row-major a cache-blocked transpose (`copy::transpose`).
//!
//! Columns of different dtypes promote as NumPy's `result_type` does
//! (`dtype::promote`); nulls are filled per column, struct-level nulls fill
//! whole rows; the validity mask is 2-D, in the tensor's order.

use std::ffi::CStr;
use std::ptr::{self, NonNull};

use crate::abi::{ArrowArray, ArrowSchema, DLManagedTensorVersioned};
use crate::arrow::read::{Location, NullMap};
use crate::dims::Dims;
use crate::dtype::{self, BOOLEAN, DType, Shown};
use crate::error::{Error, err};
use crate::export::{self, Piece};
use crate::managed::Managed;
use crate::options::{self, ArrowDlpackOrder, ExportOptions};
use crate::stream::{Chunks, EmptyArray};
use crate::{bitmap, copy, owner};

/// The dtype of a table without columns (NumPy's default, as
/// `numpy.empty((n, 0))` has it).
const NO_COLUMNS: &DType = &dtype::TABLE[10];

/// Whether `schema` is a live struct schema (`+s`): a record batch.
///
/// # Safety
/// `schema` is valid for reads: a C string in `format` while `release` is
/// set.
pub unsafe fn is_struct(schema: &ArrowSchema) -> bool {
    schema.release.is_some()
        && !schema.format.is_null()
        // SAFETY: a C string (caller's contract).
        && unsafe { CStr::from_ptr(schema.format) }.to_bytes() == b"+s"
}

/// One record batch, read: a piece per column, each a 1-D view of the
/// batch's rows.
struct Batch {
    columns: Vec<Piece>,
    rows: usize,
    /// Null rows of the struct array itself, and the first of them.
    null_rows: usize,
    first_null_row: usize,
}

/// The columns of a struct schema, named in messages: read from the
/// schema only when a message is written (a share allocates nothing for
/// them).
#[derive(Clone, Copy)]
struct Names<'s> {
    schema: &'s ArrowSchema,
    len: usize,
}

impl Names<'_> {
    fn len(&self) -> usize {
        self.len
    }

    fn column(&self, j: usize) -> Column<'_> {
        Column(j, self.schema)
    }
}

/// "column 2 'price'", in messages.
struct Column<'s>(usize, &'s ArrowSchema);

impl std::fmt::Display for Column<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SAFETY: a column index of a schema whose `len` children were
        // checked non-NULL (`names`); a name is NULL or a C string.
        let name = unsafe {
            let child = &**self.1.children.add(self.0);
            match child.name.is_null() {
                true => &[][..],
                false => CStr::from_ptr(child.name).to_bytes(),
            }
        };
        write!(f, "column {} '{}'", self.0, Shown(name))
    }
}

/// Checks the struct level of a record batch and its schema: children
/// present and as many on both sides, one (validity) buffer, a sane length
/// and offset. Returns the number of columns.
///
/// # Safety
/// As [`read_batch`].
unsafe fn check_struct(array: &ArrowArray, schema: &ArrowSchema) -> Result<usize, Error> {
    if array.release.is_none() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "array is released (array.release is NULL)"
        ));
    }
    let n = schema.n_children;
    if n < 0 || array.n_children != n {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "struct array has {} children (n_children), its schema {n}",
            array.n_children
        ));
    }
    let n = n as usize;
    // SAFETY: `n` entries each when not NULL (the interface's layout).
    if n > 0 && unsafe { missing(schema.children, n) || missing(array.children, n) } {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "struct array or schema: children (or one of them) is NULL with n_children {n}"
        ));
    }
    if array.n_buffers != 1 || array.buffers.is_null() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "struct array has n_buffers {} (buffers {}); a struct has 1, its validity",
            array.n_buffers,
            if array.buffers.is_null() {
                "NULL"
            } else {
                "set"
            }
        ));
    }
    if !array.dictionary.is_null() || !schema.dictionary.is_null() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "struct array or schema has a dictionary"
        ));
    }
    if array.length < 0 || array.offset < 0 || array.offset.checked_add(array.length).is_none() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "struct array length {} and offset {}: negative or overflowing",
            array.length,
            array.offset
        ));
    }
    Ok(n)
}

/// Whether `children` (of `n` entries when not NULL) or one of them is
/// NULL.
///
/// # Safety
/// `children` is NULL or holds `n` pointers.
unsafe fn missing<T>(children: *mut *mut T, n: usize) -> bool {
    // SAFETY: `n` entries (caller's contract).
    children.is_null() || (0..n).any(|i| unsafe { (*children.add(i)).is_null() })
}

/// Reads a record batch: the struct level, then every column through the
/// one reader.
///
/// # Safety
/// `array` and `schema` are valid (the C Data Interface's guarantees, as
/// far as `arrow::read` trusts them).
unsafe fn read_batch(
    array: &ArrowArray,
    schema: &ArrowSchema,
    names: &Names<'_>,
    options: &ExportOptions,
) -> Result<Batch, Error> {
    // SAFETY: forwarded from the caller.
    let n = unsafe { check_struct(array, schema) }?;
    let (rows, offset) = (array.length as usize, array.offset as usize);
    // SAFETY: one buffer pointer (checked); NULL or a bitmap of at least
    // `offset + length` bits (trusted).
    let bitmap = unsafe { *array.buffers }.cast::<u8>();
    let (null_rows, first_null_row) = match (array.null_count, bitmap.is_null()) {
        (0, _) | (-1, true) => (0, 0),
        (count, _) if count < -1 => {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "struct array null_count is {count}; it must be -1 (unknown) or a count"
            ));
        }
        (count, true) => {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "struct array null_count is {count} but its validity bitmap is NULL"
            ));
        }
        (_, false) => {
            // SAFETY: as above: `offset + rows` bits.
            let bits = unsafe { std::slice::from_raw_parts(bitmap, (offset + rows).div_ceil(8)) };
            let nulls = rows - bitmap::count_set_bits(bits, offset, rows);
            let bit = |r: usize| bits[(offset + r) / 8] >> ((offset + r) % 8) & 1;
            let first = match nulls {
                0 => 0,
                _ => (0..rows).find(|&r| bit(r) == 0).unwrap_or(0),
            };
            (nulls, first)
        }
    };
    let mut columns = Vec::with_capacity(n);
    for j in 0..n {
        let at = |e: Error| e.context(format_args!("{}", names.column(j)));
        // SAFETY: `n` non-NULL children on each side (checked).
        let (child, child_schema) =
            unsafe { (&**array.children.add(j), &**schema.children.add(j)) };
        // The column is the child's rows `offset..offset + rows`, as a
        // shallow copy of the child with the struct's offset added: the
        // reader then checks and addresses it as any array.
        let end = array.offset + array.length;
        if child.length < end {
            return Err(at(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "length {} is shorter than the struct array's offset + length {end}",
                child.length
            )));
        }
        // SAFETY: a plain struct read; the copy is only read, never
        // released (it has no `Drop`).
        let mut view = unsafe { ptr::read(child) };
        view.length = array.length;
        view.offset = child.offset.checked_add(array.offset).ok_or_else(|| {
            at(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "offset {} plus the struct's {} overflows",
                child.offset,
                array.offset
            ))
        })?;
        // SAFETY: the child's own buffers, within the rows it has (checked
        // above); forwarded validity of the structs.
        let mut piece = unsafe { read_column(&view, child_schema, options) }.map_err(at)?;
        if null_rows > 0 {
            // A null row is null in every column.
            piece.maps.push(NullMap {
                bitmap,
                first: offset,
                count: rows,
                per_entry: 1,
                depth: 0,
            });
        }
        columns.push(piece);
    }
    Ok(Batch {
        columns,
        rows,
        null_rows,
        first_null_row,
    })
}

/// One column, read by the one reader as any array: it must be 1-D.
///
/// # Safety
/// As `export::read_piece`.
unsafe fn read_column(
    array: &ArrowArray,
    schema: &ArrowSchema,
    options: &ExportOptions,
) -> Result<Piece, Error> {
    let mut dims = Dims::new();
    // SAFETY: forwarded from the caller.
    let piece = unsafe { export::read_piece(array, schema, options, &mut dims) }?;
    match dims.ndim() {
        1 => Ok(piece),
        n => Err(err!(
            ARROW_DLPACK_UNSUPPORTED_TYPE,
            "a nested column ({n} dimensions) cannot be one column of a 2-D tensor"
        )),
    }
}

/// The batch a stream without chunks is read as: no row, the schema's
/// columns.
///
/// # Safety
/// `schema` is a valid struct schema.
unsafe fn empty_batch(
    schema: &ArrowSchema,
    names: &Names<'_>,
    options: &ExportOptions,
) -> Result<Batch, Error> {
    let mut columns = Vec::new();
    for j in 0..names.len() {
        // SAFETY: non-NULL children (checked by `names`).
        let child = unsafe { &**schema.children.add(j) };
        // SAFETY: a valid schema.
        let empty = unsafe { EmptyArray::of(child) };
        // SAFETY: a zero-length array of the child's structure.
        let piece = unsafe { read_column(empty.root(), child, options) }
            .map_err(|e| e.context(format_args!("{}", names.column(j))))?;
        columns.push(piece);
    }
    Ok(Batch {
        columns,
        rows: 0,
        null_rows: 0,
        first_null_row: 0,
    })
}

/// Checks that the struct schema's children are there before their names
/// are read.
///
/// # Safety
/// `schema` is valid for reads.
unsafe fn names(schema: &ArrowSchema) -> Result<Names<'_>, Error> {
    let n = schema.n_children;
    // SAFETY: `n` entries (the interface's layout).
    if n < 0 || unsafe { missing(schema.children, n as usize) } && n > 0 {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "struct schema: n_children {n} with children (or one of them) NULL"
        ));
    }
    Ok(Names {
        schema,
        len: n as usize,
    })
}

/// `arrow_dlpack_export_with` of a struct array.
///
/// # Safety
/// As `export::export_with`.
pub unsafe fn export_with<M: Managed>(
    array: &mut ArrowArray,
    schema: &ArrowSchema,
    options: &ExportOptions,
) -> Result<NonNull<M>, Error> {
    // SAFETY: forwarded from the caller.
    let names = unsafe { names(schema) }?;
    // SAFETY: as above.
    let batch = unsafe { read_batch(array, schema, &names, options) }?;
    // SAFETY: `batch` was read from `array`.
    unsafe { finish(&mut [array], &[batch], &names, options) }
}

/// `arrow_dlpack_export_stream` of a stream of struct arrays: the batches
/// stacked row after row.
///
/// # Safety
/// The chunks are live arrays the stream gave with its struct schema.
pub unsafe fn export_stream<M: Managed>(
    chunks: &mut Chunks,
    options: &ExportOptions,
) -> Result<NonNull<M>, Error> {
    // SAFETY: the stream's schema, live.
    let names = unsafe { names(&chunks.schema) }?;
    let mut batches = Vec::with_capacity(chunks.arrays.len().max(1));
    let mut rows = 0usize;
    for (i, array) in chunks.arrays.iter().enumerate() {
        // SAFETY: a chunk of the stream (each checked against the schema
        // by the reader, column by column).
        let batch = unsafe { read_batch(array, &chunks.schema, &names, options) }
            .map_err(|e| e.context(format_args!("chunk {i}")))?;
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
    if batches.is_empty() {
        // SAFETY: the stream's schema.
        batches.push(unsafe { empty_batch(&chunks.schema, &names, options) }?);
    }
    let mut arrays: Vec<&mut ArrowArray> = chunks.arrays.iter_mut().collect();
    // SAFETY: each array is the chunk its batch was read from.
    unsafe { finish(&mut arrays, &batches, &names, options) }
}

/// How the tensor's elements lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Rows,
    Columns,
}

/// The dims of a `rows x columns` tensor in `order`.
fn dims(rows: usize, columns: usize, order: Order) -> Dims {
    let mut d = Dims::new();
    let (r, c) = (rows as i64, columns as i64);
    let (sr, sc) = match order {
        Order::Rows => (c, 1),
        Order::Columns => (1, r),
    };
    // Two dimensions: within MAX_NDIM.
    d.push_strided(r, sr).expect("2 dimensions");
    d.push_strided(c, sc).expect("2 dimensions");
    d
}

/// Why the batches cannot be shared as they are, if they cannot: the
/// first reason, as the `NEEDS_COPY` message would give it.
fn unshareable(
    batches: &[Batch],
    names: &Names<'_>,
    target: &'static DType,
    order: ArrowDlpackOrder,
) -> Option<Error> {
    let needs = |what: std::fmt::Arguments<'_>| Some(options::needs_copy(what));
    let with_rows = batches.iter().filter(|b| b.rows > 0).count();
    if with_rows > 1 {
        return needs(format_args!(
            "stacking the {with_rows} record batches of a stream"
        ));
    }
    let Some(batch) = batches.iter().find(|b| b.rows > 0) else {
        return None; // no row: nothing to copy
    };
    for (j, c) in batch.columns.iter().enumerate() {
        let from = c.view.dtype;
        if from != target || from.is_bit_packed() {
            return needs(format_args!(
                "converting {} ({}) to {}",
                names.column(j),
                from.name,
                target.name
            ));
        }
        if c.nulls > 0 || batch.null_rows > 0 {
            return needs(format_args!("filling the nulls of {}", names.column(j)));
        }
    }
    // Checked: a column of `rows` elements lies in memory, but a column of
    // another dtype may claim more bytes than an address space has.
    let column_bytes = batch.rows.checked_mul(target.width());
    for (j, pair) in batch.columns.windows(2).enumerate() {
        let end = column_bytes.and_then(|n| (pair[0].view.data as usize).checked_add(n));
        if Some(pair[1].view.data as usize) != end {
            return needs(format_args!(
                "one tensor of {} and {}, which do not lie end to end in memory,",
                names.column(j),
                names.column(j + 1)
            ));
        }
    }
    let c_contiguous = batch.columns.len() <= 1 || batch.rows <= 1;
    if order == ArrowDlpackOrder::ARROW_DLPACK_ROW_MAJOR && !c_contiguous {
        return needs(format_args!(
            "a row-major tensor (options.order) of columns stored one after another"
        ));
    }
    None
}

/// The batches' tensor (and validity mask): shared when [`unshareable`]
/// finds no reason not to, else one copy.
///
/// # Safety
/// `arrays[i]` is the live array `batches[i]` was read from (none for a
/// stream without chunks).
unsafe fn finish<M: Managed>(
    arrays: &mut [&mut ArrowArray],
    batches: &[Batch],
    names: &Names<'_>,
    options: &ExportOptions,
) -> Result<NonNull<M>, Error> {
    let columns = names.len();
    let rows: usize = batches.iter().map(|b| b.rows).sum(); // checked by the callers
    let natural = batches[0]
        .columns
        .iter()
        .map(|c| c.view.dtype)
        .reduce(dtype::promote)
        .unwrap_or(NO_COLUMNS);
    let target = options.dtype.unwrap_or(natural);
    let fill = export::fill_bytes(options, target)?;
    if fill.is_none() {
        nulls_refused(batches, names)?;
    }
    let why = unshareable(batches, names, target, options.order);
    let shareable = why.is_none();
    let copy = export::must_copy(why.map(|e| move || e), options.copy)?;
    let order = match (copy, options.order) {
        (false, _) | (true, ArrowDlpackOrder::ARROW_DLPACK_COLUMN_MAJOR) => Order::Columns,
        (true, ArrowDlpackOrder::ARROW_DLPACK_ROW_MAJOR) => Order::Rows,
        // ANY: a copy of what could be shared keeps its layout (the same
        // tensor, writable); anything else is row-major.
        (true, ArrowDlpackOrder::ARROW_DLPACK_ORDER_ANY) => match shareable {
            true => Order::Columns,
            false => Order::Rows,
        },
    };
    let dims = dims(rows, columns, order);
    let validity = match options.validity.is_null() {
        true => None,
        // SAFETY: live arrays (caller's contract).
        false => Some(unsafe { mask(batches, rows, columns, order) }?),
    };
    let made = match (copy, arrays.len()) {
        // SAFETY: as above.
        (true, _) | (_, 0) => unsafe { copy_batches(batches, rows, columns, order, target, fill) },
        (false, _) => {
            // One batch with rows (or none with any): shared.
            let i = batches.iter().position(|b| b.rows > 0).unwrap_or(0);
            let data = batches[i]
                .columns
                .first()
                .map_or(ptr::null_mut(), |c| c.view.data);
            // SAFETY: `arrays[i]` is the array the columns were read from.
            unsafe { owner::share(arrays[i], data, target.dl, Location::CPU.device, &dims) }
        }
    };
    // SAFETY: forwarded from the caller; the mask is fresh.
    unsafe { export::complete(made, arrays, validity, options) }
}

/// `HAS_NULLS` for the first nulls found: struct rows, or a column's.
fn nulls_refused(batches: &[Batch], names: &Names<'_>) -> Result<(), Error> {
    let mut row = 0;
    for batch in batches {
        if batch.null_rows > 0 {
            return Err(export::has_nulls(format_args!(
                "the struct array has {} null rows (the first: row {})",
                batch.null_rows,
                row + batch.first_null_row
            )));
        }
        row += batch.rows;
    }
    for batch in batches {
        if let Some((j, c)) = batch.columns.iter().enumerate().find(|(_, c)| c.nulls > 0) {
            return Err(export::has_nulls(format_args!(
                "{} has {} nulls",
                names.column(j),
                c.nulls
            )));
        }
    }
    Ok(())
}

/// Elements of one column from row `first`: its address, and for a
/// bit-packed column the bit in the first byte.
fn column_at(c: &Piece, first: usize) -> (*const u8, usize) {
    let v = &c.view;
    let data = v.data.cast::<u8>().cast_const();
    match v.dtype.is_bit_packed() {
        true => {
            let bit = v.bit_offset + first;
            (data.wrapping_add(bit / 8), bit % 8)
        }
        false => (data.wrapping_add(first * v.dtype.width()), 0),
    }
}

/// The maps of a column's rows `first..first + n`.
fn maps_from(maps: &[NullMap], first: usize, n: usize) -> Vec<NullMap> {
    maps.iter()
        .map(|m| NullMap {
            first: m.first + first * m.per_entry,
            count: n,
            ..*m
        })
        .collect()
}

/// A new tensor of the batches' elements, converted to `target` (nulls
/// filled), in `order`.
///
/// # Safety
/// The batches' views address live memory.
unsafe fn copy_batches<M: Managed>(
    batches: &[Batch],
    rows: usize,
    columns: usize,
    order: Order,
    target: &'static DType,
    fill: Option<[u8; 8]>,
) -> Result<NonNull<M>, Error> {
    let width = target.width();
    let bytes = matrix_bytes(rows, columns, width)?;
    let (tensor, dst) = owner::own::<M>(target.dl, &dims(rows, columns, order), bytes)?;
    if bytes == 0 {
        return Ok(tensor); // no element: data NULL, nothing to write
    }
    let write = |c: &Piece, first: usize, n: usize, out: *mut u8| {
        let (src, bit) = column_at(c, first);
        // SAFETY: `n` rows of the live column from `first`; room for `n`
        // elements of `target` at `out` (`lay_out`'s contract).
        unsafe {
            copy::convert::convert(c.view.dtype, src, bit, target, out, n);
            if let (Some(value), false) = (&fill, c.maps.is_empty()) {
                copy::nulls::fill(out, width, value, &maps_from(&c.maps, first, n));
            }
        }
    };
    // A column already in the target's bytes, with nothing to fill.
    let direct = |c: &Piece, first: usize| {
        let same = c.view.dtype == target && !target.is_bit_packed();
        (same && (fill.is_none() || c.maps.is_empty())).then(|| column_at(c, first).0)
    };
    // SAFETY: the tensor's own bytes hold the matrix.
    unsafe { lay_out(batches, (rows, columns), order, width, dst, write, direct) };
    Ok(tensor)
}

/// The batches' validity as a kDLBool tensor of the data's shape and
/// order.
///
/// # Safety
/// As [`copy_batches`].
unsafe fn mask(
    batches: &[Batch],
    rows: usize,
    columns: usize,
    order: Order,
) -> Result<NonNull<DLManagedTensorVersioned>, Error> {
    let bytes = matrix_bytes(rows, columns, 1)?;
    let (tensor, dst) =
        owner::own::<DLManagedTensorVersioned>(BOOLEAN.dl, &dims(rows, columns, order), bytes)?;
    if bytes == 0 {
        return Ok(tensor);
    }
    let write = |c: &Piece, first: usize, n: usize, out: *mut u8| {
        // SAFETY: a byte per element, `n` of them at `out`.
        unsafe { copy::nulls::mask(out, n, &maps_from(&c.maps, first, n)) };
    };
    // SAFETY: the tensor's own bytes hold the matrix.
    unsafe { lay_out(batches, (rows, columns), order, 1, dst, write, |_, _| None) };
    Ok(tensor)
}

/// Bytes of a `rows x columns` matrix of `width`-byte elements, checked.
fn matrix_bytes(rows: usize, columns: usize, width: usize) -> Result<usize, Error> {
    rows.checked_mul(columns)
        .and_then(|n| n.checked_mul(width))
        .ok_or_else(|| {
            err!(
                ARROW_DLPACK_OUT_OF_MEMORY,
                "{rows} rows x {columns} columns of {width} bytes overflow"
            )
        })
}

/// Lays the batches' columns out at `dst` as a `rows x columns` matrix of
/// `width`-byte elements in `order`, batch after batch: `write(c, first,
/// n, out)` writes rows `first..first + n` of column `c` contiguously at
/// `out`; `direct(c, first)`, where it gives an address, is where they
/// already lie (read in place by a row-major layout).
///
/// # Safety
/// `dst` has room for the matrix; the batches address live memory;
/// `write` and `direct` honour their descriptions.
unsafe fn lay_out(
    batches: &[Batch],
    (rows, columns): (usize, usize),
    order: Order,
    width: usize,
    dst: *mut u8,
    write: impl Fn(&Piece, usize, usize, *mut u8),
    direct: impl Fn(&Piece, usize) -> Option<*const u8>,
) {
    let mut first_row = 0;
    // Batches without rows have nothing to write (and may address nothing).
    for batch in batches.iter().filter(|b| b.rows > 0) {
        match order {
            Order::Columns => {
                for (j, c) in batch.columns.iter().enumerate() {
                    // SAFETY: column `j`'s rows of this batch go at
                    // `j * rows + first_row`, inside the matrix.
                    let out = unsafe { dst.add((j * rows + first_row) * width) };
                    write(c, 0, batch.rows, out);
                }
            }
            Order::Rows => {
                // SAFETY: this batch's rows start at row `first_row`, and
                // fit from there; the closure gives `n` elements of each
                // column.
                unsafe {
                    let out = dst.add(first_row * columns * width);
                    copy::transpose::rows(
                        columns,
                        batch.rows,
                        width,
                        out,
                        |j, first, n, scratch| {
                            let c = &batch.columns[j];
                            direct(c, first).unwrap_or_else(|| {
                                write(c, first, n, scratch);
                                scratch
                            })
                        },
                    )
                };
            }
        }
        first_row += batch.rows;
    }
}
