//! The copy kernels: each writes a tensor's (or an array's) own bytes once,
//! straight from the producer's memory, at memory speed.
//!
//! - [`convert`]: elements of one type to another (or the same: a
//!   `memcpy`), as NumPy's `astype` with unsafe casting;
//! - [`decimal`]: Arrow's decimals as the nearest float64 or float32;
//! - [`half`]: float16 to and from float64, rounded to nearest even;
//! - [`bits`]: Arrow's bit-packed booleans unpacked to bytes, and packed;
//! - [`nulls`]: nulls overwritten with a fill value, and cleared in masks;
//! - [`gather`]: a strided tensor's elements into row-major order;
//! - [`transpose`]: columns into a row-major matrix and back, in tiles;
//! - [`layout`]: the pieces of an export laid out in the tensor's bytes
//!   (concatenated, or a table's columns as a matrix), by row ranges;
//! - [`jagged`]: variable-length rows: offsets summed, values row by row,
//!   padded rows and their masks;
//! - [`threads`]: the split of a copy's rows over threads, and the pool;
//! - [`uncached`]: copies of outputs too large for the cache, around it.
//!
//! The kernels take raw pointers: sources may be unaligned (the C Data
//! Interface allows it) and are read with unaligned loads; destinations are
//! the owner's own 64-byte aligned bytes.

pub mod bits;
pub mod convert;
pub mod decimal;
pub mod gather;
pub mod half;
pub mod jagged;
pub mod layout;
pub mod nulls;
pub mod threads;
pub mod transpose;
pub mod uncached;

use std::alloc::{self, Layout};
use std::ptr::NonNull;

use crate::error::{Error, err};

/// Bytes a copy writes for Arrow arrays (an import's copy): one 64-byte
/// aligned allocation, freed when dropped (by the arrays' keeper, when the
/// last array sharing it is released).
pub struct Bytes {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: plain memory, written once before it is shared, then only read.
unsafe impl Send for Bytes {}
// SAFETY: as for the block above, plain memory, written once before it is shared, then only
// read.
unsafe impl Sync for Bytes {}

impl Bytes {
    /// `len` uninitialized bytes (`len` 0: no allocation, a dangling
    /// pointer).
    pub fn new(len: usize) -> Result<Bytes, Error> {
        if len == 0 {
            return Ok(Bytes {
                ptr: NonNull::dangling(),
                len,
            });
        }
        let layout = Layout::from_size_align(len, crate::owner::DATA_ALIGN).map_err(|_| {
            err!(
                ARROW_DLPACK_OUT_OF_MEMORY,
                "{len} bytes exceed what one allocation may hold"
            )
        })?;
        // SAFETY: a non-zero size.
        let ptr = NonNull::new(unsafe { alloc::alloc(layout) })
            .ok_or_else(|| err!(ARROW_DLPACK_OUT_OF_MEMORY, "allocating {len} bytes failed"))?;
        crate::owner::huge_pages(ptr.as_ptr(), len);
        Ok(Bytes { ptr, len })
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Bytes {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: allocated by `new` with this layout.
            unsafe {
                alloc::dealloc(
                    self.ptr.as_ptr(),
                    Layout::from_size_align_unchecked(self.len, crate::owner::DATA_ALIGN),
                )
            };
        }
    }
}
