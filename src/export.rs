//! Arrow array -> DLPack tensor: the validated view of the array becomes
//! the tensor's dtype, data, shape and strides, in an owner that holds the
//! moved array (see `owner`). Nothing is copied.

use std::ffi::c_void;
use std::ptr::NonNull;

use crate::abi::{ArrowArray, ArrowDeviceArray, ArrowSchema};
use crate::arrow::read::{self, Location};
use crate::dims::Dims;
use crate::error::Error;
use crate::managed::Managed;
use crate::owner;

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
    let view = unsafe { read::read(array, schema, Location::CPU, &mut dims) }?;
    // SAFETY: as above; the view's data is the array's memory.
    unsafe { owner::share(array, view.data, view.dtype.dl, view.device, &dims) }
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
    let device = crate::device::from_arrow(array.device_type, array.device_id)?;
    let mut dims = Dims::new();
    // SAFETY: forwarded from the caller.
    let view = unsafe { read::read(&array.array, schema, Location { device }, &mut dims) }?;
    // SAFETY: as above.
    let tensor =
        unsafe { owner::share(&mut array.array, view.data, view.dtype.dl, device, &dims) }?;
    Ok((tensor, array.sync_event))
}
