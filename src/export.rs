//! Validated view -> owned DLPack tensor.
//!
//! Each tensor is one heap allocation, an [`Owner`]: the managed tensor
//! first (so a pointer to it is a pointer to the owner), the Arrow array
//! moved out of the caller's struct, then `ndim` shape and `ndim` stride
//! entries. The deleter releases the array once and frees the allocation.

use std::alloc::{self, Layout};
use std::ffi::c_void;
use std::ptr::{self, NonNull};

use crate::abi::{
    ArrowArray, ArrowDeviceArray, ArrowSchema, DLDevice, DLManagedTensor, DLManagedTensorVersioned,
    DLPACK_FLAG_BITMASK_READ_ONLY, DLPackVersion, DLTensor,
};
use crate::error::{Error, err};
use crate::view::{self, Dims, Location, TensorView};

/// The two managed tensor flavours, built the same way.
pub trait Managed: Sized {
    /// A managed tensor around `dl_tensor` whose deleter frees `Owner<Self>`.
    fn new(dl_tensor: DLTensor, manager_ctx: *mut c_void) -> Self;
}

impl Managed for DLManagedTensor {
    fn new(dl_tensor: DLTensor, manager_ctx: *mut c_void) -> Self {
        DLManagedTensor {
            dl_tensor,
            manager_ctx,
            deleter: Some(delete::<DLManagedTensor>),
        }
    }
}

impl Managed for DLManagedTensorVersioned {
    fn new(dl_tensor: DLTensor, manager_ctx: *mut c_void) -> Self {
        DLManagedTensorVersioned {
            version: DLPackVersion { major: 1, minor: 3 },
            manager_ctx,
            deleter: Some(delete::<DLManagedTensorVersioned>),
            // Arrow buffers are immutable and may be shared with others.
            flags: DLPACK_FLAG_BITMASK_READ_ONLY,
            dl_tensor,
        }
    }
}

/// The single allocation behind a tensor; `ndim * 2` `i64`s follow it.
#[repr(C)]
struct Owner<M> {
    managed: M,
    array: ArrowArray,
    ndim: usize,
}

/// Layout of an owner with `ndim` dimensions, and the offset of its dims.
fn layout<M>(ndim: usize) -> (Layout, usize) {
    let dims = Layout::array::<i64>(2 * ndim).expect("ndim <= MAX_NDIM");
    let (layout, offset) = Layout::new::<Owner<M>>()
        .extend(dims)
        .expect("small layout");
    (layout.pad_to_align(), offset)
}

/// Moves `array` into a new tensor described by `view`.
///
/// # Safety
/// `array` is valid for reads and writes and is the array `view` was read
/// from.
unsafe fn build<M: Managed>(
    array: &mut ArrowArray,
    view: &TensorView,
    dims: &Dims,
) -> Result<NonNull<M>, Error> {
    let ndim = dims.ndim();
    let (layout, dims_offset) = layout::<M>(ndim);
    // SAFETY: the layout has a non-zero size (it holds at least the array).
    let Some(base) = NonNull::new(unsafe { alloc::alloc(layout) }) else {
        return Err(err!(
            ARROW_DLPACK_OUT_OF_MEMORY,
            "allocating a {}-byte tensor failed",
            layout.size()
        ));
    };
    let owner = base.cast::<Owner<M>>().as_ptr();
    // SAFETY: `dims_offset + 2 * ndim * 8 <= layout.size()`, and the offset is
    // aligned for i64 (`Layout::extend`).
    let shape = unsafe { base.as_ptr().add(dims_offset) }.cast::<i64>();
    // SAFETY: in bounds, see above.
    let strides = unsafe { shape.add(ndim) };
    // A plain loop rather than `copy_nonoverlapping`: `ndim` is tiny and a
    // call to `memmove` costs more than the copy.
    for (d, (&extent, &stride)) in dims.shape().iter().zip(dims.strides()).enumerate() {
        // SAFETY: `d < ndim`: inside the fresh allocation (see above).
        unsafe {
            shape.add(d).write(extent);
            strides.add(d).write(stride);
        }
    }
    let dl_tensor = DLTensor {
        data: view.data,
        device: view.device,
        ndim: ndim as i32,
        dtype: view.dtype,
        shape,
        strides,
        byte_offset: 0,
    };
    // SAFETY: `owner` is a fresh allocation of the right layout. Reading the
    // array and clearing the caller's `release` is the C Data Interface's
    // move: from here on only the owner releases it.
    unsafe {
        owner.write(Owner {
            managed: M::new(dl_tensor, owner.cast()),
            array: ptr::read(array),
            ndim,
        });
    }
    array.release = None;
    Ok(base.cast())
}

