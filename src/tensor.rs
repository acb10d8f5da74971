//! The safe Rust API, for arrow-rs users: arrays to owned DLPack tensors
//! and back, without copying. Both directions run the C entry points' own
//! code: export reads arrow-rs's C Data Interface structs with the one
//! reader of arrays, and import builds the C structs with the one builder,
//! then wraps them for arrow-rs (never through arrow-rs's `from_ffi`, which
//! copies buffers that are not aligned to their type).

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, make_array};
use arrow_buffer::Buffer;
use arrow_data::ArrayDataBuilder;
use arrow_data::ffi::FFI_ArrowArray;
use arrow_schema::ffi::FFI_ArrowSchema;
use arrow_schema::{DataType, Field};

use crate::abi::{ArrowArray, ArrowSchema, DLDataType, DLDevice, DLManagedTensorVersioned};
use crate::dlpack::read::Memory;
use crate::error::{Error, err};
use crate::{export, import, managed};

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
        unsafe { managed::delete(self.0) };
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
    let schema =
        FFI_ArrowSchema::try_from(field).map_err(|e| err!(ARROW_DLPACK_UNSUPPORTED_TYPE, "{e}"))?;
    let mut c_array = FFI_ArrowArray::new(&array.to_data());
    // SAFETY: arrow-rs's structs have the C layout (asserted below), and
    // are valid; on success the array moves into the tensor, on failure
    // `c_array` still owns it and releases it when dropped.
    let tensor = unsafe {
        export::export::<DLManagedTensorVersioned>(
            &mut *(&raw mut c_array).cast::<ArrowArray>(),
            &*(&raw const schema).cast::<ArrowSchema>(),
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
    let mut c_array = FFI_ArrowArray::empty();
    let mut c_schema = FFI_ArrowSchema::empty();
    // SAFETY: the tensor is live and ours; the out structs are writable and
    // have the C layout (asserted below). On failure nothing is written.
    let imported = unsafe {
        import::import_to_c(
            tensor.0,
            Memory::HostReadable,
            &mut *(&raw mut c_array).cast::<ArrowArray>(),
            &mut *(&raw mut c_schema).cast::<ArrowSchema>(),
        )
    };
    if let Err(e) = imported {
        return Err((e, tensor));
    }
    std::mem::forget(tensor); // owned by `c_array` now
    // Built by us: a primitive type or a fixed_size_list of one, with its
    // extension metadata, which arrow-rs reads into the field.
    let field = Field::try_from(&c_schema).expect("a schema this library wrote");
    Ok((field.clone(), wrap(c_array, field.data_type())))
}

/// An imported C array as an arrow-rs array sharing its memory: the values
/// buffer keeps the C array alive, and releases it (and with it the
/// tensor) when arrow-rs drops the last reference.
fn wrap(c_array: FFI_ArrowArray, data_type: &DataType) -> ArrayRef {
    let (value_type, list_len) = match data_type {
        DataType::FixedSizeList(item, _) => (item.data_type().clone(), Some(c_array.len())),
        other => (other.clone(), None),
    };
    let values = match list_len {
        Some(_) => c_array.child(0),
        None => &c_array,
    };
    let (elements, pointer) = (values.len(), values.buffer(1));
    let width = value_type
        .primitive_width()
        .expect("a primitive value type");
    let keeper = Arc::new(Imported { _array: c_array });
    let pointer = NonNull::new(pointer.cast_mut()).unwrap_or(NonNull::dangling());
    // SAFETY: the tensor holds `elements * width` bytes at `pointer`
    // (checked by the import, trusted as DLPack lets a consumer trust it),
    // alive until `keeper` releases the array.
    let buffer = unsafe { Buffer::from_custom_allocation(pointer, elements * width, keeper) };
    let values = ArrayDataBuilder::new(value_type)
        .len(elements)
        .add_buffer(buffer);
    // SAFETY: the length matches the buffer exactly and there is no
    // validity buffer. Validation is skipped because it would reject
    // buffers that are not aligned to the element size, which the C Data
    // Interface allows.
    let values = unsafe { values.build_unchecked() };
    let data = match list_len {
        Some(len) => {
            let list = ArrayDataBuilder::new(data_type.clone())
                .len(len)
                .add_child_data(values);
            // SAFETY: as above; `len * list_size == elements`.
            unsafe { list.build_unchecked() }
        }
        None => values,
    };
    make_array(data)
}

/// An imported array, released (by `FFI_ArrowArray`'s `Drop`) when
/// arrow-rs drops its last buffer.
struct Imported {
    _array: FFI_ArrowArray,
}

// SAFETY: its release may run on any thread (the C Data Interface), and it
// is never read through this wrapper.
unsafe impl Send for Imported {}
// SAFETY: as above.
unsafe impl Sync for Imported {}
impl std::panic::RefUnwindSafe for Imported {}

const _: () = {
    use std::mem::size_of;
    assert!(size_of::<FFI_ArrowArray>() == size_of::<ArrowArray>());
    assert!(size_of::<FFI_ArrowSchema>() == size_of::<ArrowSchema>());
};
