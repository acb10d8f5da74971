//! The export rules of the contract, through the C entry points, on real
//! arrow-rs arrays and on hand-built C structs.

mod common;

use std::ffi::c_void;
use std::fmt::Debug;
use std::ptr;

use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema, to_ffi};
use arrow_buffer::{ArrowNativeType, Buffer};
use arrow_data::ArrayData;
use arrow_dlpack::Status;
use arrow_dlpack::abi::*;
use arrow_dlpack::capi::*;
use arrow_schema::DataType;
use common::{Raw, message, new_error, struct_bytes};

fn c_array(a: &mut FFI_ArrowArray) -> *mut ArrowArray {
    (a as *mut FFI_ArrowArray).cast()
}

fn c_schema(s: &FFI_ArrowSchema) -> *const ArrowSchema {
    (s as *const FFI_ArrowSchema).cast()
}

/// The tensor's shape and strides as vectors.
fn dims(t: &DLTensor) -> (Vec<i64>, Vec<i64>) {
    let n = t.ndim as usize;
    assert!(
        !t.shape.is_null() && !t.strides.is_null(),
        "shape and strides are always set"
    );
    // SAFETY: the tensor holds `ndim` entries in each.
    unsafe {
        (
            std::slice::from_raw_parts(t.shape, n).to_vec(),
            std::slice::from_raw_parts(t.strides, n).to_vec(),
        )
    }
}

fn delete_versioned(t: *mut DLManagedTensorVersioned) {
    // SAFETY: a live tensor from the library, deleted once.
    unsafe { ((*t).deleter.expect("deleter is set"))(t) }
}

fn delete_legacy(t: *mut DLManagedTensor) {
    // SAFETY: as above.
    unsafe { ((*t).deleter.expect("deleter is set"))(t) }
}

/// Exports `values[offset..]` of type `dt` through both entry points and
/// checks dtype, layout, zero-copy address, contents and release.
fn check_type<N: ArrowNativeType + PartialEq + Debug>(dt: DataType, values: Vec<N>, code: u8) {
    let width = std::mem::size_of::<N>();
    let buffer = Buffer::from_vec(values.clone());
    for offset in [0, 1, 3, values.len()] {
        let len = values.len() - offset;
        let data = ArrayData::builder(dt.clone())
            .len(len)
            .offset(offset)
            .add_buffer(buffer.clone())
            .build()
            .unwrap();
        for versioned in [true, false] {
            let (mut array, schema) = to_ffi(&data).unwrap();
            let mut error = new_error();
            let (versioned_ptr, legacy_ptr) = if versioned {
                // SAFETY: valid structs from arrow-rs.
                let t = unsafe {
                    arrow_dlpack_export_versioned(
                        c_array(&mut array),
                        c_schema(&schema),
                        &mut error,
                    )
                };
                (t, ptr::null_mut())
            } else {
                // SAFETY: as above.
                let t = unsafe {
                    arrow_dlpack_export(c_array(&mut array), c_schema(&schema), &mut error)
                };
                (ptr::null_mut(), t)
            };
            assert!(
                !versioned_ptr.is_null() || !legacy_ptr.is_null(),
                "{}",
                message(&error)
            );
            // SAFETY: live tensors until deleted below.
            let tensor: &DLTensor = unsafe {
                if versioned {
                    assert_eq!(
                        (*versioned_ptr).version,
                        DLPackVersion { major: 1, minor: 3 }
                    );
                    assert_eq!((*versioned_ptr).flags, DLPACK_FLAG_BITMASK_READ_ONLY);
                    assert_eq!((*versioned_ptr).manager_ctx, versioned_ptr.cast::<c_void>());
                    &(*versioned_ptr).dl_tensor
                } else {
                    &(*legacy_ptr).dl_tensor
                }
            };
            assert_eq!(error.status, Status::ARROW_DLPACK_OK);
            assert_eq!(message(&error), "");
            assert!(array.is_released(), "the array is moved into the tensor");
            assert_eq!(
                tensor.dtype,
                DLDataType {
                    code,
                    bits: (width * 8) as u8,
                    lanes: 1
                },
                "{dt}"
            );
            assert_eq!(
                tensor.device,
                DLDevice {
                    device_type: K_DL_CPU,
                    device_id: 0
                }
            );
            assert_eq!(tensor.byte_offset, 0);
            assert_eq!(dims(tensor), (vec![len as i64], vec![1]));
            if len == 0 {
                assert!(tensor.data.is_null(), "an empty tensor has no data pointer");
            } else {
                // Zero-copy: the first element of the Arrow buffer, in place.
                assert_eq!(
                    tensor.data as usize,
                    buffer.as_ptr() as usize + offset * width,
                    "{dt} offset {offset}"
                );
                // SAFETY: `len` elements of `N` at `data`.
                let seen = unsafe { std::slice::from_raw_parts(tensor.data.cast::<N>(), len) };
                assert_eq!(seen, &values[offset..]);
            }
            if versioned {
                delete_versioned(versioned_ptr);
            } else {
                delete_legacy(legacy_ptr);
            }
            drop(array);
        }
    }
    assert_eq!(buffer.strong_count(), 1, "every tensor released its array");
}

