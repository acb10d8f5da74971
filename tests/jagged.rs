//! Variable-length columns: `arrow_dlpack_export_jagged`, `_padded`, their
//! stream forms, and `arrow_dlpack_import_jagged`. Each rule of the
//! contract's "Variable-length data" section, and each refusal with its
//! input untouched.

mod common;

use std::ptr;

use arrow_dlpack::Status;
use arrow_dlpack::abi::*;
use arrow_dlpack::capi::*;
use common::{Raw, Seen, message, new_error, take};

const NEVER: i32 = ArrowDlpackCopy::ARROW_DLPACK_COPY_NEVER as i32;
const IF_NEEDED: i32 = ArrowDlpackCopy::ARROW_DLPACK_COPY_IF_NEEDED as i32;
const ALWAYS: i32 = ArrowDlpackCopy::ARROW_DLPACK_COPY_ALWAYS as i32;

fn options(copy: i32) -> ArrowDlpackExportOptions {
    common::export_options(copy)
}

fn bytes<T: Copy>(values: &[T]) -> Vec<u8> {
    // SAFETY: plain numbers.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast(), size_of_val(values)) }.to_vec()
}

/// What a jagged export made: values, offsets, mask.
struct Made {
    values: Seen,
    offsets: Seen,
    mask: Option<Seen>,
}

/// `arrow_dlpack_export_jagged` of `raw`: the three tensors (deleted), or
/// the refusal, the array and `*out` checked untouched.
fn jagged(raw: &mut Raw, o: &ArrowDlpackExportOptions) -> Result<Made, (Status, String)> {
    let mut o = *o;
    let mut mask = ptr::null_mut();
    if o.fill_nulls == 1 {
        o.validity = &mut mask;
    }
    let mut out = ArrowDlpackJagged {
        values: ptr::dangling_mut(),
        offsets: ptr::dangling_mut(),
    };
    let before = raw.array_bytes();
    let mut error = new_error();
    // SAFETY: valid structs.
    let status = unsafe {
        arrow_dlpack_export_jagged(raw.array_ptr(), raw.schema_ptr(), &o, &mut out, &mut error)
    };
    assert_eq!(status as i32, error.status as i32);
    if status != Status::ARROW_DLPACK_OK {
        assert_eq!(raw.array_bytes(), before, "a failure leaves the array");
        assert_eq!(raw.release_count(), 0);
        assert_eq!(out.values, ptr::dangling_mut(), "and *out untouched");
        assert!(mask.is_null());
        return Err((status, message(&error)));
    }
    assert!(raw.array.release.is_none(), "success moves the array");
    // Deleted offsets first, values last: the array goes with the last.
    let offsets = take(out.offsets);
    let values = take(out.values);
    Ok(Made {
        values,
        offsets,
        mask: (!mask.is_null()).then(|| take(mask)),
    })
}

fn int32s(values: &[i32]) -> Raw {
    Raw::primitive("i", values)
}

#[test]
fn an_unsliced_list_shares_its_values_and_offsets_with_one_array_released_once() {
    for large in [false, true] {
        let mut raw = Raw::list(&[0, 2, 2, 5], large, int32s(&[1, 2, 3, 4, 5]));
        let offsets_at = raw.buffers[1] as usize;
        let values_at = raw.child(0).buffers[1] as usize;
        let made = jagged(&mut raw, &options(NEVER)).unwrap();
        assert_eq!(
            made.offsets.data, offsets_at,
            "offsets point into Arrow's buffer"
        );
        assert_eq!(
            made.values.data, values_at,
            "values at the child's first element"
        );
        assert_eq!(made.offsets.flags, DLPACK_FLAG_BITMASK_READ_ONLY);
        assert_eq!(made.values.flags, DLPACK_FLAG_BITMASK_READ_ONLY);
        assert_eq!(made.offsets.shape, vec![4]);
        let width = if large { 64 } else { 32 };
        assert_eq!(
            (made.offsets.dtype.code, made.offsets.dtype.bits),
            (K_DL_INT, width)
        );
        assert_eq!(made.values.shape, vec![5]);
        assert_eq!(made.values.bytes, bytes(&[1i32, 2, 3, 4, 5]));
        assert_eq!(
            raw.release_count(),
            1,
            "released once, after the second deletion"
        );
    }
}

