//! The only reader of untrusted Arrow C structs.
//!
//! [`read`] walks an `ArrowArray`/`ArrowSchema` pair once, checks every
//! field it relies on, and returns a [`TensorView`]: dtype, shape, strides,
//! the first element's address and the device. Every export path starts
//! from that view; nothing downstream dereferences a raw Arrow pointer.
//!
//! The canonical `arrow.fixed_shape_tensor` extension (schema metadata)
//! reshapes the `[length, N]` of its storage into `[length, *shape]`, with
//! strides from its permutation; other extension types export their storage.
//!
//! Trusted, as the C Data Interface lets a consumer trust them: a non-NULL
//! pointer points at what its field says, buffers are as long as the
//! format, length and offset require, and `null_count == 0` means no nulls.
//! Everything else is validated before it is used.

use std::ffi::{CStr, c_void};
use std::mem::MaybeUninit;

use crate::abi::{ArrowArray, ArrowSchema, DLDataType, DLDevice, K_DL_CPU};
use crate::bitmap;
use crate::dtype::{self, Format, Shown};
use crate::error::{Error, err};
use crate::extension;

/// Most dimensions a tensor may have (NumPy 2's limit). Deeper nesting of
/// `fixed_size_list` is `UNSUPPORTED_LAYOUT`.
pub const MAX_NDIM: usize = 64;

/// A validated description of the tensor an Arrow array can be shared as;
/// its shape and strides are in the [`Dims`] filled in beside it.
#[derive(Debug)]
pub struct TensorView {
    pub dtype: DLDataType,
    /// The first element, or NULL when the tensor has no element.
    pub data: *mut c_void,
    pub device: DLDevice,
}

/// Shape and strides (in elements), inline and uninitialized beyond
/// `ndim`: reading a view neither allocates nor clears a kilobyte.
pub struct Dims {
    ndim: usize,
    shape: [MaybeUninit<i64>; MAX_NDIM],
    strides: [MaybeUninit<i64>; MAX_NDIM],
}

impl Dims {
    pub fn new() -> Dims {
        Dims {
            ndim: 0,
            shape: [const { MaybeUninit::uninit() }; MAX_NDIM],
            strides: [const { MaybeUninit::uninit() }; MAX_NDIM],
        }
    }

    fn push(&mut self, extent: i64) -> Result<(), Error> {
        if self.ndim == MAX_NDIM {
            return Err(err!(
                ARROW_DLPACK_UNSUPPORTED_LAYOUT,
                "more than {MAX_NDIM} nested fixed_size_list levels; DLPack consumers allow at most {MAX_NDIM} dimensions"
            ));
        }
        self.shape[self.ndim].write(extent);
        self.strides[self.ndim].write(0);
        self.ndim += 1;
        Ok(())
    }

    /// Row-major strides for the shape pushed so far.
    ///
    /// Checked: the elements the tensor covers fit the buffer (checked by
    /// the reader), but a length-0 array covers none, whatever its list
    /// sizes, so the product of the inner extents may still overflow.
    fn set_row_major_strides(&mut self) -> Result<(), Error> {
        let mut stride = 1i64;
        for d in (0..self.ndim).rev() {
            self.strides[d].write(stride);
            if d == 0 {
                break; // the length's own product is never a stride
            }
            let Some(next) = stride.checked_mul(self.shape()[d]) else {
                return Err(err!(
                    ARROW_DLPACK_UNSUPPORTED_LAYOUT,
                    "fixed_size_list sizes {:?}: a row of their product overflows 64-bit strides",
                    &self.shape()[1..]
                ));
            };
            stride = next;
        }
        Ok(())
    }

    /// Replaces the `[length, N]` of a fixed_shape_tensor's storage with
    /// `[length, *logical shape]`, strides derived from the permutation.
    /// Out of line: its kilobyte of parsed parameters stays off the stack
    /// of the common path.
    #[inline(never)]
    fn apply_tensor_json(&mut self, json: &[u8]) -> Result<(), Error> {
        let t = &extension::parse_tensor_type(json)?;
        let list_size = t.list_size();
        if self.ndim != 2 {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "arrow.fixed_shape_tensor storage must be a fixed_size_list of a number, found {} list levels",
                self.ndim - 1
            ));
        }
        if self.shape()[1] != list_size {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "arrow.fixed_shape_tensor shape {:?} holds {list_size} elements but the list size is {}",
                t.shape(),
                self.shape()[1]
            ));
        }
        self.ndim = 1;
        for (extent, stride) in t.logical() {
            self.push(extent)?;
            self.strides[self.ndim - 1].write(stride);
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

/// Where the buffers live, as far as reading them is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Location {
    pub device: DLDevice,
}

