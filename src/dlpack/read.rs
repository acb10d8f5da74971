//! The only reader of untrusted DLPack tensors.
//!
//! [`plan`] reads a tensor once and decides what it becomes: a primitive
//! array (0-D and 1-D contiguous tensors) or an `arrow.fixed_shape_tensor`
//! over the first dimension (dense N-D tensors, with a permutation for
//! non-row-major orders), or an error naming the field. Every size derived
//! from the tensor's extents is computed checked. Device memory is never
//! dereferenced.

use crate::abi::*;
use crate::dims::{Dims, MAX_NDIM};
use crate::dtype::{self, DType};
use crate::error::{Error, Status, err};

/// Which memory an import accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    /// `arrow_dlpack_import[_versioned]`: memory this process can read.
    HostReadable,
    /// `arrow_dlpack_import_device`: any device Arrow can name.
    AnyDevice,
}

/// What a tensor becomes.
#[derive(Debug)]
pub struct TensorPlan {
    pub dtype: &'static DType,
    /// The first element (`data + byte_offset`).
    pub data: *mut u8,
    /// Elements in all (the values array's length).
    pub elements: i64,
    /// The Arrow array's length: the first dimension (1 for a 0-D tensor).
    pub length: i64,
    /// For N-D tensors, what each row is.
    pub rows: Option<TensorRows>,
    pub device: DLDevice,
    /// Read for a copy ([`plan_for_copy`]) of a tensor that cannot be
    /// shared as is (strides Arrow cannot describe): why not. The copy
    /// gathers it row-major (`rows` then describe the copy).
    pub unshareable: Option<Box<Error>>,
}

/// The rows of an N-D tensor: an `arrow.fixed_shape_tensor` of
/// `physical` shape (row-major in memory) over a `fixed_size_list` of
/// `list_size` elements.
#[derive(Debug, PartialEq, Eq)]
pub struct TensorRows {
    pub physical: Vec<i64>,
    /// Logical dimension `i` is physical dimension `permutation[i]`
    /// (`None`: row-major, the identity).
    pub permutation: Option<Vec<usize>>,
    pub list_size: i32,
}

/// Reads and checks a tensor, to be shared.
///
/// # Safety
/// `t` is a live tensor: `shape`/`strides` hold `ndim` entries when not
/// NULL.
pub unsafe fn plan(t: &DLTensor, memory: Memory) -> Result<TensorPlan, Error> {
    // SAFETY: `plan`'s caller promises it: `t` is a live tensor: `shape`/`strides` hold `ndim`
    // entries when not NULL.
    unsafe { read(t, memory, false) }
}

/// Reads and checks a tensor that may be copied: kDLBool is accepted (to
/// be packed), and strides Arrow cannot share are recorded in
/// `unshareable` rather than refused, with `rows` describing the
/// row-major copy.
///
/// # Safety
/// As [`plan`].
pub unsafe fn plan_for_copy(t: &DLTensor, memory: Memory) -> Result<TensorPlan, Error> {
    // SAFETY: `plan_for_copy`'s caller promises it: as `plan`'s: `t` is a live tensor:
    // `shape`/`strides` hold `ndim` entries when not NULL.
    unsafe { read(t, memory, true) }
}

/// Reads the offsets tensor of a jagged import (host memory, to be
/// shared or gathered): int32 or int64 (`true`: int64), 1-D, at least one
/// entry. The entries themselves are checked by [`check_offsets`] once
/// they lie where the list will read them.
///
/// # Safety
/// As [`plan`].
pub unsafe fn offsets_plan(t: &DLTensor) -> Result<(TensorPlan, bool), Error> {
    // SAFETY: `offsets_plan`'s caller promises it: as `plan`'s: `t` is a live tensor:
    // `shape`/`strides` hold `ndim` entries when not NULL.
    let plan = unsafe { plan_for_copy(t, Memory::HostReadable) }?;
    let large = match plan.dtype.elem {
        dtype::Elem::I32 => false,
        dtype::Elem::I64 => true,
        _ => {
            return Err(err!(
                ARROW_DLPACK_UNSUPPORTED_TYPE,
                "dtype {} is not int32 or int64",
                plan.dtype.name
            ));
        }
    };
    if plan.rows.is_some() || plan.elements < 1 || t.ndim > 1 {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "a 1-D tensor of length + 1 entries expected, not ndim {} with {} elements",
            t.ndim,
            plan.elements
        ));
    }
    Ok((plan, large))
}