#[test]
fn the_two_tensors_may_be_deleted_in_either_order() {
    for values_first in [false, true] {
        let mut raw = Raw::list(&[0, 1, 3], false, int32s(&[7, 8, 9]));
        let mut out = ArrowDlpackJagged {
            values: ptr::null_mut(),
            offsets: ptr::null_mut(),
        };
        let mut error = new_error();
        // SAFETY: valid structs.
        let status = unsafe {
            arrow_dlpack_export_jagged(
                raw.array_ptr(),
                raw.schema_ptr(),
                ptr::null(),
                &mut out,
                &mut error,
            )
        };
        assert_eq!(status, Status::ARROW_DLPACK_OK, "{}", message(&error));
        let (first, second) = match values_first {
            true => (out.values, out.offsets),
            false => (out.offsets, out.values),
        };
        // SAFETY: live tensors, each deleted once.
        unsafe { ((*first).deleter.unwrap())(first) };
        assert_eq!(
            raw.release_count(),
            0,
            "the other still points into the array"
        );
        // SAFETY: as above.
        unsafe { ((*second).deleter.unwrap())(second) };
        assert_eq!(raw.release_count(), 1);
    }
}

/// The common case is read by a fast path (one allocation for the pair),
/// the rest by the general reader (a shared keeper): both share the same
/// memory, and give the same tensors.
#[test]
fn the_fast_and_general_shares_point_at_the_same_memory() {
    // A slice whose first offset is 0 (its first rows empty): shared too;
    // the child itself sliced.
    let make = || {
        let mut child = int32s(&[9, 9, 1, 2, 3, 4, 5]);
        child.array.offset = 2;
        child.array.length = 5;
        let mut raw = Raw::list(&[0, 0, 2, 2, 5], false, child);
        raw.array.offset = 1;
        raw.array.length = 3;
        raw
    };
    let at = |raw: &mut Raw| {
        (
            raw.buffers[1] as usize + 4,
            raw.child(0).buffers[1] as usize + 2 * 4,
        )
    };
    let mut fast = make();
    let fast_at = at(&mut fast);
    let a = jagged(&mut fast, &options(NEVER)).unwrap();
    // Asking for the row mask takes the general reader.
    let mut general = make();
    let general_at = at(&mut general);
    let mut mask = ptr::null_mut();
    let o = ArrowDlpackExportOptions {
        validity: &mut mask,
        ..options(NEVER)
    };
    let mut out = ArrowDlpackJagged {
        values: ptr::null_mut(),
        offsets: ptr::null_mut(),
    };
    let mut error = new_error();
    // SAFETY: valid structs.
    let status = unsafe {
        arrow_dlpack_export_jagged(
            general.array_ptr(),
            general.schema_ptr(),
            &o,
            &mut out,
            &mut error,
        )
    };
    assert_eq!(status, Status::ARROW_DLPACK_OK, "{}", message(&error));
    let (offsets, values, mask) = (take(out.offsets), take(out.values), take(mask));
    assert_eq!(mask.bytes, vec![1, 1, 1], "no null row");
    for (made, offsets, values, raw, (offsets_at, values_at)) in [
        ("fast", &a.offsets, &a.values, &fast, fast_at),
        ("general", &offsets, &values, &general, general_at),
    ] {
        assert_eq!(offsets.data, offsets_at, "{made}: offsets shared");
        assert_eq!(
            values.data, values_at,
            "{made}: values at the child's offset"
        );
        assert_eq!(offsets.bytes, bytes(&[0i32, 2, 2, 5]), "{made}");
        assert_eq!(values.bytes, bytes(&[1i32, 2, 3, 4, 5]), "{made}");
        assert_eq!(values.flags, DLPACK_FLAG_BITMASK_READ_ONLY, "{made}");
        assert_eq!(raw.release_count(), 1, "{made}: released once");
    }
}

