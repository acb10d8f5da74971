//! The planner: from what the reader found (a column's or a table's type,
//! and the pieces of its arrays) and the caller's options, what to make
//! and how: shared or one copy, the dtype (promoted across columns), the
//! order of a matrix, the fill value, whether a mask is made. Arrays,
//! stream chunks and record batches alike. The planner reads no memory,
//! only the pieces' facts, and refuses what cannot be made with the error
//! the caller sees.

use std::ffi::c_void;

use crate::arrow::read::{
    Batch, ColumnName, ColumnType, Encoding, Level, Piece, RowFacts, TableType, Values, locate,
};
use crate::dims::Dims;
use crate::dtype::{self, DType};
use crate::error::{Error, Term, err};
use crate::options::{self, ArrowDlpackCopy, ArrowDlpackOrder, ExportPolicy, Pad, Side};

/// How a copy lays out its elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Major {
    /// Row after row (a matrix: row-major).
    Row,
    /// Column after column (a matrix: column-major).
    Column,
}

/// How the tensor is made.
#[derive(Debug, Clone, Copy)]
pub enum Make {
    /// Chunk `chunk`'s array is moved into the tensor, whose data is at
    /// `data`.
    Share { chunk: usize, data: *mut c_void },
    /// One copy, in this order.
    Copy(Major),
}

/// How a plan's copies are made: on how many threads, into what memory
/// (the same for every kind of plan).
#[derive(Debug, Clone, Copy)]
pub struct Copying {
    pub threads: usize,
    /// Into pinned memory.
    pub pinned: bool,
}

impl Copying {
    pub fn of(options: &ExportPolicy) -> Copying {
        Copying {
            threads: crate::copy::threads::resolve(options.threads),
            pinned: options.pinned,
        }
    }
}

/// What to make.
#[derive(Debug)]
pub struct Plan {
    pub dtype: &'static DType,
    pub dims: Dims,
    pub make: Make,
    /// The fill value's bytes, as an element of `dtype`, if nulls are
    /// filled.
    pub fill: Option<[u8; 8]>,
    /// Also a validity mask of the tensor's shape.
    pub mask: bool,
    pub copying: Copying,
}

/// The dims of a plain share of `piece`: the column's, over its rows.
#[inline(always)]
pub fn shared_dims(values: Values, piece: &Piece) -> Dims {
    let mut dims = values.dims;
    dims.set_length(piece.rows as i64);
    dims
}

/// The fill value's bytes as an element of `target`, if nulls are filled;
/// `INVALID_ARGUMENT` where `target` cannot hold it exactly.
pub fn fill_bytes(options: &ExportPolicy, target: &DType) -> Result<Option<[u8; 8]>, Error> {
    let Some(value) = options.fill else {
        return Ok(None);
    };
    crate::copy::convert::exact(value, target)
        .map(Some)
        .ok_or_else(|| {
            err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "{}{value} cannot be held exactly by the tensor's dtype {}",
                Term::FillValue,
                target.name
            )
        })
}

/// Whether to copy, given why a copy is `needed` (if it is) and the
/// policy: `NEEDS_COPY` where it is needed and forbidden.
pub fn must_copy(
    needed: Option<impl FnOnce() -> Error>,
    policy: ArrowDlpackCopy,
) -> Result<bool, Error> {
    match (needed, policy) {
        (Some(refusal), ArrowDlpackCopy::ARROW_DLPACK_COPY_NEVER) => Err(refusal()),
        (Some(_), _) => Ok(true),
        (None, policy) => Ok(policy == ArrowDlpackCopy::ARROW_DLPACK_COPY_ALWAYS),
    }
}

/// The depth a null level is named by in messages.
fn depth_of(level: Level) -> usize {
    match level {
        Level::Depth(d) => d,
        Level::Struct => 0,
    }
}

/// `HAS_NULLS` for a column of Arrow's null type (however many rows: its
/// type says each is null) where no fill value was given.
pub fn null_type_refused(column: &ColumnType<'_>) -> Result<(), Error> {
    match column.encoding {
        Encoding::Null => Err(options::has_nulls(format_args!(
            "a null column (Arrow's type null) holds only nulls"
        ))),
        _ => Ok(()),
    }
}

