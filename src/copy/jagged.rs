//! Variable-length rows laid out in a copy's bytes: the offsets of a
//! jagged tensor (summed from the rows' lengths, from 0: a slice rebased,
//! null rows made empty, several chunks one after another), its values
//! copied row by row (null rows dropped, views gathered), padded rows
//! `[rows, L, ...]`, and their masks. Each kernel writes a range of rows
//! on its own (the offsets, a prefix sum, excepted), so that the work can
//! be split over threads with the same result.
//!
//! ListRows are read through [`Piece::row`], after [`read::check_rows`](crate::arrow::read::check_rows)
//! checked every offset a kernel follows.

use std::ops::Range;

use super::layout::Pick;
use super::{convert, nulls};
use crate::arrow::read::{ColumnType, Piece, Row};
use crate::dtype::DType;
use crate::options::Side;

/// The rows of a variable-length column's pieces, chunk after chunk.
///
/// Allocates nothing: a zero-copy export makes one (its offsets shared),
/// where an allocation costs as much as the rest of the export.
pub struct ListRows<'p> {
    column: &'p ColumnType<'p>,
    pieces: &'p [Piece],
    /// Rows by index: row `r` is `picks[r]` (`None`: every piece's rows,
    /// chunk after chunk).
    picks: Option<&'p [Pick]>,
    len: usize,
}

impl<'p> ListRows<'p> {
    /// The rows of `pieces`, whose rows [`read::check_rows`](crate::arrow::read::check_rows) checked.
    pub fn new(column: &'p ColumnType<'p>, pieces: &'p [Piece]) -> ListRows<'p> {
        ListRows {
            column,
            pieces,
            picks: None,
            len: pieces.iter().map(|p| p.rows).sum(),
        }
    }

    /// The rows chosen by index: row `r` is row `picks[r].row` of piece
    /// `picks[r].chunk` (whose rows were checked).
    pub fn picked(
        column: &'p ColumnType<'p>,
        pieces: &'p [Piece],
        picks: &'p [Pick],
    ) -> ListRows<'p> {
        ListRows {
            column,
            pieces,
            picks: Some(picks),
            len: picks.len(),
        }
    }

    /// ListRows in all.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Each piece with the rows of `range` it holds, as piece rows, and
    /// the first one's row among all.
    fn spans(&self, range: Range<usize>) -> impl Iterator<Item = (&'p Piece, Range<usize>, usize)> {
        let mut start = 0;
        self.pieces.iter().filter_map(move |p| {
            let (first, end) = (start, start + p.rows);
            start = end;
            let (from, to) = (range.start.max(first), range.end.min(end));
            (from < to).then(|| (p, from - first..to - first, from))
        })
    }

    /// Calls `f(r, piece, row)` for each row `r` of `range`, in order.
    ///
    /// # Safety
    /// The pieces' arrays are alive and their rows were checked.
    unsafe fn each(&self, range: Range<usize>, mut f: impl FnMut(usize, &Piece, Row)) {
        if let Some(picks) = self.picks {
            for r in range {
                let pick = picks[r];
                let p = &self.pieces[pick.chunk];
                // SAFETY: a checked row of the piece (caller's contract).
                f(r, p, unsafe { p.row(self.column, pick.row) });
            }
            return;
        }
        for (p, rows, first) in self.spans(range) {
            for (k, r) in rows.enumerate() {
                // SAFETY: a row of the piece (caller's contract).
                f(first + k, p, unsafe { p.row(self.column, r) });
            }
        }
    }

    /// Values (of the element type) in one element.
    fn row_elements(&self) -> usize {
        self.column.values.row_elements()
    }

    fn source(&self) -> &'static DType {
        self.column.values.dtype
    }
}

/// Element `k` of the offsets tensor at `offsets` (int64 or int32).
///
/// # Safety
/// `offsets` holds entry `k`, written.
unsafe fn offset_at(offsets: *const u8, large: bool, k: usize) -> usize {
    // SAFETY: `offset_at`'s caller promises it: `offsets` holds entry `k`, written.
    unsafe {
        match large {
            true => offsets.cast::<i64>().add(k).read() as usize,
            false => offsets.cast::<i32>().add(k).read() as usize,
        }
    }
}

