//! A strided tensor's elements gathered into row-major order: any strides,
//! negative, zero (broadcast) or with gaps. The innermost dimension is one
//! `memcpy` when its stride is 1.

/// Copies the `shape`/`strides` (in elements of `width` bytes) tensor at
/// `src` into `dst`, row-major. `shape` has no negative extent and the
/// element count fits.
///
/// # Safety
/// Every element the shape and strides address lies in the tensor's
/// memory (DLPack's guarantee); `dst` has room for all elements.
pub unsafe fn gather(src: *const u8, shape: &[i64], strides: &[i64], width: usize, dst: *mut u8) {
    if shape.contains(&0) {
        return;
    }
    let Some((&inner, outer)) = shape.split_last() else {
        // 0-D: one element.
        // SAFETY: `gather`'s caller promises it: every element the shape and strides address
        // lies in the tensor's memory (DLPack's guarantee); `dst` has room for all elements.
        return unsafe { dst.copy_from_nonoverlapping(src, width) };
    };
    let inner_stride = strides[shape.len() - 1];
    let inner = inner as usize;
    let mut index = vec![0i64; outer.len()];
    let mut out = dst;
    loop {
        let offset: i64 = index.iter().zip(strides).map(|(i, s)| i * s).sum();
        // `wrapping_offset`: element offsets may be negative; every address
        // formed lies in the tensor (caller's contract).
        let row = src.wrapping_offset(offset as isize * width as isize);
        // SAFETY: the row's elements lie in the tensor; `out` advances by
        // one row of the destination's room each time.
        unsafe {
            if inner_stride == 1 {
                out.copy_from_nonoverlapping(row, inner * width);
            } else {
                for k in 0..inner {
                    let from =
                        row.wrapping_offset(k as isize * inner_stride as isize * width as isize);
                    out.add(k * width).copy_from_nonoverlapping(from, width);
                }
            }
            out = out.add(inner * width);
        }
        // The next index of the outer dimensions, last fastest.
        let mut d = outer.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            index[d] += 1;
            if index[d] < outer[d] {
                break;
            }
            index[d] = 0;
        }
    }
}

/// [`gather`] split over threads by blocks of the outermost dimension
/// (each block's elements are a contiguous run of the destination).
///
/// # Safety
/// As [`gather`].
pub unsafe fn gather_on(
    src: *const u8,
    shape: &[i64],
    strides: &[i64],
    width: usize,
    dst: *mut u8,
    threads: usize,
) {
    let (Some(&rows), false) = (shape.first(), shape.contains(&0)) else {
        // SAFETY: `gather_on`'s caller promises it: as `gather`'s: Every element the shape and
        // strides address lies in the tensor's memory (DLPack's guarantee); `dst` has room for
        // all elements.
        return unsafe { gather(src, shape, strides, width, dst) };
    };
    let row_bytes = shape[1..].iter().product::<i64>() as usize * width;
    let (src, dst) = (super::threads::Src(src), super::threads::Dst(dst));
    super::threads::split(rows as usize, row_bytes, threads, |r| {
        let mut block = shape.to_vec();
        block[0] = r.len() as i64;
        // Block `r` of dimension 0: its first element, and its place.
        let at = (r.start as isize)
            .wrapping_mul(strides[0] as isize)
            .wrapping_mul(width as isize);
        // SAFETY: the block's elements are elements of the tensor
        // (caller's contract); its rows go to its own part of `dst`.
        unsafe {
            gather(
                src.get().wrapping_offset(at),
                &block,
                strides,
                width,
                dst.get().add(r.start * row_bytes),
            )
        };
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversed_broadcast_and_transposed_strides_become_row_major() {
        let data: Vec<i32> = (0..12).collect();
        let run = |shape: &[i64], strides: &[i64], start: usize| {
            let n: i64 = shape.iter().product();
            let mut out = vec![-1i32; n as usize];
            // SAFETY: every address stays inside `data` for these cases.
            unsafe {
                gather(
                    data.as_ptr().add(start).cast(),
                    shape,
                    strides,
                    4,
                    out.as_mut_ptr().cast(),
                )
            };
            out
        };
        // A transposed 3x4 (Fortran order of a 4x3).
        assert_eq!(
            run(&[4, 3], &[1, 4], 0),
            vec![0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
        );
        // Reversed.
        assert_eq!(run(&[4], &[-1], 3), vec![3, 2, 1, 0]);
        // Broadcast rows, gaps between columns.
        assert_eq!(run(&[2, 3], &[0, 2], 1), vec![1, 3, 5, 1, 3, 5]);
        // 0-D and empty.
        assert_eq!(run(&[], &[], 5), vec![5]);
        assert_eq!(run(&[0, 3], &[3, 1], 0), Vec::<i32>::new());
    }
}