/// A column's tensor from its pieces (an array, or a stream's chunks),
/// stacked along the first dimension: the one piece with elements shared,
/// or one copy of them all (booleans unpacked, nulls filled, another dtype,
/// several chunks). `rows` is their sum (checked by the caller).
pub fn tensor(
    column: &ColumnType<'_>,
    pieces: &[Piece],
    rows: i64,
    options: &ExportPolicy,
) -> Result<Plan, Error> {
    let source = column.values.dtype;
    let target = dtype::target_of(source, options.dtype)?;
    let fill = fill_bytes(options, target)?;
    if fill.is_none() {
        null_type_refused(column)?;
    }
    let nulls: usize = pieces.iter().map(|p| p.nulls).sum();
    if nulls > 0 && fill.is_none() {
        let level = pieces
            .iter()
            .find(|p| p.nulls > 0)
            .map_or(Level::Depth(0), |p| p.null_level);
        return Err(locate(
            depth_of(level),
            options::has_nulls(format_args!("array has {nulls} nulls")),
        ));
    }
    let non_empty = pieces.iter().filter(|p| p.elements > 0).count();
    let decoded = pieces.iter().any(Piece::is_encoded);
    let needed = if source.is_bit_packed() {
        Some(format_args!("unpacking boolean bits to kDLBool bytes"))
    } else if decoded && column.encoding == Encoding::Null {
        Some(format_args!("writing a null column's fill value"))
    } else if decoded {
        Some(format_args!("decoding run-end encoded values"))
    } else if target != source {
        Some(format_args!("converting to another dtype"))
    } else if nulls > 0 {
        Some(format_args!("filling nulls"))
    } else if non_empty > 1 {
        Some(format_args!("concatenating the chunks of a stream"))
    } else {
        None
    };
    let converts = source.is_bit_packed() || target != source;
    let copy = must_copy(
        needed.map(|what| {
            move || {
                let e = options::needs_copy(what);
                match converts {
                    true => e.context(format_args!("{} to {}", source.name, target.name)),
                    false => e,
                }
            }
        }),
        options.copy,
    )?;
    let mut dims = column.values.dims.clone();
    dims.set_length(rows);
    let make = match (copy, pieces.is_empty()) {
        // No chunk at all: an empty tensor of the type's shape, made as a
        // (zero-byte) copy.
        (true, _) | (_, true) => Make::Copy(Major::Row),
        (false, false) => {
            // One piece with elements (or none at all): share it.
            let chunk = pieces.iter().position(|p| p.elements > 0).unwrap_or(0);
            Make::Share {
                chunk,
                data: pieces[chunk].data,
            }
        }
    };
    Ok(Plan {
        dtype: target,
        dims,
        make,
        fill,
        mask: options.mask,
        copying: Copying::of(options),
    })
}

/// A table's matrix `[rows, columns]` from its batches (a struct array,
/// or a stream's chunks), stacked row after row: shared column-major when
/// one batch's columns lie end to end in memory with one dtype and no
/// nulls, else one copy in the order asked for (row-major under
/// `ORDER_ANY`). Mixed dtypes promote as NumPy's `result_type`. `rows` is
/// the batches' sum (checked by the caller).
pub fn matrix(
    table: &TableType<'_>,
    batches: &[Batch],
    rows: usize,
    options: &ExportPolicy,
) -> Result<Plan, Error> {
    let name = |j: usize| ColumnName(j, table.columns[j].name());
    for (j, column) in table.columns.iter().enumerate() {
        if !column.values.is_flat() || column.rows.is_variable() {
            return Err(err!(
                ARROW_DLPACK_UNSUPPORTED_TYPE,
                "a nested column ({} dimensions) cannot be one column of a 2-D tensor",
                column.values.dims.ndim() + column.rows.is_variable() as usize
            )
            .context(format_args!("{}", name(j))));
        }
    }
    for (j, column) in table.columns.iter().enumerate() {
        // A decimal only as the float asked for.
        dtype::target_of(column.values.dtype, options.dtype)
            .map_err(|e| e.context(format_args!("{}", name(j))))?;
    }
    let columns = table.columns.len();
    let natural = table
        .columns
        .iter()
        .map(|c| c.values.dtype)
        .reduce(dtype::promote)
        .unwrap_or(dtype::NO_COLUMNS);
    let target = options.dtype.unwrap_or(natural);
    let fill = fill_bytes(options, target)?;
    if fill.is_none() {
        nulls_refused(table, batches)?;
    }
    let why = unshareable(table, batches, target, options.order);
    let shareable = why.is_none();
    let copy = must_copy(why.map(|e| move || e), options.copy)?;
    let order = match (copy, options.order) {
        (false, _) | (true, ArrowDlpackOrder::ARROW_DLPACK_COLUMN_MAJOR) => Major::Column,
        (true, ArrowDlpackOrder::ARROW_DLPACK_ROW_MAJOR) => Major::Row,
        // ANY: a copy of what could be shared keeps its layout (the same
        // tensor, writable); anything else is row-major.
        (true, ArrowDlpackOrder::ARROW_DLPACK_ORDER_ANY) => match shareable {
            true => Major::Column,
            false => Major::Row,
        },
    };
    let dims = Dims::matrix(rows as i64, columns as i64, order == Major::Row);
    let make = match (copy, batches.is_empty()) {
        (true, _) | (_, true) => Make::Copy(order),
        (false, false) => {
            // One batch with rows (or none with any): shared.
            let chunk = batches.iter().position(|b| b.rows > 0).unwrap_or(0);
            let data = batches[chunk]
                .columns
                .first()
                .map_or(std::ptr::null_mut(), |c| c.data);
            Make::Share { chunk, data }
        }
    };
    Ok(Plan {
        dtype: target,
        dims,
        make,
        fill,
        mask: options.mask,
        copying: Copying::of(options),
    })
}

