//! DLPack tensor -> Arrow array, zero-copy.
//!
//! [`plan`] reads the untrusted tensor once and decides what it becomes: a
//! primitive array (0-D and 1-D contiguous tensors) or an
//! `arrow.fixed_shape_tensor` over the first dimension (dense N-D tensors,
//! with a permutation for non-row-major orders). Two builders then make the
//! Arrow array around the tensor, whose deleter runs once, when the last
//! array sharing it is released:
//!
//! - [`import_to_c`] (the C entry points) writes the C Data Interface
//!   structs itself, schema included, with release callbacks that share one
//!   owner of the tensor. Device memory is never dereferenced, nor turned
//!   into a Rust reference.
//! - [`import`] (the safe Rust API, host memory only) builds arrow-rs
//!   `ArrayData` around a `Buffer` that owns the tensor.
//!
//! Nothing is copied.

use std::collections::HashMap;
use std::ffi::CStr;
use std::fmt::Write as _;
use std::ptr::NonNull;
use std::sync::Arc;

use arrow_buffer::Buffer;
use arrow_data::{ArrayData, ArrayDataBuilder};
use arrow_schema::{DataType, Field};

use crate::abi::*;
use crate::dtype::{self, DType};
use crate::error::{Error, err};
use crate::extension::{EXTENSION_METADATA_KEY, EXTENSION_NAME_KEY, FIXED_SHAPE_TENSOR};
use crate::view::MAX_NDIM;

/// An owned DLPack tensor of either flavour.
#[derive(Debug)]
pub enum Managed {
    Legacy(NonNull<DLManagedTensor>),
    Versioned(NonNull<DLManagedTensorVersioned>),
}

impl Managed {
    /// # Safety
    /// The tensor is live.
    pub unsafe fn dl_tensor(&self) -> &DLTensor {
        // SAFETY: live (caller's contract).
        unsafe {
            match self {
                Managed::Legacy(t) => &t.as_ref().dl_tensor,
                Managed::Versioned(t) => &t.as_ref().dl_tensor,
            }
        }
    }

    /// Calls the tensor's deleter (if it has one).
    ///
    /// # Safety
    /// The tensor is live and owned by the caller; it is dead afterwards.
    pub unsafe fn delete(&self) {
        // SAFETY: live and owned (caller's contract); deleted once.
        unsafe {
            match *self {
                Managed::Legacy(t) => {
                    if let Some(deleter) = (*t.as_ptr()).deleter {
                        deleter(t.as_ptr())
                    }
                }
                Managed::Versioned(t) => {
                    if let Some(deleter) = (*t.as_ptr()).deleter {
                        deleter(t.as_ptr())
                    }
                }
            }
        }
    }
}

/// Owns a tensor inside an Arrow buffer: dropping it (when the last array
/// sharing the buffer is released) calls the tensor's deleter, once.
struct TensorOwner(Managed);

// SAFETY: DLPack deleters may be called from any thread (the tensor is
// handed over with its ownership), and the owner is never read otherwise.
unsafe impl Send for TensorOwner {}
// SAFETY: as above: no shared access to the tensor ever happens through it.
unsafe impl Sync for TensorOwner {}
impl std::panic::RefUnwindSafe for TensorOwner {}

impl Drop for TensorOwner {
    fn drop(&mut self) {
        // SAFETY: the owner holds the only ownership of a live tensor.
        unsafe { self.0.delete() };
    }
}

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
pub struct Plan {
    dtype: &'static DType,
    data: *mut u8,
    byte_len: usize,
    length: i64,
    /// For N-D tensors: the physical shape of one row and the permutation
    /// (`None`: row-major).
    tensor_type: Option<(Vec<i64>, Option<Vec<usize>>)>,
    pub device: DLDevice,
}

