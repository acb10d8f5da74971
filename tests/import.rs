//! The import rules (DLPack -> Arrow) through the C entry points, and the
//! safe Rust API round trips.

mod common;

use std::ffi::c_void;
use std::ptr;
use std::sync::Arc;

use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi};
use arrow_array::{Array, FixedSizeListArray, Float32Array, make_array};
use arrow_dlpack::Status;
use arrow_dlpack::abi::*;
use arrow_dlpack::capi::*;
use arrow_schema::{DataType, Field};
use common::{Fixture, message, new_error};

/// Imports, returning the arrow-rs view of the result (through its own C
/// Data Interface import, which shares our buffers).
fn import(
    f: &mut Fixture,
    versioned: bool,
) -> Result<(Field, arrow_array::ArrayRef), (Status, String)> {
    let mut array = FFI_ArrowArray::empty();
    let mut schema = FFI_ArrowSchema::empty();
    let mut error = new_error();
    // SAFETY: valid tensors and writable out structs.
    let status = unsafe {
        if versioned {
            arrow_dlpack_import_versioned(
                &mut *f.managed,
                (&mut array as *mut FFI_ArrowArray).cast(),
                (&mut schema as *mut FFI_ArrowSchema).cast(),
                &mut error,
            )
        } else {
            arrow_dlpack_import(
                &mut *f.legacy,
                (&mut array as *mut FFI_ArrowArray).cast(),
                (&mut schema as *mut FFI_ArrowSchema).cast(),
                &mut error,
            )
        }
    };
    if status != Status::ARROW_DLPACK_OK {
        assert_eq!(status, error.status);
        return Err((status, message(&error)));
    }
    let field = Field::try_from(&schema).unwrap();
    // SAFETY: a valid array from the library.
    let data = unsafe { from_ffi(array, &schema) }.unwrap();
    Ok((field, make_array(data)))
}

const DTYPES: [(u8, u8, DataType); 11] = [
    (K_DL_INT, 8, DataType::Int8),
    (K_DL_UINT, 8, DataType::UInt8),
    (K_DL_INT, 16, DataType::Int16),
    (K_DL_UINT, 16, DataType::UInt16),
    (K_DL_INT, 32, DataType::Int32),
    (K_DL_UINT, 32, DataType::UInt32),
    (K_DL_INT, 64, DataType::Int64),
    (K_DL_UINT, 64, DataType::UInt64),
    (K_DL_FLOAT, 16, DataType::Float16),
    (K_DL_FLOAT, 32, DataType::Float32),
    (K_DL_FLOAT, 64, DataType::Float64),
];

#[test]
fn every_dtype_imports_zero_copy_and_the_deleter_runs_once() {
    for (code, bits, data_type) in DTYPES {
        for versioned in [true, false] {
            let mut f = Fixture::new(code, bits, &[5], Some(&[1]));
            f.managed.dl_tensor.byte_offset = 8;
            f.legacy.dl_tensor.byte_offset = 8;
            let (field, array) = import(&mut f, versioned).unwrap();
            assert_eq!(field.data_type(), &data_type);
            assert_eq!(array.len(), 5);
            assert_eq!(
                array.to_data().buffers()[0].as_ptr() as usize,
                f.data() + 8,
                "zero-copy, byte_offset honoured"
            );
            assert_eq!(f.deletes(), 0);
            drop(array);
            assert_eq!(f.deletes(), 1, "{data_type} versioned={versioned}");
        }
    }
}

#[test]
fn the_deleter_runs_once_after_the_array_is_moved_and_sliced() {
    let mut f = Fixture::new(K_DL_FLOAT, 32, &[8], None);
    let mut array = FFI_ArrowArray::empty();
    let mut schema = FFI_ArrowSchema::empty();
    // SAFETY: valid tensor, writable out structs.
    let status = unsafe {
        arrow_dlpack_import_versioned(
            &mut *f.managed,
            (&mut array as *mut FFI_ArrowArray).cast(),
            (&mut schema as *mut FFI_ArrowSchema).cast(),
            ptr::null_mut(),
        )
    };
    assert_eq!(status, Status::ARROW_DLPACK_OK);
    // A consumer moves the struct elsewhere (C Data Interface move).
    // SAFETY: bitwise move, then the source is marked released.
    let moved = unsafe { ptr::read(&array) };
    // SAFETY: marks the source released, as a move does.
    unsafe { (*(&mut array as *mut FFI_ArrowArray).cast::<ArrowArray>()).release = None };
    drop(array);
    assert_eq!(f.deletes(), 0);
    // SAFETY: a valid array.
    let data = unsafe { from_ffi(moved, &schema) }.unwrap();
    let floats = Float32Array::from(data);
    let slice = floats.slice(2, 3);
    drop(floats);
    assert_eq!(f.deletes(), 0, "the slice still shares the buffer");
    drop(slice);
    assert_eq!(f.deletes(), 1);
}