/// `HAS_NULLS` for the first nulls found: struct rows, or a column's.
fn nulls_refused(table: &TableType<'_>, batches: &[Batch]) -> Result<(), Error> {
    let mut row = 0;
    for batch in batches {
        if batch.null_rows > 0 {
            let map = batch
                .row_map
                .expect("null rows were counted in the row map");
            // SAFETY: the struct's bitmap, which the reader counted.
            let first = unsafe { map.first_null() }.unwrap_or(0);
            return Err(options::has_nulls(format_args!(
                "the struct array has {} null rows (the first: row {})",
                batch.null_rows,
                row + first
            )));
        }
        row += batch.rows;
    }
    for batch in batches {
        if let Some((j, c)) = batch.columns.iter().enumerate().find(|(_, c)| c.nulls > 0) {
            return Err(options::has_nulls(format_args!(
                "{} has {} nulls",
                ColumnName(j, table.columns[j].name()),
                c.nulls
            )));
        }
    }
    Ok(())
}

/// Why the batches cannot be shared as they are, if they cannot: the
/// first reason, as the `NEEDS_COPY` message gives it.
fn unshareable(
    table: &TableType<'_>,
    batches: &[Batch],
    target: &'static DType,
    order: ArrowDlpackOrder,
) -> Option<Error> {
    let name = |j: usize| ColumnName(j, table.columns[j].name());
    let needs = |what: std::fmt::Arguments<'_>| Some(options::needs_copy(what));
    let with_rows = batches.iter().filter(|b| b.rows > 0).count();
    if with_rows > 1 {
        return needs(format_args!(
            "stacking the {with_rows} record batches of a stream"
        ));
    }
    let batch = batches.iter().find(|b| b.rows > 0)?; // no row: nothing to copy
    for (j, (c, column)) in batch.columns.iter().zip(&table.columns).enumerate() {
        let from = column.values.dtype;
        if from != target || from.is_bit_packed() {
            return needs(format_args!(
                "converting {} ({}) to {}",
                name(j),
                from.name,
                target.name
            ));
        }
        if c.nulls > 0 || batch.null_rows > 0 {
            return needs(format_args!("filling the nulls of {}", name(j)));
        }
        if c.is_encoded() {
            return needs(format_args!("decoding {}", name(j)));
        }
    }
    // Checked: a column of `rows` elements lies in memory, but a column of
    // another dtype may claim more bytes than an address space has.
    let column_bytes = batch.rows.checked_mul(target.width());
    for (j, pair) in batch.columns.windows(2).enumerate() {
        let end = column_bytes.and_then(|n| (pair[0].data as usize).checked_add(n));
        if Some(pair[1].data as usize) != end {
            return needs(format_args!(
                "one tensor of {} and {}, which do not lie end to end in memory,",
                name(j),
                name(j + 1)
            ));
        }
    }
    let c_contiguous = batch.columns.len() <= 1 || batch.rows <= 1;
    if order == ArrowDlpackOrder::ARROW_DLPACK_ROW_MAJOR && !c_contiguous {
        return needs(format_args!(
            "a row-major tensor ({}) of columns stored one after another",
            Term::RowMajor
        ));
    }
    None
}

// ---- variable-length columns ------------------------------------------------

/// How one part of a jagged tensor is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Shared: it points into the one chunk's array (`Plan::shared`).
    Share,
    /// The values: the chunks' covered values, one after another,
    /// converted and filled (a dense copy).
    Range,
    /// The values, row by row (null rows dropped, views gathered); the
    /// offsets: summed from the rows' lengths.
    Rows,
}