/// Reads and checks a tensor.
///
/// # Safety
/// `t` is a live tensor: `shape`/`strides` hold `ndim` entries when not
/// NULL.
pub unsafe fn plan(t: &DLTensor, memory: Memory) -> Result<Plan, Error> {
    let dtype = dtype::from_dlpack(t.dtype).ok_or_else(|| unsupported_dtype(t.dtype))?;
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
    let (length, tensor_type) = match ndim {
        0 => (1, None),
        1 => {
            if let Some(s) = strides.filter(|s| shape[0] > 1 && s[0] != 1) {
                return Err(err!(
                    ARROW_DLPACK_UNSUPPORTED_LAYOUT,
                    "tensor strides {s:?} for shape {shape:?}: an Arrow array needs contiguous elements (stride 1)"
                ));
            }
            (shape[0], None)
        }
        _ => (shape[0], Some(rows(shape, strides)?)),
    };
    Ok(Plan {
        dtype,
        data,
        byte_len,
        length,
        tensor_type,
        device: t.device,
    })
}

/// The physical shape and permutation of the rows of a dense N-D tensor
/// whose first dimension is outermost.
fn rows(shape: &[i64], strides: Option<&[i64]>) -> Result<(Vec<i64>, Option<Vec<usize>>), Error> {
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
    let Some(strides) = strides.filter(|_| shape.iter().all(|&e| e > 0)) else {
        // Row-major (NULL strides), or no element at all: any strides do.
        return Ok((inner.to_vec(), None));
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
        return Ok((inner.to_vec(), None)); // row-major
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
    Ok((physical, Some(permutation)))
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

fn unsupported_dtype(t: DLDataType) -> Error {
    let name = match t.code {
        K_DL_BOOL => "bool",
        K_DL_BFLOAT => "bfloat16",
        K_DL_COMPLEX => "complex",
        K_DL_OPAQUE_HANDLE => "opaque handle",
        7..=17 => "a float8/6/4 format",
        K_DL_INT | K_DL_UINT | K_DL_FLOAT if t.lanes != 1 => "a vector type",
        K_DL_INT | K_DL_UINT | K_DL_FLOAT => "a width Arrow lacks",
        _ => "unknown",
    };
    err!(
        ARROW_DLPACK_UNSUPPORTED_TYPE,
        "unsupported dtype {{code {}, bits {}, lanes {}}} ({name}): Arrow shares int/uint 8-64 and float 16/32/64 with lanes 1",
        t.code,
        t.bits,
        t.lanes
    )
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

impl Plan {
    /// For N-D tensors, the list size of a row and the extension's JSON
    /// parameters; `None` for primitive arrays.
    fn extension(&self) -> Result<Option<(i32, String)>, Error> {
        let Some((physical, permutation)) = &self.tensor_type else {
            return Ok(None);
        };
        // `rows` checked this product; checked again rather than trusted.
        let row = physical
            .iter()
            .rev()
            .try_fold(1i64, |n, &e| n.checked_mul(e))
            .unwrap_or(i64::MAX);
        let list_size = i32::try_from(row).map_err(|_| {
            err!(
                ARROW_DLPACK_UNSUPPORTED_LAYOUT,
                "a row of {row} elements exceeds fixed_size_list's 32-bit size"
            )
        })?;
        let mut json = format!("{{\"shape\":{physical:?}");
        if let Some(p) = permutation {
            let _ = write!(json, ",\"permutation\":{p:?}");
        }
        json.push('}');
        Ok(Some((list_size, json)))
    }

    /// The arrow-rs field: the primitive type, or the fixed_shape_tensor
    /// extension over a fixed_size_list (for the Rust API).
    pub fn field(&self) -> Result<Field, Error> {
        let value_type = data_type(self.dtype);
        let Some((list_size, json)) = self.extension()? else {
            return Ok(Field::new("", value_type, false));
        };
        let item = Arc::new(Field::new("item", value_type, false));
        let metadata = HashMap::from([
            (utf8(EXTENSION_NAME_KEY), utf8(FIXED_SHAPE_TENSOR)),
            (utf8(EXTENSION_METADATA_KEY), json),
        ]);
        Ok(Field::new("", DataType::FixedSizeList(item, list_size), false).with_metadata(metadata))
    }

    /// The C schema (for the C entry points), built here: a primitive's
    /// allocates nothing; a tensor's, one block.
    fn c_schema(&self) -> Result<ArrowSchema, Error> {
        let format = self.dtype.c_format();
        let Some((list_size, json)) = self.extension()? else {
            return Ok(static_schema(format, c""));
        };
        let mut metadata = 2i32.to_ne_bytes().to_vec();
        for part in [
            EXTENSION_NAME_KEY,
            FIXED_SHAPE_TENSOR,
            EXTENSION_METADATA_KEY,
            json.as_bytes(),
        ] {
            metadata.extend((part.len() as i32).to_ne_bytes());
            metadata.extend(part);
        }
        let child = Box::into_raw(Box::new(static_schema(format, c"item")));
        let private = Box::into_raw(Box::new(SchemaPrivate {
            format: std::ffi::CString::new(format!("+w:{list_size}")).expect("no NUL"),
            metadata,
            children: [child],
        }));
        // SAFETY: fields of the live allocation just made; the CString and
        // the Vec's heap buffer stay put while the box lives.
        unsafe {
            Ok(ArrowSchema {
                format: (*private).format.as_ptr(),
                name: c"".as_ptr(),
                metadata: (*private).metadata.as_ptr().cast(),
                flags: 0,
                n_children: 1,
                children: (&raw mut (*private).children).cast(),
                dictionary: std::ptr::null_mut(),
                release: Some(release_schema),
                private_data: private.cast(),
            })
        }
    }

    /// The array, owning `tensor`. Infallible by design: once it runs, the
    /// tensor belongs to the array.
    ///
    /// # Safety
    /// `tensor` is the live tensor this plan was made from, owned by the
    /// caller, who gives it up.
    pub unsafe fn build(&self, field: &Field, tensor: Managed) -> ArrayData {
        let owner: Arc<dyn arrow_buffer::alloc::Allocation> = Arc::new(TensorOwner(tensor));
        let ptr = NonNull::new(self.data).unwrap_or(NonNull::dangling());
        // SAFETY: the tensor holds `byte_len` bytes at `data` (checked in
        // `plan`, trusted as DLPack lets a consumer trust it), alive until
        // the owner runs the deleter.
        let buffer = unsafe { Buffer::from_custom_allocation(ptr, self.byte_len, owner) };
        let elements = self.byte_len / self.dtype.width();
        let values = ArrayDataBuilder::new(data_type(self.dtype))
            .len(elements)
            .add_buffer(buffer);
        // SAFETY: the length matches the buffer exactly and there is no
        // validity buffer. Validation is skipped because it would reject
        // buffers that are not aligned to the element size, which the C
        // Data Interface allows, and because device memory must not be
        // inspected.
        let values = unsafe { values.build_unchecked() };
        match field.data_type() {
            DataType::FixedSizeList(..) => {
                let list = ArrayDataBuilder::new(field.data_type().clone())
                    .len(self.length as usize)
                    .add_child_data(values);
                // SAFETY: as above; `length * list_size == elements`.
                unsafe { list.build_unchecked() }
            }
            _ => values,
        }
    }
}

fn utf8(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What a tensor's `ArrowSchema` owns.
struct SchemaPrivate {
    format: std::ffi::CString,
    metadata: Vec<u8>,
    children: [*mut ArrowSchema; 1],
}

/// A schema of static strings that owns nothing (`private_data` NULL).
fn static_schema(format: &'static CStr, name: &'static CStr) -> ArrowSchema {
    ArrowSchema {
        format: format.as_ptr(),
        name: name.as_ptr(),
        metadata: std::ptr::null(),
        flags: 0,
        n_children: 0,
        children: std::ptr::null_mut(),
        dictionary: std::ptr::null_mut(),
        release: Some(release_schema),
        private_data: std::ptr::null_mut(),
    }
}

/// The release callback of imported schemas.
unsafe extern "C" fn release_schema(schema: *mut ArrowSchema) {
    // SAFETY: called by the consumer on a live schema made here; private
    // data, when set, and its child come from `Box::into_raw`.
    unsafe {
        let Some(_) = (*schema).release else { return };
        let private = (*schema).private_data.cast::<SchemaPrivate>();
        if !private.is_null() {
            let private = Box::from_raw(private);
            let child = private.children[0];
            if let Some(release) = (*child).release {
                release(child);
            }
            drop(Box::from_raw(child));
        }
        (*schema).release = None;
    }
}

/// The arrow-rs type of a table entry.
pub fn data_type(t: &DType) -> DataType {
    match t.format {
        b'c' => DataType::Int8,
        b'C' => DataType::UInt8,
        b's' => DataType::Int16,
        b'S' => DataType::UInt16,
        b'i' => DataType::Int32,
        b'I' => DataType::UInt32,
        b'l' => DataType::Int64,
        b'L' => DataType::UInt64,
        b'e' => DataType::Float16,
        b'f' => DataType::Float32,
        _ => DataType::Float64,
    }
}

const _: () = {
    use std::mem::size_of;
    assert!(size_of::<arrow_data::ffi::FFI_ArrowArray>() == size_of::<ArrowArray>());
    assert!(size_of::<arrow_schema::ffi::FFI_ArrowSchema>() == size_of::<ArrowSchema>());
};

/// The Arrow field and array for a tensor; on success the array owns it.
/// On failure the tensor is untouched and still the caller's.
///
/// # Safety
/// `tensor` is live and owned by the caller.
pub unsafe fn import(
    tensor: Managed,
    memory: Memory,
) -> Result<(Field, ArrayData, DLDevice), Error> {
    // SAFETY: live (caller's contract).
    let plan = unsafe { plan(tensor.dl_tensor(), memory) }?;
    let field = plan.field()?;
    // SAFETY: the plan was made from this tensor, which the caller gives up.
    let data = unsafe { plan.build(&field, tensor) };
    Ok((field, data, plan.device))
}

/// [`import`] into C Data Interface structs (the C entry points).
///
/// The array structs are built here rather than by arrow-rs: an arrow-rs
/// `Buffer` forms a `&[u8]` over its memory, which is undefined behaviour
/// for device memory the host cannot address (Miri catches it), and one
/// builder serves host and device alike. The schema is built here too: a
/// primitive's without any allocation.
///
/// # Safety
/// As [`import`]; `out_array`/`out_schema` are valid for writes.
pub unsafe fn import_to_c(
    tensor: Managed,
    memory: Memory,
    out_array: &mut ArrowArray,
    out_schema: &mut ArrowSchema,
) -> Result<DLDevice, Error> {
    // SAFETY: live (caller's contract).
    let plan = unsafe { plan(tensor.dl_tensor(), memory) }?;
    // Everything fallible happens before the tensor changes hands.
    let schema = plan.c_schema()?;
    let owner = Arc::new(TensorOwner(tensor));
    let elements = (plan.byte_len / plan.dtype.width()) as i64;
    let values = c_array(
        elements,
        [std::ptr::null(), plan.data.cast_const().cast()],
        None,
        &owner,
    );
    let array = match plan.tensor_type {
        Some(_) => c_array(
            plan.length,
            [std::ptr::null(), std::ptr::null()],
            Some(values),
            &owner,
        ),
        None => values,
    };
    // SAFETY: same layout (asserted above); the out structs are the
    // caller's storage, overwritten without being read.
    unsafe {
        std::ptr::write(out_array, array);
        std::ptr::write(out_schema, schema);
    }
    Ok(plan.device)
}

/// What an imported `ArrowArray` owns: a share of the tensor, its buffer
/// pointers and its child (a `Box` turned raw, freed by `release_array`).
struct Private {
    _owner: Arc<TensorOwner>,
    buffers: [*const std::ffi::c_void; 2],
    children: [*mut ArrowArray; 1],
}

/// A primitive array (`child` None: validity + values buffers) or a
/// fixed_size_list over `child` (validity buffer only).
fn c_array(
    length: i64,
    buffers: [*const std::ffi::c_void; 2],
    child: Option<ArrowArray>,
    owner: &Arc<TensorOwner>,
) -> ArrowArray {
    let is_list = child.is_some();
    let child = child.map_or(std::ptr::null_mut(), |c| Box::into_raw(Box::new(c)));
    // Raw from the start: the struct hands out pointers into it.
    let private = Box::into_raw(Box::new(Private {
        _owner: owner.clone(),
        buffers,
        children: [child],
    }));
    ArrowArray {
        length,
        null_count: 0,
        offset: 0,
        n_buffers: if is_list { 1 } else { 2 },
        n_children: is_list as i64,
        // SAFETY: fields of the live allocation just made.
        buffers: unsafe { (&raw mut (*private).buffers).cast() },
        children: if is_list {
            // SAFETY: as above.
            unsafe { (&raw mut (*private).children).cast() }
        } else {
            std::ptr::null_mut()
        },
        dictionary: std::ptr::null_mut(),
        release: Some(release_array),
        private_data: private.cast(),
    }
}

/// The release callback of imported arrays: releases the child unless a
/// consumer moved it out, frees it, then drops this struct's share of the
/// tensor (the last share runs the tensor's deleter, on this thread).
unsafe extern "C" fn release_array(array: *mut ArrowArray) {
    // SAFETY: called by the consumer on a live array made by `c_array`
    // (the C Data Interface: release once, then `release` is NULL); its
    // private data and child were made by `Box::into_raw` there.
    unsafe {
        let Some(_) = (*array).release else { return };
        let private = Box::from_raw((*array).private_data.cast::<Private>());
        let child = private.children[0];
        if !child.is_null() {
            if let Some(release) = (*child).release {
                release(child);
            }
            drop(Box::from_raw(child));
        }
        (*array).release = None;
        drop(private);
    }
}

/// A versioned tensor, once its major version is known to be 1 (nothing
/// else is read before that).
///
/// # Safety
/// `tensor` is NULL or points at a live `DLManagedTensorVersioned`.
pub unsafe fn versioned(tensor: *mut DLManagedTensorVersioned) -> Result<Managed, Error> {
    let tensor = NonNull::new(tensor)
        .ok_or_else(|| err!(ARROW_DLPACK_INVALID_ARGUMENT, "tensor is NULL"))?;
    // SAFETY: live (caller's contract); only the version is read.
    let version = unsafe { (*tensor.as_ptr()).version };
    if version.major != DLPACK_MAJOR_VERSION {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "DLPack version {}.{} is not supported: its layout is unknown (1.x expected)",
            version.major,
            version.minor
        ));
    }
    Ok(Managed::Versioned(tensor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_major_and_permuted_rows() {
        assert_eq!(rows(&[2, 3, 4], None).unwrap(), (vec![3, 4], None));
        assert_eq!(
            rows(&[2, 3, 4], Some(&[12, 4, 1])).unwrap(),
            (vec![3, 4], None)
        );
        // np.arange(24).reshape(2, 4, 3).transpose(0, 2, 1)
        assert_eq!(
            rows(&[2, 3, 4], Some(&[12, 1, 3])).unwrap(),
            (vec![4, 3], Some(vec![1, 0]))
        );
        // Extent-1 dimensions: strides are irrelevant.
        assert_eq!(
            rows(&[2, 1, 4], Some(&[4, 99, 1])).unwrap(),
            (vec![1, 4], None)
        );
        assert_eq!(
            rows(&[1, 3, 4], Some(&[7, 4, 1])).unwrap(),
            (vec![3, 4], None)
        );
        // No element: any strides.
        assert_eq!(rows(&[0, 3], Some(&[-5, 0])).unwrap(), (vec![3], None));
    }

    #[test]
    fn layouts_that_need_a_copy_are_refused() {
        for strides in [[1, 2], [6, 2], [3, -1], [3, 0]] {
            let e = rows(&[2, 3], Some(&strides)).unwrap_err();
            assert_eq!(
                e.status(),
                crate::Status::ARROW_DLPACK_UNSUPPORTED_LAYOUT,
                "{strides:?}"
            );
            assert!(e.message().contains(&format!("{strides:?}")), "{e}");
        }
    }
}