/// Writes the rows' offsets at `dst`, `rows + 1` entries (int64 when
/// `large`, else int32) from 0: each row its length, a null row none when
/// `compact`.
///
/// # Safety
/// `dst` has room for the entries; the total fits their type (the
/// planner's check).
pub unsafe fn offsets(rows: &ListRows<'_>, compact: bool, large: bool, dst: *mut u8) {
    let mut total = 0usize;
    let put = |k: usize, v: usize| {
        // SAFETY: entry `k <= rows` of the room (caller's contract); the
        // value fits (the planner's check).
        unsafe {
            match large {
                true => dst.cast::<i64>().add(k).write(v as i64),
                false => dst.cast::<i32>().add(k).write(v as i32),
            }
        }
    };
    put(0, 0);
    // SAFETY: `offsets`'s caller promises it: `dst` has room for the entries; the total fits
    // their type (the planner's check).
    unsafe {
        rows.each(0..rows.len(), |r, _, row| {
            if !(compact && row.null) {
                total += row.len;
            }
            put(r + 1, total);
        })
    };
}

/// What a row copy writes: values converted to `target`, nulls written as
/// `fill`.
#[derive(Clone, Copy)]
pub struct ValuesOut {
    pub dst: *mut u8,
    pub target: &'static DType,
    pub fill: Option<[u8; 8]>,
}

// SAFETY: the destination is the caller's, written one row range at a
// time; the pieces address memory their arrays keep alive.
unsafe impl Send for ValuesOut {}
// SAFETY: as above: disjoint row ranges never touch the same bytes.
unsafe impl Sync for ValuesOut {}

/// Writes `count` elements of `row` from its element `skip` at `dst`,
/// converted and filled.
///
/// # Safety
/// The row's elements exist; `dst` has room.
unsafe fn put_row(
    rows: &ListRows<'_>,
    piece: &Piece,
    row: &Row,
    skip: usize,
    count: usize,
    out: &ValuesOut,
    dst: *mut u8,
) {
    let e = rows.row_elements();
    let source = rows.source();
    let (src, bit) = match source.is_bit_packed() {
        true => {
            let bit = row.bit + skip * e;
            (row.data.wrapping_add(bit / 8), bit % 8)
        }
        false => (row.data.wrapping_add(skip * e * source.width()), 0),
    };
    // SAFETY: the row's values (caller's contract) and the room at `dst`.
    unsafe { convert::convert(source, src, bit, out.target, dst, count * e) };
    if let Some(value) = out.fill {
        for map in piece.maps.iter().filter(|m| !m.rows) {
            // SAFETY: the map's value rows of these elements, written above.
            unsafe {
                nulls::fill(
                    dst,
                    out.target.width(),
                    &value,
                    &map.slice(row.first + skip, count),
                )
            };
        }
    }
}

/// Writes rows `range`'s values at `out.dst` (the values tensor's bytes),
/// each row at its offset in `offsets` (as [`offsets`] wrote them); null
/// rows dropped when `compact` (their offsets say so).
///
/// # Safety
/// `offsets` holds the rows' offsets; `out.dst` holds every value they
/// count; the pieces are alive and checked.
pub unsafe fn values(
    rows: &ListRows<'_>,
    range: Range<usize>,
    compact: bool,
    offsets: (*const u8, bool),
    out: &ValuesOut,
) {
    let element = rows.row_elements() * out.target.width();
    // SAFETY: `values`'s caller promises it: `offsets` holds the rows' offsets; `out.dst` holds
    // every value they count; the pieces are alive and checked.
    unsafe {
        rows.each(range, |r, piece, row| {
            if row.len == 0 || (compact && row.null) {
                return;
            }
            let at = offset_at(offsets.0, offsets.1, r);
            put_row(
                rows,
                piece,
                &row,
                0,
                row.len,
                out,
                out.dst.add(at * element),
            );
        })
    };
}

