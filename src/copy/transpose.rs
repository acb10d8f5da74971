//! Columns into a row-major matrix, and back: cache-blocked transposes.
//!
//! A strided scatter of whole columns (element `i` of column `j` to
//! `dst[i * columns + j]`) touches a new cache line for every element once
//! the matrix outgrows the cache. Here the matrix is written in tiles of
//! [`BLOCK_ROWS`] rows by up to [`GROUP`] columns: each column's slice of
//! the tile is read sequentially (from the column itself, or from a
//! scratch buffer it was converted into: a few streams, which prefetchers
//! follow), and each row's part of the tile is written at once (for 8-byte
//! elements, a whole cache line), so every line of the matrix is written
//! once, whole, whatever the number of columns.

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

/// Columns of one tile: 8 of 8 bytes fill a cache line.
const GROUP: usize = 8;

/// Writes a `rows x columns` matrix of `width`-byte elements row-major at
/// `dst` (row `i`, column `j` at `dst + (i * columns + j) * width`).
/// `column(j, first, n, scratch)` returns where column `j`'s elements
/// `first..first + n` lie contiguously: its own memory, or `scratch` (room
/// for [`BLOCK_ROWS`] elements) after writing them there.
///
/// # Safety
/// `dst` has room for the matrix; `column` returns `n` readable elements.
pub unsafe fn rows(
    columns: usize,
    rows: usize,
    width: usize,
    dst: *mut u8,
    mut column: impl FnMut(usize, usize, usize, *mut u8) -> *const u8,
) {
    if rows == 0 || columns == 0 {
        // Nothing to write (and no block to count: a matrix without
        // columns may claim any number of rows).
        return;
    }
    // 8 bytes: the widest element; a slice for each column of a group.
    let mut scratch = vec![0u64; BLOCK_ROWS * GROUP];
    let mut slices = [std::ptr::null::<u8>(); GROUP];
    let row_bytes = columns * width;
    let mut first = 0;
    while first < rows {
        let n = BLOCK_ROWS.min(rows - first);
        for group in (0..columns).step_by(GROUP) {
            let k = GROUP.min(columns - group);
            for (g, slice) in slices[..k].iter_mut().enumerate() {
                // SAFETY: slot `g` of the scratch, `BLOCK_ROWS` elements.
                let own = unsafe { scratch.as_mut_ptr().add(g * BLOCK_ROWS) }.cast();
                *slice = column(group + g, first, n, own);
            }
            // SAFETY: the tile's rows `first..first + n`, columns `group..
            // group + k`, are inside the matrix (caller's contract); each
            // slice holds `n` elements.
            unsafe {
                let out = dst.add(first * row_bytes + group * width);
                tile(&slices[..k], width, n, out, row_bytes);
            }
        }
        first += n;
    }
}

/// Writes `n` rows of `slices.len()` (at most [`GROUP`]) elements, one row
/// every `stride` bytes from `dst`, element `j` of row `i` from
/// `slices[j][i]`.
///
/// # Safety
/// Each slice holds `n` elements of `width` bytes; each row's elements lie
/// in the destination.
unsafe fn tile(slices: &[*const u8], width: usize, n: usize, dst: *mut u8, stride: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { monomorphic!(width, slices.len(), tile_typed(slices, n, dst, stride)) }
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
/// column_stride) * width` (strides in elements, any sign), one after
/// another at `dst` (column-major): the reverse of [`rows`], in the same
/// tiles, so that each row's part of a tile is read at once (a cache line
/// of a row-major source) and each column's slice written sequentially.
///
/// # Safety
/// Every element the strides address lies in the source's memory; `dst`
/// has room for `rows * columns` elements.
pub unsafe fn columns(
    src: *const u8,
    (rows, columns): (usize, usize),
    (row_stride, column_stride): (isize, isize),
    width: usize,
    dst: *mut u8,
) {
    if rows == 0 || columns == 0 {
        return; // as in `rows`
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
                // `(group + g) * rows + first`, inside `dst`.
                *out = unsafe { dst.add(((group + g) * rows + first) * width) };
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
    // SAFETY: forwarded from the caller.
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
            rows(
                0,
                usize::MAX,
                8,
                out.as_mut_ptr(),
                |_, _, _, _| unreachable!(),
            );
            columns(
                std::ptr::null(),
                (usize::MAX, 0),
                (1, 1),
                8,
                out.as_mut_ptr(),
            );
            columns(
                std::ptr::null(),
                (0, usize::MAX),
                (1, 1),
                8,
                out.as_mut_ptr(),
            );
        }
        assert_eq!(out, [7]);
    }

    #[test]
    fn every_element_lands_at_its_row_and_column() {
        // Sizes around the block: one block, several, a ragged last one.
        // Two blocks and a ragged end (513 rows); groups of 8 columns and a
        // remainder (11); under Miri too.
        for (columns, nrows) in [(1, 5), (11, 16), (2, 513), (40, 33), (2, 0)] {
            for width in [1usize, 2, 4, 8] {
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
                    rows(
                        columns,
                        nrows,
                        width,
                        out.as_mut_ptr(),
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
                        back.as_mut_ptr(),
                    );
                }
                assert_eq!(back, cols.concat(), "{columns}x{nrows} width {width}");
                if nrows > 0 {
                    let last = out.as_ptr().wrapping_add((nrows - 1) * columns * width);
                    // SAFETY: as above, from the last row up.
                    unsafe {
                        let c = columns as isize;
                        columns_of(last, (nrows, columns), (-c, 1), width, back.as_mut_ptr());
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