impl Location {
    pub const CPU: Location = Location {
        device: DLDevice {
            device_type: K_DL_CPU,
            device_id: 0,
        },
    };

    /// Whether this process may dereference the buffers.
    fn is_host_readable(self) -> bool {
        crate::device::is_host_readable(self.device.device_type)
    }
}

/// Validates `array`/`schema` and describes the tensor they can be shared
/// as; `dims` (empty) receives the shape and strides.
///
/// # Safety
///
/// `array` and `schema` must be valid for reads and follow the C Data
/// Interface as far as it is trusted (see the module documentation).
pub unsafe fn read(
    array: &ArrowArray,
    schema: &ArrowSchema,
    location: Location,
    dims: &mut Dims,
) -> Result<TensorView, Error> {
    if schema.release.is_none() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "schema is released (schema.release is NULL)"
        ));
    }
    if array.release.is_none() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "array is released (array.release is NULL)"
        ));
    }
    let mut level = Level {
        array,
        schema,
        depth: 0,
    };
    // SAFETY: `schema` is valid (caller's contract); its metadata block is
    // read only through checked lengths.
    let tensor_json = unsafe { extension::fixed_shape_tensor_json(schema) }?;
    // The range of the current level's elements that the tensor covers, in
    // the level's logical index space (before its own `offset`).
    let (mut start, mut count) = (0i64, array.length);
    dims.push(array.length)?;
    // At most one scan per level, and levels are bounded by `dims`.
    let mut scans = [const { MaybeUninit::<Scan>::uninit() }; MAX_NDIM];
    let mut n_scans = 0;
    loop {
        // SAFETY: the caller guarantees the top-level structs; a child level
        // is made by `Level::child` only from non-NULL pointers; `format`
        // checks `n_buffers` and `n_children` before the calls below index
        // them (this justifies the blocks below too).
        let format = unsafe { level.format() }?;
        // SAFETY: as above.
        let checked =
            unsafe { level.check_common(start, count, location) }.map_err(|e| level.locate(e))?;
        if let Some(scan) = checked.scan {
            scans[n_scans].write(scan);
            n_scans += 1;
        }
        match format {
            Format::Primitive(t) => {
                // SAFETY: as above.
                let data = unsafe { level.values(t, checked.first, count) }
                    .map_err(|e| level.locate(e))?;
                dims.set_row_major_strides()?;
                if let Some(json) = tensor_json {
                    dims.apply_tensor_json(json)?;
                }
                for scan in &scans[..n_scans] {
                    // SAFETY: written above; the whole tree is validated,
                    // and each bitmap is host-readable and holds its
                    // array's `offset + length` bits (trusted).
                    unsafe { scan.assume_init().check() }?;
                }
                return Ok(TensorView {
                    dtype: t.dl,
                    data,
                    device: location.device,
                });
            }
            Format::FixedSizeList(size) => {
                dims.push(size)?;
                // SAFETY: as above.
                let child = unsafe { level.child(size, checked.first, count) }
                    .map_err(|e| level.locate(e))?;
                (start, count) = (child.start, child.count);
                level = child.level;
            }
        }
    }
}

/// One level of a (possibly nested) array and its schema.
struct Level<'a> {
    array: &'a ArrowArray,
    schema: &'a ArrowSchema,
    depth: usize,
}

/// What `check_common` established about a level.
struct Checked {
    /// Physical index of the first element the tensor covers.
    first: i64,
    /// The validity bits to count, if this level's null count is unknown
    /// (or a child's count may fall outside the covered range).
    scan: Option<Scan>,
}

/// Validity bits `[first, first + count)` of a host-readable bitmap.
#[derive(Clone, Copy)]
struct Scan {
    bitmap: *const u8,
    first: usize,
    count: usize,
    depth: usize,
}

