//! Columns into a row-major matrix: a cache-blocked transpose.
//!
//! A strided scatter of whole columns (element `i` of column `j` to
//! `dst[i * columns + j]`) touches a new cache line for every element once
//! the matrix outgrows the cache. Here the rows are written a block at a
//! time: a block of the destination (about [`BLOCK_BYTES`]) stays in the
//! cache while each column contributes its slice of the block's rows,
//! read sequentially; the block leaves the cache whole. A column that needs
//! a conversion or a fill is first converted into a small scratch buffer
//! (also in cache), then scattered.

/// Destination bytes of one block: fits L1 and L2 with room for the
/// columns' source lines.
const BLOCK_BYTES: usize = 32 << 10;

/// The rows of one block: at least 16 (so that every column's slice is a
/// few cache lines), at most 1024.
pub fn block_rows(columns: usize, width: usize) -> usize {
    (BLOCK_BYTES / (columns * width).max(1)).clamp(512, 512)
}

/// Writes a `rows x columns` matrix of `width`-byte elements row-major at
/// `dst` (row `i`, column `j` at `dst + (i * columns + j) * width`).
/// `column(j, first, n, scratch)` returns where column `j`'s elements
/// `first..first + n` lie contiguously: its own memory, or `scratch` (room
/// for [`block_rows`] elements) after writing them there.
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
    let block = block_rows(columns, width);
    let mut scratch = vec![0u64; block]; // 8 bytes: the widest element
    let row_bytes = columns * width;
    let mut first = 0;
    while first < rows {
        let n = block.min(rows - first);
        for j in 0..columns {
            let src = column(j, first, n, scratch.as_mut_ptr().cast());
            // SAFETY: rows `first..first + n` of column `j` are inside the
            // matrix (caller's contract); `src` holds `n` elements.
            unsafe {
                let out = dst.add(first * row_bytes + j * width);
                scatter(src, width, n, out, row_bytes);
            }
        }
        first += n;
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
    let block = block_rows(columns, width);
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

/// `n` elements of `width` bytes from `src` (contiguous) to `dst`, one
/// every `stride` bytes.
///
/// # Safety
/// `src` holds `n` elements; `dst` has room for `n` strided elements.
unsafe fn scatter(src: *const u8, width: usize, n: usize, dst: *mut u8, stride: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match width {
            1 => scatter_typed::<1>(src, n, dst, stride),
            2 => scatter_typed::<2>(src, n, dst, stride),
            4 => scatter_typed::<4>(src, n, dst, stride),
            8 => scatter_typed::<8>(src, n, dst, stride),
            _ => unreachable!("element widths are 1, 2, 4 or 8 bytes"),
        }
    }
}

/// [`scatter`] for one width, so that each element is one load and one
/// store.
///
/// # Safety
/// As [`scatter`].
#[inline(always)]
unsafe fn scatter_typed<const W: usize>(src: *const u8, n: usize, dst: *mut u8, stride: usize) {
    for i in 0..n {
        // SAFETY: element `i` of each side is in bounds (caller's contract);
        // any alignment.
        unsafe {
            let v = src.add(i * W).cast::<[u8; W]>().read_unaligned();
            dst.add(i * stride).cast::<[u8; W]>().write_unaligned(v);
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
        for (columns, nrows) in [(1, 5), (3, 16), (7, 1000), (40, 33), (2, 0)] {
            for width in [1usize, 2, 4, 8] {
                // Column j, row i holds the value i * 64 + j (truncated to
                // the width: still distinct in its low byte pattern).
                let cols: Vec<Vec<u8>> = (0..columns)
                    .map(|j| {
                        (0..nrows)
                            .flat_map(|i| ((i * 64 + j) as u64).to_le_bytes()[..width].to_vec())
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
