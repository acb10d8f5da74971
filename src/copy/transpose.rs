//! Columns into a row-major matrix, and back: cache-blocked transposes.
//!
//! A strided scatter of whole columns (element `i` of column `j` to
//! `dst[i * columns + j]`) touches a new cache line for every element once
//! the matrix outgrows the cache. Here the matrix is written in tiles of
//! [`BLOCK_ROWS`] rows (staged ones: [`stage_rows`]) by up to [`GROUP`]
//! columns: each column's slice of the tile is read sequentially (from the
//! column itself, or from a scratch buffer it was converted into: a few
//! streams, which prefetchers follow), and each row's part of the tile is
//! written at once (for 8-byte elements, a whole cache line), so every line
//! of the matrix is written once, whole, whatever the number of columns.
//!
//! Rows wider than a tile are staged: a block's tiles are written into a
//! buffer that stays in L2 across them, and the block's whole rows copied
//! out in one run ([`row_major`]); rows too wide for that are written directly,
//! the lines a few rows on prefetched. A matrix larger than the cache
//! holds bypasses it ([`uncached`]): the staged blocks are copied out, and
//! rows whose tiles write whole lines stored, with non-temporal stores.
//!
//! The tiles whose rows are a whole cache line (8 columns of 8 bytes, 16
//! of 4) are transposed in AVX2 registers where the CPU has them (checked
//! at run time): 4x4 blocks of 8-byte and 8x8 blocks of 4-byte elements,
//! a load per column slice and a store per row, instead of an element at
//! a time.

use super::uncached;

/// Calls `$f::<W, C>(args)` with `W` the element width (1, 2, 4 or 8
/// bytes) and `C` the column count of a group (1 to 8), both constants, so
/// that each tile's rows compile to straight-line loads and stores.
macro_rules! monomorphic {
    ($width:expr, $count:expr, $f:ident $args:tt) => {
        monomorphic!(@width $width, $count, $f $args; 1 2 4 8)
    };
    (@width $width:expr, $count:expr, $f:ident $args:tt; $($w:literal)*) => {
        match $width {
            $($w => monomorphic!(@count $count, $f $args; $w; 1 2 3 4 5 6 7 8),)*
            _ => unreachable!("element widths are 1, 2, 4 or 8 bytes"),
        }
    };
    (@count $count:expr, $f:ident $args:tt; $w:literal; $($c:literal)*) => {
        match $count {
            $($c => monomorphic!(@call $f, $w, $c, $args),)*
            _ => unreachable!("a group has 1 to 8 columns"),
        }
    };
    (@call $f:ident, $w:literal, $c:literal, ($($arg:expr),*)) => {
        $f::<$w, $c>($($arg),*)
    };
}

/// Rows of one tile: each column's slice is 512 elements (4 KiB of 8-byte
/// ones, a page), and a tile's rows are 512 lines.
pub const BLOCK_ROWS: usize = 512;

/// Columns of one tile of [`columns`]: 8 of 8 bytes fill a cache line.
const GROUP: usize = 8;

/// Columns of one tile of [`row_major`] for `width`-byte elements: a cache
/// line of 4- and 8-byte ones (16 and 8), 8 of narrower ones.
fn group_of(width: usize) -> usize {
    match width {
        4 => 16,
        _ => GROUP,
    }
}

/// The most columns a tile of [`row_major`] has.
const MAX_GROUP: usize = 16;

/// The most bytes of a block of whole rows that [`row_major`] writes into a
/// staging buffer before copying it out in one run: within a core's L2
/// (1 MiB on the machine measured).
const STAGE_MAX: usize = 1 << 20;

/// The bytes of staged rows a block of [`row_major`] aims at ([`stage_rows`]).
const STAGE_BYTES: usize = 768 << 10;

/// The most rows of a staged block: 16 KiB of a float64 column.
const STAGE_ROWS_MAX: usize = 4 * BLOCK_ROWS;

