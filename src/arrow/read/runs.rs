//! Run-end encoded (`+r`) and null (`n`) arrays. Their rows are not in
//! memory the way a tensor lies (a run's value is stored once for many
//! rows; a null array stores nothing). A run-end encoded piece read for a
//! copy by row ranges keeps its checked run ends ([`Runs`]) and is
//! decoded by that copy, straight into the tensor; any other (a record
//! batch's column, which a gather may pick rows of; values with nulls; a
//! null array) is decoded here, once, into memory the piece holds: the
//! reader's only copies. The planner never shares such a piece
//! ([`Piece::is_encoded`]): its tensor is always the one copy.

use std::sync::Arc;

use super::{
    Checked, Level, LevelFormat, Location, Mode, NullMap, Piece, dense, format_of, level_range,
    level_structure, locate, values_at,
};
use crate::abi::{ArrowArray, ArrowSchema};
use crate::arrow::read::ColumnType;
use crate::bitmap;
use crate::dtype::{DType, Shown};
use crate::error::{Error, err};
use crate::repeat::repeat;

/// The memory a decoded piece's data and bitmap point into, held by the
/// piece (and its clones) for as long as a copy may read it.
#[derive(Debug)]
pub struct Decoded {
    _values: Vec<u64>,
    _validity: Vec<u8>,
}

/// `words` zeroed 8-byte words, `OUT_OF_MEMORY` (not an abort) where a
/// length from the producer asks for more than can be had.
fn zeroed(bytes: usize, what: &str) -> Result<Vec<u64>, Error> {
    let words = bytes.div_ceil(8);
    let mut v = Vec::new();
    v.try_reserve_exact(words).map_err(|_| {
        err!(
            ARROW_DLPACK_OUT_OF_MEMORY,
            "decoding {what}: allocating {bytes} bytes failed"
        )
    })?;
    v.resize(words, 0);
    Ok(v)
}

/// `n` zeroed bytes, as [`zeroed`].
fn bytes(n: usize, what: &str) -> Result<Vec<u8>, Error> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        err!(
            ARROW_DLPACK_OUT_OF_MEMORY,
            "decoding {what}: allocating {n} bytes failed"
        )
    })?;
    v.resize(n, 0);
    Ok(v)
}

/// Checks the length and offset of a run-end encoded or null array over
/// its logical rows `start..start + count`: the logical index of the
/// first row (`offset + start`); `offset + length` is checked too (a run
/// end must reach it).
fn range(a: &ArrowArray, start: i64, count: i64, what: &str) -> Result<i64, Error> {
    if a.length < 0 || a.offset < 0 {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "{what} array: length {} and offset {} must not be negative",
            a.length,
            a.offset
        ));
    }
    if start.checked_add(count).is_none_or(|end| end > a.length) {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "array.length is {}, the parent needs {count} elements from {start}",
            a.length
        ));
    }
    a.offset
        .checked_add(a.length)
        .and_then(|_| a.offset.checked_add(start))
        .ok_or_else(|| {
            err!(
                ARROW_DLPACK_INVALID_ARROW,
                "array.offset {} + length {} overflows",
                a.offset,
                a.length
            )
        })
}

/// Checks a level without buffers or with `children` children: counts,
/// pointers, no dictionary.
///
/// # Safety
/// `a` is valid for reads.
unsafe fn structure(a: &ArrowArray, format: &[u8], children: i64) -> Result<(), Error> {
    if a.release.is_none() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "array is released (array.release is NULL)"
        ));
    }
    if a.n_buffers != 0 || a.n_children != children || !a.dictionary.is_null() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "array has n_buffers {}, n_children {} and dictionary {}; format '{}' has 0 buffers, {children} children and no dictionary",
            a.n_buffers,
            a.n_children,
            if a.dictionary.is_null() {
                "NULL"
            } else {
                "set"
            },
            Shown(format)
        ));
    }
    // SAFETY: `children` entries when not NULL (the interface's layout).
    if children > 0 && unsafe { super::missing(a.children, children as usize) } {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "children (or one of them) is NULL with n_children {children}"
        ));
    }
    Ok(())
}