/// The deleter of every tensor we export: releases the moved Arrow array,
/// then frees the owner. Callable from any thread, exactly once per tensor.
///
/// # Safety
/// `managed` is NULL or a tensor made by [`build`] with the same `M` that
/// was not deleted yet.
unsafe extern "C" fn delete<M: Managed>(managed: *mut M) {
    if managed.is_null() {
        return;
    }
    let owner = managed.cast::<Owner<M>>();
    // SAFETY: `managed` is the first field of a live `Owner<M>`.
    let ndim = unsafe { (*owner).ndim };
    // SAFETY: as above; the array was moved in and not released yet.
    if let Some(release) = unsafe { (*owner).array.release } {
        // SAFETY: the producer's callback, called once on its own array.
        unsafe { release(&raw mut (*owner).array) };
    }
    // SAFETY: allocated by `build` with exactly this layout.
    unsafe { alloc::dealloc(owner.cast(), layout::<M>(ndim).0) };
}

/// Exports a host array (`arrow_dlpack_export`, `_versioned`).
///
/// # Safety
/// `array` and `schema` are valid (the C Data Interface's guarantees).
pub unsafe fn export<M: Managed>(
    array: &mut ArrowArray,
    schema: &ArrowSchema,
) -> Result<NonNull<M>, Error> {
    let mut dims = Dims::new();
    // SAFETY: forwarded from the caller.
    let view = unsafe { view::read(array, schema, Location::CPU, &mut dims) }?;
    // SAFETY: as above; the view was read from `array`.
    unsafe { build(array, &view, &dims) }
}

/// Exports an array from any device, as either flavour; returns the tensor
/// and the array's `sync_event`. Device memory is never dereferenced.
///
/// # Safety
/// `array` and `schema` are valid (the C Device Data Interface's guarantees).
pub unsafe fn export_device<M: Managed>(
    array: &mut ArrowDeviceArray,
    schema: &ArrowSchema,
) -> Result<(NonNull<M>, *mut c_void), Error> {
    let device = device_of(array)?;
    let mut dims = Dims::new();
    // SAFETY: forwarded from the caller.
    let view = unsafe { view::read(&array.array, schema, Location { device }, &mut dims) }?;
    // SAFETY: as above.
    let tensor = unsafe { build(&mut array.array, &view, &dims) }?;
    Ok((tensor, array.sync_event))
}

/// Maps the Arrow device to DLPack's (same numbering; CPU's id -1 is 0).
fn device_of(array: &ArrowDeviceArray) -> Result<DLDevice, Error> {
    use crate::abi::*;
    let (ty, id) = (array.device_type, array.device_id);
    let known = crate::device::arrow_has(ty);
    if !known {
        return Err(err!(
            ARROW_DLPACK_UNSUPPORTED_DEVICE,
            "unknown device_type {ty}"
        ));
    }
    if ty == ARROW_DEVICE_CPU {
        return match id {
            -1 | 0 => Ok(DLDevice {
                device_type: K_DL_CPU,
                device_id: 0,
            }),
            _ => Err(err!(
                ARROW_DLPACK_UNSUPPORTED_DEVICE,
                "device_id {id} for the CPU; it must be -1 or 0"
            )),
        };
    }
    match i32::try_from(id) {
        Ok(device_id) if device_id >= 0 => Ok(DLDevice {
            device_type: ty,
            device_id,
        }),
        _ => Err(err!(
            ARROW_DLPACK_UNSUPPORTED_DEVICE,
            "device_id {id} of device_type {ty} is outside DLPack's range 0..=2147483647"
        )),
    }
}
