//! The contract's "More column types" through the C export: fixed-size
//! binary shared as `[rows, w]` bytes, decimals as the float asked for,
//! run-end encoded and null arrays decoded (one copy), a struct column's
//! fields as table columns; and each malformed form refused with the
//! caller's structs untouched.

mod common;

use arrow_dlpack::Status;
use arrow_dlpack::abi::*;
use arrow_dlpack::capi::*;
use common::{Raw, Seen, message, new_error, struct_bytes, take};

const NEVER: i32 = ArrowDlpackCopy::ARROW_DLPACK_COPY_NEVER as i32;
const IF_NEEDED: i32 = ArrowDlpackCopy::ARROW_DLPACK_COPY_IF_NEEDED as i32;

const FLOAT64: DLDataType = DLDataType {
    code: K_DL_FLOAT,
    bits: 64,
    lanes: 1,
};

fn options(copy: i32) -> ArrowDlpackExportOptions {
    common::export_options(copy)
}

fn as_float64(copy: i32) -> ArrowDlpackExportOptions {
    ArrowDlpackExportOptions {
        dtype: FLOAT64,
        ..options(copy)
    }
}

fn filled(value: f64) -> ArrowDlpackExportOptions {
    ArrowDlpackExportOptions {
        fill_nulls: 1,
        fill_value: value,
        ..options(IF_NEEDED)
    }
}

fn export_with(raw: &mut Raw, o: &ArrowDlpackExportOptions) -> Result<Seen, (Status, String)> {
    let mut error = new_error();
    // SAFETY: valid structs, or malformed only in ways the library detects.
    let t = unsafe { arrow_dlpack_export_with(raw.array_ptr(), raw.schema_ptr(), o, &mut error) };
    if t.is_null() {
        assert_eq!(raw.release_count(), 0, "a failure releases nothing");
        return Err((error.status, message(&error)));
    }
    assert!(raw.array.release.is_none(), "success moves the array");
    Ok(take(t))
}

/// Expects a refusal naming `needle`, the caller's structs byte for byte
/// as they were.
fn refused(raw: &mut Raw, o: &ArrowDlpackExportOptions, status: Status, needle: &str) {
    let (before, schema) = (raw.array_bytes(), struct_bytes(&*raw.schema));
    let (s, m) = export_with(raw, o).expect_err("refused");
    assert_eq!(s, status, "{m}");
    assert!(m.contains(needle), "{m:?} lacks {needle:?}");
    assert_eq!(raw.array_bytes(), before, "the array is untouched");
    assert_eq!(
        struct_bytes(&*raw.schema),
        schema,
        "the schema is untouched"
    );
}

