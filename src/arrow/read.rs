//! The only reader of untrusted Arrow C structs.
//!
//! [`read`] turns an `ArrowArray`/`ArrowSchema` pair into a [`TensorView`]
//! (dtype, the first element's address, the device; shape and strides in a
//! [`Dims`]) in three layers, as nanoarrow validates
//! (`ArrowArrayViewSetArray` -> `ValidateMinimal` -> `ValidateFull`):
//!
//! 1. [`Structure`]: every level's format, buffer and child counts and the
//!    pointers that lead to the next level. Nothing but the structs is read.
//! 2. [`Ranges`], made only from a `Structure`: lengths, offsets and every
//!    size derived from them, checked; the range of each level the tensor
//!    covers; the null policy, deciding which bitmaps must be counted.
//! 3. [`Ranges::count_nulls`]: the only reads of buffer contents (validity
//!    bits), possible only once the whole tree passed the first two layers.
//!
//! Every export path starts from the view; nothing downstream dereferences
//! a raw Arrow pointer.
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

use crate::abi::{ArrowArray, ArrowSchema, DLDevice, K_DL_CPU};
use crate::bitmap;
use crate::dims::{Dims, MAX_NDIM};
use crate::dtype::{self, Accept, DType, Format, Shown};
use crate::error::{Error, err};
use crate::extension;

/// A validated description of the tensor an Arrow array can be shared as;
/// its shape and strides are in the [`Dims`] filled in beside it.
#[derive(Debug)]
pub struct TensorView {
    pub dtype: &'static DType,
    /// The first element, or NULL when the tensor has no element. For a
    /// bit-packed boolean: the byte holding the first element's bit.
    pub data: *mut c_void,
    /// For a bit-packed boolean: the first element's bit in `data[0]`.
    pub bit_offset: usize,
    /// Elements in all (the leaf level's covered range).
    pub elements: usize,
    pub device: DLDevice,
}

/// What a reader accepts beyond a plain export's shareable arrays, each
/// for a copy (or, temporal types, a share) that the caller decides on.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadMode {
    pub accept: Accept,
    /// Nulls are counted in the [`Nulls`] rather than refused.
    pub keep_nulls: bool,
}

/// The validity bits of one level's covered range, and what they cover.
#[derive(Debug, Clone, Copy)]
pub struct NullMap {
    /// A host-readable bitmap.
    pub bitmap: *const u8,
    /// The bit of the first covered entry.
    pub first: usize,
    /// Covered entries.
    pub count: usize,
    /// Leaf elements each entry covers (a list level's row, 1 at the leaf).
    pub per_entry: usize,
    /// The level (0: the array itself).
    pub depth: usize,
}

/// The validity bitmaps a read found to count (at most one per level),
/// and, with [`ReadMode::keep_nulls`], how many nulls they hold.
pub struct Nulls {
    maps: [MaybeUninit<NullMap>; MAX_NDIM],
    n: usize,
    /// Null entries found (over all levels), once counted.
    pub count: usize,
    /// The outermost level where they were found.
    pub depth: usize,
}

impl Default for Nulls {
    fn default() -> Nulls {
        Nulls::new()
    }
}

impl Nulls {
    pub fn new() -> Nulls {
        Nulls {
            maps: [const { MaybeUninit::uninit() }; MAX_NDIM],
            n: 0,
            count: 0,
            depth: 0,
        }
    }

    /// The bitmaps, outermost level first.
    pub fn maps(&self) -> &[NullMap] {
        // SAFETY: the first `n` entries are written by the reader.
        unsafe { std::slice::from_raw_parts(self.maps.as_ptr().cast(), self.n) }
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
    let mut nulls = Nulls::new();
    // SAFETY: forwarded from the caller.
    unsafe {
        read_with(
            array,
            schema,
            location,
            ReadMode::default(),
            dims,
            &mut nulls,
        )
    }
}

/// [`read`], accepting what `mode` says: the view, and in `nulls` the
/// validity bitmaps of the covered ranges (and, with `keep_nulls`, how
/// many nulls they hold, rather than `HAS_NULLS`).
///
/// # Safety
/// As [`read`].
#[inline(always)]
pub unsafe fn read_with(
    array: &ArrowArray,
    schema: &ArrowSchema,
    location: Location,
    mode: ReadMode,
    dims: &mut Dims,
    nulls: &mut Nulls,
) -> Result<TensorView, Error> {
    // The layers' storage lives on the callers' frames and is lent to them:
    // their values stay small (a level array returned by value is a
    // kilobyte copied on every export).
    let mut levels = [const { MaybeUninit::uninit() }; MAX_NDIM];
    // SAFETY: forwarded from the caller.
    let structure = unsafe { Structure::read(array, schema, mode.accept, &mut levels) }?;
    let mut ranges = structure.ranges(location, mode, dims, nulls)?;
    // SAFETY: the tree passed both layers above (the only way to make a
    // `Ranges`); bitmaps hold their array's `offset + length` bits (trusted).
    unsafe { ranges.count_nulls() }?;
    Ok(ranges.view)
}

/// One level of a (possibly nested) array, its structure validated.
#[derive(Clone, Copy)]
struct Level<'a> {
    array: &'a ArrowArray,
    format: Format,
}

