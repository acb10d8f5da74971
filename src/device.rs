//! The device facts both directions rely on, in one place. Arrow's
//! `ArrowDeviceType` and DLPack's `DLDeviceType` share their numbering.

use crate::abi::*;

/// Whether this process may dereference memory on a device of this type.
pub fn is_host_readable(device_type: DLDeviceType) -> bool {
    matches!(device_type, K_DL_CPU | K_DL_CUDA_HOST | K_DL_ROCM_HOST)
}

/// Whether Arrow's C Device Data Interface names this device type (DLPack
/// types 1-4 and 7-16; 17 and 18 are DLPack's alone).
pub fn arrow_has(device_type: DLDeviceType) -> bool {
    matches!(
        device_type,
        ARROW_DEVICE_CPU
            | ARROW_DEVICE_CUDA
            | ARROW_DEVICE_CUDA_HOST
            | ARROW_DEVICE_OPENCL
            | ARROW_DEVICE_VULKAN
            | ARROW_DEVICE_METAL
            | ARROW_DEVICE_VPI
            | ARROW_DEVICE_ROCM
            | ARROW_DEVICE_ROCM_HOST
            | ARROW_DEVICE_EXT_DEV
            | ARROW_DEVICE_CUDA_MANAGED
            | ARROW_DEVICE_ONEAPI
            | ARROW_DEVICE_WEBGPU
            | ARROW_DEVICE_HEXAGON
    )
}