fn f64s(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn fixed_size_binary_is_shared_as_rows_of_bytes() {
    let bytes: Vec<u8> = (0..12).collect();
    let mut raw = Raw::new("w:4", 3, vec![None, Some(bytes.clone())]);
    raw.array.offset = 1;
    raw.array.length = 2;
    let values = raw.buffers[1] as usize;
    let seen = export_with(&mut raw, &options(NEVER)).unwrap();
    assert_eq!(seen.shape, [2, 4]);
    assert_eq!((seen.dtype.code, seen.dtype.bits), (K_DL_UINT, 8));
    assert_eq!(
        seen.data,
        values + 4,
        "zero-copy: the buffer at offset 1 * 4 bytes"
    );
    assert_eq!(seen.bytes, &bytes[4..12]);
    // A width the buffer's length does not hold is the producer's promise;
    // a malformed width is refused.
    let mut raw = Raw::new("w:x", 1, vec![None, Some(bytes.clone())]);
    refused(
        &mut raw,
        &options(IF_NEEDED),
        Status::ARROW_DLPACK_INVALID_ARROW,
        "byte width",
    );
    let mut raw = Raw::new("w:4", 1, vec![None]);
    refused(
        &mut raw,
        &options(IF_NEEDED),
        Status::ARROW_DLPACK_INVALID_ARROW,
        "n_buffers is 1",
    );
}

#[test]
fn decimals_become_the_float_asked_for() {
    let values: [i128; 3] = [
        12_345,
        -5,
        99_999_999_999_999_999_999_999_999_999_999_999_999,
    ];
    let mut raw = Raw::primitive("d:38,2", &values);
    let seen = export_with(&mut raw, &as_float64(IF_NEEDED)).unwrap();
    assert_eq!(seen.shape, [3]);
    assert_eq!(f64s(&seen.bytes), [123.45, -0.05, 1e36]);
    // decimal256 and decimal32 read their own widths.
    let mut words = Vec::new();
    for v in [-250i128, 7] {
        words.extend(v.to_le_bytes());
        words.extend((if v < 0 { -1i128 } else { 0 }).to_le_bytes());
    }
    let mut raw = Raw::new("d:40,2,256", 2, vec![None, Some(words)]);
    assert_eq!(
        f64s(&export_with(&mut raw, &as_float64(IF_NEEDED)).unwrap().bytes),
        [-2.5, 0.07]
    );
    let mut raw = Raw::primitive("d:9,3,32", &[1_500i32, -2]);
    assert_eq!(
        f64s(&export_with(&mut raw, &as_float64(IF_NEEDED)).unwrap().bytes),
        [1.5, -0.002]
    );
}

#[test]
fn decimals_without_a_float_or_malformed_are_refused() {
    let mut raw = Raw::primitive("d:10,2", &[1i128]);
    refused(
        &mut raw,
        &options(IF_NEEDED),
        Status::ARROW_DLPACK_UNSUPPORTED_TYPE,
        "decimal128 (scale 2): DLPack has no decimal type; set options.dtype to float64 or float32",
    );
    // A conversion is a copy.
    refused(
        &mut raw,
        &as_float64(NEVER),
        Status::ARROW_DLPACK_NEEDS_COPY,
        "converting",
    );
    for (format, needle) in [
        ("d:39,2", "precision is 1 to 38, not 39"),
        ("d:10,2,100", "bit width is 32, 64, 128 or 256"),
        ("d:10", "malformed format 'd:10'"),
    ] {
        let mut raw = Raw::primitive(format, &[1i128]);
        refused(
            &mut raw,
            &as_float64(IF_NEEDED),
            Status::ARROW_DLPACK_INVALID_ARROW,
            needle,
        );
    }
    let mut raw = Raw::primitive("d:10,200", &[1i128]);
    refused(
        &mut raw,
        &as_float64(IF_NEEDED),
        Status::ARROW_DLPACK_UNSUPPORTED_TYPE,
        "not 200",
    );
}

/// A run-end encoded array of `length` rows over int32 run ends and
/// float64 values.
fn run_end(length: i64, ends: &[i32], values: &[f64]) -> Raw {
    Raw::run_end(length, ends, Raw::primitive("g", values))
}

#[test]
fn run_end_encoded_arrays_are_decoded_once() {
    let mut raw = run_end(6, &[2, 5, 6], &[1.5, 2.5, 3.5]);
    let seen = export_with(&mut raw, &options(IF_NEEDED)).unwrap();
    assert_eq!(f64s(&seen.bytes), [1.5, 1.5, 2.5, 2.5, 2.5, 3.5]);
    // A slice: the parent's offset indexes the logical rows.
    let mut raw = run_end(6, &[2, 5, 6], &[1.5, 2.5, 3.5]);
    (raw.array.offset, raw.array.length) = (1, 4);
    let seen = export_with(&mut raw, &options(IF_NEEDED)).unwrap();
    assert_eq!(f64s(&seen.bytes), [1.5, 2.5, 2.5, 2.5]);
    // A null value is null in each row of its run.
    let mut raw = run_end(3, &[1, 3], &[1.0, 9.0]);
    raw.child(1).set_validity(&[true, false], 1);
    refused(
        &mut raw,
        &options(IF_NEEDED),
        Status::ARROW_DLPACK_HAS_NULLS,
        "2 nulls",
    );
    assert_eq!(
        f64s(&export_with(&mut raw, &filled(-1.0)).unwrap().bytes),
        [1.0, -1.0, -1.0]
    );
    // Decoding is a copy.
    let mut raw = run_end(6, &[2, 5, 6], &[1.5, 2.5, 3.5]);
    refused(
        &mut raw,
        &options(NEVER),
        Status::ARROW_DLPACK_NEEDS_COPY,
        "decoding run-end",
    );
}

#[test]
fn malformed_run_ends_are_refused() {
    for (ends, length, needle) in [
        (&[2, 1, 6][..], 6, "run end 1 is 1, after 2"),
        (&[0, 6][..], 6, "run end 0 is 0"),
        (
            &[2, 5][..],
            6,
            "the last run end is 5, the array's offset + length 6",
        ),
        (&[][..], 1, "the last run end is 0"),
    ] {
        let values = vec![1.0; ends.len()];
        let mut raw = run_end(length, ends, &values);
        refused(
            &mut raw,
            &options(IF_NEEDED),
            Status::ARROW_DLPACK_INVALID_ARROW,
            needle,
        );
    }
    // An offset + length past i64 (the run ends must reach it).
    let mut raw = run_end(6, &[2, 5, 6], &[1.5, 2.5, 3.5]);
    (raw.array.offset, raw.array.length) = (i64::MAX - 2, 6);
    refused(
        &mut raw,
        &options(IF_NEEDED),
        Status::ARROW_DLPACK_INVALID_ARROW,
        "overflows",
    );
    // Fewer values than runs.
    let mut raw = run_end(6, &[2, 5, 6], &[1.5, 2.5, 3.5]);
    raw.child(1).array.length = 2;
    refused(
        &mut raw,
        &options(IF_NEEDED),
        Status::ARROW_DLPACK_INVALID_ARROW,
        "array.length is 2",
    );
    // Run ends that are not integers, or null.
    let mut raw = run_end(6, &[2, 5, 6], &[1.5, 2.5, 3.5]);
    raw.child(0).set_format("f");
    refused(
        &mut raw,
        &options(IF_NEEDED),
        Status::ARROW_DLPACK_INVALID_ARROW,
        "int16, int32 or int64",
    );
    let mut raw = run_end(6, &[2, 5, 6], &[1.5, 2.5, 3.5]);
    raw.child(0).set_validity(&[true, false, true], 1);
    refused(
        &mut raw,
        &options(IF_NEEDED),
        Status::ARROW_DLPACK_INVALID_ARROW,
        "may not be null",
    );
    // Buffers on the parent, or one child.
    let mut raw = run_end(6, &[2, 5, 6], &[1.5, 2.5, 3.5]);
    raw.array.n_children = 1;
    refused(
        &mut raw,
        &options(IF_NEEDED),
        Status::ARROW_DLPACK_INVALID_ARROW,
        "n_children 1",
    );
}

#[test]
fn null_arrays_are_their_fill_value() {
    let mut raw = Raw::new("n", 3, vec![]);
    raw.array.null_count = 3;
    refused(
        &mut raw,
        &options(IF_NEEDED),
        Status::ARROW_DLPACK_HAS_NULLS,
        "a null column",
    );
    let seen = export_with(&mut raw, &filled(7.0)).unwrap();
    assert_eq!((seen.dtype.code, seen.dtype.bits), (K_DL_FLOAT, 32));
    let values: Vec<f32> = seen
        .bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(values, [7.0; 3]);
    let mut raw = Raw::new("n", 2, vec![]);
    let o = ArrowDlpackExportOptions {
        dtype: FLOAT64,
        ..filled(0.5)
    };
    assert_eq!(f64s(&export_with(&mut raw, &o).unwrap().bytes), [0.5, 0.5]);
    let mut raw = Raw::new("n", 2, vec![None]);
    refused(
        &mut raw,
        &filled(0.0),
        Status::ARROW_DLPACK_INVALID_ARROW,
        "0 buffers",
    );
}

#[test]
fn struct_fields_are_table_columns() {
    // {a: int64, s: {x: float64 (null in row 1), y: int64}}, 3 rows.
    let a = Raw::primitive("l", &[1i64, 2, 3]);
    let mut x = Raw::primitive("l", &[10i64, 20, 30]);
    x.set_validity(&[true, true, true], 0);
    let y = Raw::primitive("l", &[100i64, 200, 300]);
    let mut s = Raw::struct_of(3, vec![x, y], &[c"x", c"y"]);
    s.set_validity(&[true, false, true], 1);
    let mut table = Raw::struct_of(3, vec![a, s], &[c"a", c"s"]);
    refused(
        &mut table,
        &options(IF_NEEDED),
        Status::ARROW_DLPACK_HAS_NULLS,
        "column 1 's.x'",
    );
    let seen = export_with(&mut table, &filled(-1.0)).unwrap();
    assert_eq!(seen.shape, [3, 3]);
    let got: Vec<i64> = seen
        .bytes
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(got, [1, 10, 100, 2, -1, -1, 3, 30, 300]);
}

#[test]
fn malformed_nested_structs_are_refused() {
    let table = |length: i64| {
        let x = Raw::primitive("l", &[10i64, 20, 30]);
        let s = Raw::struct_of(length, vec![x], &[c"x"]);
        Raw::struct_of(3, vec![s], &[c"s"])
    };
    // A struct shorter than its parent.
    let mut raw = table(2);
    refused(
        &mut raw,
        &filled(0.0),
        Status::ARROW_DLPACK_INVALID_ARROW,
        "length 2 is shorter",
    );
    // A field shorter than its struct.
    let mut raw = table(3);
    raw.child(0).child(0).array.length = 2;
    refused(
        &mut raw,
        &filled(0.0),
        Status::ARROW_DLPACK_INVALID_ARROW,
        "column 0 's.x'",
    );
    // An array with another number of children than its schema.
    let mut raw = table(3);
    raw.child(0).array.n_children = 0;
    refused(
        &mut raw,
        &filled(0.0),
        Status::ARROW_DLPACK_INVALID_ARROW,
        "0 children",
    );
}

#[test]
fn the_plain_export_shares_or_refuses() {
    let plain = |raw: &mut Raw| {
        let mut error = new_error();
        // SAFETY: valid structs.
        let t =
            unsafe { arrow_dlpack_export_versioned(raw.array_ptr(), raw.schema_ptr(), &mut error) };
        match t.is_null() {
            true => Err((error.status, message(&error))),
            false => Ok(take(t)),
        }
    };
    let mut raw = run_end(6, &[2, 5, 6], &[1.5, 2.5, 3.5]);
    let (status, m) = plain(&mut raw).unwrap_err();
    assert_eq!(status, Status::ARROW_DLPACK_NEEDS_COPY, "{m}");
    assert_eq!(raw.release_count(), 0);
    let mut raw = Raw::primitive("d:10,2", &[1i128]);
    assert_eq!(
        plain(&mut raw).unwrap_err().0,
        Status::ARROW_DLPACK_UNSUPPORTED_TYPE
    );
    let mut raw = Raw::new("n", 2, vec![]);
    assert_eq!(
        plain(&mut raw).unwrap_err().0,
        Status::ARROW_DLPACK_HAS_NULLS
    );
    // No row: nothing to decode; an empty tensor shares the array.
    let mut raw = run_end(0, &[], &[]);
    assert_eq!(plain(&mut raw).unwrap().shape, [0]);
    let mut raw = Raw::primitive("w:2", &[7u8, 8, 9, 10]);
    raw.array.length = 2;
    let seen = plain(&mut raw).unwrap();
    assert_eq!(
        (seen.shape.as_slice(), seen.bytes.as_slice()),
        (&[2, 2][..], &[7, 8, 9, 10][..])
    );
}

#[test]
fn run_end_encoded_columns_of_a_table_are_decoded_when_read() {
    // {r: run-end encoded float64, x: float64}: a table's columns are
    // decoded as the struct is read (the eager path), sliced by its offset.
    let r = run_end(5, &[2, 5], &[1.5, 2.5]);
    let x = Raw::primitive("g", &[0.0f64, 1.0, 2.0, 3.0, 4.0]);
    let mut table = Raw::struct_of(4, vec![r, x], &[c"r", c"x"]);
    table.array.offset = 1;
    let seen = export_with(&mut table, &options(IF_NEEDED)).unwrap();
    assert_eq!(seen.shape, [4, 2]);
    assert_eq!(f64s(&seen.bytes), [1.5, 1.0, 2.5, 2.0, 2.5, 3.0, 2.5, 4.0]);
    // A stream's chunks, each decoded by the copy into its rows.
    let mut chunks = [run_end(3, &[1, 3], &[7.0, 8.0]), run_end(2, &[2], &[9.0])];
    let schema = run_end(0, &[], &[]);
    let mut producer = common::producer(&schema, &mut chunks);
    let mut stream = producer.c_stream();
    let mut error = new_error();
    let o = options(IF_NEEDED);
    // SAFETY: a live stream, borrowed.
    let t = unsafe { arrow_dlpack_export_stream(&mut stream, &o, &mut error) };
    assert!(!t.is_null(), "{}", message(&error));
    assert_eq!(f64s(&take(t).bytes), [7.0, 8.0, 8.0, 9.0, 9.0]);
}