impl Scan {
    /// # Safety
    /// The bitmap holds `first + count` bits (trusted, as the C Data
    /// Interface says), and the tree it belongs to was validated.
    unsafe fn check(self) -> Result<(), Error> {
        let bytes = (self.first + self.count).div_ceil(8);
        // SAFETY: forwarded from the caller.
        let bitmap = unsafe { std::slice::from_raw_parts(self.bitmap, bytes) };
        let nulls = self.count - bitmap::count_set_bits(bitmap, self.first, self.count);
        if nulls == 0 {
            return Ok(());
        }
        Err(locate(
            self.depth,
            err!(
                ARROW_DLPACK_HAS_NULLS,
                "array has {nulls} nulls (counted in its validity bitmap); DLPack cannot represent missing values"
            ),
        ))
    }
}

/// Prefixes errors found below the top level with where they were found:
/// "child 0", "child 0.0", ...: the path of child indices.
fn locate(depth: usize, e: Error) -> Error {
    match depth {
        0 => e,
        d => e.context(format_args!("child 0{}", ".0".repeat(d - 1))),
    }
}

/// The child level and the range of it that a list level covers.
struct ChildRange<'a> {
    level: Level<'a>,
    start: i64,
    count: i64,
}

impl<'a> Level<'a> {
    /// Prefixes errors found below the top level with where they were found.
    fn locate(&self, e: Error) -> Error {
        locate(self.depth, e)
    }

