//! The Arrow C Data Interface and C Device Data Interface structs.
//! <https://arrow.apache.org/docs/format/CDataInterface.html>

use std::ffi::{c_char, c_void};
use std::ptr;

/// `struct ArrowSchema`: the type of an array. Producer-owned; released by
/// calling `release`, after which `release` is NULL.
#[repr(C)]
#[derive(Debug)]
pub struct ArrowSchema {
    pub format: *const c_char,
    pub name: *const c_char,
    pub metadata: *const c_char,
    pub flags: i64,
    pub n_children: i64,
    pub children: *mut *mut ArrowSchema,
    pub dictionary: *mut ArrowSchema,
    pub release: Option<unsafe extern "C" fn(*mut ArrowSchema)>,
    pub private_data: *mut c_void,
}

/// `ArrowSchema.flags`: the dictionary's order is meaningful.
pub const ARROW_FLAG_DICTIONARY_ORDERED: i64 = 1;
/// `ArrowSchema.flags`: the field may hold nulls (a field without it
/// promises none; the library writes it on every child it makes).
pub const ARROW_FLAG_NULLABLE: i64 = 2;
/// `ArrowSchema.flags`: a map's keys are sorted within each entry.
pub const ARROW_FLAG_MAP_KEYS_SORTED: i64 = 4;

/// `struct ArrowArray`: the data of an array. Moving it means copying the
/// struct bitwise and setting the source's `release` to NULL.
#[repr(C)]
#[derive(Debug)]
pub struct ArrowArray {
    pub length: i64,
    pub null_count: i64,
    pub offset: i64,
    pub n_buffers: i64,
    pub n_children: i64,
    pub buffers: *mut *const c_void,
    pub children: *mut *mut ArrowArray,
    pub dictionary: *mut ArrowArray,
    pub release: Option<unsafe extern "C" fn(*mut ArrowArray)>,
    pub private_data: *mut c_void,
}

/// `struct ArrowArrayStream`: a producer of arrays of one schema, read by
/// calling `get_schema` once and `get_next` until it hands out a released
/// array (the end). The C Stream Interface.
#[repr(C)]
#[derive(Debug)]
pub struct ArrowArrayStream {
    pub get_schema:
        Option<unsafe extern "C" fn(*mut ArrowArrayStream, *mut ArrowSchema) -> std::ffi::c_int>,
    pub get_next:
        Option<unsafe extern "C" fn(*mut ArrowArrayStream, *mut ArrowArray) -> std::ffi::c_int>,
    pub get_last_error: Option<unsafe extern "C" fn(*mut ArrowArrayStream) -> *const c_char>,
    pub release: Option<unsafe extern "C" fn(*mut ArrowArrayStream)>,
    pub private_data: *mut c_void,
}

/// `ArrowDeviceType`: an `int32_t` in C; the numbering is DLPack's.
pub type ArrowDeviceType = i32;

pub const ARROW_DEVICE_CPU: ArrowDeviceType = 1;
pub const ARROW_DEVICE_CUDA: ArrowDeviceType = 2;
pub const ARROW_DEVICE_CUDA_HOST: ArrowDeviceType = 3;
pub const ARROW_DEVICE_OPENCL: ArrowDeviceType = 4;
pub const ARROW_DEVICE_VULKAN: ArrowDeviceType = 7;
pub const ARROW_DEVICE_METAL: ArrowDeviceType = 8;
pub const ARROW_DEVICE_VPI: ArrowDeviceType = 9;
pub const ARROW_DEVICE_ROCM: ArrowDeviceType = 10;
pub const ARROW_DEVICE_ROCM_HOST: ArrowDeviceType = 11;
pub const ARROW_DEVICE_EXT_DEV: ArrowDeviceType = 12;
pub const ARROW_DEVICE_CUDA_MANAGED: ArrowDeviceType = 13;
pub const ARROW_DEVICE_ONEAPI: ArrowDeviceType = 14;
pub const ARROW_DEVICE_WEBGPU: ArrowDeviceType = 15;
pub const ARROW_DEVICE_HEXAGON: ArrowDeviceType = 16;

/// `struct ArrowDeviceArray`: an `ArrowArray` whose buffers live on a device.
#[repr(C)]
#[derive(Debug)]
pub struct ArrowDeviceArray {
    pub array: ArrowArray,
    pub device_id: i64,
    pub device_type: ArrowDeviceType,
    pub sync_event: *mut c_void,
    pub reserved: [i64; 3],
}

impl ArrowSchema {
    /// A released schema (`release` NULL, every field empty): what a
    /// producer's callback writes into, and what needs no release.
    pub const fn released() -> ArrowSchema {
        ArrowSchema {
            format: ptr::null(),
            name: ptr::null(),
            metadata: ptr::null(),
            flags: 0,
            n_children: 0,
            children: ptr::null_mut(),
            dictionary: ptr::null_mut(),
            release: None,
            private_data: ptr::null_mut(),
        }
    }
}

impl ArrowArray {
    /// A released array (`release` NULL, every field empty): what a
    /// producer's callback writes into, and what needs no release.
    pub const fn released() -> ArrowArray {
        ArrowArray {
            length: 0,
            null_count: 0,
            offset: 0,
            n_buffers: 0,
            n_children: 0,
            buffers: ptr::null_mut(),
            children: ptr::null_mut(),
            dictionary: ptr::null_mut(),
            release: None,
            private_data: ptr::null_mut(),
        }
    }
}

impl ArrowDeviceArray {
    /// A released device array: its array released, no device, no event.
    pub const fn released() -> ArrowDeviceArray {
        ArrowDeviceArray {
            array: ArrowArray::released(),
            device_id: 0,
            device_type: 0,
            sync_event: ptr::null_mut(),
            reserved: [0; 3],
        }
    }
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<ArrowSchema>() == 72);
    assert!(size_of::<ArrowArray>() == 80);
    assert!(offset_of!(ArrowArray, release) == 64);
    assert!(size_of::<ArrowDeviceArray>() == 128);
    assert!(offset_of!(ArrowDeviceArray, device_type) == 88);
    assert!(offset_of!(ArrowDeviceArray, sync_event) == 96);
};