/// Checks `count` offsets (`entry(i)`, the offsets as the list will read
/// them) against values of `limit` rows: the first at least 0, none
/// decreasing, the last at most `limit` (Arrow consumers trust offsets).
pub fn check_offsets(count: usize, entry: impl Fn(usize) -> i64, limit: i64) -> Result<(), Error> {
    let mut previous = entry(0);
    if previous < 0 {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "offsets[0] is {previous}: offsets start at 0 or later"
        ));
    }
    for i in 1..count {
        let next = entry(i);
        if next < previous {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "offsets[{i}] is {next}, after {previous}: offsets never decrease"
            ));
        }
        previous = next;
    }
    if previous > limit {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "offsets end at {previous}, beyond the values' {limit} rows"
        ));
    }
    Ok(())
}

/// The extent of dimension `i` of a tensor, if it has that dimension
/// (`None` also for a NULL shape).
///
/// # Safety
/// `t` is a live tensor: `shape` holds `ndim` entries when not NULL.
// The Python face's (`from_dlpack(columns=...)`).
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub unsafe fn extent(t: &DLTensor, i: usize) -> Option<i64> {
    let ndim = usize::try_from(t.ndim).ok()?;
    if i >= ndim || t.shape.is_null() {
        return None;
    }
    // SAFETY: `i < ndim` entries (caller's contract).
    Some(unsafe { *t.shape.add(i) })
}

/// What a tensor allocated like `prototype` (the DLPack exchange API's
/// allocator) is: its dtype, row-major dims and bytes. Only the
/// prototype's dtype, `ndim` and shape are read; its data never is.
///
/// # Safety
/// As [`extent`].
// The Python face's (the exchange API it offers).
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub unsafe fn prototype(t: &DLTensor) -> Result<(DLDataType, Dims, u64), Error> {
    let ndim = usize::try_from(t.ndim)
        .ok()
        .filter(|&n| n <= MAX_NDIM)
        .ok_or_else(|| {
            err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "ndim {} is not in 0..={MAX_NDIM}",
                t.ndim
            )
        })?;
    if ndim > 0 && t.shape.is_null() {
        return Err(err!(ARROW_DLPACK_INVALID_ARGUMENT, "shape is NULL"));
    }
    let dtype = t.dtype;
    let bits = u64::from(dtype.bits) * u64::from(dtype.lanes);
    if bits == 0 {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "dtype with {} bits and {} lanes has no size",
            dtype.bits,
            dtype.lanes
        ));
    }
    let mut dims = Dims::new();
    let mut bytes = bits.div_ceil(8);
    for i in 0..ndim {
        // SAFETY: `shape` holds `ndim` extents (caller's contract).
        let extent = unsafe { *t.shape.add(i) };
        bytes = u64::try_from(extent)
            .ok()
            .and_then(|e| bytes.checked_mul(e))
            .ok_or_else(|| {
                err!(
                    ARROW_DLPACK_INVALID_ARGUMENT,
                    "shape[{i}] = {extent} is negative or too large"
                )
            })?;
        dims.push(extent)?;
    }
    dims.set_row_major_strides()?;
    Ok((dtype, dims, bytes))
}

/// The tensor's shape and strides in elements (row-major for NULL
/// strides), once [`plan`] or [`plan_for_copy`] accepted it.
///
/// # Safety
/// `t` is the live tensor a plan was made from.
pub unsafe fn shape_strides(t: &DLTensor) -> (Vec<i64>, Vec<i64>) {
    let ndim = t.ndim as usize;
    if ndim == 0 {
        return (vec![], vec![]);
    }
    // SAFETY: `ndim` entries, not NULL (checked by the plan).
    let shape = unsafe { std::slice::from_raw_parts(t.shape, ndim) }.to_vec();
    let strides = match t.strides.is_null() {
        // SAFETY: as for the block above, `ndim` entries, not NULL (checked by the plan).
        false => unsafe { std::slice::from_raw_parts(t.strides, ndim) }.to_vec(),
        true => {
            let mut s = vec![0; ndim];
            // The plan checked that the total fits: so do these products.
            crate::dims::row_major_strides(&shape, |d, stride| s[d] = stride);
            s
        }
    };
    (shape, strides)
}

