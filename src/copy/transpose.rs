//! Columns into a row-major matrix, and back: cache-blocked transposes.
//!
//! A strided scatter of whole columns (element `i` of column `j` to
//! `dst[i * columns + j]`) touches a new cache line for every element once
//! the matrix outgrows the cache. Here the rows are written a block at a
//! time: each column's slice of the block's rows is read sequentially (from
//! the column itself, or from a scratch buffer it was converted into), and
//! the block's rows are then written one after another, each row gathered
//! from the slices, which stay in cache meanwhile: loads from a few hundred
//! lines, stores in order.

/// Elements of all the columns' slices of one block: 256 KiB of 8-byte
/// elements, within L2 with room for the rows written.
const BLOCK_ELEMENTS: usize = 64 << 10;

/// Columns read straight from their memory while the rows are gathered;
/// beyond this, each slice is first copied to the scratch (hardware
/// prefetchers follow a few dozen sequential streams, not hundreds).
const STREAMS: usize = 16;

/// The rows of one block of a table of `columns` columns: at least 16 (so
/// that every column's slice is two cache lines or more), at most 512.
pub fn block_rows(columns: usize) -> usize {
    (BLOCK_ELEMENTS / columns.max(1)).clamp(64, 512)
}

/// Writes a `rows x columns` matrix of `width`-byte elements row-major at
/// `dst` (row `i`, column `j` at `dst + (i * columns + j) * width`).
/// `column(j, first, n, scratch)` returns where column `j`'s elements
/// `first..first + n` lie contiguously: its own memory, or `scratch` (room
/// for [`block_rows`] elements, the column's own) after writing them there.
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
    let block = block_rows(columns);
    // 8 bytes: the widest element.
    let mut scratch = vec![0u64; block * columns];
    let mut slices = vec![std::ptr::null::<u8>(); columns];
    let row_bytes = columns * width;
    let mut first = 0;
    while first < rows {
        let n = block.min(rows - first);
        for (j, slice) in slices.iter_mut().enumerate() {
            // SAFETY: column `j`'s scratch, `block` elements of 8 bytes.
            let own = unsafe { scratch.as_mut_ptr().add(j * block) }.cast::<u8>();
            let mut src = column(j, first, n, own);
            if columns > STREAMS && src != own.cast_const() {
                // More columns than a prefetcher follows streams: each
                // slice is read sequentially into the scratch first.
                // SAFETY: `n` elements on both sides.
                unsafe { own.copy_from_nonoverlapping(src, n * width) };
                src = own;
            }
            *slice = src;
        }
        // SAFETY: rows `first..first + n` are inside the matrix (caller's
        // contract); each slice holds `n` elements.
        unsafe { gather_rows(&slices, width, n, dst.add(first * row_bytes)) };
        first += n;
    }
}

/// Writes `n` rows at `dst`, element `j` of row `i` from `slices[j][i]`.
///
/// # Safety
/// Each slice holds `n` elements of `width` bytes; `dst` has room for `n`
/// rows of `slices.len()` elements.
unsafe fn gather_rows(slices: &[*const u8], width: usize, n: usize, dst: *mut u8) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match width {
            1 => gather_rows_typed::<1>(slices, n, dst),
            2 => gather_rows_typed::<2>(slices, n, dst),
            4 => gather_rows_typed::<4>(slices, n, dst),
            8 => gather_rows_typed::<8>(slices, n, dst),
            _ => unreachable!("element widths are 1, 2, 4 or 8 bytes"),
        }
    }
}

/// [`gather_rows`] for one width: a load and a store per element, the
/// stores in order. Up to 8 columns, the row's length is a constant, so
/// that the compiler unrolls (and vectorizes) each row.
///
/// # Safety
/// As [`gather_rows`].
#[inline(always)]
unsafe fn gather_rows_typed<const W: usize>(slices: &[*const u8], n: usize, dst: *mut u8) {
    macro_rules! narrow {
        ($($c:literal)*) => {
            match slices.len() {
                $($c => {
                    let s: &[*const u8; $c] = slices.try_into().expect("the length matched");
                    // SAFETY: forwarded from the caller.
                    return unsafe { gather_narrow::<W, $c>(s, n, dst) };
                })*
                _ => {}
            }
        };
    }
    narrow!(1 2 3 4 5 6 7 8);
    let mut out = dst;
    for i in 0..n {
        for &slice in slices {
            // SAFETY: element `i` of the slice, and the next element of the
            // rows, in bounds (caller's contract); any alignment.
            unsafe {
                let v = slice.add(i * W).cast::<[u8; W]>().read_unaligned();
                out.cast::<[u8; W]>().write_unaligned(v);
                out = out.add(W);
            }
        }
    }
}

