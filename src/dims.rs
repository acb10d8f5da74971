//! Shapes and strides: the dimension limit, storage for a tensor's shape
//! and strides, and row-major strides computed with checked arithmetic
//! (every size derived from untrusted extents is checked).

use crate::error::{Error, err};

/// Most dimensions a tensor may have (NumPy 2's limit). Deeper nesting of
/// `fixed_size_list` is `UNSUPPORTED_LAYOUT`.
pub const MAX_NDIM: usize = 64;

/// Dimensions held inline; deeper tensors (rare) move to the heap.
const INLINE: usize = 8;

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

/// Shape and strides (in elements): inline up to eight dimensions, so that
/// the common tensors (1-D, 2-D, a few list levels) cost no allocation and
/// a small copy; up to [`MAX_NDIM`] in one heap block.
#[derive(Clone)]
pub struct Dims {
    ndim: usize,
    shape: [i64; INLINE],
    strides: [i64; INLINE],
    /// Every dimension (shape, then strides), once there are more than
    /// `INLINE`.
    deep: Option<Box<[[i64; MAX_NDIM]; 2]>>,
}

impl Default for Dims {
    fn default() -> Dims {
        Dims::new()
    }
}

impl Dims {
    pub const fn new() -> Dims {
        Dims {
            ndim: 0,
            shape: [0; INLINE],
            strides: [0; INLINE],
            deep: None,
        }
    }

    /// The dims of a `rows x columns` matrix, row-major (strides
    /// `[columns, 1]`) or column-major (`[1, rows]`).
    pub fn matrix(rows: i64, columns: i64, row_major: bool) -> Dims {
        let mut d = Dims::new();
        d.shape[..2].copy_from_slice(&[rows, columns]);
        d.strides[..2].copy_from_slice(&match row_major {
            true => [columns, 1],
            false => [1, rows],
        });
        d.ndim = 2;
        d
    }

    /// Appends a dimension (its stride 0 until set).
    #[inline]
    pub fn push(&mut self, extent: i64) -> Result<(), Error> {
        self.push_strided(extent, 0)
    }

    /// Appends a dimension with its stride.
    #[inline]
    pub fn push_strided(&mut self, extent: i64, stride: i64) -> Result<(), Error> {
        if self.ndim < INLINE {
            self.shape[self.ndim] = extent;
            self.strides[self.ndim] = stride;
            self.ndim += 1;
            return Ok(());
        }
        self.push_deep(extent, stride)
    }

    /// [`Dims::push_strided`] beyond the inline dimensions.
    #[cold]
    fn push_deep(&mut self, extent: i64, stride: i64) -> Result<(), Error> {
        if self.ndim == MAX_NDIM {
            return Err(err!(
                ARROW_DLPACK_UNSUPPORTED_LAYOUT,
                "more than {MAX_NDIM} dimensions (nested fixed_size_list levels); DLPack consumers allow at most {MAX_NDIM}"
            ));
        }
        let deep = self.deep.get_or_insert_with(|| {
            let mut deep = Box::new([[0; MAX_NDIM]; 2]);
            deep[0][..INLINE].copy_from_slice(&self.shape);
            deep[1][..INLINE].copy_from_slice(&self.strides);
            deep
        });
        deep[0][self.ndim] = extent;
        deep[1][self.ndim] = stride;
        self.ndim += 1;
        Ok(())
    }

    /// Sets the first dimension's extent (the rows of a concatenation).
    #[inline]
    pub fn set_length(&mut self, length: i64) {
        if self.ndim > 0 {
            self.parts_mut().0[0] = length;
        }
    }

    /// Keeps the first `ndim` dimensions.
    pub fn truncate(&mut self, ndim: usize) {
        if ndim >= self.ndim {
            return;
        }
        if let Some(deep) = &self.deep {
            if ndim <= INLINE {
                self.shape[..ndim].copy_from_slice(&deep[0][..ndim]);
                self.strides[..ndim].copy_from_slice(&deep[1][..ndim]);
                self.deep = None;
            }
        }
        self.ndim = ndim;
    }

    /// Row-major strides for the shape pushed so far.
    ///
    /// Checked: the elements a tensor covers fit its buffer (checked by the
    /// reader), but a length-0 array covers none, whatever its list sizes,
    /// so the product of the inner extents may still overflow.
    #[inline]
    pub fn set_row_major_strides(&mut self) -> Result<(), Error> {
        let ndim = self.ndim;
        let (shape, strides) = self.parts_mut();
        // The length's own product (the last one) is no stride: only the
        // inner extents' products must fit.
        let inner = row_major_strides(&shape[1.min(ndim)..], |d, stride| {
            strides[d + 1] = stride;
        });
        let Some(row) = inner else {
            return Err(err!(
                ARROW_DLPACK_UNSUPPORTED_LAYOUT,
                "fixed_size_list sizes {:?}: a row of their product overflows 64-bit strides",
                &shape[1..]
            ));
        };
        if ndim > 0 {
            strides[0] = row;
        }
        Ok(())
    }

    /// The shape and the strides, borrowed together for writing.
    #[inline]
    fn parts_mut(&mut self) -> (&mut [i64], &mut [i64]) {
        let n = self.ndim;
        match &mut self.deep {
            None => (&mut self.shape[..n], &mut self.strides[..n]),
            Some(deep) => {
                let [shape, strides] = &mut **deep;
                (&mut shape[..n], &mut strides[..n])
            }
        }
    }

    #[inline]
    pub fn ndim(&self) -> usize {
        self.ndim
    }

    #[inline]
    pub fn shape(&self) -> &[i64] {
        match &self.deep {
            None => &self.shape[..self.ndim],
            Some(deep) => &deep[0][..self.ndim],
        }
    }

    #[inline]
    pub fn strides(&self) -> &[i64] {
        match &self.deep {
            None => &self.strides[..self.ndim],
            Some(deep) => &deep[1][..self.ndim],
        }
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

    #[test]
    fn deep_dims_move_to_the_heap_and_back() {
        let mut dims = Dims::new();
        for d in 0..MAX_NDIM {
            dims.push(1 + d as i64 % 2).unwrap();
        }
        assert!(dims.push(1).is_err(), "the limit holds");
        dims.set_row_major_strides().unwrap();
        assert_eq!(dims.ndim(), MAX_NDIM);
        assert_eq!(dims.shape()[MAX_NDIM - 1], 2);
        assert_eq!(dims.strides()[MAX_NDIM - 1], 1);
        assert_eq!(dims.strides()[MAX_NDIM - 2], 2);
        dims.set_length(7);
        assert_eq!(dims.shape()[0], 7);
        dims.truncate(3);
        assert_eq!(dims.shape(), &[7, 2, 1]);
        let copy = dims.clone();
        assert_eq!(copy.strides(), dims.strides());
    }
}