/// # Safety
/// As [`plan`].
unsafe fn read(t: &DLTensor, memory: Memory, for_copy: bool) -> Result<TensorPlan, Error> {
    let dtype = match for_copy {
        true => dtype::from_dlpack_or_bool(t.dtype),
        false => dtype::from_dlpack(t.dtype),
    }
    .ok_or_else(|| dtype::unsupported_dlpack(t.dtype))?;
    check_device(t.device, memory)?;
    let ndim = usize::try_from(t.ndim).map_err(|_| {
        err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "tensor ndim is negative ({})",
            t.ndim
        )
    })?;
    if ndim > MAX_NDIM {
        return Err(err!(
            ARROW_DLPACK_UNSUPPORTED_LAYOUT,
            "tensor ndim {ndim} exceeds {MAX_NDIM}"
        ));
    }
    if ndim > 0 && t.shape.is_null() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "tensor shape is NULL with ndim {ndim}"
        ));
    }
    let shape: &[i64] = if ndim == 0 {
        &[]
    } else {
        // SAFETY: `ndim` entries, not NULL (checked above; caller's contract).
        unsafe { std::slice::from_raw_parts(t.shape, ndim) }
    };
    // NULL strides mean row-major (DLPack < 1.2).
    let strides: Option<&[i64]> = (ndim > 0 && !t.strides.is_null()).then(|| {
        // SAFETY: `ndim` entries, not NULL (caller's contract).
        unsafe { std::slice::from_raw_parts(t.strides, ndim) }
    });
    if let Some(d) = shape.iter().position(|&e| e < 0) {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "tensor shape {shape:?}: dimension {d} is negative"
        ));
    }
    let width = dtype.width();
    let total = shape.iter().try_fold(1i64, |n, &e| n.checked_mul(e));
    let byte_len = total
        .and_then(|n| usize::try_from(n).ok())
        .and_then(|n| n.checked_mul(width));
    let Some(byte_len) = byte_len.filter(|&n| n <= isize::MAX as usize) else {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "tensor shape {shape:?} of {} overflows",
            dtype.name
        ));
    };
    if let Some(s) = strides.filter(|_| byte_len > 0) {
        // The bytes from the lowest element to the end of the highest: the
        // elements of a real tensor lie in this process's address space, so
        // this fits in `isize`, and every offset the copy kernels form from
        // the strides (an index times a stride times the width, each index
        // below its extent) is then in range too. Extent-1 dimensions add
        // nothing: their index is always 0, whatever their stride.
        let span = shape
            .iter()
            .zip(s)
            .try_fold(1i64, |span, (&e, &stride)| match e {
                1 => Some(span),
                _ => (e - 1)
                    .checked_mul(stride.checked_abs()?)?
                    .checked_add(span),
            });
        let span = span
            .and_then(|n| usize::try_from(n).ok())
            .and_then(|n| n.checked_mul(width));
        if span.is_none_or(|n| n > isize::MAX as usize) {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "tensor strides {s:?} for shape {shape:?}: its elements would span more than the address space"
            ));
        }
    }
    let Ok(byte_offset) = usize::try_from(t.byte_offset) else {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "tensor byte_offset {} overflows",
            t.byte_offset
        ));
    };
    if byte_len > 0 && t.data.is_null() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "tensor data is NULL with {byte_len} bytes"
        ));
    }
    // `wrapping_add`: possibly device memory, never dereferenced here.
    let data = t.data.cast::<u8>().wrapping_add(byte_offset);
    let mut unshareable = None;
    let (length, rows) = match ndim {
        0 => (1, None),
        1 => {
            if let Some(s) = strides.filter(|s| shape[0] > 1 && s[0] != 1) {
                let e = err!(
                    ARROW_DLPACK_UNSUPPORTED_LAYOUT,
                    "tensor strides {s:?} for shape {shape:?}: an Arrow array needs contiguous elements (stride 1)"
                );
                match for_copy {
                    true => unshareable = Some(Box::new(e)),
                    false => return Err(e),
                }
            }
            (shape[0], None)
        }
        _ => match (row_shape(shape, strides), for_copy) {
            (Ok(r), _) => (shape[0], Some(r)),
            (Err(e), false) => return Err(e),
            // Only a layout can be unshareable here: sizes are refused.
            (Err(e), true) if e.status() == Status::ARROW_DLPACK_UNSUPPORTED_LAYOUT => {
                unshareable = Some(Box::new(e));
                (shape[0], Some(row_shape(shape, None)?))
            }
            (Err(e), true) => return Err(e),
        },
    };
    Ok(TensorPlan {
        dtype,
        data,
        elements: (byte_len / width) as i64,
        length,
        rows,
        device: t.device,
        unshareable,
    })
}