#[test]
fn every_numeric_type_exports_zero_copy_at_every_offset() {
    check_type(DataType::Int8, vec![1i8, -2, 3, -128, 127], K_DL_INT);
    check_type(DataType::UInt8, vec![1u8, 2, 255, 0], K_DL_UINT);
    check_type(
        DataType::Int16,
        vec![1i16, -300, i16::MIN, i16::MAX],
        K_DL_INT,
    );
    check_type(DataType::UInt16, vec![1u16, 300, u16::MAX], K_DL_UINT);
    check_type(DataType::Int32, vec![1i32, -70_000, i32::MIN, 5], K_DL_INT);
    check_type(DataType::UInt32, vec![1u32, 70_000, u32::MAX, 9], K_DL_UINT);
    check_type(
        DataType::Int64,
        vec![1i64, -5_000_000_000, i64::MIN, i64::MAX],
        K_DL_INT,
    );
    check_type(
        DataType::UInt64,
        vec![1u64, 5_000_000_000, u64::MAX, 0],
        K_DL_UINT,
    );
    // float16 as its bit patterns: 1.0, -2.0, 0.5, inf.
    check_type(
        DataType::Float16,
        vec![0x3c00u16, 0xc000, 0x3800, 0x7c00],
        K_DL_FLOAT,
    );
    check_type(
        DataType::Float32,
        vec![1.5f32, -0.0, f32::MAX, f32::MIN_POSITIVE],
        K_DL_FLOAT,
    );
    check_type(
        DataType::Float64,
        vec![1.5f64, -2.25, f64::MAX, f64::EPSILON],
        K_DL_FLOAT,
    );
}

#[test]
fn releasing_the_tensor_releases_the_array_exactly_once() {
    let mut raw = Raw::primitive("i", &[1i32, 2, 3]);
    // SAFETY: valid hand-built structs.
    let t = unsafe {
        arrow_dlpack_export_versioned(raw.array_ptr(), raw.schema_ptr(), ptr::null_mut())
    };
    assert!(!t.is_null());
    assert!(
        raw.array.release.is_none(),
        "moved: the caller's release is NULL"
    );
    assert_eq!(raw.release_count(), 0);
    delete_versioned(t);
    assert_eq!(raw.release_count(), 1);
    drop(raw);
}

#[test]
fn the_deleter_may_run_on_another_thread() {
    let mut raw = Raw::primitive("g", &[1.0f64, 2.0]);
    // SAFETY: valid hand-built structs.
    let t = unsafe { arrow_dlpack_export(raw.array_ptr(), raw.schema_ptr(), ptr::null_mut()) };
    let addr = t as usize;
    std::thread::spawn(move || delete_legacy(addr as *mut DLManagedTensor))
        .join()
        .unwrap();
    assert_eq!(raw.release_count(), 1);
}