/// [`gather_rows_typed`] for `C` columns.
///
/// # Safety
/// As [`gather_rows`].
#[inline(always)]
unsafe fn gather_narrow<const W: usize, const C: usize>(
    slices: &[*const u8; C],
    n: usize,
    dst: *mut u8,
) {
    for i in 0..n {
        let row: [[u8; W]; C] = std::array::from_fn(|j| {
            // SAFETY: element `i` of slice `j`, in bounds (caller's contract).
            unsafe { slices[j].add(i * W).cast::<[u8; W]>().read_unaligned() }
        });
        // SAFETY: row `i` of the destination, in bounds (caller's contract).
        unsafe {
            dst.add(i * W * C)
                .cast::<[[u8; W]; C]>()
                .write_unaligned(row)
        };
    }
}

/// Writes the columns of a `rows x columns` matrix of `width`-byte
/// elements, element `(i, j)` at `src + (i * row_stride + j *
/// column_stride) * width` (strides in elements, any sign), one after
/// another at `dst` (column-major): the reverse of [`rows`], blocked the
/// same way, so that a block of source rows stays in cache while every
/// column takes its slice.
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
    let block = block_rows(columns);
    let w = width as isize;
    let mut first = 0;
    while first < rows {
        let n = block.min(rows - first);
        for j in 0..columns {
            // Wrapping: strides may be negative, and a dimension of extent
            // 1 may have any stride, whose products are never used; the
            // addresses of the elements read lie in the source (caller's
            // contract), so their offsets are exact.
            let offset = (first as isize)
                .wrapping_mul(row_stride)
                .wrapping_add((j as isize).wrapping_mul(column_stride))
                .wrapping_mul(w);
            let from = src.wrapping_offset(offset);
            // SAFETY: the column's rows `first..first + n` go at `j * rows +
            // first`; the source's as the caller guarantees.
            unsafe {
                let out = dst.add((j * rows + first) * width);
                gather_strided(from, width, n, row_stride.wrapping_mul(w), out);
            }
        }
        first += n;
    }
}

/// `n` elements of `width` bytes, one every `stride` bytes from `src`,
/// into `dst` contiguously.
///
/// # Safety
/// The strided elements are readable; `dst` has room for `n`.
unsafe fn gather_strided(src: *const u8, width: usize, n: usize, stride: isize, dst: *mut u8) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match width {
            1 => gather_typed::<1>(src, n, stride, dst),
            2 => gather_typed::<2>(src, n, stride, dst),
            4 => gather_typed::<4>(src, n, stride, dst),
            8 => gather_typed::<8>(src, n, stride, dst),
            _ => unreachable!("element widths are 1, 2, 4 or 8 bytes"),
        }
    }
}

/// [`gather_strided`] for one width.
///
/// # Safety
/// As [`gather_strided`].
#[inline(always)]
unsafe fn gather_typed<const W: usize>(src: *const u8, n: usize, stride: isize, dst: *mut u8) {
    for i in 0..n {
        // SAFETY: element `i` of each side is in bounds (caller's contract).
        unsafe {
            let v = src
                .wrapping_offset((i as isize).wrapping_mul(stride))
                .cast::<[u8; W]>()
                .read_unaligned();
            dst.add(i * W).cast::<[u8; W]>().write_unaligned(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::columns as columns_of;
    use super::*;

    #[test]
    fn every_element_lands_at_its_row_and_column() {
        // Sizes around the block: one block, several, a ragged last one.
        // Two blocks and a ragged end (513 rows), under Miri too.
        for (columns, nrows) in [(1, 5), (3, 16), (2, 513), (40, 33), (2, 0)] {
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