/// A null array's rows `start..start + count`: zeros of the placeholder
/// dtype (float32: the planner converts to the dtype asked for), every row
/// null.
///
/// # Safety
/// `array` is valid for reads.
pub(super) unsafe fn read_null(
    array: &ArrowArray,
    column: &ColumnType<'_>,
    (start, count): (i64, i64),
) -> Result<Piece, Error> {
    // SAFETY: `read_null`'s caller promises it: `array` is valid for reads.
    unsafe { structure(array, b"n", 0) }?;
    range(array, start, count, "null")?;
    let rows = count as usize;
    let width = column.values.dtype.width();
    let values = zeroed(rows.saturating_mul(width), "a null array")?;
    let validity = bytes(rows.div_ceil(8), "a null array")?;
    Ok(decoded(rows, 1, values, validity, true))
}

/// A decoded piece of `rows` rows of `row_elements` values each, their
/// values in `values` and, where `nulls`, their validity in `validity`.
fn decoded(
    rows: usize,
    row_elements: usize,
    values: Vec<u64>,
    validity: Vec<u8>,
    nulls: bool,
) -> Piece {
    let elements = rows * row_elements;
    let data = match elements {
        0 => std::ptr::null_mut(),
        _ => values.as_ptr().cast_mut().cast(),
    };
    let maps = match nulls && elements > 0 {
        true => vec![NullMap {
            bitmap: validity.as_ptr().cast(),
            first: 0,
            count: elements,
            per_entry: 1,
            per_row: row_elements,
            level: Level::Depth(0),
            rows: false,
        }],
        false => Vec::new(),
    };
    // The vectors' heap memory does not move with them into the Arc. No
    // element: nothing decoded, nothing to hold (an empty tensor may
    // share the array).
    let decoded = (elements > 0).then(|| {
        Arc::new(Decoded {
            _values: values,
            _validity: validity,
        })
    });
    Piece {
        data,
        bit_offset: 0,
        rows,
        elements,
        maps,
        nulls: 0,
        null_rows: 0,
        null_level: Level::Depth(0),
        offsets: None,
        runs: None,
        decoded,
        _checked: Checked,
    }
}

/// A run-end encoded piece's run ends, for a copy that decodes it
/// straight into the tensor: row `r` of the piece is value row `k` of its
/// data, run `k` the first whose end exceeds `first + r`.
#[derive(Debug, Clone, Copy)]
pub struct Runs {
    /// Run end 0 (entries of `width` bytes, little-endian signed).
    ends: *const u8,
    width: usize,
    /// Runs: each end positive, strictly increasing, the last covering
    /// the piece's rows (checked when read).
    count: usize,
    /// The logical index of the piece's row 0 (the array's offset plus
    /// the first row read).
    first: i64,
}

impl Runs {
    /// Run end `k`.
    ///
    /// # Safety
    /// `k < count`, the ends' array alive.
    #[inline(always)]
    unsafe fn end(&self, k: usize) -> i64 {
        // SAFETY: entry `k` of the run ends (caller's contract), read
        // unaligned.
        unsafe {
            let at = self.ends.add(k * self.width);
            match self.width {
                2 => i64::from(at.cast::<i16>().read_unaligned()),
                4 => i64::from(at.cast::<i32>().read_unaligned()),
                _ => at.cast::<i64>().read_unaligned(),
            }
        }
    }

