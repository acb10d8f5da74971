//! The safe Rust API, for arrow-rs users: arrays to owned DLPack tensors
//! and back, without copying.

use std::ffi::c_void;
use std::ptr::NonNull;

use arrow_array::{Array, ArrayRef, make_array};
use arrow_schema::Field;

use crate::abi::{ArrowArray, ArrowSchema, DLDataType, DLDevice, DLManagedTensorVersioned};
use crate::error::{Error, err};
use crate::export;
use crate::import::{self, Managed, Memory};

/// An owned DLPack 1.x tensor (`DLManagedTensorVersioned`). Dropping it
/// calls the tensor's deleter, which releases whatever it shares (for a
/// tensor made by [`to_dlpack`], the Arrow buffers).
#[derive(Debug)]
pub struct Tensor(NonNull<DLManagedTensorVersioned>);

// SAFETY: a DLPack tensor is handed over with its ownership, and its
// deleter may run on any thread.
unsafe impl Send for Tensor {}

impl Tensor {
    /// Takes ownership of a tensor from C.
    ///
    /// # Safety
    /// `raw` is NULL or a live tensor that the caller owns and gives up.
    pub unsafe fn from_raw(raw: *mut DLManagedTensorVersioned) -> Option<Tensor> {
        NonNull::new(raw).map(Tensor)
    }

    /// Gives up ownership: the caller must call the deleter.
    pub fn into_raw(self) -> *mut DLManagedTensorVersioned {
        let raw = self.0.as_ptr();
        std::mem::forget(self);
        raw
    }

    pub fn as_raw(&self) -> *const DLManagedTensorVersioned {
        self.0.as_ptr()
    }

    fn inner(&self) -> &DLManagedTensorVersioned {
        // SAFETY: owned and live until drop.
        unsafe { self.0.as_ref() }
    }

    pub fn dtype(&self) -> DLDataType {
        self.inner().dl_tensor.dtype
    }

    pub fn device(&self) -> DLDevice {
        self.inner().dl_tensor.device
    }

    pub fn flags(&self) -> u64 {
        self.inner().flags
    }

    /// The first element (`data + byte_offset`).
    pub fn data_ptr(&self) -> *const c_void {
        let t = &self.inner().dl_tensor;
        t.data
            .cast::<u8>()
            .wrapping_add(t.byte_offset as usize)
            .cast()
    }

    pub fn shape(&self) -> &[i64] {
        let t = &self.inner().dl_tensor;
        match t.ndim {
            0 => &[],
            // SAFETY: a live tensor has `ndim` shape entries.
            n => unsafe { std::slice::from_raw_parts(t.shape, n as usize) },
        }
    }

    /// Strides in elements; `None` when the producer left them NULL
    /// (row-major, DLPack before 1.2). Tensors made here always have them.
    pub fn strides(&self) -> Option<&[i64]> {
        let t = &self.inner().dl_tensor;
        if t.ndim == 0 || t.strides.is_null() {
            return None;
        }
        // SAFETY: a live tensor has `ndim` stride entries.
        Some(unsafe { std::slice::from_raw_parts(t.strides, t.ndim as usize) })
    }
}

impl Drop for Tensor {
    fn drop(&mut self) {
        // SAFETY: owned and live; deleted once.
        unsafe { Managed::Versioned(self.0).delete() };
    }
}

/// Shares an arrow-rs array as a DLPack tensor, without copying: the tensor
/// holds a reference to the array's buffers.
///
/// Same rules as `arrow_dlpack_export_versioned`: fixed-width numbers
/// (1-D) and `fixed_size_list`s of them (N-D), without nulls.
///
/// ```
/// use arrow_array::Float32Array;
/// let array = Float32Array::from(vec![1.0, 2.0, 3.0]);
/// let tensor = arrow_dlpack::to_dlpack(&array).unwrap();
/// assert_eq!(tensor.shape(), &[3]);
/// assert_eq!(tensor.data_ptr(), array.values().as_ptr().cast()); // shared, not copied
/// ```
pub fn to_dlpack(array: &dyn Array) -> Result<Tensor, Error> {
    to_dlpack_with_field(&Field::new("", array.data_type().clone(), true), array)
}

/// As [`to_dlpack`], with the array's field, so that extension types in its
/// metadata (`arrow.fixed_shape_tensor`) shape the tensor.
pub fn to_dlpack_with_field(field: &Field, array: &dyn Array) -> Result<Tensor, Error> {
    let schema = arrow_schema::ffi::FFI_ArrowSchema::try_from(field)
        .map_err(|e| err!(ARROW_DLPACK_UNSUPPORTED_TYPE, "{e}"))?;
    let mut c_array = arrow_data::ffi::FFI_ArrowArray::new(&array.to_data());
    // SAFETY: arrow-rs's structs have the C layout (asserted in `import`),
    // and are valid; on success the array moves into the tensor, on
    // failure `c_array` still owns it and releases it when dropped.
    let tensor = unsafe {
        export::export::<DLManagedTensorVersioned>(
            &mut *(&mut c_array as *mut arrow_data::ffi::FFI_ArrowArray).cast::<ArrowArray>(),
            &*(&schema as *const arrow_schema::ffi::FFI_ArrowSchema).cast::<ArrowSchema>(),
        )
    }?;
    Ok(Tensor(tensor))
}

/// Shares a DLPack tensor (in host-readable memory) as an arrow-rs array,
/// without copying; the array owns the tensor, whose deleter runs when the
/// last array sharing it is dropped. On failure the tensor comes back
/// untouched.
///
/// N-D tensors become `arrow.fixed_shape_tensor` arrays: the returned
/// field carries the extension metadata.
///
/// ```
/// use arrow_array::{Array, Int64Array};
/// let tensor = arrow_dlpack::to_dlpack(&Int64Array::from(vec![1, 2, 3])).unwrap();
/// let data = tensor.data_ptr();
/// let (_field, array) = arrow_dlpack::from_dlpack(tensor).map_err(|(e, _)| e).unwrap();
/// let ints = array.as_any().downcast_ref::<Int64Array>().unwrap();
/// assert_eq!(ints.values(), &[1, 2, 3]);
/// assert_eq!(ints.values().as_ptr().cast(), data); // the same memory, round trip
/// ```
pub fn from_dlpack(tensor: Tensor) -> Result<(Field, ArrayRef), (Error, Tensor)> {
    // SAFETY: the tensor is live and ours.
    let plan_ok = unsafe { import::import(Managed::Versioned(tensor.0), Memory::HostReadable) };
    match plan_ok {
        Ok((field, data, _)) => {
            std::mem::forget(tensor); // owned by the array now
            Ok((field, make_array(data)))
        }
        Err(e) => Err((e, tensor)),
    }
}