#[test]
fn the_schema_is_borrowed_never_touched() {
    let mut raw = Raw::primitive("l", &[7i64]);
    let before = struct_bytes(&*raw.schema);
    // SAFETY: valid hand-built structs.
    let t = unsafe {
        arrow_dlpack_export_versioned(raw.array_ptr(), raw.schema_ptr(), ptr::null_mut())
    };
    delete_versioned(t);
    assert_eq!(struct_bytes(&*raw.schema), before);
}

/// Runs the export on a malformed input and checks the status, the message
/// and that the caller's array is exactly as it was and not released.
fn rejects(raw: &mut Raw, status: Status, needle: &str) {
    let before = raw.array_bytes();
    let schema_before = struct_bytes(&*raw.schema);
    for versioned in [true, false] {
        let mut error = new_error();
        // SAFETY: the structs are malformed only in the ways the library
        // must detect.
        let failed = unsafe {
            if versioned {
                arrow_dlpack_export_versioned(raw.array_ptr(), raw.schema_ptr(), &mut error)
                    .is_null()
            } else {
                arrow_dlpack_export(raw.array_ptr(), raw.schema_ptr(), &mut error).is_null()
            }
        };
        assert!(failed, "expected {status:?} ({needle})");
        assert_eq!(error.status, status, "{}", message(&error));
        assert!(
            message(&error).contains(needle),
            "message {:?} lacks {needle:?}",
            message(&error)
        );
        assert_eq!(
            raw.array_bytes(),
            before,
            "a failed export leaves the array untouched"
        );
        assert_eq!(struct_bytes(&*raw.schema), schema_before);
        assert_eq!(raw.release_count(), 0);
    }
}

#[test]
fn null_arguments_are_invalid_arguments() {
    let mut raw = Raw::primitive("i", &[1i32]);
    let mut error = new_error();
    // SAFETY: NULL pointers are part of the contract.
    unsafe {
        assert!(arrow_dlpack_export(ptr::null_mut(), raw.schema_ptr(), &mut error).is_null());
        assert_eq!(
            (error.status, message(&error).as_str()),
            (Status::ARROW_DLPACK_INVALID_ARGUMENT, "array is NULL")
        );
        assert!(arrow_dlpack_export_versioned(raw.array_ptr(), ptr::null(), &mut error).is_null());
        assert_eq!(message(&error), "schema is NULL");
        // A NULL error pointer is accepted on failure and on success.
        assert!(
            arrow_dlpack_export_versioned(ptr::null_mut(), ptr::null(), ptr::null_mut()).is_null()
        );
    }
    assert_eq!(raw.release_count(), 0);
}

#[test]
fn released_structs_are_invalid_arguments() {
    let mut raw = Raw::primitive("i", &[1i32]);
    let release = raw.array.release.take();
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_INVALID_ARGUMENT,
        "array is released",
    );
    raw.array.release = release;
    raw.schema.release = None;
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_INVALID_ARGUMENT,
        "schema is released",
    );
}

#[test]
fn malformed_format_strings_are_invalid_arrow() {
    let mut raw = Raw::primitive("i", &[1i32]);
    raw.schema.format = ptr::null();
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_INVALID_ARROW,
        "schema.format is NULL",
    );
    for (format, needle) in [
        (c"q", "unknown format 'q'"),
        (c"ii", "unknown format 'ii'"),
        (c"", "empty format"),
        (c"ts", "truncated format 'ts'"),
        (c"+w", "truncated format '+w'"),
        (c"+w:x", "malformed format '+w:x'"),
    ] {
        let mut raw = Raw::primitive("i", &[1i32]);
        raw.schema.format = format.as_ptr();
        rejects(&mut raw, Status::ARROW_DLPACK_INVALID_ARROW, needle);
    }
}

