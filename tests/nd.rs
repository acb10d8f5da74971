//! N-D tensors: nested fixed_size_list and the arrow.fixed_shape_tensor
//! extension type, zero-copy, with offsets at every level.

mod common;

use std::ptr;
use std::sync::Arc;

use arrow_array::ffi::to_ffi;
use arrow_array::{Array, FixedSizeListArray, Float32Array, Int16Array};
use arrow_buffer::NullBuffer;
use arrow_dlpack::Status;
use arrow_dlpack::abi::*;
use arrow_dlpack::capi::*;
use arrow_schema::{DataType, Field};
use common::{Raw, message, new_error, struct_bytes};

/// A tensor's shape, strides and first element, then deleted.
struct Seen {
    shape: Vec<i64>,
    strides: Vec<i64>,
    data: usize,
}

/// Exports through the versioned entry point, checks the ownership moved,
/// reads the tensor and deletes it.
fn export(array: *mut ArrowArray, schema: *const ArrowSchema) -> Result<Seen, (Status, String)> {
    let mut error = new_error();
    // SAFETY: valid structs (the tests' fixtures).
    let t = unsafe { arrow_dlpack_export_versioned(array, schema, &mut error) };
    if t.is_null() {
        return Err((error.status, message(&error)));
    }
    // SAFETY: a live tensor with `ndim` shape and stride entries.
    let seen = unsafe {
        let d = &(*t).dl_tensor;
        let n = d.ndim as usize;
        Seen {
            shape: std::slice::from_raw_parts(d.shape, n).to_vec(),
            strides: std::slice::from_raw_parts(d.strides, n).to_vec(),
            data: d.data as usize,
        }
    };
    // SAFETY: deleted once.
    unsafe { ((*t).deleter.unwrap())(t) };
    Ok(seen)
}

fn export_raw(raw: &mut Raw) -> Result<Seen, (Status, String)> {
    let result = export(raw.array_ptr(), raw.schema_ptr());
    if result.is_ok() {
        assert_eq!(
            raw.release_count(),
            1,
            "the parent is released exactly once"
        );
    }
    result
}

/// Expects a failure, with the array untouched and not released.
fn rejects(raw: &mut Raw, status: Status, needle: &str) {
    let before = raw.array_bytes();
    match export(raw.array_ptr(), raw.schema_ptr()) {
        Ok(_) => panic!("expected {status:?} ({needle})"),
        Err((s, m)) => {
            assert_eq!(s, status, "{m}");
            assert!(m.contains(needle), "{m:?} lacks {needle:?}");
        }
    }
    assert_eq!(raw.array_bytes(), before);
    assert_eq!(raw.release_count(), 0);
}

fn values(n: usize) -> Vec<i16> {
    (0..n as i16).collect()
}

/// `+w:inner` of `+w:middle` of int16 over `values`, built by hand.
fn nested(outer_len: i64, middle: i64, inner: i64, data: &[i16]) -> Raw {
    let leaf = Raw::primitive("s", data);
    let mid_len = data.len() as i64 / inner;
    let mid = Raw::fixed_size_list(inner, mid_len, leaf);
    Raw::fixed_size_list(middle, outer_len, mid)
}

#[test]
fn a_fixed_size_list_is_a_2d_tensor() {
    let child = Float32Array::from((0..12).map(|v| v as f32).collect::<Vec<_>>());
    let list = FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Float32, false)),
        3,
        Arc::new(child.clone()),
        None,
    );
    let (mut a, s) = to_ffi(&list.to_data()).unwrap();
    let seen = export(
        (&mut a as *mut _ as *mut ArrowArray).cast(),
        (&s as *const _ as *const ArrowSchema).cast(),
    )
    .unwrap();
    assert!(a.is_released());
    assert_eq!((seen.shape, seen.strides), (vec![4, 3], vec![3, 1]));
    assert_eq!(seen.data, child.values().as_ptr() as usize);
}