#[test]
fn a_slice_from_the_middle_rebases_its_offsets_only() {
    let make = || {
        let mut raw = Raw::list(&[0, 2, 3, 6, 7], false, int32s(&[1, 2, 3, 4, 5, 6, 7]));
        raw.array.offset = 1;
        raw.array.length = 2;
        raw
    };
    let (status, m) = jagged(&mut make(), &options(NEVER))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(status, Status::ARROW_DLPACK_NEEDS_COPY);
    assert!(
        m.contains("rebasing the offsets of a slice") && m.contains("first offset is 2"),
        "{m}"
    );
    let mut raw = make();
    let values_at = raw.child(0).buffers[1] as usize + 2 * 4;
    let made = jagged(&mut raw, &options(IF_NEEDED)).unwrap();
    assert_eq!(made.offsets.bytes, bytes(&[0i32, 1, 4]), "from 0");
    assert_eq!(made.offsets.flags, DLPACK_FLAG_BITMASK_IS_COPIED);
    assert_eq!(
        made.values.data, values_at,
        "the values still shared, from element 2"
    );
    assert_eq!(made.values.shape, vec![4]);
    assert_eq!(made.values.flags, DLPACK_FLAG_BITMASK_READ_ONLY);
    assert_eq!(raw.release_count(), 1);
    // ALWAYS copies both.
    let made = jagged(&mut make(), &options(ALWAYS)).unwrap();
    assert_eq!(made.values.flags, DLPACK_FLAG_BITMASK_IS_COPIED);
    assert_eq!(made.values.bytes, bytes(&[3i32, 4, 5, 6]));
}

#[test]
fn strings_and_binaries_export_their_bytes() {
    for (format, large) in [("u", false), ("U", true), ("z", false), ("Z", true)] {
        let mut raw = Raw::strings(&["ab", "", "cde"], large);
        raw.set_format(format);
        let made = jagged(&mut raw, &options(NEVER)).unwrap();
        assert_eq!(
            (made.values.dtype.code, made.values.dtype.bits),
            (K_DL_UINT, 8),
            "{format}"
        );
        assert_eq!(made.values.bytes, b"abcde".to_vec());
        let expected = match large {
            true => bytes(&[0i64, 2, 2, 5]),
            false => bytes(&[0i32, 2, 2, 5]),
        };
        assert_eq!(made.offsets.bytes, expected, "{format}");
    }
}

#[test]
fn a_list_of_fixed_size_lists_has_n_d_values() {
    let child = Raw::fixed_size_list(
        2,
        3,
        Raw::primitive("g", &[1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]),
    );
    let mut raw = Raw::list(&[0, 1, 3], false, child);
    let made = jagged(&mut raw, &options(NEVER)).unwrap();
    assert_eq!(
        (made.values.shape, made.values.strides),
        (vec![3, 2], vec![2, 1])
    );
    assert_eq!(made.offsets.bytes, bytes(&[0i32, 1, 3]));
}

#[test]
fn null_rows_are_refused_or_made_empty_with_a_row_mask() {
    // Row 1 is null over an empty segment: shared, with the mask.
    let mut raw = Raw::list(&[0, 2, 2, 3], false, int32s(&[1, 2, 3]));
    raw.set_validity(&[true, false, true], 1);
    let mut plain = Raw::list(&[0, 2, 2, 3], false, int32s(&[1, 2, 3]));
    plain.set_validity(&[true, false, true], 1);
    let (status, m) = jagged(&mut plain, &options(IF_NEEDED))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(status, Status::ARROW_DLPACK_HAS_NULLS);
    assert!(m.contains("1 null rows") && m.contains("fill_nulls"), "{m}");
    let mut o = options(NEVER);
    o.fill_nulls = 1;
    let made = jagged(&mut raw, &o).unwrap();
    assert_eq!(
        made.values.flags, DLPACK_FLAG_BITMASK_READ_ONLY,
        "nothing to drop: shared"
    );
    assert_eq!(made.mask.unwrap().bytes, vec![1, 0, 1]);
    // Row 1 is null over a segment that holds an element: compacted.
    let make = || {
        let mut raw = Raw::list(&[0, 2, 3, 4], false, int32s(&[1, 2, 99, 4]));
        raw.set_validity(&[true, false, true], 1);
        raw
    };
    let (status, m) = jagged(&mut make(), &o).map(|_| ()).unwrap_err();
    assert_eq!(status, Status::ARROW_DLPACK_NEEDS_COPY, "{m}");
    assert!(m.contains("dropping the elements of null rows"), "{m}");
    o.copy = IF_NEEDED;
    let made = jagged(&mut make(), &o).unwrap();
    assert_eq!(made.values.bytes, bytes(&[1i32, 2, 4]));
    assert_eq!(made.offsets.bytes, bytes(&[0i32, 2, 2, 3]));
    assert_eq!(made.mask.unwrap().bytes, vec![1, 0, 1]);
}