#[test]
fn non_numeric_types_are_unsupported_with_a_hint() {
    for (format, needle) in [
        (c"b", "'b' (boolean: bit-packed, needs a copy)"),
        (c"u", "'u' (utf8)"),
        (c"tdD", "date32: cast to its integer storage"),
        (c"tsn:UTC", "timestamp[ns]: cast to its integer storage"),
        (c"tDu", "duration[us]: cast to its integer storage"),
        (
            c"d:10,2",
            "decimal128 (scale 2): DLPack has no decimal type",
        ),
        (c"+l", "list"),
        (c"+s", "struct"),
    ] {
        let mut raw = Raw::primitive("i", &[1i32]);
        raw.schema.format = format.as_ptr();
        rejects(&mut raw, Status::ARROW_DLPACK_UNSUPPORTED_TYPE, needle);
    }
    let dictionary = Raw::primitive("u", &[0u8]);
    let mut raw = Raw::primitive("i", &[1i32]);
    raw.schema.dictionary = dictionary.schema.as_ptr();
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_UNSUPPORTED_TYPE,
        "dictionary-encoded",
    );
}

#[test]
fn malformed_buffers_are_invalid_arrow() {
    let mut raw = Raw::primitive("i", &[1i32, 2]);
    raw.array.n_buffers = 3;
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_INVALID_ARROW,
        "array.n_buffers is 3, format 'i' has 2",
    );
    raw.array.n_buffers = 2;
    let buffers = raw.array.buffers;
    raw.array.buffers = ptr::null_mut();
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_INVALID_ARROW,
        "array.buffers is NULL",
    );
    raw.array.buffers = buffers;
    raw.buffers[1] = ptr::null();
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_INVALID_ARROW,
        "buffers[1] (values) is NULL with length 2",
    );
    raw.array.n_children = 1;
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_INVALID_ARROW,
        "array.n_children is 1",
    );
}

#[test]
fn a_null_values_buffer_is_fine_when_there_are_no_values() {
    let mut raw = Raw::new("f", 0, vec![None, None]);
    // SAFETY: valid hand-built structs.
    let t = unsafe {
        arrow_dlpack_export_versioned(raw.array_ptr(), raw.schema_ptr(), ptr::null_mut())
    };
    assert!(!t.is_null());
    // SAFETY: live tensor.
    let tensor = unsafe { &(*t).dl_tensor };
    assert!(tensor.data.is_null());
    assert_eq!(dims(tensor), (vec![0], vec![1]));
    delete_versioned(t);
    assert_eq!(raw.release_count(), 1);
}

#[test]
fn negative_lengths_offsets_and_null_counts_are_invalid_arrow() {
    let mut raw = Raw::primitive("s", &[1i16, 2]);
    raw.array.length = -1;
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_INVALID_ARROW,
        "array.length is negative (-1)",
    );
    raw.array.length = 2;
    raw.array.offset = -3;
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_INVALID_ARROW,
        "array.offset is negative (-3)",
    );
    raw.array.offset = 0;
    raw.array.null_count = -2;
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_INVALID_ARROW,
        "array.null_count is -2",
    );
}

#[test]
fn sizes_that_overflow_are_invalid_arrow() {
    let mut raw = Raw::primitive("l", &[1i64]);
    raw.array.length = i64::MAX / 4;
    rejects(&mut raw, Status::ARROW_DLPACK_INVALID_ARROW, "overflows");
    raw.array.length = 2;
    raw.array.offset = i64::MAX - 1;
    rejects(&mut raw, Status::ARROW_DLPACK_INVALID_ARROW, "overflows");
}

#[test]
fn a_bogus_length_is_refused_before_the_validity_bitmap_is_read() {
    // Found by fuzzing: an unknown null count used to be counted before the
    // values' size was checked. The bitmap pointer has no provenance: any
    // read would be caught (under Miri, as an error; natively, a crash).
    let mut raw = Raw::primitive("e", &[1u16]);
    raw.buffers[0] = ptr::without_provenance::<c_void>(0x2000);
    raw.array.null_count = -1;
    raw.array.length = i64::MAX;
    rejects(&mut raw, Status::ARROW_DLPACK_INVALID_ARROW, "overflows");
}