/// Rows of a staged block of rows of `row_bytes` (at most
/// [`STAGED_ROW_MAX`]): as many as [`STAGE_BYTES`] holds, a multiple of
/// 64, from [`BLOCK_ROWS`] (whose widest rows fill [`STAGE_MAX`]) to
/// [`STAGE_ROWS_MAX`]. A tile reads a run of its columns' elements as
/// long as a block: longer runs, fewer of them to start (768 to 1,024
/// rows measured best; docs/benchmarks.md, "Measured decisions").
fn stage_rows(row_bytes: usize) -> usize {
    (STAGE_BYTES / row_bytes / 64 * 64).clamp(BLOCK_ROWS, STAGE_ROWS_MAX)
}

/// The widest row (in bytes) that [`row_major`] stages: a block of
/// [`BLOCK_ROWS`] of them fills [`STAGE_MAX`]. Wider rows are written
/// directly (and their lines prefetched).
const STAGED_ROW_MAX: usize = STAGE_MAX / BLOCK_ROWS;

/// Writes a `rows x columns` matrix of `width`-byte elements row-major at
/// `dst` (row `i`, column `j` at `dst + (i * columns + j) * width`),
/// around the cache where `around` ([`uncached`]: the staged blocks copied
/// out with non-temporal stores, and rows written directly, where each
/// tile's part of a row is a whole line, stored so by the AVX2 tiles).
/// `column(j, first, n, scratch)` returns where column `j`'s elements
/// `first..first + n` lie contiguously: its own memory, or `scratch` (room
/// for `n` elements) after writing them there.
///
/// # Safety
/// `dst` has room for the matrix; `column` returns `n` readable elements.
pub unsafe fn row_major(
    columns: usize,
    rows: usize,
    width: usize,
    dst: *mut u8,
    around: bool,
    mut column: impl FnMut(usize, usize, usize, *mut u8) -> *const u8,
) {
    if rows == 0 || columns == 0 {
        // Nothing to write (and no block to count: a matrix without
        // columns may claim any number of rows).
        return;
    }
    let group_columns = group_of(width);
    let row_bytes = columns * width;
    // Rows wider than a tile are written a tile's columns at a time: the
    // block's rows are staged where they stay in L2 across its tiles, then
    // copied out whole (faster than direct writes, whose lines each tile
    // half-writes; with blocks of fewer rows, as 1,000 columns would need,
    // the tiles' per-column cost outweighs it, so wider rows are written
    // directly; docs/benchmarks.md, "Measured decisions").
    let staged = columns > group_columns && row_bytes <= STAGED_ROW_MAX;
    let block_rows = match staged {
        true => stage_rows(row_bytes).min(rows),
        false => BLOCK_ROWS.min(rows),
    };
    let mut stage = match staged {
        true => vec![0u8; block_rows * row_bytes],
        false => Vec::new(),
    };
    // A slot of a block's elements for each column of a group: 64 bytes a
    // row of the tile, whatever the width (`group_of`).
    let mut scratch = vec![0u64; block_rows * 8];
    let mut slices = [std::ptr::null::<u8>(); MAX_GROUP];
    let writes = Writes {
        // The stage is read again at once: through the cache.
        stream: around && !staged,
        lines_ahead: row_bytes > STAGED_ROW_MAX,
        sources_ahead: staged && !around,
    };
    let mut first = 0;
    while first < rows {
        let n = block_rows.min(rows - first);
        // SAFETY: row `first` is inside the matrix (caller's contract).
        let block = unsafe { dst.add(first * row_bytes) };
        let at = match staged {
            true => stage.as_mut_ptr(),
            false => block,
        };
        for group in (0..columns).step_by(group_columns) {
            let k = group_columns.min(columns - group);
            for (g, slice) in slices[..k].iter_mut().enumerate() {
                // SAFETY: slot `g` of the scratch, `block_rows` elements
                // of `width` bytes (`g * width < 64`).
                let own = unsafe {
                    scratch
                        .as_mut_ptr()
                        .cast::<u8>()
                        .add(g * block_rows * width)
                };
                *slice = column(group + g, first, n, own);
            }
            // SAFETY: the tile's rows `first..first + n`, columns `group..
            // group + k`, are inside the matrix (caller's contract) or the
            // stage (`n` rows of `row_bytes`); each slice holds `n`
            // elements.
            unsafe {
                tile(
                    &slices[..k],
                    width,
                    n,
                    at.add(group * width),
                    row_bytes,
                    writes,
                )
            };
        }
        if staged {
            // SAFETY: the block's `n` whole rows, written to the stage
            // above, go to their place in the matrix; distinct buffers.
            unsafe {
                match around {
                    true => uncached::copy(at, block, n * row_bytes),
                    false => std::ptr::copy_nonoverlapping(at, block, n * row_bytes),
                }
            };
        }
        first += n;
    }
    if around {
        // The tiles' non-temporal stores, ordered before the caller
        // reports the rows written.
        uncached::fence();
    }
}

