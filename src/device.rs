//! The device facts both directions rely on, in one place. Arrow's
//! `ArrowDeviceType` and DLPack's `DLDeviceType` share their numbering;
//! only the CPU's id differs (Arrow -1, DLPack 0).

use crate::abi::*;
use crate::error::{Error, err};

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

/// The DLPack device of an Arrow device array's `device_type`/`device_id`.
pub fn from_arrow(device_type: ArrowDeviceType, device_id: i64) -> Result<DLDevice, Error> {
    let (ty, id) = (device_type, device_id);
    if !arrow_has(ty) {
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

/// The Arrow `device_type`/`device_id` of a DLPack device (the CPU's id is
/// -1 in Arrow).
pub fn to_arrow(device: DLDevice) -> (ArrowDeviceType, i64) {
    let id = match device.device_type {
        K_DL_CPU => -1,
        _ => i64::from(device.device_id),
    };
    (device.device_type, id)
}
