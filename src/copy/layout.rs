//! Pieces of columns laid out in a tensor's own bytes: a column's pieces
//! one after another (a stream's chunks concatenated), or a table's
//! columns as a row-major or column-major matrix; each value converted to
//! the tensor's dtype and each null filled, or the validity mask of the
//! same layout. The rows are the pieces' own, chunk after chunk (rows by
//! range: a stream concatenated, a batch of one chunk), or chosen by index
//! ([`Pick`]: a shuffled batch gathered from anywhere in the chunks). Any
//! range of output rows can be written on its own, so the work splits
//! over threads with the same result.

use std::ops::Range;

use super::{convert, nulls, threads, transpose, uncached};
use crate::arrow::read::{Batch, Piece, Runs, TableType, Values};
use crate::dtype::DType;
use crate::plan::Major;
use crate::repeat::repeat;

/// A row chosen by index: row `row` of chunk `chunk`'s pieces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    pub chunk: usize,
    pub row: usize,
}

/// The pieces one tensor is made of: chunk after chunk, a piece for each
/// column.
pub struct Layout<'p> {
    /// Rows by index: output row `i` is `picks[i]` (`None`: rows by
    /// range, every piece's rows in order).
    picks: Option<&'p [Pick]>,
    /// Chunk-major: chunk `c`'s piece of column `j` at `c * columns + j`.
    pieces: Vec<&'p Piece>,
    columns: usize,
    /// Each chunk's first output row, then the total.
    starts: Vec<usize>,
    /// Each column's dtype.
    sources: Vec<&'static DType>,
    /// Values in one row of one column (1 for a table's columns).
    row_elements: usize,
    order: Major,
}

/// What a layout writes, and where: the tensor's (or the mask's) first
/// byte; every row of the layout fits there.
#[derive(Clone, Copy)]
pub enum Out {
    /// The values, converted to `target`, nulls written as `fill`.
    Values {
        dst: *mut u8,
        target: &'static DType,
        fill: Option<[u8; 8]>,
    },
    /// The validity mask: a byte per value, 1 where valid.
    Mask { dst: *mut u8 },
}

impl Out {
    fn width(&self) -> usize {
        match self {
            Out::Values { target, .. } => target.width(),
            Out::Mask { .. } => 1,
        }
    }

    fn dst(&self) -> *mut u8 {
        match *self {
            Out::Values { dst, .. } | Out::Mask { dst } => dst,
        }
    }
}

// SAFETY: the destination is the caller's, written by one range at a
// time; the pieces address memory their arrays keep alive.
unsafe impl Send for Out {}
// SAFETY: as above: disjoint row ranges never touch the same bytes.
unsafe impl Sync for Out {}