/// Layer 1: the tree's levels, outermost first, each with a known format,
/// the buffer and child counts that format needs, and non-NULL pointers to
/// its buffers array and child.
struct Structure<'a, 'l> {
    /// The first `depth` entries are written.
    levels: &'l [MaybeUninit<Level<'a>>; MAX_NDIM],
    depth: usize,
    /// The top schema's `arrow.fixed_shape_tensor` parameters, if any.
    tensor_json: Option<&'a [u8]>,
}

/// Prefixes errors found below the top level with where they were found:
/// "child 0", "child 0.0", ...: the path of child indices.
pub fn locate(depth: usize, e: Error) -> Error {
    match depth {
        0 => e,
        d => e.context(format_args!("child 0{}", ".0".repeat(d - 1))),
    }
}

impl<'a, 'l> Structure<'a, 'l> {
    /// Reads the levels into `levels`. Inlined: its result crossing a call
    /// boundary stalled the export on store forwarding.
    ///
    /// # Safety
    /// As [`read`].
    #[inline(always)]
    unsafe fn read(
        array: &'a ArrowArray,
        schema: &'a ArrowSchema,
        accept: Accept,
        levels: &'l mut [MaybeUninit<Level<'a>>; MAX_NDIM],
    ) -> Result<Self, Error> {
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
        // SAFETY: `schema` is valid (caller's contract); its metadata block
        // is read only through checked lengths.
        let tensor_json = unsafe { extension::fixed_shape_tensor_json(schema) }?;
        let (mut array, mut schema, mut depth) = (array, schema, 0);
        loop {
            if depth == MAX_NDIM {
                return Err(err!(
                    ARROW_DLPACK_UNSUPPORTED_LAYOUT,
                    "more than {} nested fixed_size_list levels; DLPack consumers allow at most {MAX_NDIM} dimensions",
                    MAX_NDIM - 1
                ));
            }
            // SAFETY: the caller guarantees the top-level structs; a child
            // level comes from non-NULL pointers checked below.
            let format =
                unsafe { level_format(array, schema, accept) }.map_err(|e| locate(depth, e))?;
            levels[depth].write(Level { array, format });
            if let Format::Primitive(_) = format {
                return Ok(Structure {
                    levels,
                    depth: depth + 1,
                    tensor_json,
                });
            }
            // SAFETY: a list level has one child in each struct (checked
            // by `level_format`).
            (array, schema) = unsafe { child(array, schema) }.map_err(|e| locate(depth, e))?;
            depth += 1;
        }
    }

    fn level(&self, depth: usize) -> Level<'a> {
        debug_assert!(depth < self.depth);
        // SAFETY: the first `depth` levels are written by `read`.
        unsafe { self.levels[depth].assume_init() }
    }

    /// Layer 2: the ranges every level covers, checked, and the view; the
    /// bitmaps to count go to `nulls`. Inlined, as `read`.
    #[inline(always)]
    fn ranges<'s>(
        self,
        location: Location,
        mode: ReadMode,
        dims: &mut Dims,
        nulls: &'s mut Nulls,
    ) -> Result<Ranges<'s>, Error> {
        let top = self.level(0).array;
        // The range of the current level's elements that the tensor covers,
        // in the level's logical index space (before its own `offset`).
        let (mut start, mut count) = (0i64, top.length);
        dims.push(top.length)?;
        let mut ranges = Ranges {
            nulls,
            keep_nulls: mode.keep_nulls,
            view: TensorView {
                dtype: &dtype::TABLE[0],
                data: std::ptr::null_mut(),
                bit_offset: 0,
                elements: 0,
                device: location.device,
            },
        };
        for depth in 0..self.depth {
            let level = self.level(depth);
            let covered = level_range(level.array, start, count, depth, location, mode)
                .map_err(|e| locate(depth, e))?;
            if let Some(map) = covered.nulls {
                let nulls = &mut *ranges.nulls;
                nulls.maps[nulls.n].write(map);
                nulls.n += 1;
            }
            match level.format {
                Format::FixedSizeList(size) => {
                    dims.push(size)?;
                    let (Some(child_start), Some(child_count)) =
                        (covered.first.checked_mul(size), count.checked_mul(size))
                    else {
                        return Err(locate(
                            depth,
                            err!(
                                ARROW_DLPACK_INVALID_ARROW,
                                "fixed_size_list of size {size}: (offset {} + length {count}) * size overflows",
                                covered.first
                            ),
                        ));
                    };
                    (start, count) = (child_start, child_count);
                }
                Format::Primitive(t) => {
                    ranges.view.dtype = t;
                    (ranges.view.data, ranges.view.bit_offset) =
                        values(level.array, t, covered.first, count)
                            .map_err(|e| locate(depth, e))?;
                    ranges.view.elements = count as usize;
                }
            }
        }
        dims.set_row_major_strides()?;
        // Each level's entries cover a row of the levels below: the
        // storage's row-major strides, before any extension reshapes them.
        let nulls = &mut *ranges.nulls;
        for map in &mut nulls.maps[..nulls.n] {
            // SAFETY: the first `n` entries are written above.
            let map = unsafe { map.assume_init_mut() };
            map.per_entry = dims.strides()[map.depth] as usize;
        }
        if let Some(json) = self.tensor_json {
            extension::reshape(dims, json)?;
        }
        Ok(ranges)
    }
}