/// What to make of a variable-length column: values and offsets.
#[derive(Debug)]
pub struct JaggedPlan {
    /// The values' dtype and dims `[total, ...]`.
    pub dtype: &'static DType,
    pub dims: Dims,
    pub values: Part,
    pub offsets: Part,
    /// int64 offsets (else int32).
    pub large: bool,
    /// The chunk whose array a shared part points into.
    pub shared: Option<usize>,
    /// Null rows become empty, their elements dropped.
    pub compact: bool,
    pub fill: Option<[u8; 8]>,
    /// Also the rows' validity mask `[rows]`.
    pub mask: bool,
    pub copying: Copying,
}

/// Whether a plan for these pieces may follow every offset (a copy of the
/// offsets or of the values row by row, or null rows to look into): then
/// [`read::check_rows`](crate::arrow::read::check_rows) must check them first, and its facts are
/// [`jagged`]'s `rows`. A share of an unsliced list reads two offsets.
pub fn jagged_follows_rows(
    column: &ColumnType<'_>,
    pieces: &[Piece],
    options: &ExportPolicy,
) -> bool {
    use crate::arrow::read::Rows;
    let with_rows = pieces.iter().filter(|p| p.rows > 0).count();
    matches!(column.rows, Rows::ListView { .. } | Rows::BinaryView)
        || with_rows > 1
        || options.copy == ArrowDlpackCopy::ARROW_DLPACK_COPY_ALWAYS
        || pieces
            .iter()
            .any(|p| p.null_rows > 0 || p.offsets.is_some_and(|o| o.first != 0))
}

/// `HAS_NULLS` for null rows or elements that no fill value was given for.
fn variable_nulls(pieces: &[Piece], fill: Option<[u8; 8]>) -> Result<(), Error> {
    if fill.is_some() {
        return Ok(());
    }
    let null_rows: usize = pieces.iter().map(|p| p.null_rows).sum();
    if null_rows > 0 {
        return Err(options::has_nulls(format_args!(
            "array has {null_rows} null rows"
        )));
    }
    let nulls: usize = pieces.iter().map(|p| p.nulls).sum();
    if nulls > 0 {
        let level = pieces
            .iter()
            .find(|p| p.nulls > 0)
            .map_or(Level::Depth(0), |p| p.null_level);
        return Err(locate(
            depth_of(level),
            options::has_nulls(format_args!("array has {nulls} nulls")),
        ));
    }
    Ok(())
}

/// A variable-length column's jagged tensor pair: values end to end and
/// offsets from 0, shared where they can be (one chunk, its first offset
/// 0, no conversion, nothing to fill or drop), else copied. `rows` are
/// the facts of [`read::check_rows`](crate::arrow::read::check_rows) where [`jagged_follows_rows`] asked
/// for them; `gathered`: the pieces' rows are chosen by index (always
/// copied row by row, the facts those of the rows chosen).
pub fn jagged(
    column: &ColumnType<'_>,
    pieces: &[Piece],
    rows: Option<&[RowFacts]>,
    gathered: bool,
    options: &ExportPolicy,
) -> Result<JaggedPlan, Error> {
    use crate::arrow::read::Rows;
    let source = column.values.dtype;
    let target = dtype::target_of(source, options.dtype)?;
    let fill = fill_bytes(options, target)?;
    variable_nulls(pieces, fill)?;
    let facts = rows.unwrap_or(&[]);
    let views = matches!(column.rows, Rows::ListView { .. } | Rows::BinaryView);
    let compact = facts.iter().any(|f| f.null_rows_cover_values);
    let with_rows = pieces.iter().filter(|p| p.rows > 0).count();
    // The chunk a share would point into, and its first offset (none: an
    // empty array that left its offsets out, whose one offset is made).
    let chosen = pieces.iter().position(|p| p.rows > 0).unwrap_or(0);
    let first_offset = pieces.get(chosen).and_then(|p| p.offsets).map(|o| o.first);
    let first = first_offset.unwrap_or(0);
    let nulls: usize = pieces.iter().map(|p| p.nulls).sum();
    let rows_copy = if gathered {
        Some(format_args!("gathering rows by index"))
    } else if views {
        Some(format_args!("gathering the rows of views"))
    } else if compact {
        Some(format_args!("dropping the elements of null rows"))
    } else if with_rows > 1 {
        Some(format_args!("concatenating the chunks of a stream"))
    } else {
        None
    };
    let values_copy = rows_copy.or(if source.is_bit_packed() {
        Some(format_args!("unpacking boolean bits to kDLBool bytes"))
    } else if target != source {
        Some(format_args!("converting to another dtype"))
    } else if nulls > 0 {
        Some(format_args!("filling nulls"))
    } else {
        None
    });
    let always = options.copy == ArrowDlpackCopy::ARROW_DLPACK_COPY_ALWAYS;
    if options.copy == ArrowDlpackCopy::ARROW_DLPACK_COPY_NEVER {
        if let Some(what) = values_copy {
            let e = options::needs_copy(what);
            return Err(match source.is_bit_packed() || target != source {
                true => e.context(format_args!("{} to {}", source.name, target.name)),
                false => e,
            });
        }
        if first != 0 {
            return Err(options::needs_copy(format_args!(
                "rebasing the offsets of a slice to start at 0 (its first offset is {first})"
            )));
        }
    }
    let values = match (rows_copy.is_some(), values_copy.is_some() || always) {
        (true, _) => Part::Rows,
        (false, true) => Part::Range,
        (false, false) => Part::Share,
    };
    let offsets = match rows_copy.is_some() || first != 0 || first_offset.is_none() || always {
        true => Part::Rows,
        false => Part::Share,
    };
    let values = match pieces.is_empty() {
        true => Part::Range,
        false => values,
    };
    // Value rows the values tensor holds.
    let total: usize = match values {
        Part::Rows => facts.iter().map(|f| f.total).sum(),
        _ => pieces
            .iter()
            .filter_map(|p| p.offsets)
            .map(|o| (o.last - o.first) as usize)
            .sum(),
    };
    let large = column.rows.large() || (offsets == Part::Rows && total > i32::MAX as usize);
    let mut dims = column.values.dims.clone();
    dims.set_length(
        i64::try_from(total)
            .map_err(|_| err!(ARROW_DLPACK_INVALID_ARROW, "{total} list elements overflow"))?,
    );
    let shared = (values == Part::Share || offsets == Part::Share).then_some(chosen);
    Ok(JaggedPlan {
        dtype: target,
        dims,
        values,
        offsets,
        large,
        shared,
        compact,
        fill,
        mask: options.mask,
        copying: Copying::of(options),
    })
}