#[test]
fn known_nulls_are_refused() {
    let mut raw = Raw::primitive("i", &[1i32, 2, 3]);
    raw.set_validity(&[true, false, true], 1);
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_HAS_NULLS,
        "array has 1 nulls; DLPack cannot represent missing values",
    );
    // A positive count without a bitmap is malformed, not "has nulls".
    let mut raw = Raw::primitive("i", &[1i32, 2, 3]);
    raw.array.null_count = 2;
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_INVALID_ARROW,
        "null_count is 2 but buffers[0] (validity) is NULL",
    );
}

#[test]
fn a_zero_null_count_is_trusted() {
    let mut raw = Raw::primitive("i", &[1i32, 2, 3]);
    raw.set_validity(&[true, false, true], 0);
    // SAFETY: valid hand-built structs.
    let t = unsafe {
        arrow_dlpack_export_versioned(raw.array_ptr(), raw.schema_ptr(), ptr::null_mut())
    };
    assert!(!t.is_null());
    delete_versioned(t);
}

#[test]
fn unknown_null_counts_are_counted_over_the_slice_at_any_bit_offset() {
    let n = 70;
    let values: Vec<i32> = (0..n).collect();
    for offset in [0i64, 3, 8, 13, 64] {
        for len in [0i64, 1, 5, 40, n as i64 - offset]
            .into_iter()
            .filter(|len| offset + len <= n as i64)
        {
            // A null just before and just after the slice must not count.
            let mut bits = vec![true; n as usize];
            if offset > 0 {
                bits[offset as usize - 1] = false;
            }
            if offset + len < n as i64 {
                bits[(offset + len) as usize] = false;
            }
            let mut raw = Raw::primitive("i", &values);
            raw.set_validity(&bits, -1);
            raw.array.offset = offset;
            raw.array.length = len;
            // SAFETY: valid hand-built structs.
            let t = unsafe {
                arrow_dlpack_export_versioned(raw.array_ptr(), raw.schema_ptr(), ptr::null_mut())
            };
            assert!(!t.is_null(), "offset {offset} len {len}");
            delete_versioned(t);
            if len > 0 {
                // Now a null inside the slice.
                bits[(offset + len - 1) as usize] = false;
                let mut raw = Raw::primitive("i", &values);
                raw.set_validity(&bits, -1);
                raw.array.offset = offset;
                raw.array.length = len;
                rejects(
                    &mut raw,
                    Status::ARROW_DLPACK_HAS_NULLS,
                    "array has 1 nulls (counted in its validity bitmap)",
                );
            }
        }
    }
    // Unknown count without a bitmap: no nulls.
    let mut raw = Raw::primitive("i", &values);
    raw.array.null_count = -1;
    // SAFETY: valid hand-built structs.
    let t = unsafe { arrow_dlpack_export(raw.array_ptr(), raw.schema_ptr(), ptr::null_mut()) };
    assert!(!t.is_null());
    delete_legacy(t);
}

#[test]
fn arrow_rs_nulls_are_refused_and_the_array_stays_usable() {
    let data =
        arrow_array::Array::to_data(&arrow_array::Int32Array::from(vec![Some(1), None, Some(3)]));
    let (mut array, schema) = to_ffi(&data).unwrap();
    let before = struct_bytes(&array);
    let mut error = new_error();
    // SAFETY: valid structs from arrow-rs.
    let t = unsafe {
        arrow_dlpack_export_versioned(c_array(&mut array), c_schema(&schema), &mut error)
    };
    assert!(t.is_null());
    assert_eq!(error.status, Status::ARROW_DLPACK_HAS_NULLS);
    assert_eq!(struct_bytes(&array), before);
    // Still the caller's: arrow-rs imports it back intact.
    // SAFETY: the array was not moved.
    let back = unsafe { arrow_array::ffi::from_ffi(array, &schema) }.unwrap();
    assert_eq!(arrow_array::make_array(back).null_count(), 1);
}