/// How the tiles of one matrix write its rows: decided once by [`row_major`]
/// (each choice's measurement: docs/benchmarks.md, "Measured decisions").
#[derive(Clone, Copy)]
struct Writes {
    /// Non-temporal stores, where the AVX2 tiles' rows are whole lines
    /// (each 64 bytes starting a line): rows written directly into a
    /// matrix that bypasses the cache. A fence follows ([`uncached`]).
    stream: bool,
    /// Prefetch the lines a few rows on before writing them: rows wider
    /// than a stage written through the cache, each tile's part a line on
    /// a page of its own, which no hardware prefetcher fetches ahead (on
    /// staged rows, already in L2, it only costs).
    lines_ahead: bool,
    /// Prefetch each float64 source column 8 lines on: staged rows read
    /// a stream per column, more over a block than the hardware
    /// prefetchers follow; not where the block is copied out around the
    /// cache nor on unstaged rows, where it measured slower.
    sources_ahead: bool,
}

/// Writes `n` rows of `slices.len()` (at most [`MAX_GROUP`]) elements,
/// one row every `stride` bytes from `dst`, element `j` of row `i` from
/// `slices[j][i]`, as `writes` says.
///
/// # Safety
/// Each slice holds `n` elements of `width` bytes; each row's elements lie
/// in the destination.
unsafe fn tile(
    slices: &[*const u8],
    width: usize,
    n: usize,
    dst: *mut u8,
    stride: usize,
    writes: Writes,
) {
    // Rows the registers wrote: the rest go element by element.
    #[cfg(target_arch = "x86_64")]
    let done = {
        // Every row's part a whole line: 64 bytes (the AVX2 tiles'), each
        // starting one.
        let lines = writes.stream && (dst as usize) % 64 == 0 && stride % 64 == 0;
        // Lines written whole around the cache are not read first.
        let w = Writes {
            lines_ahead: writes.lines_ahead && !lines,
            ..writes
        };
        // SAFETY: forwarded from the caller; AVX2 checked; streamed rows
        // are whole lines.
        unsafe {
            match (width, slices.len(), lines) {
                (8, 8, false) if x86::avx2() => x86::tile_8x8::<false>(slices, n, dst, stride, w),
                (8, 8, true) if x86::avx2() => x86::tile_8x8::<true>(slices, n, dst, stride, w),
                (4, 16, false) if x86::avx2() => x86::tile_4x16::<false>(slices, n, dst, stride, w),
                (4, 16, true) if x86::avx2() => x86::tile_4x16::<true>(slices, n, dst, stride, w),
                _ => 0,
            }
        }
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = {
        let _ = writes;
        0
    };
    if done == n {
        return;
    }
    // SAFETY: rows `done..n` of the tile, in bounds (caller's contract).
    unsafe {
        let dst = dst.add(done * stride);
        // At most `GROUP` columns a call (a tile of 4-byte elements has 16).
        for (c, part) in slices.chunks(GROUP).enumerate() {
            let mut moved = [std::ptr::null::<u8>(); GROUP];
            for (m, &s) in moved.iter_mut().zip(part) {
                *m = s.add(done * width);
            }
            let (moved, at) = (&moved[..part.len()], dst.add(c * GROUP * width));
            monomorphic!(width, moved.len(), tile_typed(moved, n - done, at, stride));
        }
    }
}

/// The AVX2 tiles.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Writes;

    /// How many rows ahead the tiles prefetch the lines they will write
    /// ([`Writes::lines_ahead`]).
    const AHEAD: usize = 16;

    /// How many elements (8 lines) ahead the 8x8 tile prefetches each
    /// source column ([`Writes::sources_ahead`]).
    const SOURCE_AHEAD: usize = 64;

    /// Asks for the lines of rows `i..i + count` at `stride` from `dst`
    /// (a hint: any address, none dereferenced).
    #[inline(always)]
    fn prefetch(dst: *mut u8, i: usize, count: usize, stride: usize) {
        for r in i..i + count {
            // SAFETY: a prefetch reads nothing and never faults.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(dst.wrapping_add(r * stride).cast::<i8>()) };
        }
    }

    /// Stores one row of a tile, 64 bytes: `halves` at `row` and 32 bytes
    /// on; with non-temporal stores where `STREAM`.
    ///
    /// # Safety
    /// AVX2; `row` has 64 bytes of room, and starts a line where `STREAM`.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn store_row<const STREAM: bool>(row: *mut u8, halves: [__m256i; 2]) {
        // SAFETY: 64 bytes of room (caller's contract); unaligned stores,
        // or aligned ones at a line's start.
        unsafe {
            let (first, second) = (row.cast::<__m256i>(), row.add(32).cast::<__m256i>());
            match STREAM {
                true => {
                    _mm256_stream_si256(first, halves[0]);
                    _mm256_stream_si256(second, halves[1]);
                }
                false => {
                    _mm256_storeu_si256(first, halves[0]);
                    _mm256_storeu_si256(second, halves[1]);
                }
            }
        }
    }

    /// Whether the CPU has AVX2 (not under Miri, which interprets the
    /// scalar path).
    pub fn avx2() -> bool {
        !cfg!(miri) && std::arch::is_x86_feature_detected!("avx2")
    }

    /// Rows of a tile of 8 columns of 8-byte elements, four at a time: the
    /// 4x4 blocks of columns 0-3 and 4-7 transposed in registers, each row
    /// stored as 64 bytes: with non-temporal stores where `STREAM` (each
    /// row's 64 bytes a whole line). Returns the rows written (`n` rounded
    /// down to a multiple of 4).
    ///
    /// # Safety
    /// AVX2; as [`super::tile`] with 8 slices; where `STREAM`, `dst` and
    /// `stride` are multiples of 64.
    #[target_feature(enable = "avx2")]
    pub unsafe fn tile_8x8<const STREAM: bool>(
        slices: &[*const u8],
        n: usize,
        dst: *mut u8,
        stride: usize,
        writes: Writes,
    ) -> usize {
        let s: [*const f64; 8] = std::array::from_fn(|j| slices[j].cast::<f64>());
        let (ahead, sources_ahead) = (writes.lines_ahead, writes.sources_ahead);
        let mut i = 0;
        while i + 4 <= n {
            if ahead && i + AHEAD < n {
                prefetch(dst, i + AHEAD, 4.min(n - i - AHEAD), stride);
            }
            if sources_ahead && i % 8 == 0 && i + SOURCE_AHEAD < n {
                for column in s {
                    // A hint: any address, none dereferenced.
                    let at = column.wrapping_add(i + SOURCE_AHEAD);
                    _mm_prefetch::<_MM_HINT_T0>(at.cast::<i8>());
                }
            }
            // SAFETY: elements `i..i + 4` of each slice, rows `i..i + 4` of
            // the tile (caller's contract); unaligned loads and stores.
            unsafe {
                let c: [__m256d; 8] = std::array::from_fn(|j| _mm256_loadu_pd(s[j].add(i)));
                let half = |c: &[__m256d]| {
                    let t0 = _mm256_unpacklo_pd(c[0], c[1]);
                    let t1 = _mm256_unpackhi_pd(c[0], c[1]);
                    let t2 = _mm256_unpacklo_pd(c[2], c[3]);
                    let t3 = _mm256_unpackhi_pd(c[2], c[3]);
                    [
                        _mm256_permute2f128_pd(t0, t2, 0x20),
                        _mm256_permute2f128_pd(t1, t3, 0x20),
                        _mm256_permute2f128_pd(t0, t2, 0x31),
                        _mm256_permute2f128_pd(t1, t3, 0x31),
                    ]
                };
                let (left, right) = (half(&c[..4]), half(&c[4..]));
                for r in 0..4 {
                    let halves = [left[r], right[r]].map(|h| _mm256_castpd_si256(h));
                    store_row::<STREAM>(dst.add((i + r) * stride), halves);
                }
            }
            i += 4;
        }
        i
    }

    /// Rows of a tile of 16 columns of 4-byte elements, eight at a time:
    /// the 8x8 blocks of columns 0-7 and 8-15 transposed in registers,
    /// each row stored as 64 bytes (as in [`tile_8x8`], non-temporal where
    /// `STREAM`). Returns the rows written (`n` rounded down to a multiple
    /// of 8).
    ///
    /// # Safety
    /// As [`tile_8x8`], with 16 slices.
    #[target_feature(enable = "avx2")]
    pub unsafe fn tile_4x16<const STREAM: bool>(
        slices: &[*const u8],
        n: usize,
        dst: *mut u8,
        stride: usize,
        writes: Writes,
    ) -> usize {
        let s: [*const f32; 16] = std::array::from_fn(|j| slices[j].cast::<f32>());
        let ahead = writes.lines_ahead;
        let mut i = 0;
        while i + 8 <= n {
            if ahead && i + AHEAD < n {
                prefetch(dst, i + AHEAD, 8.min(n - i - AHEAD), stride);
            }
            // SAFETY: as in `tile_8x8`, 8 rows.
            unsafe {
                let block = |c: [__m256; 8]| {
                    let t0 = _mm256_unpacklo_ps(c[0], c[1]);
                    let t1 = _mm256_unpackhi_ps(c[0], c[1]);
                    let t2 = _mm256_unpacklo_ps(c[2], c[3]);
                    let t3 = _mm256_unpackhi_ps(c[2], c[3]);
                    let t4 = _mm256_unpacklo_ps(c[4], c[5]);
                    let t5 = _mm256_unpackhi_ps(c[4], c[5]);
                    let t6 = _mm256_unpacklo_ps(c[6], c[7]);
                    let t7 = _mm256_unpackhi_ps(c[6], c[7]);
                    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                    [
                        _mm256_permute2f128_ps(u0, u4, 0x20),
                        _mm256_permute2f128_ps(u1, u5, 0x20),
                        _mm256_permute2f128_ps(u2, u6, 0x20),
                        _mm256_permute2f128_ps(u3, u7, 0x20),
                        _mm256_permute2f128_ps(u0, u4, 0x31),
                        _mm256_permute2f128_ps(u1, u5, 0x31),
                        _mm256_permute2f128_ps(u2, u6, 0x31),
                        _mm256_permute2f128_ps(u3, u7, 0x31),
                    ]
                };
                let left = block(std::array::from_fn(|j| _mm256_loadu_ps(s[j].add(i))));
                let right = block(std::array::from_fn(|j| _mm256_loadu_ps(s[8 + j].add(i))));
                for r in 0..8 {
                    let halves = [left[r], right[r]].map(|h| _mm256_castps_si256(h));
                    store_row::<STREAM>(dst.add((i + r) * stride), halves);
                }
            }
            i += 8;
        }
        i
    }
}