/// Writes rows `range` of a `[rows, length, ...]` padded tensor at
/// `out.dst`: each row's first `length` elements (`Side::Right`) or last
/// (`Side::Left`, its last element in the last column), the rest `pad`; a
/// null row all `pad`.
///
/// # Safety
/// `out.dst` holds the padded tensor; the pieces are alive and checked.
pub unsafe fn padded(
    rows: &ListRows<'_>,
    range: Range<usize>,
    length: usize,
    side: Side,
    pad: [u8; 8],
    out: &ValuesOut,
) {
    let width = out.target.width();
    let element = rows.row_elements() * width;
    let row_bytes = length * element;
    // SAFETY: `padded`'s caller promises it: `out.dst` holds the padded tensor; the pieces are
    // alive and checked.
    unsafe {
        rows.each(range, |r, piece, row| {
            let dst = out.dst.add(r * row_bytes);
            let (skip, at, n) = placed(&row, length, side);
            if n > 0 {
                put_row(rows, piece, &row, skip, n, out, dst.add(at * element));
            }
            let values = rows.row_elements();
            nulls::repeat(dst, width, &pad, at * values);
            let end = (at + n) * values;
            nulls::repeat(dst.add(end * width), width, &pad, length * values - end);
        })
    };
}

/// Where a row lands in a padded row of `length`: the elements skipped at
/// its start, the column of its first element kept, and how many are kept.
fn placed(row: &Row, length: usize, side: Side) -> (usize, usize, usize) {
    let n = if row.null { 0 } else { row.len.min(length) };
    match side {
        Side::Right => (0, 0, n),
        Side::Left => (row.len - n, length - n, n),
    }
}

/// Writes rows `range` of the `[rows, length]` mask of a padded tensor:
/// 1 at each kept element that is not null, 0 elsewhere.
///
/// # Safety
/// `dst` holds the mask; the pieces are alive and checked.
pub unsafe fn padded_mask(
    rows: &ListRows<'_>,
    range: Range<usize>,
    length: usize,
    side: Side,
    dst: *mut u8,
) {
    // SAFETY: `padded_mask`'s caller promises it: `dst` holds the mask; the pieces are alive
    // and checked.
    unsafe {
        rows.each(range, |r, piece, row| {
            let dst = dst.add(r * length);
            dst.write_bytes(0, length);
            let (skip, at, n) = placed(&row, length, side);
            dst.add(at).write_bytes(1, n);
            // Nulls among the elements themselves (the values' top level).
            for map in piece.maps.iter().filter(|m| !m.rows && m.per_row == 1) {
                let elements = nulls_of_elements(map.slice(row.first + skip, n));
                nulls::clear(dst.add(at), &elements);
            }
        })
    };
}

/// A map over elements, one mask byte an element.
fn nulls_of_elements(map: crate::arrow::read::NullMap) -> crate::arrow::read::NullMap {
    crate::arrow::read::NullMap {
        per_entry: 1,
        ..map
    }
}

/// Writes rows `range` of the rows' validity: 1 where the row is not null.
/// Reads only the rows' validity bitmaps, not their offsets (the rows
/// need not have been checked).
///
/// # Safety
/// `dst` holds a byte a row; the pieces are alive.
pub unsafe fn row_mask(rows: &ListRows<'_>, range: Range<usize>, dst: *mut u8) {
    if let Some(picks) = rows.picks {
        for r in range {
            let pick = picks[r];
            // SAFETY: a row of the piece; a byte of room (caller's contract).
            unsafe {
                dst.add(r)
                    .write(!rows.pieces[pick.chunk].row_is_null(pick.row) as u8)
            };
        }
        return;
    }
    for (p, piece_rows, first) in rows.spans(range) {
        for (k, r) in piece_rows.enumerate() {
            // SAFETY: a row of the piece; a byte of room (caller's contract).
            unsafe { dst.add(first + k).write(!p.row_is_null(r) as u8) };
        }
    }
}