#[test]
fn null_elements_are_filled_and_other_dtypes_converted_in_one_copy() {
    let make = || {
        let mut child = int32s(&[1, 2, 3]);
        child.set_validity(&[true, false, true], 1);
        Raw::list(&[0, 1, 3], false, child)
    };
    let (status, m) = jagged(&mut make(), &options(IF_NEEDED))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(status, Status::ARROW_DLPACK_HAS_NULLS);
    assert!(m.starts_with("child 0: array has 1 nulls"), "{m}");
    let mut o = options(IF_NEEDED);
    o.fill_nulls = 1;
    o.fill_value = -1.0;
    o.dtype = DLDataType {
        code: K_DL_FLOAT,
        bits: 32,
        lanes: 1,
    };
    let mut raw = make();
    let offsets_at = raw.buffers[1] as usize;
    let made = jagged(&mut raw, &o).unwrap();
    assert_eq!(made.values.bytes, bytes(&[1f32, -1.0, 3.0]));
    assert_eq!(made.offsets.data, offsets_at, "the offsets still shared");
    // Booleans unpack.
    let mut bools = Raw::list(
        &[0, 3],
        false,
        Raw::new("b", 3, vec![None, Some(vec![0b101])]),
    );
    let made = jagged(&mut bools, &options(IF_NEEDED)).unwrap();
    assert_eq!(
        (made.values.dtype.code, made.values.bytes),
        (K_DL_BOOL, vec![1, 0, 1])
    );
}

#[test]
fn list_views_are_gathered() {
    let mut raw = Raw::list_view(&[3, 0, 1], &[2, 1, 0], false, int32s(&[10, 11, 12, 13, 14]));
    let (status, m) = jagged(&mut raw, &options(NEVER)).map(|_| ()).unwrap_err();
    assert_eq!(status, Status::ARROW_DLPACK_NEEDS_COPY);
    assert!(m.contains("gathering the rows of views"), "{m}");
    let made = jagged(&mut raw, &options(IF_NEEDED)).unwrap();
    assert_eq!(made.values.bytes, bytes(&[13i32, 14, 10]));
    assert_eq!(made.offsets.bytes, bytes(&[0i32, 2, 3, 3]));
    // A view beyond its child, named by its row.
    let mut bad = Raw::list_view(&[0, 4], &[1, 2], false, int32s(&[1, 2, 3, 4, 5]));
    let (status, m) = jagged(&mut bad, &options(IF_NEEDED))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(status, Status::ARROW_DLPACK_INVALID_ARROW);
    assert!(m.contains("row 1: view offset 4 and size 2"), "{m}");
}

#[test]
fn offsets_a_copy_follows_are_checked_row_by_row() {
    // Decreasing in the middle: a share checks only the ends...
    let mut raw = Raw::list(&[0, 3, 1, 4], false, int32s(&[1, 2, 3, 4]));
    assert!(
        jagged(&mut raw, &options(NEVER)).is_ok(),
        "the producer's promise"
    );
    // ...a copy follows every offset.
    let mut raw = Raw::list(&[0, 3, 1, 4], false, int32s(&[1, 2, 3, 4]));
    let (status, m) = jagged(&mut raw, &options(ALWAYS)).map(|_| ()).unwrap_err();
    assert_eq!(status, Status::ARROW_DLPACK_INVALID_ARROW);
    assert!(m.contains("row 1: offsets 3 to 1"), "{m}");
    // The ends against the child, always.
    for offsets in [[-1i64, 2], [0, 9]] {
        let mut raw = Raw::list(&offsets, false, int32s(&[1, 2, 3, 4]));
        let (status, m) = jagged(&mut raw, &options(NEVER)).map(|_| ()).unwrap_err();
        assert_eq!(
            status,
            Status::ARROW_DLPACK_INVALID_ARROW,
            "{offsets:?}: {m}"
        );
    }
    // A NULL offsets buffer with rows.
    let mut raw = Raw::list(&[0, 1], false, int32s(&[1]));
    raw.buffers[1] = ptr::null();
    let (status, m) = jagged(&mut raw, &options(NEVER)).map(|_| ()).unwrap_err();
    assert_eq!(status, Status::ARROW_DLPACK_INVALID_ARROW);
    assert!(m.contains("buffers[1] (offsets) is NULL"), "{m}");
}

