//! Shapes and strides: the dimension limit, inline storage for a tensor's
//! shape and strides, and row-major strides computed with checked
//! arithmetic (every size derived from untrusted extents is checked).

use std::mem::MaybeUninit;

use crate::error::{Error, err};

/// Most dimensions a tensor may have (NumPy 2's limit). Deeper nesting of
/// `fixed_size_list` is `UNSUPPORTED_LAYOUT`.
pub const MAX_NDIM: usize = 64;

/// The row-major strides of `shape`, innermost first out of `push`, and
/// the product of all extents; `None` when a partial product, which is a
/// stride, overflows `i64`. A 0 extent makes the whole product 0, but the
/// strides of the dimensions outside it still have to fit: they are
/// computed from the innermost dimension out, each one checked.
pub fn row_major_strides(shape: &[i64], mut push: impl FnMut(usize, i64)) -> Option<i64> {
    let mut stride = 1i64;
    for (d, &extent) in shape.iter().enumerate().rev() {
        push(d, stride);
        stride = stride.checked_mul(extent)?;
    }
    Some(stride)
}

/// Shape and strides (in elements), inline and uninitialized beyond
/// `ndim`: reading a view neither allocates nor clears a kilobyte.
pub struct Dims {
    ndim: usize,
    shape: [MaybeUninit<i64>; MAX_NDIM],
    strides: [MaybeUninit<i64>; MAX_NDIM],
}

impl Default for Dims {
    fn default() -> Dims {
        Dims::new()
    }
}

impl Dims {
    pub fn new() -> Dims {
        Dims {
            ndim: 0,
            shape: [const { MaybeUninit::uninit() }; MAX_NDIM],
            strides: [const { MaybeUninit::uninit() }; MAX_NDIM],
        }
    }

    /// Appends a dimension (its stride 0 until set).
    pub fn push(&mut self, extent: i64) -> Result<(), Error> {
        self.push_strided(extent, 0)
    }

    /// Appends a dimension with its stride.
    pub fn push_strided(&mut self, extent: i64, stride: i64) -> Result<(), Error> {
        if self.ndim == MAX_NDIM {
            return Err(err!(
                ARROW_DLPACK_UNSUPPORTED_LAYOUT,
                "more than {MAX_NDIM} dimensions (nested fixed_size_list levels); DLPack consumers allow at most {MAX_NDIM}"
            ));
        }
        self.shape[self.ndim].write(extent);
        self.strides[self.ndim].write(stride);
        self.ndim += 1;
        Ok(())
    }

    /// Sets the first dimension's extent (the rows of a concatenation).
    pub fn set_length(&mut self, length: i64) {
        if self.ndim > 0 {
            self.shape[0].write(length);
        }
    }

    /// Keeps the first `ndim` dimensions.
    pub fn truncate(&mut self, ndim: usize) {
        self.ndim = self.ndim.min(ndim);
    }

    /// Row-major strides for the shape pushed so far.
    ///
    /// Checked: the elements a tensor covers fit its buffer (checked by the
    /// reader), but a length-0 array covers none, whatever its list sizes,
    /// so the product of the inner extents may still overflow.
    pub fn set_row_major_strides(&mut self) -> Result<(), Error> {
        let ndim = self.ndim;
        let (shape, strides) = (&self.shape, &mut self.strides);
        // SAFETY: the first `ndim` entries are initialized by `push`.
        let shape = unsafe { std::slice::from_raw_parts(shape.as_ptr().cast::<i64>(), ndim) };
        // The length's own product (the last one) is no stride: only the
        // inner extents' products must fit.
        let inner = row_major_strides(&shape[1..], |d, stride| {
            strides[d + 1].write(stride);
        });
        let Some(row) = inner else {
            return Err(err!(
                ARROW_DLPACK_UNSUPPORTED_LAYOUT,
                "fixed_size_list sizes {:?}: a row of their product overflows 64-bit strides",
                &shape[1..]
            ));
        };
        if ndim > 0 {
            strides[0].write(row);
        }
        Ok(())
    }

    pub fn ndim(&self) -> usize {
        self.ndim
    }

    pub fn shape(&self) -> &[i64] {
        // SAFETY: the first `ndim` entries are initialized by `push`.
        unsafe { std::slice::from_raw_parts(self.shape.as_ptr().cast(), self.ndim) }
    }

    pub fn strides(&self) -> &[i64] {
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts(self.strides.as_ptr().cast(), self.ndim) }
    }
}

impl std::fmt::Debug for Dims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Dims {{ shape: {:?}, strides: {:?} }}",
            self.shape(),
            self.strides()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_are_checked_behind_a_zero_extent() {
        let mut strides = [0i64; 3];
        assert_eq!(
            row_major_strides(&[2, 3, 4], |d, s| strides[d] = s),
            Some(24)
        );
        assert_eq!(strides, [12, 4, 1]);
        // The product is 0, but the outer stride would be 2^80.
        assert_eq!(row_major_strides(&[0, 1 << 40, 1 << 40], |_, _| {}), None);
        assert_eq!(
            row_major_strides(&[1 << 40, 1 << 40, 0], |_, _| {}),
            Some(0)
        );
        assert_eq!(row_major_strides(&[], |_, _| {}), Some(1));
    }

    #[test]
    fn a_row_that_overflows_is_refused_but_the_length_never_counts() {
        let mut dims = Dims::new();
        for extent in [i64::MAX, 1 << 31, 1 << 31] {
            dims.push(extent).unwrap();
        }
        dims.set_row_major_strides().unwrap();
        assert_eq!(dims.strides(), &[1 << 62, 1 << 31, 1]);
        dims.push(4).unwrap();
        assert_eq!(
            dims.set_row_major_strides().unwrap_err().status(),
            crate::Status::ARROW_DLPACK_UNSUPPORTED_LAYOUT
        );
    }
}