#[test]
fn zero_d_and_empty_tensors() {
    let mut f = Fixture::new(K_DL_INT, 32, &[], None);
    let (_, array) = import(&mut f, true).unwrap();
    assert_eq!(array.len(), 1);
    drop(array);
    let mut f = Fixture::new(K_DL_INT, 32, &[0], Some(&[7]));
    assert_eq!(import(&mut f, true).unwrap().1.len(), 0);
    let mut f = Fixture::new(K_DL_INT, 32, &[0, 3], Some(&[-1, 0]));
    f.managed.dl_tensor.data = ptr::null_mut();
    let (field, array) = import(&mut f, true).unwrap();
    assert_eq!(array.len(), 0);
    assert!(matches!(field.data_type(), DataType::FixedSizeList(_, 3)));
    drop(array);
    assert_eq!(f.deletes(), 1);
}

fn extension_json(field: &Field) -> &str {
    assert_eq!(
        field.metadata()["ARROW:extension:name"],
        "arrow.fixed_shape_tensor"
    );
    &field.metadata()["ARROW:extension:metadata"]
}

#[test]
fn nd_tensors_become_fixed_shape_tensors() {
    // Row-major [2, 3, 4]; strides given or NULL.
    for strides in [Some(&[12i64, 4, 1][..]), None] {
        let mut f = Fixture::new(K_DL_FLOAT, 32, &[2, 3, 4], strides);
        let (field, array) = import(&mut f, true).unwrap();
        assert_eq!(extension_json(&field), r#"{"shape":[3, 4]}"#);
        let list = array.as_any().downcast_ref::<FixedSizeListArray>().unwrap();
        assert_eq!((list.len(), list.value_length()), (2, 12));
        assert_eq!(
            list.values().to_data().buffers()[0].as_ptr() as usize,
            f.data()
        );
    }
    // np.arange(24).reshape(2, 4, 3).transpose(0, 2, 1): logical [2, 3, 4], strides [12, 1, 3].
    let mut f = Fixture::new(K_DL_FLOAT, 32, &[2, 3, 4], Some(&[12, 1, 3]));
    let (field, _) = import(&mut f, true).unwrap();
    assert_eq!(
        extension_json(&field),
        r#"{"shape":[4, 3],"permutation":[1, 0]}"#
    );
}

#[test]
fn layouts_that_need_a_copy_are_refused_and_the_tensor_untouched() {
    for (shape, strides, needle) in [
        (&[4i64][..], &[2i64][..], "strides [2] for shape [4]"),
        (
            &[3, 2][..],
            &[1, 3][..],
            "first dimension must be outermost",
        ), // Fortran order
        (
            &[2, 3][..],
            &[4, 1][..],
            "first dimension must be outermost",
        ), // gaps between rows
        (&[2, 2, 3][..], &[6, 4, 1][..], "not dense"),
        (&[2, 3][..], &[3, -1][..], "not dense"),
        (&[2, 3][..], &[3, 0][..], "not dense"),
    ] {
        let mut f = Fixture::new(K_DL_INT, 16, shape, Some(strides));
        let before = common::struct_bytes(&*f.managed);
        let (status, message) = import(&mut f, true).unwrap_err();
        assert_eq!(status, Status::ARROW_DLPACK_UNSUPPORTED_LAYOUT, "{message}");
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        assert_eq!(common::struct_bytes(&*f.managed), before);
        assert_eq!(f.deletes(), 0);
    }
}

#[test]
fn dtypes_arrow_lacks_are_unsupported() {
    for (code, bits, lanes, needle) in [
        (K_DL_BOOL, 8, 1, "(bool)"),
        (K_DL_BFLOAT, 16, 1, "(bfloat16)"),
        (K_DL_COMPLEX, 64, 1, "(complex)"),
        (12, 8, 1, "float8"),
        (K_DL_FLOAT, 32, 4, "(a vector type)"),
        (K_DL_INT, 4, 1, "(a width Arrow lacks)"),
    ] {
        let mut f = Fixture::new(code, bits, &[4], None);
        f.managed.dl_tensor.dtype.lanes = lanes;
        let (status, message) = import(&mut f, true).unwrap_err();
        assert_eq!(status, Status::ARROW_DLPACK_UNSUPPORTED_TYPE);
        assert!(message.contains(needle), "{message}");
        assert_eq!(f.deletes(), 0);
    }
}

#[test]
fn malformed_tensors_are_invalid_arguments() {
    let mut f = Fixture::new(K_DL_INT, 32, &[4], None);
    f.managed.dl_tensor.ndim = -1;
    assert!(
        import(&mut f, true)
            .unwrap_err()
            .1
            .contains("ndim is negative (-1)")
    );
    let mut f = Fixture::new(K_DL_INT, 32, &[4], None);
    f.managed.dl_tensor.shape = ptr::null_mut();
    assert!(
        import(&mut f, true)
            .unwrap_err()
            .1
            .contains("shape is NULL")
    );
    let mut f = Fixture::new(K_DL_INT, 32, &[-4], None);
    assert!(
        import(&mut f, true)
            .unwrap_err()
            .1
            .contains("dimension 0 is negative")
    );
    let mut f = Fixture::new(K_DL_INT, 64, &[i64::MAX / 4, 8], None);
    assert!(import(&mut f, true).unwrap_err().1.contains("overflows"));
    let mut f = Fixture::new(K_DL_INT, 32, &[4], None);
    f.managed.dl_tensor.data = ptr::null_mut();
    assert!(import(&mut f, true).unwrap_err().1.contains("data is NULL"));
    assert_eq!(f.deletes(), 0);
    // NULL arguments.
    let mut error = new_error();
    // SAFETY: NULL pointers are part of the contract.
    let status = unsafe {
        arrow_dlpack_import_versioned(
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            &mut error,
        )
    };
    assert_eq!(status, Status::ARROW_DLPACK_INVALID_ARGUMENT);
    assert_eq!(message(&error), "out_array is NULL");
}

#[test]
fn empty_tensors_whose_row_size_overflows_are_refused() {
    // The total is 0 (shape[0] == 0), so only the row's own product can
    // overflow; it would become the fixed_size_list size and the
    // extension's shape. Every flavour, with and without strides.
    for shape in [
        &[0, 1 << 32, 1 << 32][..],
        &[0, 1 << 62, 4],
        &[0, 3, 1 << 62, 8],
        &[0, i64::MAX, 2],
        // The row's product is 0, one of its strides is not.
        &[1, 0, i64::MAX, 2],
        &[3, 0, 1 << 32, 1 << 32],
    ] {
        for strides in [None, Some(vec![1i64; shape.len()])] {
            for versioned in [true, false] {
                let mut f = Fixture::new(K_DL_FLOAT, 32, shape, strides.as_deref());
                let before = (f.managed.dl_tensor.data, f.legacy.dl_tensor.data);
                let (status, message) = import(&mut f, versioned).unwrap_err();
                assert_eq!(status, Status::ARROW_DLPACK_INVALID_ARGUMENT, "{shape:?}");
                assert!(
                    message.contains("a row of") && message.contains("overflows"),
                    "{shape:?}: {message}"
                );
                assert_eq!(f.deletes(), 0, "the tensor is still the caller's");
                assert_eq!(before, (f.managed.dl_tensor.data, f.legacy.dl_tensor.data));
            }
        }
    }
    // A row that fits i64 but not fixed_size_list's int32 size.
    let mut f = Fixture::new(K_DL_FLOAT, 32, &[0, 1 << 31], None);
    let (status, message) = import(&mut f, true).unwrap_err();
    assert_eq!(status, Status::ARROW_DLPACK_UNSUPPORTED_LAYOUT, "{message}");
}

#[test]
fn a_major_version_other_than_1_is_refused_before_reading_anything_else() {
    let mut f = Fixture::new(K_DL_INT, 32, &[4], None);
    f.managed.version = DLPackVersion { major: 2, minor: 0 };
    // Poison every other field: under Miri any read of these is an error.
    f.managed.dl_tensor.shape = ptr::without_provenance_mut(0x10);
    f.managed.dl_tensor.strides = ptr::without_provenance_mut(0x20);
    f.managed.dl_tensor.ndim = i32::MAX;
    let (status, message) = import(&mut f, true).unwrap_err();
    assert_eq!(status, Status::ARROW_DLPACK_INVALID_ARGUMENT);
    assert!(
        message.contains("DLPack version 2.0 is not supported"),
        "{message}"
    );
    assert_eq!(f.deletes(), 0);
}

#[test]
fn plain_import_takes_host_readable_memory_only() {
    let mut f = Fixture::new(K_DL_INT, 32, &[4], None);
    f.managed.dl_tensor.device = DLDevice {
        device_type: K_DL_CUDA,
        device_id: 0,
    };
    let (status, message) = import(&mut f, true).unwrap_err();
    assert_eq!(status, Status::ARROW_DLPACK_UNSUPPORTED_DEVICE);
    assert!(
        message.contains("use arrow_dlpack_import_device"),
        "{message}"
    );
    f.managed.dl_tensor.device = DLDevice {
        device_type: K_DL_CUDA_HOST,
        device_id: 0,
    };
    assert!(import(&mut f, true).is_ok());
}

#[test]
fn device_import_keeps_the_device_and_never_reads_it() {
    let mut f = Fixture::new(K_DL_FLOAT, 32, &[4, 2], None);
    f.managed.dl_tensor.device = DLDevice {
        device_type: K_DL_CUDA,
        device_id: 3,
    };
    f.managed.dl_tensor.data = ptr::without_provenance_mut::<c_void>(0x1000);
    let mut out = std::mem::MaybeUninit::<ArrowDeviceArray>::uninit();
    let mut schema = FFI_ArrowSchema::empty();
    let mut error = new_error();
    // SAFETY: valid tensor; writable out structs.
    let status = unsafe {
        arrow_dlpack_import_device(
            &mut *f.managed,
            out.as_mut_ptr(),
            (&mut schema as *mut FFI_ArrowSchema).cast(),
            &mut error,
        )
    };
    assert_eq!(status, Status::ARROW_DLPACK_OK, "{}", message(&error));
    // SAFETY: written on success.
    let mut out = unsafe { out.assume_init() };
    assert_eq!(
        (out.device_type, out.device_id, out.sync_event),
        (ARROW_DEVICE_CUDA, 3, ptr::null_mut())
    );
    assert_eq!(out.array.length, 4);
    // SAFETY: the child's values buffer: the device pointer, unread.
    let child_values = unsafe { *(**out.array.children).buffers.add(1) };
    assert_eq!(child_values as usize, 0x1000);
    // SAFETY: release the imported array once.
    unsafe { (out.array.release.unwrap())(&mut out.array) };
    assert_eq!(f.deletes(), 1);

    let mut f = Fixture::new(K_DL_FLOAT, 32, &[4], None);
    f.managed.dl_tensor.device = DLDevice {
        device_type: K_DL_MAIA,
        device_id: 0,
    };
    let mut out = std::mem::MaybeUninit::<ArrowDeviceArray>::uninit();
    // SAFETY: as above.
    let status = unsafe {
        arrow_dlpack_import_device(
            &mut *f.managed,
            out.as_mut_ptr(),
            (&mut schema as *mut FFI_ArrowSchema).cast(),
            &mut error,
        )
    };
    assert_eq!(status, Status::ARROW_DLPACK_UNSUPPORTED_DEVICE);
    assert!(message(&error).contains("Arrow has no such device type"));
}

#[test]
fn round_trips_keep_the_same_memory() {
    // Arrow -> DLPack -> Arrow.
    let values = Float32Array::from((0..12).map(|v| v as f32).collect::<Vec<_>>());
    let list = FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Float32, false)),
        4,
        Arc::new(values.clone()),
        None,
    );
    let tensor = arrow_dlpack::to_dlpack(&list).unwrap();
    assert_eq!(
        (tensor.shape(), tensor.strides()),
        (&[3i64, 4][..], Some(&[4i64, 1][..]))
    );
    let (field, back) = arrow_dlpack::from_dlpack(tensor)
        .map_err(|(e, _)| e)
        .unwrap();
    let back = back.as_any().downcast_ref::<FixedSizeListArray>().unwrap();
    assert_eq!(
        back.values().to_data().buffers()[0].as_ptr(),
        values.values().as_ptr().cast()
    );
    // DLPack -> Arrow -> DLPack, through the field's extension metadata.
    let tensor = arrow_dlpack::to_dlpack_with_field(&field, back).unwrap();
    assert_eq!(tensor.data_ptr(), values.values().as_ptr().cast());
    assert_eq!(tensor.shape(), &[3, 4]);
}
