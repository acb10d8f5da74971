//! One row written over and over: the kernel of a run-end encoded
//! column's decoding, shared by the reader (which decodes what it must
//! hold) and the copies (which decode straight into a tensor).

/// Writes `n` copies of the `row_bytes` bytes at `src` from `at`: a
/// typed store a row for the common widths (vectorized), else the first
/// copy doubled.
///
/// # Safety
/// `src` holds `row_bytes` bytes, `at` room for `n` times as many; the two
/// never overlap.
#[inline(always)]
pub unsafe fn repeat(src: *const u8, at: *mut u8, row_bytes: usize, n: usize) {
    macro_rules! typed {
        ($t:ty) => {{
            // SAFETY: the caller's contract, for one `$t` a row.
            unsafe {
                let v = src.cast::<$t>().read_unaligned();
                for r in 0..n {
                    at.cast::<$t>().add(r).write_unaligned(v);
                }
            }
        }};
    }
    match row_bytes {
        1 => typed!(u8),
        2 => typed!(u16),
        4 => typed!(u32),
        8 => typed!(u64),
        16 => typed!(u128),
        _ => {
            // SAFETY: the caller's contract; each copy reads bytes
            // already written, before the ones it writes.
            unsafe {
                std::ptr::copy_nonoverlapping(src, at, row_bytes);
                let (mut done, total) = (row_bytes, n * row_bytes);
                while done < total {
                    let m = done.min(total - done);
                    std::ptr::copy_nonoverlapping(at, at.add(done), m);
                    done += m;
                }
            }
        }
    }
}