/// The format of one level, and the structure it needs: buffer and child
/// counts, a buffers array, no dictionary.
///
/// # Safety
/// `array` and `schema` are valid (`schema.format` NULL or a C string).
#[inline(always)]
unsafe fn level_format(
    array: &ArrowArray,
    schema: &ArrowSchema,
    accept: Accept,
) -> Result<Format, Error> {
    if schema.format.is_null() {
        return Err(err!(ARROW_DLPACK_INVALID_ARROW, "schema.format is NULL"));
    }
    let format = schema.format.cast::<u8>();
    // SAFETY: non-NULL, and the C Data Interface requires a NUL-terminated
    // string: byte 0 exists, and byte 1 does when byte 0 is not the
    // terminator. One-character formats (every primitive) skip `strlen`.
    let format = unsafe {
        if *format != 0 && *format.add(1) == 0 {
            std::slice::from_raw_parts(format, 1)
        } else {
            CStr::from_ptr(format.cast()).to_bytes()
        }
    };
    let parsed = dtype::classify(format, accept)?;
    if !schema.dictionary.is_null() {
        return Err(err!(
            ARROW_DLPACK_UNSUPPORTED_TYPE,
            "unsupported dictionary-encoded array (indices '{}'): decode it first",
            Shown(format)
        ));
    }
    let (n_buffers, n_children) = match parsed {
        Format::Primitive(_) => (2, 0),
        Format::FixedSizeList(_) => (1, 1),
    };
    if schema.n_children != n_children {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "schema.n_children is {}, format '{}' has {n_children}",
            schema.n_children,
            Shown(format)
        ));
    }
    if array.n_buffers != n_buffers {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "array.n_buffers is {}, format '{}' has {n_buffers}",
            array.n_buffers,
            Shown(format)
        ));
    }
    if array.n_children != n_children {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "array.n_children is {}, format '{}' has {n_children}",
            array.n_children,
            Shown(format)
        ));
    }
    if !array.dictionary.is_null() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "array.dictionary is set but the schema has no dictionary"
        ));
    }
    if array.buffers.is_null() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "array.buffers is NULL with n_buffers {}",
            array.n_buffers
        ));
    }
    Ok(parsed)
}

/// The child of a list level.
///
/// # Safety
/// `schema.children`/`array.children` have one entry each (checked by
/// `level_format`), NULL or valid.
#[inline(always)]
unsafe fn child<'a>(
    array: &'a ArrowArray,
    schema: &'a ArrowSchema,
) -> Result<(&'a ArrowArray, &'a ArrowSchema), Error> {
    if schema.children.is_null() || array.children.is_null() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "children is NULL with n_children 1"
        ));
    }
    // SAFETY: one entry each, see above.
    let (schema, array) = unsafe { (*schema.children, *array.children) };
    // SAFETY: non-NULL entries point at valid structs (trusted).
    match unsafe { (array.as_ref(), schema.as_ref()) } {
        (Some(array), Some(schema)) => Ok((array, schema)),
        _ => Err(err!(ARROW_DLPACK_INVALID_ARROW, "children[0] is NULL")),
    }
}

/// What layer 2 established about one level.
struct Covered {
    /// Physical index of the first element the tensor covers.
    first: i64,
    /// The validity bits to count, if this level may have nulls in the
    /// covered range.
    nulls: Option<NullMap>,
}