#[test]
fn nested_lists_are_nd_tensors_with_offsets_at_every_level() {
    let data = values(96);
    for (outer_offset, mid_offset, leaf_offset) in
        [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 5), (2, 3, 7)]
    {
        // outer rows of 2 middle rows of 4 leaves.
        let mut raw = nested(3, 2, 4, &data);
        raw.array.offset = outer_offset;
        raw.child(0).array.offset = mid_offset;
        raw.child(0).child(0).array.offset = leaf_offset;
        raw.child(0).child(0).array.length = 96 - leaf_offset;
        raw.child(0).array.length = (96 - leaf_offset) / 4 - mid_offset;
        let leaves = raw.child(0).child(0).buffers[1] as usize;
        let seen = export_raw(&mut raw).unwrap();
        assert_eq!((seen.shape, seen.strides), (vec![3, 2, 4], vec![8, 4, 1]));
        // Leaf index of the first element: ((outer * 2) + mid) * 4 + leaf.
        let first = ((outer_offset * 2 + mid_offset) * 4 + leaf_offset) as usize;
        assert_eq!(
            seen.data,
            leaves + first * 2,
            "offsets {outer_offset} {mid_offset} {leaf_offset}"
        );
    }
}

#[test]
fn arrow_rs_sliced_lists_share_the_child_buffer() {
    let child = Int16Array::from(values(40));
    let list = FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Int16, false)),
        4,
        Arc::new(child.clone()),
        None,
    );
    let sliced = list.slice(3, 5);
    let (mut a, s) = to_ffi(&sliced.to_data()).unwrap();
    let seen = export(
        (&mut a as *mut _ as *mut ArrowArray).cast(),
        (&s as *const _ as *const ArrowSchema).cast(),
    )
    .unwrap();
    assert_eq!((seen.shape, seen.strides), (vec![5, 4], vec![4, 1]));
    assert_eq!(seen.data, child.values().as_ptr() as usize + 3 * 4 * 2);
}

#[test]
fn empty_lists_and_zero_size_lists_work() {
    let mut raw = nested(0, 2, 4, &values(8));
    let seen = export_raw(&mut raw).unwrap();
    assert_eq!((seen.shape, seen.data), (vec![0, 2, 4], 0));
    let leaf = Raw::primitive("i", &[0i32; 0]);
    let mut raw = Raw::fixed_size_list(0, 5, leaf);
    let seen = export_raw(&mut raw).unwrap();
    assert_eq!(
        (seen.shape, seen.strides, seen.data),
        (vec![5, 0], vec![0, 1], 0)
    );
}

#[test]
fn empty_lists_whose_row_size_overflows_are_refused() {
    // Length 0 covers no element at any level, so no buffer bounds the
    // list sizes: their product must be checked on its own.
    let leaf = Raw::primitive("s", &values(0));
    let mid = Raw::fixed_size_list(1 << 40, 0, leaf);
    let mut raw = Raw::fixed_size_list(1 << 40, 0, mid);
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_UNSUPPORTED_LAYOUT,
        "overflows",
    );
    // The extension: the whole product is 0, a stride is not.
    let mut raw = fixed_shape(0, 0, r#"{"shape":[0,99999999999,99999999999]}"#);
    rejects(&mut raw, Status::ARROW_DLPACK_INVALID_ARROW, "overflows");
    // The largest product that fits still exports, with exact strides.
    let leaf = Raw::primitive("s", &values(0));
    let mid = Raw::fixed_size_list(1 << 31, 0, leaf);
    let mut raw = Raw::fixed_size_list(1 << 31, 0, mid);
    let seen = export_raw(&mut raw).unwrap();
    assert_eq!(seen.strides, vec![1 << 62, 1 << 31, 1]);
}

#[test]
fn a_child_too_short_for_its_parent_is_invalid_arrow() {
    let mut raw = nested(3, 2, 4, &values(96));
    raw.child(0).array.length = 5; // needs 6 middle rows
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_INVALID_ARROW,
        "child 0: array.length is 5, the parent needs 6 elements from 0",
    );
    let mut raw = nested(3, 2, 4, &values(96));
    raw.array.offset = 10; // needs rows up to 26
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_INVALID_ARROW,
        "child 0: array.length is 24",
    );
}

