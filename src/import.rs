//! DLPack tensor -> Arrow C structs, zero-copy: the plan of the tensor
//! (`dlpack::read`) becomes an array and a schema (`arrow::write`) whose
//! buffers point into the tensor. The arrays share one owner of the
//! tensor, whose deleter runs once, when the last of them is released.
//! Device memory is never dereferenced, nor turned into a Rust reference.

use std::ptr::NonNull;
use std::sync::Arc;

use crate::abi::{
    ArrowArray, ArrowSchema, DLDevice, DLManagedTensorVersioned, DLPACK_MAJOR_VERSION,
};
use crate::arrow::write::{self, Keeper};
use crate::dlpack::read::{self, Memory};
use crate::error::{Error, err};
use crate::extension;
use crate::managed::{self, Managed};

/// Owns a tensor on behalf of the Arrow arrays that point into it: dropping
/// it (when the last of them is released) calls the tensor's deleter, once.
struct TensorOwner<M: Managed>(NonNull<M>);

// SAFETY: DLPack deleters may be called from any thread (the tensor is
// handed over with its ownership), and the owner is never read otherwise.
unsafe impl<M: Managed> Send for TensorOwner<M> {}
// SAFETY: as above: no shared access to the tensor ever happens through it.
unsafe impl<M: Managed> Sync for TensorOwner<M> {}

impl<M: Managed> Drop for TensorOwner<M> {
    fn drop(&mut self) {
        // SAFETY: the owner holds the only ownership of a live tensor.
        unsafe { managed::delete(self.0) };
    }
}

/// Shares `tensor` as C Data Interface structs written to `out_array` and
/// `out_schema`; returns the tensor's device. On success the array owns
/// the tensor; on failure the tensor is untouched and still the caller's,
/// and nothing is written.
///
/// # Safety
/// `tensor` is live and owned by the caller; `out_array`/`out_schema` are
/// valid for writes.
pub unsafe fn import_to_c<M: Managed + 'static>(
    tensor: NonNull<M>,
    memory: Memory,
    out_array: &mut ArrowArray,
    out_schema: &mut ArrowSchema,
) -> Result<DLDevice, Error> {
    // SAFETY: live (caller's contract).
    let plan = unsafe { read::plan(tensor.as_ref().dl_tensor(), memory) }?;
    // Everything fallible happens before the tensor changes hands.
    let item = write::primitive_schema(plan.dtype, c"item");
    let schema = match &plan.rows {
        None => write::primitive_schema(plan.dtype, c""),
        Some(rows) => write::fixed_size_list_schema(
            rows.list_size,
            item,
            extension::metadata_block(&rows.physical, rows.permutation.as_deref()),
        ),
    };
    let keeper: Keeper = Arc::new(TensorOwner(tensor));
    let data = plan.data.cast_const().cast();
    let array = match plan.rows {
        Some(_) => {
            let values = write::primitive_array(plan.elements, data, keeper.clone());
            write::fixed_size_list_array(plan.length, values, keeper)
        }
        None => write::primitive_array(plan.elements, data, keeper),
    };
    // SAFETY: the out structs are the caller's storage, written without
    // being read (they may hold anything).
    unsafe {
        std::ptr::write(out_array, array);
        std::ptr::write(out_schema, schema);
    }
    Ok(plan.device)
}

/// A versioned tensor, once its major version is known to be 1 (nothing
/// else is read before that).
///
/// # Safety
/// `tensor` is NULL or points at a live `DLManagedTensorVersioned`.
pub unsafe fn versioned(
    tensor: *mut DLManagedTensorVersioned,
) -> Result<NonNull<DLManagedTensorVersioned>, Error> {
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
    Ok(tensor)
}