fn device_array(raw: &mut Raw, device_type: ArrowDeviceType, device_id: i64) -> ArrowDeviceArray {
    // SAFETY: reading our own struct bitwise; `raw` keeps the original,
    // whose release we clear so that only one copy is ever released.
    let array = unsafe { ptr::read(&*raw.array) };
    raw.array.release = None;
    ArrowDeviceArray {
        array,
        device_id,
        device_type,
        sync_event: ptr::without_provenance_mut::<c_void>(0xe7e7),
        reserved: [0; 3],
    }
}

#[test]
fn device_arrays_keep_their_device_and_hand_back_the_sync_event() {
    // The values pointer has no provenance and is not mapped memory: any
    // read would be caught (under Miri, as an error; natively, as a crash).
    let mut raw = Raw::primitive("f", &[0f32; 4]);
    raw.buffers[1] = ptr::without_provenance::<c_void>(0x1000);
    let mut device = device_array(&mut raw, ARROW_DEVICE_CUDA, 3);
    let mut event: *mut c_void = ptr::null_mut();
    let mut error = new_error();
    // SAFETY: valid structs; device memory is never dereferenced.
    let t = unsafe {
        arrow_dlpack_export_device(&mut device, raw.schema_ptr(), &mut event, &mut error)
    };
    assert!(!t.is_null(), "{}", message(&error));
    assert_eq!(event as usize, 0xe7e7);
    assert!(device.array.release.is_none(), "the inner array is moved");
    // SAFETY: live tensor.
    let tensor = unsafe { &(*t).dl_tensor };
    assert_eq!(
        tensor.device,
        DLDevice {
            device_type: K_DL_CUDA,
            device_id: 3
        }
    );
    assert_eq!(tensor.data as usize, 0x1000);
    delete_versioned(t);
    assert_eq!(raw.release_count(), 1);

    // The CPU's device id -1 becomes 0.
    let mut raw = Raw::primitive("f", &[1f32]);
    let mut device = device_array(&mut raw, ARROW_DEVICE_CPU, -1);
    // SAFETY: as above.
    let t = unsafe {
        arrow_dlpack_export_device(
            &mut device,
            raw.schema_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    // SAFETY: live tensor.
    assert_eq!(
        unsafe { (*t).dl_tensor.device },
        DLDevice {
            device_type: K_DL_CPU,
            device_id: 0
        }
    );
    delete_versioned(t);
}

#[test]
fn device_arrays_export_as_legacy_tensors_for_consumers_without_versions() {
    // Device memory without provenance: never read, as above.
    let mut raw = Raw::primitive("l", &[0i64; 4]);
    raw.array.offset = 1;
    raw.array.length = 3;
    raw.buffers[1] = ptr::without_provenance::<c_void>(0x1000);
    let mut device = device_array(&mut raw, ARROW_DEVICE_CUDA, 2);
    let mut event: *mut c_void = ptr::null_mut();
    let mut error = new_error();
    // SAFETY: valid structs; device memory is never dereferenced.
    let t = unsafe {
        arrow_dlpack_export_device_legacy(&mut device, raw.schema_ptr(), &mut event, &mut error)
    };
    assert!(!t.is_null(), "{}", message(&error));
    assert_eq!(error.status, Status::ARROW_DLPACK_OK);
    assert_eq!(event as usize, 0xe7e7, "the sync event is handed back");
    assert!(device.array.release.is_none(), "the inner array is moved");
    // SAFETY: live tensor.
    let tensor = unsafe { &(*t).dl_tensor };
    assert_eq!(
        (tensor.device, tensor.data as usize, tensor.byte_offset),
        (
            DLDevice {
                device_type: K_DL_CUDA,
                device_id: 2
            },
            0x1000 + 8,
            0
        )
    );
    assert_eq!(raw.release_count(), 0);
    delete_legacy(t);
    assert_eq!(raw.release_count(), 1);

    // Failures leave everything as it was, as the versioned flavour does.
    let mut raw = Raw::primitive("i", &[1i32]);
    let mut device = device_array(&mut raw, 5, 0);
    let before = struct_bytes(&device.array);
    let mut event = ptr::without_provenance_mut::<c_void>(0x1);
    // SAFETY: valid structs.
    let t = unsafe {
        arrow_dlpack_export_device_legacy(&mut device, raw.schema_ptr(), &mut event, &mut error)
    };
    assert!(t.is_null() && event.is_null());
    assert_eq!(error.status, Status::ARROW_DLPACK_UNSUPPORTED_DEVICE);
    assert_eq!(struct_bytes(&device.array), before);
    // Give the array back to `raw` so that it is released once.
    *raw.array = device.array;
}

/// A failed device export: status, message, array untouched, event NULL.
fn device_rejects(
    device: &mut ArrowDeviceArray,
    schema: *const ArrowSchema,
    status: Status,
    needle: &str,
) {
    // Field by field: the struct has padding after `device_type`.
    let fields = |d: &ArrowDeviceArray| {
        (
            struct_bytes(&d.array),
            d.device_id,
            d.device_type,
            d.sync_event,
            d.reserved,
        )
    };
    let before = fields(device);
    let mut event = ptr::without_provenance_mut::<c_void>(0x1);
    let mut error = new_error();
    // SAFETY: valid structs; device memory is never dereferenced.
    let t = unsafe { arrow_dlpack_export_device(device, schema, &mut event, &mut error) };
    assert!(t.is_null());
    assert!(event.is_null());
    assert_eq!(error.status, status, "{}", message(&error));
    assert!(
        message(&error).contains(needle),
        "{:?} lacks {needle:?}",
        message(&error)
    );
    assert_eq!(fields(device), before);
}

#[test]
fn device_validity_bitmaps_are_never_read() {
    let mut raw = Raw::primitive("i", &[1i32, 2]);
    raw.buffers[0] = ptr::without_provenance::<c_void>(0x2000);
    raw.buffers[1] = ptr::without_provenance::<c_void>(0x1000);
    raw.array.null_count = -1;
    let mut device = device_array(&mut raw, ARROW_DEVICE_CUDA, 0);
    device_rejects(
        &mut device,
        raw.schema_ptr(),
        Status::ARROW_DLPACK_UNSUPPORTED_DEVICE,
        "never read",
    );
    device.array.null_count = 0;
    // SAFETY: valid structs.
    let t = unsafe {
        arrow_dlpack_export_device(
            &mut device,
            raw.schema_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    assert!(!t.is_null());
    delete_versioned(t);
}

#[test]
fn unknown_devices_and_ids_are_unsupported_devices() {
    let mut raw = Raw::primitive("i", &[1i32]);
    let mut device = device_array(&mut raw, 5, 0);
    device_rejects(
        &mut device,
        raw.schema_ptr(),
        Status::ARROW_DLPACK_UNSUPPORTED_DEVICE,
        "unknown device_type 5",
    );
    device.device_type = ARROW_DEVICE_CUDA;
    device.device_id = 1 << 40;
    device_rejects(
        &mut device,
        raw.schema_ptr(),
        Status::ARROW_DLPACK_UNSUPPORTED_DEVICE,
        "device_id 1099511627776",
    );
    device.device_type = ARROW_DEVICE_CPU;
    device.device_id = 2;
    device_rejects(
        &mut device,
        raw.schema_ptr(),
        Status::ARROW_DLPACK_UNSUPPORTED_DEVICE,
        "device_id 2 for the CPU",
    );
    // Give the array back to `raw` so that it is released once.
    *raw.array = device.array;
}

#[test]
fn status_strings_cover_every_integer() {
    // SAFETY: static NUL-terminated strings.
    let s = |v| {
        unsafe { std::ffi::CStr::from_ptr(arrow_dlpack_status_string(v)) }
            .to_str()
            .unwrap()
    };
    assert_eq!(s(0), "ok");
    assert_eq!(s(3), "array has nulls");
    assert_eq!(s(8), "internal error (a bug in arrow-dlpack)");
    assert_eq!(s(9), "needs a copy");
    assert_eq!(s(10), "unknown status");
    assert_eq!(s(-7), "unknown status");
    // SAFETY: as above.
    let v = unsafe { std::ffi::CStr::from_ptr(arrow_dlpack_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}