/// What to make of a variable-length column padded to one length.
#[derive(Debug)]
pub struct PaddedPlan {
    pub dtype: &'static DType,
    /// `[rows, length, ...]`.
    pub dims: Dims,
    pub length: usize,
    pub side: Side,
    /// The padding's bytes, as an element of `dtype`.
    pub pad: [u8; 8],
    pub fill: Option<[u8; 8]>,
    /// Also the `[rows, length]` mask of real elements.
    pub mask: bool,
    pub copying: Copying,
}

/// A variable-length column padded: `[rows, length, ...]`, one copy (asked
/// for: `options.copy` is not consulted), each row cut or padded to the
/// given length or the longest row's. `rows` are the pieces' facts.
pub fn padded(
    column: &ColumnType<'_>,
    pieces: &[Piece],
    rows: &[RowFacts],
    padding: &Pad,
    options: &ExportPolicy,
) -> Result<PaddedPlan, Error> {
    let source = column.values.dtype;
    let target = dtype::target_of(source, options.dtype)?;
    let fill = fill_bytes(options, target)?;
    let pad = crate::copy::convert::exact(padding.value(), target).ok_or_else(|| {
        err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "{}{} cannot be held exactly by the tensor's dtype {}",
            Term::PadValue,
            padding.value(),
            target.name
        )
    })?;
    variable_nulls(pieces, fill)?;
    let length = padding
        .length()
        .unwrap_or_else(|| rows.iter().map(|f| f.longest).max().unwrap_or(0));
    let count: usize = pieces.iter().map(|p| p.rows).sum();
    let inner = &column.values.dims;
    let element = column.values.row_elements();
    let too_large = || {
        err!(
            ARROW_DLPACK_OUT_OF_MEMORY,
            "{count} rows padded to {length} elements of {element} values overflow"
        )
    };
    let row = length.checked_mul(element).ok_or_else(too_large)?;
    count
        .checked_mul(row)
        .and_then(|n| n.checked_mul(target.width()))
        .filter(|&n| n <= isize::MAX as usize)
        .ok_or_else(too_large)?;
    let mut dims = Dims::new();
    dims.push_strided(count as i64, row as i64)?;
    dims.push_strided(length as i64, element as i64)?;
    for (&extent, &stride) in inner.shape().iter().zip(inner.strides()).skip(1) {
        dims.push_strided(extent, stride)?;
    }
    Ok(PaddedPlan {
        dtype: target,
        dims,
        length,
        side: padding.side(),
        pad,
        fill,
        mask: options.mask,
        copying: Copying::of(options),
    })
}