/// [`tile`] for `C` columns of `W` bytes: a row's part is a constant size,
/// so that the compiler unrolls (and vectorizes) it; one store per row.
///
/// # Safety
/// As [`tile`].
#[inline(always)]
unsafe fn tile_typed<const W: usize, const C: usize>(
    slices: &[*const u8],
    n: usize,
    dst: *mut u8,
    stride: usize,
) {
    let slices: &[*const u8; C] = slices.try_into().expect("C slices");
    for i in 0..n {
        let row: [[u8; W]; C] = std::array::from_fn(|j| {
            // SAFETY: element `i` of slice `j`, in bounds (caller's contract).
            unsafe { slices[j].add(i * W).cast::<[u8; W]>().read_unaligned() }
        });
        // SAFETY: row `i`'s part of the tile, in bounds (caller's contract).
        unsafe {
            dst.add(i * stride)
                .cast::<[[u8; W]; C]>()
                .write_unaligned(row)
        };
    }
}

/// Writes the columns of a `rows x columns` matrix of `width`-byte
/// elements, element `(i, j)` at `src + (i * row_stride + j *
/// column_stride) * width` (strides in elements, any sign), column `j` at
/// `dst + j * pitch * width` (column-major, `pitch >= rows` elements from
/// one column to the next: a block of rows of a taller matrix): the
/// reverse of [`row_major`], in the same tiles, so that each row's part of a
/// tile is read at once (a cache line of a row-major source) and each
/// column's slice written sequentially.
///
/// # Safety
/// Every element the strides address lies in the source's memory; `dst`
/// has room for `columns` columns `pitch` elements apart.
pub unsafe fn columns(
    src: *const u8,
    (rows, columns): (usize, usize),
    (row_stride, column_stride): (isize, isize),
    width: usize,
    (dst, pitch): (*mut u8, usize),
) {
    if rows == 0 || columns == 0 {
        return; // as in `row_major`
    }
    let w = width as isize;
    // Wrapping: strides may be negative, and a dimension of extent 1 may
    // have any stride, whose products are never used; the addresses of the
    // elements read lie in the source (caller's contract), so their
    // offsets are exact.
    let strides = (row_stride.wrapping_mul(w), column_stride.wrapping_mul(w));
    let mut outs = [std::ptr::null_mut::<u8>(); GROUP];
    let mut first = 0;
    while first < rows {
        let n = BLOCK_ROWS.min(rows - first);
        for group in (0..columns).step_by(GROUP) {
            let k = GROUP.min(columns - group);
            for (g, out) in outs[..k].iter_mut().enumerate() {
                // SAFETY: column `group + g`'s rows `first..` go at
                // `(group + g) * pitch + first`, inside `dst`.
                *out = unsafe { dst.add(((group + g) * pitch + first) * width) };
            }
            let offset = (first as isize)
                .wrapping_mul(strides.0)
                .wrapping_add((group as isize).wrapping_mul(strides.1));
            // SAFETY: the tile's elements lie in the source (caller's
            // contract); each out has room for `n` elements.
            unsafe { untile(src.wrapping_offset(offset), strides, width, n, &outs[..k]) };
        }
        first += n;
    }
}