/// Checks length, offset and the null policy over the covered range
/// `[start, start + count)` of one level (logical indices). Reads the
/// buffers array's first entry (a pointer), never what it points at.
#[inline(always)]
fn level_range(
    a: &ArrowArray,
    start: i64,
    count: i64,
    depth: usize,
    location: Location,
    mode: ReadMode,
) -> Result<Covered, Error> {
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
    // Ranges are computed in i64 with overflow checks: every later pointer
    // offset is derived from them.
    if start.checked_add(count).is_none_or(|end| end > a.length) {
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
    // SAFETY: `buffers` is non-NULL with `n_buffers >= 1` entries (layer 1).
    let validity = unsafe { *a.buffers };
    let readable = location.is_host_readable();
    let nulls = match a.null_count {
        0 => None,
        n if n > 0 && validity.is_null() => {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "array.null_count is {n} but buffers[0] (validity) is NULL"
            ));
        }
        // A child's count covers all of it, not only the covered range:
        // count that range where the bitmap may be read. Where nulls are
        // kept, every level's are counted.
        n if n > 0 && ((depth == 0 && !mode.keep_nulls) || !readable) => {
            return Err(err!(
                ARROW_DLPACK_HAS_NULLS,
                "array has {n} nulls; DLPack cannot represent missing values"
            ));
        }
        -1 if validity.is_null() => None,
        -1 if !readable => {
            return Err(err!(
                ARROW_DLPACK_UNSUPPORTED_DEVICE,
                "array.null_count is -1 (unknown) and the validity bitmap is in device memory \
                 (device type {}), which is never read: compute the null count on the device",
                location.device.device_type
            ));
        }
        _ => Some(NullMap {
            bitmap: validity.cast(),
            first: first as usize,
            count: count as usize,
            per_entry: 1, // set once the levels below are known
            depth,
        }),
    };
    Ok(Covered { first, nulls })
}

/// The address of element `first` of a primitive level's values buffer
/// (for bit-packed booleans: of the byte holding its bit, and the bit).
#[inline(always)]
fn values(
    a: &ArrowArray,
    t: &DType,
    first: i64,
    count: i64,
) -> Result<(*mut c_void, usize), Error> {
    let width = t.width() as i64;
    let end = first.checked_add(count);
    let byte_end = match t.is_bit_packed() {
        true => end.map(|end| end / 8 + 1),
        false => end.and_then(|end| end.checked_mul(width)),
    };
    if byte_end.is_none_or(|end| end > isize::MAX as i64) {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "(array.offset + array.length) * {width} bytes overflows: offset {first}, length {count}"
        ));
    }
    if count == 0 {
        return Ok((std::ptr::null_mut(), 0));
    }
    // SAFETY: a primitive level has two buffer entries (layer 1).
    let values = unsafe { *a.buffers.add(1) };
    if values.is_null() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "buffers[1] (values) is NULL with length {count}"
        ));
    }
    // `wrapping_add`: the address may be device memory this process cannot
    // see; the offset is in bounds of the producer's buffer.
    let (byte, bit) = match t.is_bit_packed() {
        true => (first / 8, (first % 8) as usize),
        false => (first * width, 0),
    };
    let address = values.cast::<u8>().wrapping_add(byte as usize);
    Ok((address.cast_mut().cast(), bit))
}

/// Layer 2's outcome: the view, and the bitmaps layer 3 must count.
struct Ranges<'s> {
    nulls: &'s mut Nulls,
    keep_nulls: bool,
    view: TensorView,
}

impl Ranges<'_> {
    /// Layer 3: counts the validity bits of the covered ranges: any null is
    /// `HAS_NULLS`, unless nulls are kept (then they are counted).
    ///
    /// # Safety
    /// Each bitmap holds its array's `offset + length` bits (trusted, as
    /// the C Data Interface says); the tree passed layers 1 and 2.
    unsafe fn count_nulls(&mut self) -> Result<(), Error> {
        let (mut total, mut depth) = (0, 0);
        for map in self.nulls.maps() {
            let bytes = (map.first + map.count).div_ceil(8);
            // SAFETY: forwarded from the caller.
            let bitmap = unsafe { std::slice::from_raw_parts(map.bitmap, bytes) };
            let nulls = map.count - bitmap::count_set_bits(bitmap, map.first, map.count);
            if nulls > 0 && !self.keep_nulls {
                return Err(locate(
                    map.depth,
                    err!(
                        ARROW_DLPACK_HAS_NULLS,
                        "array has {nulls} nulls (counted in its validity bitmap); DLPack cannot represent missing values"
                    ),
                ));
            }
            if total == 0 {
                depth = map.depth;
            }
            total += nulls;
        }
        (self.nulls.count, self.nulls.depth) = (total, depth);
        Ok(())
    }
}