#[test]
fn only_variable_length_columns_are_jagged() {
    let mut raw = int32s(&[1, 2]);
    let (status, m) = jagged(&mut raw, &options(IF_NEEDED))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(status, Status::ARROW_DLPACK_UNSUPPORTED_TYPE);
    assert!(m.contains("rows of one shape"), "{m}");
    // And a list through the plain export names the functions to call.
    let mut list = Raw::list(&[0, 1], false, int32s(&[1]));
    let mut error = new_error();
    // SAFETY: valid structs.
    let t =
        unsafe { arrow_dlpack_export_versioned(list.array_ptr(), list.schema_ptr(), &mut error) };
    assert!(t.is_null());
    assert!(
        message(&error).contains("arrow_dlpack_export_jagged"),
        "{}",
        message(&error)
    );
}

// ---- padded ----------------------------------------------------------------

/// `arrow_dlpack_export_padded` of `raw`: the tensor and the mask.
fn padded(
    raw: &mut Raw,
    o: &ArrowDlpackExportOptions,
    padding: &ArrowDlpackPadding,
) -> Result<(Seen, Seen), (Status, String)> {
    let mut o = *o;
    let mut mask = ptr::null_mut();
    o.validity = &mut mask;
    let before = raw.array_bytes();
    let mut error = new_error();
    // SAFETY: valid structs.
    let t = unsafe {
        arrow_dlpack_export_padded(raw.array_ptr(), raw.schema_ptr(), &o, padding, &mut error)
    };
    if t.is_null() {
        assert_eq!(raw.array_bytes(), before, "a failure leaves the array");
        assert!(mask.is_null());
        return Err((error.status, message(&error)));
    }
    assert_eq!(raw.release_count(), 1, "copied, released at once");
    let seen = take(t);
    assert_eq!(
        seen.flags, DLPACK_FLAG_BITMASK_IS_COPIED,
        "a fresh, writable copy"
    );
    Ok((seen, take(mask)))
}

fn padding(length: i64, side: i32, value: f64) -> ArrowDlpackPadding {
    ArrowDlpackPadding {
        length,
        side,
        value,
        ..Default::default()
    }
}

#[test]
fn rows_are_padded_and_cut_on_either_side_with_an_attention_mask() {
    let tokens = || Raw::list(&[0, 3, 3, 4], false, int32s(&[1, 2, 3, 4]));
    // Right, to the longest row.
    let (t, mask) = padded(&mut tokens(), &options(NEVER), &padding(0, 0, 0.0)).unwrap();
    assert_eq!((t.shape.clone(), t.strides), (vec![3, 3], vec![3, 1]));
    assert_eq!(t.bytes, bytes(&[1i32, 2, 3, 0, 0, 0, 4, 0, 0]));
    assert_eq!(mask.bytes, vec![1, 1, 1, 0, 0, 0, 1, 0, 0]);
    // Left: each row's last element in the last column; cut to 2 keeps
    // the row's end.
    let (t, mask) = padded(&mut tokens(), &options(NEVER), &padding(2, 1, -1.0)).unwrap();
    assert_eq!(t.bytes, bytes(&[2i32, 3, -1, -1, -1, 4]));
    assert_eq!(mask.bytes, vec![1, 1, 0, 0, 0, 1]);
    // Right, cut to 2, keeps the row's start.
    let (t, _) = padded(&mut tokens(), &options(NEVER), &padding(2, 0, 9.0)).unwrap();
    assert_eq!(t.bytes, bytes(&[1i32, 2, 9, 9, 4, 9]));
    // NULL padding: all zero.
    let mut raw = tokens();
    let mut error = new_error();
    // SAFETY: valid structs; NULL options and padding.
    let t = unsafe {
        arrow_dlpack_export_padded(
            raw.array_ptr(),
            raw.schema_ptr(),
            ptr::null(),
            ptr::null(),
            &mut error,
        )
    };
    assert_eq!(take(t).shape, vec![3, 3]);
    // No rows, or all empty: [length, 0].
    let mut empty = Raw::list(&[0, 0, 0], false, int32s(&[]));
    let (t, _) = padded(&mut empty, &options(NEVER), &padding(0, 0, 0.0)).unwrap();
    assert_eq!(t.shape, vec![2, 0]);
}