impl<'p> Layout<'p> {
    /// A column's pieces, stacked row after row.
    pub fn tensor(values: &Values, pieces: &'p [Piece]) -> Layout<'p> {
        Layout {
            starts: starts(pieces.iter().map(|p| p.rows)),
            pieces: pieces.iter().collect(),
            columns: 1,
            sources: vec![values.dtype],
            row_elements: values.row_elements(),
            order: Major::Row,
            picks: None,
        }
    }

    /// The same pieces with the output rows chosen by index: row `i` is
    /// `picks[i]` (each a row of its chunk's pieces).
    pub fn picked(self, picks: &'p [Pick]) -> Layout<'p> {
        Layout {
            picks: Some(picks),
            ..self
        }
    }

    /// A table's batches as a matrix in `order`.
    pub fn matrix(table: &TableType<'_>, batches: &'p [Batch], order: Major) -> Layout<'p> {
        Layout {
            starts: starts(batches.iter().map(|b| b.rows)),
            pieces: batches.iter().flat_map(|b| &b.columns).collect(),
            columns: table.columns.len(),
            sources: table.columns.iter().map(|c| c.values.dtype).collect(),
            row_elements: 1,
            order,
            picks: None,
        }
    }

    /// Rows of the whole tensor.
    pub fn rows(&self) -> usize {
        match self.picks {
            Some(picks) => picks.len(),
            None => self.starts.last().copied().unwrap_or(0),
        }
    }

    /// Bytes of one output row (all columns) of `width`-byte elements.
    pub fn row_bytes(&self, width: usize) -> usize {
        self.columns * self.row_elements * width
    }

    /// Writes the whole layout to `out` on up to `threads` threads (the
    /// calling one included), byte for byte what one thread writes: split
    /// by output rows (a column-major matrix: by whole columns, where it
    /// has enough), each block written on its own.
    ///
    /// # Safety
    /// The pieces address live memory (their arrays are alive); `out`'s
    /// destination holds the whole tensor and no one else writes it
    /// meanwhile.
    pub unsafe fn write_on(&self, out: Out, threads: usize) {
        let width = out.width();
        let around = uncached::worth_it(self.rows().saturating_mul(self.row_bytes(width)));
        // SAFETY: each block of rows and columns is written by one thread.
        let write = |r, c| unsafe { self.write(out, r, c, around) };
        match self.order {
            Major::Column => {
                let element = self.row_elements * width;
                threads::split_column_major(self.rows(), self.columns, element, threads, write);
            }
            Major::Row => {
                let all = 0..self.columns;
                let rows = |r| write(r, all.clone());
                // A gathered value costs a line read where a range's costs
                // its bytes: weigh gathers so.
                let weight = match self.picks {
                    Some(_) => self.columns * 64,
                    None => self.row_bytes(width),
                };
                threads::split(self.rows(), weight, threads, rows);
            }
        }
    }

    /// Writes the output rows `rows` of the columns `columns` of `out`
    /// (a row-major matrix: of every column); values copied as they are
    /// bypass the cache when `around` ([`uncached`]).
    ///
    /// # Safety
    /// As [`Layout::write_on`]; no other writer touches these rows and
    /// columns at the same time.
    unsafe fn write(&self, out: Out, rows: Range<usize>, columns: Range<usize>, around: bool) {
        if let Some(picks) = self.picks {
            // SAFETY: `write`'s contract, forwarded.
            return unsafe { self.write_picked(out, picks, rows, columns) };
        }
        let total = self.rows();
        for (c, span) in self.starts.windows(2).enumerate() {
            let (from, to) = (rows.start.max(span[0]), rows.end.min(span[1]));
            if from >= to {
                continue;
            }
            let (first, n) = (from - span[0], to - from);
            let pieces = &self.pieces[c * self.columns..(c + 1) * self.columns];
            match (self.order, self.columns) {
                (_, 1) | (Major::Column, _) => {
                    for (j, piece) in pieces
                        .iter()
                        .enumerate()
                        .take(columns.end)
                        .skip(columns.start)
                    {
                        let at = match self.order {
                            Major::Column => j * total + from,
                            Major::Row => from,
                        } * self.row_elements;
                        // SAFETY: rows `first..first + n` of the piece go
                        // to their place in the destination (caller's
                        // contract).
                        unsafe { self.run(out, j, piece, (first, n), at, around) };
                    }
                }
                (Major::Row, _) => {
                    let width = out.width();
                    // SAFETY: this chunk's rows start at output row `from`,
                    // and the closure gives `m` elements of each column.
                    unsafe {
                        let dst = out.dst().add(from * self.row_bytes(width));
                        transpose::row_major(
                            self.columns,
                            n,
                            width,
                            dst,
                            around,
                            |j, at, m, scratch| {
                                self.slice(out, j, pieces[j], first + at, m, scratch)
                            },
                        )
                    };
                }
            }
        }
    }

    /// [`Layout::write`] of rows chosen by index: each output row's values
    /// copied from its chunk's row, one row of one column at a time.
    ///
    /// # Safety
    /// As [`Layout::write`]; each pick names a row of its chunk's pieces.
    unsafe fn write_picked(
        &self,
        out: Out,
        picks: &[Pick],
        rows: Range<usize>,
        columns: Range<usize>,
    ) {
        let total = picks.len();
        let width = out.width();
        if let Out::Values { target, fill, .. } = out {
            let bytes = self.row_elements * width;
            // Every column's values land as they are, nothing filled: a
            // typed copy a pick, reads prefetched ahead.
            let plain = columns.clone().all(|j| as_is(self.sources[j], target))
                && self.pieces.iter().all(|p| p.runs.is_none())
                && (fill.is_none() || self.pieces.iter().all(|p| p.maps.iter().all(|m| m.rows)));
            if plain && matches!(bytes, 1 | 2 | 4 | 8) {
                for j in columns {
                    let (first, step) = match self.order {
                        Major::Row => (j, self.columns),
                        Major::Column => (j * total, 1),
                    };
                    let src = |i: usize| {
                        let pick = picks[i];
                        let piece = self.pieces[pick.chunk * self.columns + j];
                        piece
                            .data
                            .cast::<u8>()
                            .cast_const()
                            .wrapping_add(pick.row * bytes)
                    };
                    // SAFETY: each pick a row of its piece, room for every
                    // output row at `dst` (`write_picked`'s contract).
                    unsafe {
                        let dst = out.dst().add(first * bytes);
                        match bytes {
                            8 => gather::<u64>(rows.clone(), src, dst, step),
                            4 => gather::<u32>(rows.clone(), src, dst, step),
                            2 => gather::<u16>(rows.clone(), src, dst, step),
                            _ => gather::<u8>(rows.clone(), src, dst, step),
                        }
                    }
                }
                return;
            }
        }
        for i in rows {
            let pick = picks[i];
            let pieces = &self.pieces[pick.chunk * self.columns..(pick.chunk + 1) * self.columns];
            for j in columns.clone() {
                let at = match self.order {
                    Major::Row => i * self.columns + j,
                    Major::Column => j * total + i,
                } * self.row_elements;
                // SAFETY: element `at` starts one row of room (the caller
                // sized the destination for `total` rows); the pick is a
                // row of the piece (caller's contract).
                unsafe { self.put_row(out, j, pieces[j], pick.row, out.dst().add(at * width)) };
            }
        }
    }

    /// Writes row `row` of column `j`'s piece (its `row_elements` values)
    /// at `dst`: bytes copied as they are where the values land byte for
    /// byte and nothing is filled, else through [`Layout::put`].
    ///
    /// # Safety
    /// As [`Layout::put`], for one row.
    #[inline(always)]
    unsafe fn put_row(&self, out: Out, j: usize, piece: &Piece, row: usize, dst: *mut u8) {
        if let Out::Values { target, fill, .. } = out {
            let source = self.sources[j];
            if piece.runs.is_some() {
                // SAFETY: `put_row`'s contract: one row of room at `dst`.
                return unsafe { self.put(out, j, piece, row, self.row_elements, dst, false) };
            }
            if as_is(source, target) && (fill.is_none() || piece.maps.iter().all(|m| m.rows)) {
                let bytes = self.row_elements * source.width();
                let src = piece
                    .data
                    .cast::<u8>()
                    .cast_const()
                    .wrapping_add(row * bytes);
                // SAFETY: the piece's row (caller's contract) and room for
                // it at `dst`; the two never overlap (the destination is
                // the tensor's own).
                unsafe {
                    match bytes {
                        8 => dst
                            .cast::<u64>()
                            .write_unaligned(src.cast::<u64>().read_unaligned()),
                        4 => dst
                            .cast::<u32>()
                            .write_unaligned(src.cast::<u32>().read_unaligned()),
                        2 => dst
                            .cast::<u16>()
                            .write_unaligned(src.cast::<u16>().read_unaligned()),
                        1 => dst.write(src.read()),
                        n => std::ptr::copy_nonoverlapping(src, dst, n),
                    }
                }
                return;
            }
        }
        // SAFETY: `put_row`'s contract: one row's values of room.
        unsafe { self.put(out, j, piece, row, self.row_elements, dst, false) };
    }

    /// Writes rows `first..first + n` of column `j`'s piece contiguously
    /// from output element `at` (around the cache: see [`Layout::write`]).
    ///
    /// # Safety
    /// As [`Layout::write`].
    unsafe fn run(
        &self,
        out: Out,
        j: usize,
        piece: &Piece,
        (first, n): (usize, usize),
        at: usize,
        around: bool,
    ) {
        let count = n * self.row_elements;
        if count == 0 {
            return;
        }
        // SAFETY: element `at` starts `count` elements of room (caller's
        // contract); the piece holds the rows.
        unsafe {
            let dst = out.dst().add(at * out.width());
            self.put(out, j, piece, first, count, dst, around);
        }
    }

    /// Rows `first..first + n` of column `j`'s piece (one value a row),
    /// contiguous: where they lie already (the same dtype, nothing to
    /// fill), or written to `scratch`.
    ///
    /// # Safety
    /// As [`Layout::write`]; `scratch` has room for `n` elements.
    unsafe fn slice(
        &self,
        out: Out,
        j: usize,
        piece: &Piece,
        first: usize,
        n: usize,
        scratch: *mut u8,
    ) -> *const u8 {
        if let Out::Values { target, fill, .. } = out {
            let source = self.sources[j];
            let plain = piece.runs.is_none();
            if plain
                && as_is(source, target)
                && (fill.is_none() || piece.maps.iter().all(|m| m.rows))
            {
                return piece.data.cast::<u8>().wrapping_add(first * source.width());
            }
        }
        // SAFETY: `slice`'s caller promises it: as `write`'s; `scratch` has room for `n`
        // elements: as `write_on`'s; no other writer touches these rows and columns at the same
        // time: The pieces address live memory (their arrays are alive); `out`'s destination
        // holds the whole tensor and no one else writes it meanwhile.
        // The scratch is read at once: through the cache.
        unsafe { self.put(out, j, piece, first, n, scratch, false) };
        scratch
    }

    /// Writes `count` values of column `j`'s piece, from its row `first`,
    /// at `dst`: converted and filled, or their mask; values of the
    /// target's dtype copied around the cache when `around`.
    ///
    /// # Safety
    /// As [`Layout::write`]; `dst` has room for `count` elements.
    #[allow(clippy::too_many_arguments)] // one call's place, in parts
    unsafe fn put(
        &self,
        out: Out,
        j: usize,
        piece: &Piece,
        first: usize,
        count: usize,
        dst: *mut u8,
        around: bool,
    ) {
        let rows = count / self.row_elements.max(1);
        match out {
            Out::Values { target, fill, .. } => {
                let source = self.sources[j];
                let (src, bit) = at_value(piece, source, first * self.row_elements);
                // SAFETY: the piece's values from row `first` (caller's
                // contract), and room at `dst`.
                unsafe {
                    match (piece.runs, around && as_is(source, target)) {
                        (Some(runs), _) => {
                            self.decode(&runs, piece, source, target, first, rows, dst)
                        }
                        (None, true) => uncached::copy(src, dst, count * source.width()),
                        (None, false) => convert::convert(source, src, bit, target, dst, count),
                    }
                };
                if let Some(value) = fill {
                    for map in piece.maps.iter().filter(|m| !m.rows) {
                        // SAFETY: the map's rows `first..first + rows`,
                        // whose entries cover the values just written.
                        unsafe {
                            nulls::fill(dst, target.width(), &value, &map.slice(first, rows))
                        };
                    }
                }
            }
            Out::Mask { .. } => {
                // SAFETY: room for `count` bytes; the maps as above.
                unsafe {
                    dst.write_bytes(1, count);
                    for map in piece.maps.iter().filter(|m| !m.rows) {
                        nulls::clear(dst, &map.slice(first, rows));
                    }
                }
            }
        }
    }
}

impl Layout<'_> {
    /// Rows `first..first + rows` of a run-end encoded piece decoded at
    /// `dst`: each run's value row converted once, then repeated over the
    /// run's rows in the tensor.
    ///
    /// # Safety
    /// The piece's runs were checked (their arrays alive), its data holds
    /// each run's value row; `dst` has room for `rows` rows of `target`.
    #[allow(clippy::too_many_arguments)] // one call's place, in parts
    unsafe fn decode(
        &self,
        runs: &Runs,
        piece: &Piece,
        source: &DType,
        target: &DType,
        first: usize,
        rows: usize,
        dst: *mut u8,
    ) {
        let re = self.row_elements;
        let row_bytes = re * target.width();
        let (end_all, mut row, mut next) = (first + rows, first, None);
        // One value a row, as it is: each run a typed fill, no call.
        macro_rules! typed {
            ($t:ty) => {{
                let mut at = dst.cast::<$t>();
                while row < end_all {
                    // SAFETY: as below.
                    let (k, end) = unsafe {
                        match next {
                            None => runs.run_of(row, end_all),
                            Some(k) => (k, runs.end_row(k, end_all)),
                        }
                    };
                    // SAFETY: value `k` of the piece, written over the
                    // run's rows: all inside `dst`.
                    unsafe {
                        let v = piece.data.cast::<$t>().add(k).read_unaligned();
                        for _ in row..end {
                            at.write_unaligned(v);
                            at = at.add(1);
                        }
                    }
                    (row, next) = (end, Some(k + 1));
                }
                return;
            }};
        }
        if re == 1 && as_is(source, target) {
            match row_bytes {
                1 => typed!(u8),
                2 => typed!(u16),
                4 => typed!(u32),
                8 => typed!(u64),
                _ => {}
            }
        }
        while row < end_all {
            // SAFETY: the checked runs (caller's contract); the run after
            // one that ends before the last row exists.
            let (k, end) = unsafe {
                match next {
                    None => runs.run_of(row, end_all),
                    Some(k) => (k, runs.end_row(k, end_all)),
                }
            };
            let (src, bit) = at_value(piece, source, k * re);
            // SAFETY: value row `k` of the piece, converted into the run's
            // first row, then repeated over the rest: all inside `dst`.
            unsafe {
                let at = dst.add((row - first) * row_bytes);
                convert::convert(source, src, bit, target, at, re);
                repeat(at, at.add(row_bytes), row_bytes, end - row - 1);
            }
            (row, next) = (end, Some(k + 1));
        }
    }
}