/// The physical shape and permutation of the rows of a dense N-D tensor
/// whose first dimension is outermost.
fn row_shape(shape: &[i64], strides: Option<&[i64]>) -> Result<TensorRows, Error> {
    let inner = &shape[1..];
    // Checked even though the total fit: a 0 extent makes the total 0
    // whatever the others are. Folded from the innermost dimension, so that
    // every partial product is checked: those are the row-major strides of
    // the extension's shape, and the last one is the fixed_size_list size.
    let Some(row) = inner.iter().rev().try_fold(1i64, |n, &e| n.checked_mul(e)) else {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "tensor shape {shape:?}: a row of {inner:?} elements overflows"
        ));
    };
    let Ok(list_size) = i32::try_from(row) else {
        return Err(err!(
            ARROW_DLPACK_UNSUPPORTED_LAYOUT,
            "a row of {row} elements exceeds fixed_size_list's 32-bit size"
        ));
    };
    let rows = |physical: Vec<i64>, permutation| TensorRows {
        physical,
        permutation,
        list_size,
    };
    let Some(strides) = strides.filter(|_| shape.iter().all(|&e| e > 0)) else {
        // Row-major (NULL strides), or no element at all: any strides do.
        return Ok(rows(inner.to_vec(), None));
    };
    let unsupported = |why: &str| {
        err!(
            ARROW_DLPACK_UNSUPPORTED_LAYOUT,
            "tensor strides {strides:?} for shape {shape:?}: {why}"
        )
    };
    if shape[0] > 1 && strides[0] != row {
        return Err(unsupported(
            "the first dimension must be outermost and dense (stride = product of the others)",
        ));
    }
    let inner_strides = &strides[1..];
    if is_dense_in(inner, inner_strides, &(0..inner.len()).collect::<Vec<_>>()) {
        return Ok(rows(inner.to_vec(), None)); // row-major
    }
    // Physical order, outermost first: the dimensions by decreasing stride
    // (stable); dimensions of extent 1 have no meaningful stride and go last.
    let mut order: Vec<usize> = (0..inner.len()).collect();
    order.sort_by_key(|&d| (inner[d] == 1, std::cmp::Reverse(inner_strides[d])));
    if !is_dense_in(inner, inner_strides, &order) {
        return Err(unsupported(
            "not dense (gaps, overlaps, or negative or zero strides)",
        ));
    }
    let physical: Vec<i64> = order.iter().map(|&d| inner[d]).collect();
    // Logical dimension i is physical dimension permutation[i].
    let mut permutation = vec![0; inner.len()];
    for (position, &d) in order.iter().enumerate() {
        permutation[d] = position;
    }
    Ok(rows(physical, Some(permutation)))
}

/// Whether the dimensions, taken in `order` (outermost first), are laid out
/// row-major without gaps; extent-1 dimensions' strides do not matter.
fn is_dense_in(shape: &[i64], strides: &[i64], order: &[usize]) -> bool {
    let mut expected = 1i64;
    for &d in order.iter().rev() {
        if shape[d] > 1 && strides[d] != expected {
            return false;
        }
        let Some(next) = expected.checked_mul(shape[d]) else {
            return false;
        };
        expected = next;
    }
    true
}