/// Reads `n` rows of `outs.len()` (at most [`GROUP`]) elements, element
/// `(i, j)` at `src + i * strides.0 + j * strides.1` (bytes), into
/// `outs[j][i]`.
///
/// # Safety
/// The elements are readable; each out has room for `n` elements.
unsafe fn untile(
    src: *const u8,
    strides: (isize, isize),
    width: usize,
    n: usize,
    outs: &[*mut u8],
) {
    // SAFETY: `untile`'s caller promises it: the elements are readable; each out has room for
    // `n` elements.
    unsafe { monomorphic!(width, outs.len(), untile_typed(src, strides, n, outs)) }
}

/// [`untile`] for `C` columns of `W` bytes.
///
/// # Safety
/// As [`untile`].
#[inline(always)]
unsafe fn untile_typed<const W: usize, const C: usize>(
    src: *const u8,
    (row, column): (isize, isize),
    n: usize,
    outs: &[*mut u8],
) {
    let outs: &[*mut u8; C] = outs.try_into().expect("C outs");
    for i in 0..n {
        let at = src.wrapping_offset((i as isize).wrapping_mul(row));
        for (j, &out) in outs.iter().enumerate() {
            // SAFETY: element `(i, j)` lies in the source, element `i` of
            // out `j` in its room (caller's contract); any alignment.
            unsafe {
                let v = at
                    .wrapping_offset((j as isize).wrapping_mul(column))
                    .cast::<[u8; W]>()
                    .read_unaligned();
                out.add(i * W).cast::<[u8; W]>().write_unaligned(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::columns as columns_of;
    use super::*;

    #[test]
    fn a_matrix_without_columns_or_rows_writes_nothing_whatever_it_claims() {
        // A tensor [i64::MAX, 0] holds no element: the kernels must not
        // count its rows block by block (2^54 blocks).
        let mut out = [7u8; 1];
        // SAFETY: nothing is read or written.
        unsafe {
            row_major(
                0,
                usize::MAX,
                8,
                out.as_mut_ptr(),
                false,
                |_, _, _, _| unreachable!(),
            );
            columns(
                std::ptr::null(),
                (usize::MAX, 0),
                (1, 1),
                8,
                (out.as_mut_ptr(), usize::MAX),
            );
            columns(
                std::ptr::null(),
                (0, usize::MAX),
                (1, 1),
                8,
                (out.as_mut_ptr(), 0),
            );
        }
        assert_eq!(out, [7]);
    }

    /// `rows` of `columns` columns of `nrows` rows of `width` bytes (column
    /// `j`'s row `i` holds bytes from `i * 64 + j`), `around` the cache or
    /// not, into a buffer whose matrix starts `offset` bytes after a line.
    fn rows_at(shape: (usize, usize), width: usize, around: bool, offset: usize) -> Vec<u8> {
        let (columns, nrows) = shape;
        let cols: Vec<Vec<u8>> = (0..columns)
            .map(|j| {
                (0..nrows * width)
                    .map(|b| ((b / width) * 64 + j + b % width * 3) as u8)
                    .collect()
            })
            .collect();
        let bytes = columns * nrows * width;
        let mut buffer = vec![0u8; bytes + 128];
        let start = buffer.as_ptr().align_offset(64) + offset;
        // SAFETY: `buffer` holds the matrix from `start`; each column its
        // rows.
        unsafe {
            row_major(
                columns,
                nrows,
                width,
                buffer.as_mut_ptr().add(start),
                around,
                |j, first, _, _| cols[j].as_ptr().add(first * width),
            )
        };
        buffer[start..start + bytes].to_vec()
    }

    #[test]
    fn around_the_cache_every_element_lands_where_it_does_through_it() {
        // Rows of one tile's whole line (8 float64, 16 float32), rows
        // staged (40 columns), rows wider than a stage (264 x 8 bytes and
        // 528 x 4 bytes: 33 lines each), and one float64 more (not whole
        // lines): each at a line's start and 8 bytes after it, over two
        // blocks and a ragged end. Under Miri (which runs no AVX2 tiles)
        // the small ones.
        let shapes: &[(usize, usize, usize)] = match cfg!(miri) {
            true => &[(8, 8, 9), (16, 4, 9), (40, 8, 5)],
            false => &[
                (8, 8, 1100),
                (16, 4, 1100),
                (40, 8, 1100),
                (264, 8, 1030),
                (528, 4, 1030),
                (265, 8, 600),
            ],
        };
        for &(columns, width, nrows) in shapes {
            for offset in [0, 8] {
                let through = rows_at((columns, nrows), width, false, offset);
                let around = rows_at((columns, nrows), width, true, offset);
                let at = format!("{columns}x{nrows} of {width} bytes, {offset} past a line");
                assert!(around == through, "{at}");
                // And the matrix itself: element (i, j) from column j.
                let last = ((nrows - 1) * columns + columns - 1) * width;
                let expected = ((nrows - 1) * 64 + columns - 1) as u8;
                assert_eq!(through[last], expected, "{at}");
            }
        }
    }

    #[test]
    fn every_element_lands_at_its_row_and_column() {
        // Sizes around the block: one block, several, a ragged last one.
        // Two blocks and a ragged end (513 rows); groups of 8 columns and a
        // remainder (11). Under Miri, which interprets every element's
        // check, the small ones and one of two blocks and a ragged end.
        let sizes: &[(usize, usize)] = match cfg!(miri) {
            true => &[(1, 5), (11, 16), (2, 0), (3, 515)],
            false => &[
                (1, 5),
                (11, 16),
                (2, 513),
                (40, 33),
                (2, 0),
                (17, 515),
                (8, 1030),
            ],
        };
        // Under Miri, the narrowest and the widest element, and 4 bytes
        // (tiles of 16 columns, the others' are 8): one generic body over
        // the width, 2 bytes taking 1's path.
        let widths: &[usize] = match cfg!(miri) {
            true => &[1, 4, 8],
            false => &[1, 2, 4, 8],
        };
        for &(columns, nrows) in sizes {
            for &width in widths {
                // Column j, row i holds the value i * 64 + j (truncated to
                // the width: still distinct in its low byte pattern).
                let cols: Vec<Vec<u8>> = (0..columns)
                    .map(|j| {
                        (0..nrows)
                            .flat_map(|i| {
                                ((i * 64 + j) as u64).to_le_bytes().into_iter().take(width)
                            })
                            .collect()
                    })
                    .collect();
                let mut out = vec![0u8; columns * nrows * width];
                // SAFETY: `out` holds the matrix; each column its rows.
                unsafe {
                    row_major(
                        columns,
                        nrows,
                        width,
                        out.as_mut_ptr(),
                        false,
                        |j, first, n, scratch| {
                            // Odd columns through the scratch, even ones direct.
                            let src = cols[j].as_ptr().add(first * width);
                            if j % 2 == 1 {
                                scratch.copy_from_nonoverlapping(src, n * width);
                                scratch
                            } else {
                                src
                            }
                        },
                    )
                };
                for i in 0..nrows {
                    for j in 0..columns {
                        let at = (i * columns + j) * width;
                        assert_eq!(
                            out[at..at + width],
                            ((i * 64 + j) as u64).to_le_bytes()[..width],
                            "row {i} column {j} width {width} of {columns}x{nrows}"
                        );
                    }
                }
                // And back: the row-major matrix's columns, read forwards
                // and, through negative strides, backwards.
                let mut back = vec![0u8; out.len()];
                // SAFETY: the strides address `out`'s elements only.
                unsafe {
                    let c = columns as isize;
                    columns_of(
                        out.as_ptr(),
                        (nrows, columns),
                        (c, 1),
                        width,
                        (back.as_mut_ptr(), nrows),
                    );
                }
                assert_eq!(back, cols.concat(), "{columns}x{nrows} width {width}");
                if nrows > 0 {
                    let last = out.as_ptr().wrapping_add((nrows - 1) * columns * width);
                    // SAFETY: as above, from the last row up.
                    unsafe {
                        let c = columns as isize;
                        columns_of(
                            last,
                            (nrows, columns),
                            (-c, 1),
                            width,
                            (back.as_mut_ptr(), nrows),
                        );
                    }
                    for j in 0..columns {
                        let reversed: Vec<u8> =
                            cols[j].chunks(width).rev().flatten().copied().collect();
                        assert_eq!(back[j * nrows * width..(j + 1) * nrows * width], reversed);
                    }
                }
            }
        }
    }
}