#[test]
fn malformed_children_are_invalid_arrow() {
    let mut raw = nested(2, 2, 4, &values(32));
    raw.array.children = ptr::null_mut();
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_INVALID_ARROW,
        "children is NULL",
    );
    let mut raw = nested(2, 2, 4, &values(32));
    raw.schema.n_children = 2;
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_INVALID_ARROW,
        "schema.n_children is 2",
    );
    let mut raw = nested(2, 2, 4, &values(32));
    raw.child(0).child(0).schema.format = c"u".as_ptr();
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_UNSUPPORTED_TYPE,
        "child 0.0: unsupported format 'u' (utf8)",
    );
}

#[test]
fn nulls_at_any_level_are_refused() {
    // The parent.
    let mut raw = nested(3, 2, 4, &values(96));
    raw.set_validity(&[true, false, true], 1);
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_HAS_NULLS,
        "array has 1 nulls",
    );
    let mut raw = nested(3, 2, 4, &values(96));
    raw.set_validity(&[true, false, true], -1);
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_HAS_NULLS,
        "counted in its validity bitmap",
    );
    // The middle level, inside the covered range.
    let mut raw = nested(3, 2, 4, &values(96));
    let mut bits = vec![true; 12];
    bits[3] = false;
    raw.child(0).set_validity(&bits, 1);
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_HAS_NULLS,
        "child 0: array has 1 nulls",
    );
    // The leaves, unknown count.
    let mut raw = nested(3, 2, 4, &values(96));
    let mut bits = vec![true; 96];
    bits[20] = false;
    raw.child(0).child(0).set_validity(&bits, -1);
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_HAS_NULLS,
        "child 0.0: array has 1 nulls",
    );
    // A child null outside the covered range does not matter.
    let mut raw = nested(2, 2, 4, &values(96));
    let mut bits = vec![true; 96];
    bits[90] = false;
    raw.child(0).child(0).set_validity(&bits, 1);
    assert!(export_raw(&mut raw).is_ok());
}

#[test]
fn arrow_rs_child_nulls_are_refused() {
    let child = Int16Array::from(vec![Some(1), None, Some(3), Some(4)]);
    let list = FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Int16, true)),
        2,
        Arc::new(child),
        None,
    );
    let (mut a, s) = to_ffi(&list.to_data()).unwrap();
    let before = struct_bytes(&a);
    let err = export(
        (&mut a as *mut _ as *mut ArrowArray).cast(),
        (&s as *const _ as *const ArrowSchema).cast(),
    )
    .err()
    .unwrap();
    assert_eq!(err.0, Status::ARROW_DLPACK_HAS_NULLS);
    assert_eq!(struct_bytes(&a), before);
    let nulls = NullBuffer::from(vec![true, false]);
    let list = FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Int16, false)),
        2,
        Arc::new(Int16Array::from(values(4))),
        Some(nulls),
    );
    let (mut a, s) = to_ffi(&list.to_data()).unwrap();
    let err = export(
        (&mut a as *mut _ as *mut ArrowArray).cast(),
        (&s as *const _ as *const ArrowSchema).cast(),
    )
    .err()
    .unwrap();
    assert_eq!(
        err,
        (
            Status::ARROW_DLPACK_HAS_NULLS,
            "array has 1 nulls; DLPack cannot represent missing values".into()
        )
    );
}

/// A metadata block as the C Data Interface lays it out.
fn metadata(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = (entries.len() as i32).to_ne_bytes().to_vec();
    for (k, v) in entries {
        out.extend((k.len() as i32).to_ne_bytes());
        out.extend(*k);
        out.extend((v.len() as i32).to_ne_bytes());
        out.extend(*v);
    }
    out
}

fn tensor_type(json: &str) -> Vec<u8> {
    metadata(&[
        (b"ARROW:extension:name", b"arrow.fixed_shape_tensor"),
        (b"ARROW:extension:metadata", json.as_bytes()),
    ])
}

/// A fixed_shape_tensor over `+w:size` of int16.
fn fixed_shape(length: i64, size: i64, json: &str) -> Raw {
    let leaf = Raw::primitive("s", &values((length * size) as usize + 24));
    let mut raw = Raw::fixed_size_list(size, length, leaf);
    raw.set_metadata(tensor_type(json));
    raw
}