fn check_device(device: DLDevice, memory: Memory) -> Result<(), Error> {
    let readable = crate::device::is_host_readable(device.device_type);
    let arrow_has_it = crate::device::arrow_has(device.device_type);
    match memory {
        Memory::HostReadable if readable => Ok(()),
        Memory::HostReadable => Err(err!(
            ARROW_DLPACK_UNSUPPORTED_DEVICE,
            "tensor on device type {} id {}: plain import takes host-readable memory; use arrow_dlpack_import_device",
            device.device_type,
            device.device_id
        )),
        Memory::AnyDevice if arrow_has_it => Ok(()),
        Memory::AnyDevice => Err(err!(
            ARROW_DLPACK_UNSUPPORTED_DEVICE,
            "tensor on device type {}: Arrow has no such device type",
            device.device_type
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_major_and_permuted_rows() {
        let rows = |s: &[i64], t: Option<&[i64]>| {
            row_shape(s, t)
                .map(|r| (r.physical, r.permutation))
                .unwrap()
        };
        assert_eq!(rows(&[2, 3, 4], None), (vec![3, 4], None));
        assert_eq!(rows(&[2, 3, 4], Some(&[12, 4, 1])), (vec![3, 4], None));
        // np.arange(24).reshape(2, 4, 3).transpose(0, 2, 1)
        assert_eq!(
            rows(&[2, 3, 4], Some(&[12, 1, 3])),
            (vec![4, 3], Some(vec![1, 0]))
        );
        // Extent-1 dimensions: strides are irrelevant.
        assert_eq!(rows(&[2, 1, 4], Some(&[4, 99, 1])), (vec![1, 4], None));
        assert_eq!(rows(&[1, 3, 4], Some(&[7, 4, 1])), (vec![3, 4], None));
        // No element: any strides.
        assert_eq!(rows(&[0, 3], Some(&[-5, 0])), (vec![3], None));
    }

    /// A float64 tensor of `shape` and `strides` on the CPU, read for a copy.
    fn read_strided(shape: &mut [i64], strides: &mut [i64]) -> Result<TensorPlan, Error> {
        let mut data = [0f64; 4];
        let t = DLTensor {
            data: data.as_mut_ptr().cast(),
            device: DLDevice {
                device_type: K_DL_CPU,
                device_id: 0,
            },
            ndim: shape.len() as i32,
            dtype: DLDataType {
                code: K_DL_FLOAT,
                bits: 64,
                lanes: 1,
            },
            shape: shape.as_mut_ptr(),
            strides: strides.as_mut_ptr(),
            byte_offset: 0,
        };
        // SAFETY: shape and strides hold `ndim` entries; only the
        // metadata is read.
        unsafe { plan_for_copy(&t, Memory::HostReadable) }
    }

    #[test]
    fn strides_past_the_address_space_are_refused() {
        for (shape, strides) in [
            (vec![2, 2], vec![i64::MAX, 1]),
            (vec![2, 2], vec![1, i64::MIN]),
            (vec![3, 2], vec![i64::MAX / 4, 1]),
            (vec![2], vec![isize::MAX as i64 / 8 + 1]),
        ] {
            let (mut shape, mut strides) = (shape, strides);
            let e = read_strided(&mut shape, &mut strides).unwrap_err();
            assert_eq!(e.status(), Status::ARROW_DLPACK_INVALID_ARGUMENT, "{e}");
            assert!(e.message().contains(&format!("{strides:?}")), "{e}");
        }
        // Any stride on an extent-1 dimension, and on an empty tensor.
        for (shape, strides) in [
            (vec![1, 2], vec![i64::MAX, 1]),
            (vec![2, 1], vec![-1, i64::MIN]),
            (vec![0, 2], vec![i64::MAX, i64::MAX]),
            (vec![2, 2], vec![-2, -1]),
        ] {
            let (mut shape, mut strides) = (shape, strides);
            read_strided(&mut shape, &mut strides).unwrap();
        }
    }

    #[test]
    fn layouts_that_need_a_copy_are_refused() {
        for strides in [[1, 2], [6, 2], [3, -1], [3, 0]] {
            let e = row_shape(&[2, 3], Some(&strides)).unwrap_err();
            assert_eq!(
                e.status(),
                crate::Status::ARROW_DLPACK_UNSUPPORTED_LAYOUT,
                "{strides:?}"
            );
            assert!(e.message().contains(&format!("{strides:?}")), "{e}");
        }
    }
}