/// Picks a gather reads ahead of the one it copies: random reads wait on
/// memory, so several are kept in flight.
const GATHER_AHEAD: usize = 16;

/// Copies one `T` a row for the output rows `rows`: row `i`'s from
/// `src(i)` to `dst + i * step` elements (the rows of one column in its
/// place in a matrix), each source read prefetched [`GATHER_AHEAD`] picks
/// ahead.
///
/// # Safety
/// Each `src(i)` is readable for a `T`; `dst` has room at every place
/// written; the two never overlap.
#[inline(always)]
unsafe fn gather<T: Copy>(
    rows: Range<usize>,
    src: impl Fn(usize) -> *const u8,
    dst: *mut u8,
    step: usize,
) {
    let end = rows.end;
    for i in rows {
        if i + GATHER_AHEAD < end {
            prefetch(src(i + GATHER_AHEAD));
        }
        // SAFETY: the caller's contract, for row `i`.
        unsafe {
            let value = src(i).cast::<T>().read_unaligned();
            dst.cast::<T>().add(i * step).write_unaligned(value);
        }
    }
}

/// Asks the CPU to bring the line at `at` into the cache (a hint: no
/// fault, no effect on the result).
#[inline(always)]
fn prefetch(at: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: a prefetch never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = at;
}

/// Whether values of `source` land in `target` byte for byte (the same
/// dtype, a byte or more each).
fn as_is(source: &DType, target: &DType) -> bool {
    source == target && !source.is_bit_packed()
}

/// The address of value `index` of a piece of `dtype`, and for a
/// bit-packed boolean the bit in that byte.
fn at_value(piece: &Piece, dtype: &DType, index: usize) -> (*const u8, usize) {
    let data = piece.data.cast::<u8>().cast_const();
    match dtype.is_bit_packed() {
        true => {
            let bit = piece.bit_offset + index;
            (data.wrapping_add(bit / 8), bit % 8)
        }
        false => (data.wrapping_add(index * dtype.width()), 0),
    }
}

/// Each chunk's first row, then the total.
fn starts(rows: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut starts = vec![0];
    for r in rows {
        starts.push(starts.last().copied().unwrap_or(0) + r);
    }
    starts
}