    /// # Safety
    /// `self.schema` is a valid `ArrowSchema` (its `format` NULL or a C string).
    unsafe fn format(&self) -> Result<Format, Error> {
        if self.schema.format.is_null() {
            return Err(self.locate(err!(ARROW_DLPACK_INVALID_ARROW, "schema.format is NULL")));
        }
        let format = self.schema.format.cast::<u8>();
        // SAFETY: non-NULL, and the C Data Interface requires a
        // NUL-terminated string: byte 0 exists, and byte 1 does when byte 0
        // is not the terminator. One-character formats (every primitive)
        // skip `strlen`.
        let format = unsafe {
            if *format != 0 && *format.add(1) == 0 {
                std::slice::from_raw_parts(format, 1)
            } else {
                CStr::from_ptr(format.cast()).to_bytes()
            }
        };
        let parsed = dtype::classify(format).map_err(|e| self.locate(e))?;
        if !self.schema.dictionary.is_null() {
            return Err(self.locate(err!(
                ARROW_DLPACK_UNSUPPORTED_TYPE,
                "unsupported dictionary-encoded array (indices '{}'): decode it first",
                Shown(format)
            )));
        }
        let expected_children = match parsed {
            Format::Primitive(_) => 0,
            Format::FixedSizeList(_) => 1,
        };
        if self.schema.n_children != expected_children {
            return Err(self.locate(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "schema.n_children is {}, format '{}' has {}",
                self.schema.n_children,
                Shown(format),
                expected_children
            )));
        }
        let n_buffers = match parsed {
            Format::Primitive(_) => 2,
            Format::FixedSizeList(_) => 1,
        };
        let a = self.array;
        if a.n_buffers != n_buffers {
            return Err(self.locate(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "array.n_buffers is {}, format '{}' has {}",
                a.n_buffers,
                Shown(format),
                n_buffers
            )));
        }
        if a.n_children != expected_children {
            return Err(self.locate(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "array.n_children is {}, format '{}' has {}",
                a.n_children,
                Shown(format),
                expected_children
            )));
        }
        if !a.dictionary.is_null() {
            return Err(self.locate(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "array.dictionary is set but the schema has no dictionary"
            )));
        }
        Ok(parsed)
    }

    /// Checks length, offset, buffers and nulls over the covered range
    /// `[start, start + count)` of this level (logical indices).
    ///
    /// # Safety
    /// `self.array` is valid; its validity buffer, when not NULL, covers
    /// `offset + length` bits (trusted, as the specification says).
    unsafe fn check_common(
        &self,
        start: i64,
        count: i64,
        location: Location,
    ) -> Result<Checked, Error> {
        let a = self.array;
        if a.length < 0 {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "array.length is negative ({})",
                a.length
            ));
        }
        if a.offset < 0 {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "array.offset is negative ({})",
                a.offset
            ));
        }
        if a.null_count < -1 {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "array.null_count is {}; it must be -1 (unknown) or a count",
                a.null_count
            ));
        }
        if a.buffers.is_null() {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "array.buffers is NULL with n_buffers {}",
                a.n_buffers
            ));
        }
        // Ranges are computed in i64 with overflow checks: every later
        // pointer offset is derived from them.
        let end = start.checked_add(count);
        if end.is_none_or(|end| end > a.length) {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "array.length is {}, the parent needs {} elements from {}",
                a.length,
                count,
                start
            ));
        }
        let Some(first) = a.offset.checked_add(start) else {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "array.offset {} + {} overflows",
                a.offset,
                start
            ));
        };
        if first.checked_add(count).is_none() {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "array.offset {} + length {} overflows",
                first,
                count
            ));
        }
        // SAFETY: `buffers` is non-NULL and has `n_buffers >= 1` entries
        // (checked against the format by `format`).
        let validity = unsafe { *a.buffers };
        let readable = location.is_host_readable();
        match a.null_count {
            0 => {}
            n if n > 0 && validity.is_null() => {
                return Err(err!(
                    ARROW_DLPACK_INVALID_ARROW,
                    "array.null_count is {n} but buffers[0] (validity) is NULL"
                ));
            }
            // A child's count covers all of it, not only the covered range:
            // count that range where the bitmap may be read.
            n if n > 0 && (self.depth == 0 || !readable) => {
                return Err(err!(
                    ARROW_DLPACK_HAS_NULLS,
                    "array has {n} nulls; DLPack cannot represent missing values"
                ));
            }
            -1 if validity.is_null() => {}
            -1 if !readable => {
                return Err(err!(
                    ARROW_DLPACK_UNSUPPORTED_DEVICE,
                    "array.null_count is -1 (unknown) and the validity bitmap is in device memory \
                     (device type {}), which is never read: compute the null count on the device",
                    location.device.device_type
                ));
            }
            // Counted only once the whole tree is validated (`read`): a
            // bogus length must be refused before anything is read through it.
            _ => {
                return Ok(Checked {
                    first,
                    scan: Some(Scan {
                        bitmap: validity.cast(),
                        first: first as usize,
                        count: count as usize,
                        depth: self.depth,
                    }),
                });
            }
        }
        Ok(Checked { first, scan: None })
    }

    /// The address of element `first` of the values buffer.
    ///
    /// # Safety
    /// `self.array.buffers` has two entries (checked by `format`).
    unsafe fn values(
        &self,
        t: &dtype::DType,
        first: i64,
        count: i64,
    ) -> Result<*mut c_void, Error> {
        // SAFETY: two entries, see above.
        let values = unsafe { *self.array.buffers.add(1) };
        let width = t.width() as i64;
        let byte_end = first
            .checked_add(count)
            .and_then(|end| end.checked_mul(width));
        if byte_end.is_none_or(|end| end > isize::MAX as i64) {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "(array.offset + array.length) * {width} bytes overflows: offset {first}, length {count}"
            ));
        }
        if count == 0 {
            return Ok(std::ptr::null_mut());
        }
        if values.is_null() {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "buffers[1] (values) is NULL with length {count}"
            ));
        }
        // `wrapping_add`: the address may be device memory this process
        // cannot see; the offset is in bounds of the producer's buffer.
        Ok(values
            .cast::<u8>()
            .wrapping_add((first * width) as usize)
            .cast_mut()
            .cast())
    }

    /// The child of a `+w:size` level and the range of it the tensor covers.
    ///
    /// # Safety
    /// `self.schema.children`/`self.array.children` have one entry each
    /// (checked by `format`), NULL or valid.
    unsafe fn child(&self, size: i64, first: i64, count: i64) -> Result<ChildRange<'a>, Error> {
        let (Some(start), Some(child_count)) = (first.checked_mul(size), count.checked_mul(size))
        else {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "fixed_size_list of size {size}: (offset {first} + length {count}) * size overflows"
            ));
        };
        if self.schema.children.is_null() || self.array.children.is_null() {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "children is NULL with n_children 1"
            ));
        }
        // SAFETY: one entry each, see above.
        let (schema, array) = unsafe { (*self.schema.children, *self.array.children) };
        // SAFETY: non-NULL entries point at valid structs (trusted).
        let (Some(schema), Some(array)) = (unsafe { schema.as_ref() }, unsafe { array.as_ref() })
        else {
            return Err(err!(ARROW_DLPACK_INVALID_ARROW, "children[0] is NULL"));
        };
        Ok(ChildRange {
            level: Level {
                array,
                schema,
                depth: self.depth + 1,
            },
            start,
            count: child_count,
        })
    }
}
