//! The DLPack 1.3 ABI (dmlc/dlpack `include/dlpack/dlpack.h`).
//!
//! Enumerations that arrive from C (device type, type code) are plain
//! integers here, never Rust enums: an out-of-range value from a foreign
//! producer must be representable so that it can be rejected.

use std::ffi::{c_char, c_int, c_void};

pub const DLPACK_MAJOR_VERSION: u32 = 1;
pub const DLPACK_MINOR_VERSION: u32 = 3;

/// The tensor's data must not be written (set on every tensor we export:
/// Arrow buffers are immutable and may be shared).
pub const DLPACK_FLAG_BITMASK_READ_ONLY: u64 = 1 << 0;
/// The producer copied the data to make the tensor (never set by us).
pub const DLPACK_FLAG_BITMASK_IS_COPIED: u64 = 1 << 1;
/// Sub-byte types are padded to a byte each.
pub const DLPACK_FLAG_BITMASK_IS_SUBBYTE_TYPE_PADDED: u64 = 1 << 2;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DLPackVersion {
    pub major: u32,
    pub minor: u32,
}

/// `DLDeviceType`: a C enum with an `int32_t` representation.
pub type DLDeviceType = i32;

pub const K_DL_CPU: DLDeviceType = 1;
pub const K_DL_CUDA: DLDeviceType = 2;
pub const K_DL_CUDA_HOST: DLDeviceType = 3;
pub const K_DL_OPENCL: DLDeviceType = 4;
pub const K_DL_VULKAN: DLDeviceType = 7;
pub const K_DL_METAL: DLDeviceType = 8;
pub const K_DL_VPI: DLDeviceType = 9;
pub const K_DL_ROCM: DLDeviceType = 10;
pub const K_DL_ROCM_HOST: DLDeviceType = 11;
pub const K_DL_EXT_DEV: DLDeviceType = 12;
pub const K_DL_CUDA_MANAGED: DLDeviceType = 13;
pub const K_DL_ONEAPI: DLDeviceType = 14;
pub const K_DL_WEBGPU: DLDeviceType = 15;
pub const K_DL_HEXAGON: DLDeviceType = 16;
pub const K_DL_MAIA: DLDeviceType = 17;
pub const K_DL_TRN: DLDeviceType = 18;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DLDevice {
    pub device_type: DLDeviceType,
    pub device_id: i32,
}

/// `DLDataTypeCode` values (stored in `DLDataType::code`, a `uint8_t`).
pub const K_DL_INT: u8 = 0;
pub const K_DL_UINT: u8 = 1;
pub const K_DL_FLOAT: u8 = 2;
pub const K_DL_OPAQUE_HANDLE: u8 = 3;
pub const K_DL_BFLOAT: u8 = 4;
pub const K_DL_COMPLEX: u8 = 5;
pub const K_DL_BOOL: u8 = 6;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DLDataType {
    pub code: u8,
    pub bits: u8,
    pub lanes: u16,
}

/// `DLTensor`: a borrowed view of an N-D array. `shape` and `strides` hold
/// `ndim` elements each; strides count elements, not bytes.
#[repr(C)]
#[derive(Debug)]
pub struct DLTensor {
    pub data: *mut c_void,
    pub device: DLDevice,
    pub ndim: i32,
    pub dtype: DLDataType,
    pub shape: *mut i64,
    pub strides: *mut i64,
    pub byte_offset: u64,
}

/// `DLManagedTensor`: the legacy (pre-1.0) owned tensor.
#[repr(C)]
#[derive(Debug)]
pub struct DLManagedTensor {
    pub dl_tensor: DLTensor,
    pub manager_ctx: *mut c_void,
    pub deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

/// `DLManagedTensorVersioned`: the DLPack >= 1.0 owned tensor.
#[repr(C)]
#[derive(Debug)]
pub struct DLManagedTensorVersioned {
    pub version: DLPackVersion,
    pub manager_ctx: *mut c_void,
    pub deleter: Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned)>,
    pub flags: u64,
    pub dl_tensor: DLTensor,
}

/// The header of the DLPack C exchange API (DLPack 1.3, `dlpack.h`'s
/// `DLPackExchangeAPIHeader`): the version, and the table of an older one.
#[repr(C)]
pub struct DLPackExchangeAPIHeader {
    pub version: DLPackVersion,
    pub prev_api: *mut DLPackExchangeAPIHeader,
}

/// `DLPackExchangeAPI`'s `SetError` of the allocator: `(error_ctx, kind,
/// message)`.
pub type DLPackSetError = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char);

/// The DLPack C exchange API (DLPack 1.3, `dlpack.h`'s `DLPackExchangeAPI`):
/// a producer type's table of C functions that hand tensors over without
/// the Python protocol's call and capsule.
#[repr(C)]
pub struct DLPackExchangeAPI {
    pub header: DLPackExchangeAPIHeader,
    pub managed_tensor_allocator: Option<
        unsafe extern "C" fn(
            *mut DLTensor,
            *mut *mut DLManagedTensorVersioned,
            *mut c_void,
            Option<DLPackSetError>,
        ) -> c_int,
    >,
    pub managed_tensor_from_py_object_no_sync:
        Option<unsafe extern "C" fn(*mut c_void, *mut *mut DLManagedTensorVersioned) -> c_int>,
    pub managed_tensor_to_py_object_no_sync:
        Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned, *mut *mut c_void) -> c_int>,
    pub dltensor_from_py_object_no_sync:
        Option<unsafe extern "C" fn(*mut c_void, *mut DLTensor) -> c_int>,
    pub current_work_stream:
        Option<unsafe extern "C" fn(DLDeviceType, i32, *mut *mut c_void) -> c_int>,
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<DLDataType>() == 4);
    assert!(size_of::<DLDevice>() == 8);
    assert!(size_of::<DLTensor>() == 48);
    assert!(offset_of!(DLTensor, byte_offset) == 40);
    assert!(size_of::<DLManagedTensor>() == 64);
    assert!(size_of::<DLManagedTensorVersioned>() == 80);
    assert!(offset_of!(DLManagedTensorVersioned, dl_tensor) == 32);
};