#[test]
fn fixed_shape_tensors_take_their_shape() {
    let mut raw = fixed_shape(2, 6, r#"{"shape":[2,3]}"#);
    let seen = export_raw(&mut raw).unwrap();
    assert_eq!((seen.shape, seen.strides), (vec![2, 2, 3], vec![6, 3, 1]));
}

#[test]
fn permutations_become_strides_without_a_copy() {
    // Physical [2, 3, 4] (strides 12, 4, 1); logical dim i is physical dim p[i].
    let mut raw = fixed_shape(
        3,
        24,
        r#"{"shape":[2,3,4],"permutation":[2,0,1],"dim_names":["C","H","W"]}"#,
    );
    raw.array.offset = 1;
    let first = raw.child(0).buffers[1] as usize + 24 * 2;
    let seen = export_raw(&mut raw).unwrap();
    assert_eq!(
        (seen.shape, seen.strides),
        (vec![3, 4, 2, 3], vec![24, 1, 12, 4])
    );
    assert_eq!(seen.data, first);
    let mut raw = fixed_shape(1, 6, r#"{"shape":[2,3],"permutation":[1,0]}"#);
    let seen = export_raw(&mut raw).unwrap();
    assert_eq!((seen.shape, seen.strides), (vec![1, 3, 2], vec![6, 1, 3]));
}

#[test]
fn other_extension_types_export_their_storage() {
    let mut raw = fixed_shape(2, 6, "");
    raw.set_metadata(metadata(&[
        (b"ARROW:extension:name", b"my.vectors"),
        (b"ARROW:extension:metadata", b"?"),
    ]));
    let seen = export_raw(&mut raw).unwrap();
    assert_eq!(seen.shape, vec![2, 6]);
    let mut raw = fixed_shape(2, 6, "");
    raw.set_metadata(metadata(&[(b"some", b"thing")]));
    assert_eq!(export_raw(&mut raw).unwrap().shape, vec![2, 6]);
}

#[test]
fn malformed_tensor_metadata_is_invalid_arrow() {
    for (json, needle) in [
        (
            r#"{"shape":[2,4]}"#,
            "holds 8 elements but the list size is 6",
        ),
        (
            r#"{"shape":[2,3],"permutation":[1,1]}"#,
            "not a permutation",
        ),
        (r#"{"shape":[2,3]"#, "not valid JSON"),
        (r#"{"permutation":[0]}"#, "no \"shape\""),
    ] {
        let mut raw = fixed_shape(2, 6, json);
        rejects(&mut raw, Status::ARROW_DLPACK_INVALID_ARROW, needle);
    }
    let mut raw = fixed_shape(2, 6, "");
    raw.set_metadata(metadata(&[(
        b"ARROW:extension:name",
        b"arrow.fixed_shape_tensor",
    )]));
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_INVALID_ARROW,
        "without ARROW:extension:metadata",
    );
    // Storage that is not one list level of numbers.
    let data = values(96);
    let mut raw = nested(2, 2, 4, &data);
    raw.set_metadata(tensor_type(r#"{"shape":[2]}"#));
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_INVALID_ARROW,
        "found 2 list levels",
    );
}

#[test]
fn a_corrupt_metadata_block_is_invalid_arrow() {
    let mut raw = fixed_shape(2, 6, "");
    raw.set_metadata((-1i32).to_ne_bytes().to_vec());
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_INVALID_ARROW,
        "schema.metadata has -1 entries",
    );
    let mut block = 1i32.to_ne_bytes().to_vec();
    block.extend((-5i32).to_ne_bytes());
    raw.set_metadata(block);
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_INVALID_ARROW,
        "schema.metadata entry 0: key length -5",
    );
    let mut block = metadata(&[(b"k", b"v")]);
    block[9..13].copy_from_slice(&i32::MAX.to_ne_bytes()); // value length
    raw.set_metadata(block);
    rejects(
        &mut raw,
        Status::ARROW_DLPACK_INVALID_ARROW,
        "value length 2147483647",
    );
}