    /// The run holding the piece's row `row` (a binary search), and the
    /// piece's row after that run's last, at most `limit`.
    ///
    /// # Safety
    /// The ends were checked (increasing, the last covering the piece's
    /// rows) and are alive; `row` is a row of the piece.
    #[inline(always)]
    pub unsafe fn run_of(&self, row: usize, limit: usize) -> (usize, usize) {
        let at = self.first + row as i64;
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            // SAFETY: `mid < count`.
            match unsafe { self.end(mid) } <= at {
                true => lo = mid + 1,
                false => hi = mid,
            }
        }
        // SAFETY: `lo < count`: the last end covers every row (caller's
        // contract).
        unsafe { (lo, self.end_row(lo, limit)) }
    }

    /// The piece's row after run `k`'s last, at most `limit`.
    ///
    /// # Safety
    /// As [`Runs::run_of`]; `k < count`.
    #[inline(always)]
    pub unsafe fn end_row(&self, k: usize, limit: usize) -> usize {
        // SAFETY: the caller's contract.
        let end = unsafe { self.end(k) } - self.first;
        (end.max(0) as usize).min(limit)
    }
}

/// A run-end encoded array's logical rows `start..start + count`: its run
/// ends checked (positive, strictly increasing, the last covering the
/// array), then, where `lazy` and the values hold no null (and are not
/// bits), a piece over the values that the copy decodes straight into the
/// tensor; else each row decoded here, the value of its run, null where
/// that value is null.
///
/// # Safety
/// `array` is valid for reads (the C Data Interface's guarantees, as far
/// as they are trusted); `column` was read from its schema.
pub(super) unsafe fn read_run_end(
    array: &ArrowArray,
    column: &ColumnType<'_>,
    ends_type: &'static DType,
    (start, count): (i64, i64),
    location: Location,
    lazy: bool,
) -> Result<Piece, Error> {
    if !location.is_host_readable() {
        return Err(err!(
            ARROW_DLPACK_UNSUPPORTED_DEVICE,
            "a run-end encoded column on device type {} would need its run ends read: arrow_dlpack never reads device memory",
            location.device.device_type
        ));
    }
    // SAFETY: `read_run_end`'s caller promises it: `array` is valid for reads.
    unsafe { structure(array, b"+r", 2) }?;
    let first = range(array, start, count, "run-end encoded")?;
    if array.null_count > 0 {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "a run-end encoded array's null_count is {}; it must be 0 (its nulls are its values')",
            array.null_count
        ));
    }
    // SAFETY: two non-NULL children (checked), valid (trusted).
    let (ends_array, values_array) = unsafe { (&**array.children, &**array.children.add(1)) };
    // The run ends: one level of integers, no nulls.
    let at = |e| locate(1, e);
    // SAFETY: a valid child (trusted).
    unsafe { level_structure(ends_array, LevelFormat::Dtype(ends_type), 2, 0, false) }
        .map_err(at)?;
    let n_runs = ends_array.length;
    let keep = Mode {
        keep_nulls: true,
        ..Mode::default()
    };
    let covered = level_range(ends_array, 0, n_runs.max(0), 1, location, keep).map_err(at)?;
    if let Some(map) = covered.nulls {
        // SAFETY: the bitmap holds its array's bits (trusted).
        if unsafe { map.nulls() } > 0 {
            return Err(at(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "run ends may not be null"
            )));
        }
    }
    let (ends, _) = values_at(ends_array, ends_type, covered.first, n_runs).map_err(at)?;
    let runs = Runs {
        ends: ends.cast_const().cast::<u8>(),
        width: ends_type.width(),
        count: n_runs as usize,
        first,
    };
    let mut previous = 0;
    for k in 0..runs.count {
        // SAFETY: `count` entries from `ends` (layer 2 checked the range;
        // the buffer's length is trusted).
        let end = unsafe { runs.end(k) };
        if end <= previous {
            return Err(at(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "run end {k} is {end}, after {previous}: run ends must be positive and strictly increasing"
            )));
        }
        previous = end;
    }
    // Checked by `range`.
    let needed = array.offset + array.length;
    if previous < needed {
        return Err(at(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "the last run end is {previous}, the array's offset + length {needed}"
        )));
    }
    // The values: a dense level of at least `count` value rows.
    let values = &column.values;
    // SAFETY: a valid schema with two children (checked by `column_type`).
    let values_schema: &ArrowSchema = unsafe { &**column.schema.children.add(1) };
    // SAFETY: as above; its format was read by `column_type`.
    let format = unsafe { format_of(values_schema) }?;
    let mut maps = Vec::new();
    // SAFETY: a valid child (trusted); value rows `0..count`.
    let (data, bit) = unsafe {
        dense(
            values_array,
            values,
            format,
            false,
            (0, runs.count as i64),
            2,
            location,
            keep,
            &mut maps,
        )
    }
    .map_err(|e| locate(1, e).context(format_args!("run-end encoded values")))?;
    let re = values.row_elements();
    let rows = count as usize;
    let t = values.dtype;
    if lazy && maps.is_empty() && !t.is_bit_packed() && rows > 0 {
        // Decoded by the copy, straight into the tensor.
        return Ok(Piece {
            data,
            bit_offset: 0,
            rows,
            elements: rows * re,
            maps,
            nulls: 0,
            null_rows: 0,
            null_level: Level::Depth(0),
            offsets: None,
            runs: Some(runs),
            decoded: None,
            _checked: Checked,
        });
    }
    let bits_each = if t.is_bit_packed() { 1 } else { 8 * t.width() };
    let elements = rows
        .checked_mul(re)
        .filter(|e| e.checked_mul(bits_each).is_some())
        .ok_or_else(|| {
            err!(
                ARROW_DLPACK_INVALID_ARROW,
                "{rows} rows of {re} values overflow"
            )
        })?;
    let mut out = zeroed((elements * bits_each).div_ceil(8), "run-end encoded values")?;
    // Each value's validity (all maps' bits), where any map may hold a
    // null: one byte a value of the runs.
    let valid: Option<Vec<u8>> = match maps.is_empty() {
        true => None,
        false => {
            let mut v = vec![1u8; runs.count * re];
            for map in &maps {
                for (i, slot) in v.iter_mut().enumerate() {
                    let entry = map.first + i / map.per_entry.max(1);
                    // SAFETY: the map covers `count` value rows of
                    // `per_row` entries (layer 2): `entry` is among them.
                    if !unsafe { bitmap::bit(map.bitmap, entry) } {
                        *slot = 0;
                    }
                }
            }
            Some(v)
        }
    };
    let mut validity = match valid {
        Some(_) => bytes(elements.div_ceil(8), "run-end encoded validity")?,
        None => Vec::new(),
    };
    let dst = out.as_mut_ptr().cast::<u8>();
    let (mut row, mut next) = (0, None);
    while row < rows {
        // SAFETY: the ends were checked above; `row < rows`, and the run
        // after one that ends before the last row exists.
        let (k, end) = unsafe {
            match next {
                None => runs.run_of(row, rows),
                Some(k) => (k, runs.end_row(k, rows)),
            }
        };
        next = Some(k + 1);
        let n = end - row;
        if t.is_bit_packed() {
            for r in 0..n {
                for e in 0..re {
                    // SAFETY: value `k * re + e` lies in the level read;
                    // bit `i` of `out`, which holds `elements` bits.
                    unsafe {
                        let b = bitmap::bit(data.cast_const().cast(), bit + k * re + e);
                        let i = (row + r) * re + e;
                        *dst.add(i / 8) |= u8::from(b) << (i % 8);
                    }
                }
            }
        } else if re * t.width() > 0 {
            let row_bytes = re * t.width();
            // SAFETY: value row `k` (in the level read) to the run's `n`
            // rows from `row`: all inside `out`, which holds
            // `rows * row_bytes` bytes.
            unsafe {
                let src = data.cast_const().cast::<u8>().add(k * row_bytes);
                repeat(src, dst.add(row * row_bytes), row_bytes, n);
            }
        }
        if let Some(valid) = &valid {
            for r in 0..n {
                for e in 0..re {
                    let i = (row + r) * re + e;
                    validity[i / 8] |= valid[k * re + e] << (i % 8);
                }
            }
        }
        row = end;
    }
    let nulls = !validity.is_empty();
    Ok(decoded(rows, re, out, validity, nulls))
}