#[test]
fn padding_converts_fills_and_keeps_n_d_elements_whole() {
    let mut child = int32s(&[1, 2, 3]);
    child.set_validity(&[true, false, true], 1);
    let mut raw = Raw::list(&[0, 2, 3], false, child);
    raw.set_validity(&[true, true], 0);
    let mut o = options(NEVER);
    o.fill_nulls = 1;
    o.fill_value = 7.0;
    o.dtype = DLDataType {
        code: K_DL_FLOAT,
        bits: 64,
        lanes: 1,
    };
    let (t, mask) = padded(&mut raw, &o, &padding(0, 0, 0.5)).unwrap();
    assert_eq!(t.bytes, bytes(&[1.0f64, 7.0, 3.0, 0.5]));
    assert_eq!(
        mask.bytes,
        vec![1, 0, 1, 0],
        "a null element is no real element"
    );
    let child = Raw::fixed_size_list(2, 3, Raw::primitive("s", &[1i16, 2, 3, 4, 5, 6]));
    let mut raw = Raw::list(&[0, 1, 3], false, child);
    let (t, mask) = padded(&mut raw, &options(NEVER), &padding(0, 1, 0.0)).unwrap();
    assert_eq!((t.shape, t.strides), (vec![2, 2, 2], vec![4, 2, 1]));
    assert_eq!(t.bytes, bytes(&[0i16, 0, 1, 2, 3, 4, 5, 6]));
    assert_eq!((mask.shape, mask.bytes), (vec![2, 2], vec![0, 1, 1, 1]));
}

#[test]
fn bad_padding_and_sizes_that_overflow_are_refused() {
    let tokens = || Raw::list(&[0, 3], false, int32s(&[1, 2, 3]));
    for (p, needle) in [
        (
            padding(0, 0, 0.5),
            "padding->value 0.5 cannot be held exactly",
        ),
        (padding(-1, 0, 0.0), "padding->length -1 is negative"),
        (padding(0, 2, 0.0), "padding->side 2 is unknown"),
        (
            ArrowDlpackPadding {
                reserved: [0, 4],
                ..Default::default()
            },
            "padding->reserved[1] is 4",
        ),
    ] {
        let (status, m) = padded(&mut tokens(), &options(NEVER), &p).unwrap_err();
        assert_eq!(status, Status::ARROW_DLPACK_INVALID_ARGUMENT, "{m}");
        assert!(m.contains(needle), "{m}");
    }
    let (status, m) = padded(
        &mut tokens(),
        &options(NEVER),
        &padding(i64::MAX / 2, 0, 0.0),
    )
    .unwrap_err();
    assert_eq!(status, Status::ARROW_DLPACK_OUT_OF_MEMORY, "{m}");
}

// ---- streams ---------------------------------------------------------------

#[test]
fn a_stream_of_lists_is_one_pair_values_appended_offsets_rebased() {
    let mut me = common::Stream {
        schema: Raw::list(&[0], false, int32s(&[])),
        chunks: vec![
            Raw::list(&[0, 2, 3], false, int32s(&[1, 2, 3])),
            Raw::list(&[0, 1], false, int32s(&[4])),
        ],
        next: 0,
        released: false,
        fail_at: None,
    };
    let mut producer = common::producer(&me.schema, &mut me.chunks);
    let mut stream = producer.c_stream();
    let mut out = ArrowDlpackJagged {
        values: ptr::null_mut(),
        offsets: ptr::null_mut(),
    };
    let mut error = new_error();
    // SAFETY: a valid stream.
    let status = unsafe {
        arrow_dlpack_export_jagged_stream(&mut stream, &options(IF_NEEDED), &mut out, &mut error)
    };
    assert_eq!(status, Status::ARROW_DLPACK_OK, "{}", message(&error));
    assert!(!producer.released);
    assert_eq!(me.chunks.iter().map(Raw::release_count).sum::<usize>(), 2);
    assert_eq!(take(out.values).bytes, bytes(&[1i32, 2, 3, 4]));
    assert_eq!(take(out.offsets).bytes, bytes(&[0i32, 2, 3, 4]));
}

