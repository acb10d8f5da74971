//! The two DLPack managed-tensor flavours, legacy `DLManagedTensor` and
//! 1.x `DLManagedTensorVersioned`, behind one trait: every part of the
//! library that makes, reads or deletes a tensor (export, import, the Rust
//! API, the capsule destructor) is written once, generic over the flavour.

use std::ffi::c_void;
use std::ptr::NonNull;

use crate::abi::{
    DLManagedTensor, DLManagedTensorVersioned, DLPACK_MAJOR_VERSION, DLPACK_MINOR_VERSION,
    DLPackVersion, DLTensor,
};

/// A deleter of a managed tensor of flavour `M`.
pub type Deleter<M> = unsafe extern "C" fn(*mut M);

/// A managed tensor flavour.
pub trait Managed: Sized {
    /// A managed tensor around `dl_tensor`. `flags` (DLPack's
    /// `DLPACK_FLAG_BITMASK_*`) are dropped by the legacy flavour, which
    /// has none.
    fn new(
        dl_tensor: DLTensor,
        manager_ctx: *mut c_void,
        deleter: Deleter<Self>,
        flags: u64,
    ) -> Self;

    fn dl_tensor(&self) -> &DLTensor;

    #[cfg_attr(not(feature = "python"), allow(dead_code))] // views' (owner::view)
    fn dl_tensor_mut(&mut self) -> &mut DLTensor;

    fn manager_ctx(&self) -> *mut c_void;

    fn deleter(&self) -> Option<Deleter<Self>>;
}

impl Managed for DLManagedTensor {
    fn new(dl_tensor: DLTensor, manager_ctx: *mut c_void, deleter: Deleter<Self>, _: u64) -> Self {
        DLManagedTensor {
            dl_tensor,
            manager_ctx,
            deleter: Some(deleter),
        }
    }

    fn dl_tensor(&self) -> &DLTensor {
        &self.dl_tensor
    }

    fn dl_tensor_mut(&mut self) -> &mut DLTensor {
        &mut self.dl_tensor
    }

    fn manager_ctx(&self) -> *mut c_void {
        self.manager_ctx
    }

    fn deleter(&self) -> Option<Deleter<Self>> {
        self.deleter
    }
}

impl Managed for DLManagedTensorVersioned {
    fn new(
        dl_tensor: DLTensor,
        manager_ctx: *mut c_void,
        deleter: Deleter<Self>,
        flags: u64,
    ) -> Self {
        DLManagedTensorVersioned {
            version: DLPackVersion {
                major: DLPACK_MAJOR_VERSION,
                minor: DLPACK_MINOR_VERSION,
            },
            manager_ctx,
            deleter: Some(deleter),
            flags,
            dl_tensor,
        }
    }

    fn dl_tensor(&self) -> &DLTensor {
        &self.dl_tensor
    }

    fn dl_tensor_mut(&mut self) -> &mut DLTensor {
        &mut self.dl_tensor
    }

    fn manager_ctx(&self) -> *mut c_void {
        self.manager_ctx
    }

    fn deleter(&self) -> Option<Deleter<Self>> {
        self.deleter
    }
}

/// Calls a tensor's deleter, if it has one (DLPack allows NULL).
///
/// # Safety
/// `tensor` is live and owned by the caller; it is dead afterwards.
pub unsafe fn delete<M: Managed>(tensor: NonNull<M>) {
    // SAFETY: live (caller's contract).
    if let Some(deleter) = unsafe { tensor.as_ref() }.deleter() {
        // SAFETY: the producer's deleter, called once on its own tensor.
        unsafe { deleter(tensor.as_ptr()) };
    }
}