// ---- import ----------------------------------------------------------------

#[test]
fn values_and_offsets_import_as_a_list_that_owns_both() {
    for large in [false, true] {
        let mut raw = Raw::list(&[0, 2, 3], large, Raw::primitive("f", &[1f32, 2.0, 3.0]));
        let mut out = ArrowDlpackJagged {
            values: ptr::null_mut(),
            offsets: ptr::null_mut(),
        };
        let mut error = new_error();
        // SAFETY: valid structs.
        let status = unsafe {
            arrow_dlpack_export_jagged(
                raw.array_ptr(),
                raw.schema_ptr(),
                ptr::null(),
                &mut out,
                &mut error,
            )
        };
        assert_eq!(status, Status::ARROW_DLPACK_OK);
        // SAFETY: live tensors.
        let (values_at, offsets_at) =
            unsafe { ((*out.values).dl_tensor.data, (*out.offsets).dl_tensor.data) };
        let mut array = std::mem::MaybeUninit::<ArrowArray>::uninit();
        let mut schema = std::mem::MaybeUninit::<ArrowSchema>::uninit();
        // SAFETY: live tensors handed over; writable out structs.
        let status = unsafe {
            arrow_dlpack_import_jagged(
                out.values,
                out.offsets,
                ptr::null(),
                array.as_mut_ptr(),
                schema.as_mut_ptr(),
                &mut error,
            )
        };
        assert_eq!(status, Status::ARROW_DLPACK_OK, "{}", message(&error));
        // SAFETY: written on success.
        let (mut array, mut schema) = unsafe { (array.assume_init(), schema.assume_init()) };
        // SAFETY: the structs the import wrote: a list over one child.
        unsafe {
            let format = std::ffi::CStr::from_ptr(schema.format).to_str().unwrap();
            assert_eq!(format, if large { "+L" } else { "+l" });
            assert_eq!(array.length, 2);
            assert_eq!(
                *array.buffers.add(1),
                offsets_at.cast_const(),
                "the offsets shared"
            );
            let child = &**array.children;
            assert_eq!(
                *child.buffers.add(1),
                values_at.cast_const(),
                "the values shared"
            );
            let child_schema = &**schema.children;
            assert_eq!(std::ffi::CStr::from_ptr(child_schema.name), c"item");
            assert_eq!(raw.release_count(), 0, "the tensors still hold the array");
            (array.release.unwrap())(&mut array);
            (schema.release.unwrap())(&mut schema);
        }
        assert_eq!(
            raw.release_count(),
            1,
            "both tensors deleted once: the array released"
        );
    }
}

#[test]
fn offsets_arrow_would_trust_are_checked_and_both_tensors_left_on_failure() {
    let values = [1i32, 2, 3];
    for (offsets, needle) in [
        (&[0i32, 2, 1][..], "offsets[2] is 1, after 2"),
        (&[-1, 2], "offsets[0] is -1"),
        (&[0, 4], "beyond the values' 3 rows"),
    ] {
        let mut vt = common::Fixture::int32s(&values);
        let mut ot = common::Fixture::int32s(offsets);
        let mut error = new_error();
        let mut array = std::mem::MaybeUninit::<ArrowArray>::uninit();
        let mut schema = std::mem::MaybeUninit::<ArrowSchema>::uninit();
        let before = (
            common::struct_bytes(&*vt.managed),
            common::struct_bytes(&*ot.managed),
        );
        // SAFETY: live tensors (their deleters count); writable out structs.
        let status = unsafe {
            arrow_dlpack_import_jagged(
                &mut *vt.managed,
                &mut *ot.managed,
                ptr::null(),
                array.as_mut_ptr(),
                schema.as_mut_ptr(),
                &mut error,
            )
        };
        assert_eq!(
            status,
            Status::ARROW_DLPACK_INVALID_ARGUMENT,
            "{}",
            message(&error)
        );
        assert!(message(&error).contains(needle), "{}", message(&error));
        assert_eq!(
            (
                common::struct_bytes(&*vt.managed),
                common::struct_bytes(&*ot.managed)
            ),
            before,
            "both tensors untouched"
        );
        assert_eq!((vt.deletes(), ot.deletes()), (0, 0));
    }
}
