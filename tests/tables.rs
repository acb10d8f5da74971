//! Record batches (struct arrays) and 2-D tensors: the contract's struct
//! and `as_columns` rules, through the Rust API (arrow-rs batches) and the
//! C entry points (struct arrays made by hand, malformed ones included).

mod common;

use std::ffi::c_char;
use std::ptr;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float32Array, Float64Array, Int8Array, Int32Array, Int64Array,
    RecordBatch, StringArray, StructArray, UInt64Array,
};
use arrow_buffer::{Buffer, NullBuffer, ScalarBuffer};
use arrow_dlpack::abi::*;
use arrow_dlpack::capi::*;
use arrow_dlpack::{
    CopyPolicy, ExportOptions, ImportOptions, Order, Status, Tensor, record_batch_from_dlpack,
    record_batch_to_dlpack, record_batches_to_dlpack,
};
use arrow_schema::{DataType, Field, Schema};
use common::{Raw, message, new_error};

fn options(copy: CopyPolicy, order: Order) -> ExportOptions {
    ExportOptions {
        copy,
        order,
        ..Default::default()
    }
}

/// `columns` float64 columns of `rows` rows cut from one buffer, end to
/// end: column `j`, row `i` holds `j * 1000 + i`. Returns the batch and
/// the buffer's address.
fn adjacent(rows: usize, columns: usize) -> (RecordBatch, usize) {
    let values: Vec<f64> = (0..columns)
        .flat_map(|j| (0..rows).map(move |i| (j * 1000 + i) as f64))
        .collect();
    let buffer = Buffer::from_vec(values);
    let base = buffer.as_ptr() as usize;
    let fields: Vec<(String, ArrayRef)> = (0..columns)
        .map(|j| {
            let slice = ScalarBuffer::<f64>::new(buffer.clone(), j * rows, rows);
            (
                format!("c{j}"),
                Arc::new(Float64Array::new(slice, None)) as ArrayRef,
            )
        })
        .collect();
    (RecordBatch::try_from_iter(fields).unwrap(), base)
}

/// The tensor's elements as f64, row-major over its shape.
fn elements_f64(t: &Tensor) -> Vec<f64> {
    let (shape, strides) = (t.shape(), t.strides().unwrap());
    let base = t.data_ptr().cast::<f64>();
    let mut out = Vec::new();
    for i in 0..shape[0] {
        for j in 0..shape[1] {
            // SAFETY: inside the live tensor's elements.
            out.push(unsafe { *base.offset((i * strides[0] + j * strides[1]) as isize) });
        }
    }
    out
}

fn expected(rows: usize, columns: usize) -> Vec<f64> {
    (0..rows)
        .flat_map(|i| (0..columns).map(move |j| (j * 1000 + i) as f64))
        .collect()
}

#[test]
fn columns_laid_end_to_end_are_shared_column_major_without_a_copy() {
    let (batch, base) = adjacent(5, 3);
    for order in [Order::Any, Order::ColumnMajor] {
        let t = record_batch_to_dlpack(&batch, &options(CopyPolicy::Never, order))
            .unwrap()
            .tensor;
        assert_eq!(t.shape(), &[5, 3]);
        assert_eq!(t.strides(), Some(&[1, 5][..]));
        assert_eq!(
            t.data_ptr() as usize,
            base,
            "shared: the first column's address"
        );
        assert_eq!(t.flags(), DLPACK_FLAG_BITMASK_READ_ONLY);
        assert_eq!(elements_f64(&t), expected(5, 3));
    }
    // Row-major asks for a layout the columns do not have: a copy.
    let e =
        record_batch_to_dlpack(&batch, &options(CopyPolicy::Never, Order::RowMajor)).unwrap_err();
    assert_eq!(e.status(), Status::ARROW_DLPACK_NEEDS_COPY, "{e}");
    let t = record_batch_to_dlpack(&batch, &options(CopyPolicy::IfNeeded, Order::RowMajor))
        .unwrap()
        .tensor;
    assert_eq!(t.strides(), Some(&[3, 1][..]));
    assert_eq!(t.flags(), DLPACK_FLAG_BITMASK_IS_COPIED);
    assert_eq!(elements_f64(&t), expected(5, 3));
    // ALWAYS keeps the shareable layout, in a copy.
    let t = record_batch_to_dlpack(&batch, &options(CopyPolicy::Always, Order::Any))
        .unwrap()
        .tensor;
    assert_eq!(t.strides(), Some(&[1, 5][..]));
    assert_ne!(t.data_ptr() as usize, base);
    assert_eq!(elements_f64(&t), expected(5, 3));
}

#[test]
fn one_column_or_one_row_is_shared_in_either_order() {
    for (rows, columns) in [(7, 1), (1, 4), (0, 3)] {
        let (batch, base) = adjacent(rows, columns);
        let t = record_batch_to_dlpack(&batch, &options(CopyPolicy::Never, Order::RowMajor))
            .unwrap()
            .tensor;
        assert_eq!(t.shape(), &[rows as i64, columns as i64]);
        if rows > 0 {
            assert_eq!(t.data_ptr() as usize, base);
        }
        assert_eq!(elements_f64(&t), expected(rows, columns));
    }
}

/// The bytes of a copy whose output bypasses the cache (three quarters of
/// the last-level cache: src/copy/uncached.rs), at least 64 MiB; `None`
/// (and a note) where that would take over a GiB.
fn past_the_cache() -> Option<usize> {
    let threshold = arrow_dlpack::__internal::uncached_threshold();
    let bytes = threshold.saturating_add(1 << 20).max(64 << 20);
    if bytes > 1 << 30 {
        eprintln!("outputs bypass the cache from {threshold} bytes: over a GiB; not run");
        return None;
    }
    Some(bytes)
}

/// `columns` columns of `rows` values from `value(i, j)`, each sliced one
/// value in: separate buffers at unaligned offsets.
fn sliced_columns<T: arrow_array::ArrowPrimitiveType>(
    rows: usize,
    columns: usize,
    value: impl Fn(usize, usize) -> T::Native,
) -> RecordBatch {
    let arrays: Vec<(String, ArrayRef)> = (0..columns)
        .map(|j| {
            let values = (0..rows + 1).map(|i| value(i, j));
            let a = arrow_array::PrimitiveArray::<T>::from_iter_values(values).slice(1, rows);
            (format!("c{j}"), Arc::new(a) as ArrayRef)
        })
        .collect();
    RecordBatch::try_from_iter(arrays).unwrap()
}

/// A column-major copy larger than the cache, its stores sent around the
/// cache: each column's bytes are still its own.
#[test]
#[cfg_attr(miri, ignore)]
fn a_column_major_copy_larger_than_the_cache_holds_every_column() {
    let Some(bytes) = past_the_cache() else {
        return;
    };
    let columns = 12;
    let rows = bytes / (columns * 8) + 1;
    let batch = sliced_columns::<Float64Type>(rows, columns, |i, j| (i * 16 + j) as f64);
    let t = record_batch_to_dlpack(&batch, &options(CopyPolicy::IfNeeded, Order::ColumnMajor))
        .unwrap()
        .tensor;
    assert_eq!(t.strides(), Some(&[1, rows as i64][..]));
    // SAFETY: the tensor's `rows * columns` contiguous elements.
    let data = unsafe { std::slice::from_raw_parts(t.data_ptr().cast::<f64>(), rows * columns) };
    for (j, column) in data.chunks(rows).enumerate() {
        let right = column
            .iter()
            .enumerate()
            .all(|(i, &v)| v == ((i + 1) * 16 + j) as f64);
        assert!(right, "column {j}");
    }
}

/// Row-major copies larger than the cache, each way around it: rows of
/// one tile's whole line (8 float64, 16 float32: non-temporal tiles),
/// staged rows (40 float64, 17 float32: blocks copied out with
/// non-temporal stores), rows wider than a stage whose tiles write whole
/// lines (264 float64: non-temporal tiles) and whose tiles do not (265:
/// through the cache). Every element at its row and column.
#[test]
#[cfg_attr(miri, ignore)]
fn row_major_copies_larger_than_the_cache_hold_every_element() {
    let Some(bytes) = past_the_cache() else {
        return;
    };
    for columns in [8, 40, 264, 265] {
        assert_row_major::<Float64Type>(bytes, columns, |i, j| (i * 1024 + j) as f64);
    }
    for columns in [16, 17] {
        // Exact in float32: below 2^24.
        let value = |i: usize, j: usize| ((i % 16384) * 1024 + j) as f32;
        assert_row_major::<arrow_array::types::Float32Type>(bytes, columns, value);
    }
}

/// `columns` columns of `T` from `value(i, j)` (sliced one value in),
/// copied into a row-major matrix of at least `bytes`: its strides, and
/// every element at its row and column.
fn assert_row_major<T: arrow_array::ArrowPrimitiveType>(
    bytes: usize,
    columns: usize,
    value: impl Fn(usize, usize) -> T::Native,
) {
    let rows = bytes / (columns * std::mem::size_of::<T::Native>()) + 1;
    let batch = sliced_columns::<T>(rows, columns, &value);
    let t = record_batch_to_dlpack(&batch, &options(CopyPolicy::IfNeeded, Order::RowMajor))
        .unwrap()
        .tensor;
    assert_eq!(t.strides(), Some(&[columns as i64, 1][..]));
    // SAFETY: the tensor's `rows * columns` contiguous elements of `T`.
    let data =
        unsafe { std::slice::from_raw_parts(t.data_ptr().cast::<T::Native>(), rows * columns) };
    for (i, row) in data.chunks(columns).enumerate() {
        let right = row.iter().enumerate().all(|(j, &v)| v == value(i + 1, j));
        assert!(right, "{columns} columns of {}: row {i}", T::DATA_TYPE);
    }
}

#[test]
fn separate_columns_are_copied_row_major_or_refused() {
    // Columns in separate buffers, several blocks of rows and a ragged end.
    let rows = 3000;
    let a = Float64Array::from_iter_values((0..rows).map(|i| i as f64));
    let b = Float64Array::from_iter_values((0..rows).map(|i| (1000 + i) as f64));
    let batch =
        RecordBatch::try_from_iter([("a", Arc::new(a) as ArrayRef), ("b", Arc::new(b) as _)])
            .unwrap();
    let e = record_batch_to_dlpack(&batch, &ExportOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::ARROW_DLPACK_NEEDS_COPY);
    assert!(
        e.message().contains("column 0 'a' and column 1 'b'"),
        "names the columns: {e}"
    );
    for (order, strides) in [
        (Order::Any, [2, 1]),
        (Order::RowMajor, [2, 1]),
        (Order::ColumnMajor, [1, rows as i64]),
    ] {
        let t = record_batch_to_dlpack(&batch, &options(CopyPolicy::IfNeeded, order))
            .unwrap()
            .tensor;
        assert_eq!(t.strides(), Some(&strides[..]), "{order:?}");
        assert_eq!(t.data_ptr() as usize % 64, 0, "aligned copy");
        let want: Vec<f64> = (0..rows)
            .flat_map(|i| [i as f64, (1000 + i) as f64])
            .collect();
        assert_eq!(elements_f64(&t), want, "{order:?}");
    }
}

#[test]
fn mixed_dtypes_promote_as_numpy_result_type() {
    let batch = RecordBatch::try_from_iter([
        ("i", Arc::new(Int64Array::from(vec![-1, 2])) as ArrayRef),
        ("u", Arc::new(UInt64Array::from(vec![u64::MAX, 3])) as _),
    ])
    .unwrap();
    let t = record_batch_to_dlpack(&batch, &options(CopyPolicy::IfNeeded, Order::Any))
        .unwrap()
        .tensor;
    assert_eq!((t.dtype().code, t.dtype().bits), (K_DL_FLOAT, 64));
    assert_eq!(elements_f64(&t), [-1.0, u64::MAX as f64, 2.0, 3.0]);
    // An explicit dtype overrides: float64 of int8 and bool columns.
    let batch = RecordBatch::try_from_iter([
        (
            "b",
            Arc::new(BooleanArray::from(vec![true, false, true])) as ArrayRef,
        ),
        ("c", Arc::new(Int8Array::from(vec![-3, 4, 5])) as _),
    ])
    .unwrap();
    let mut o = options(CopyPolicy::IfNeeded, Order::ColumnMajor);
    o.dtype = Some(DLDataType {
        code: K_DL_FLOAT,
        bits: 64,
        lanes: 1,
    });
    let t = record_batch_to_dlpack(&batch, &o).unwrap().tensor;
    assert_eq!(elements_f64(&t), [1.0, -3.0, 0.0, 4.0, 1.0, 5.0]);
    // bool + int8 -> int8 naturally; a conversion is a copy.
    let e = record_batch_to_dlpack(&batch, &ExportOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::ARROW_DLPACK_NEEDS_COPY);
    assert!(
        e.message().contains("column 0 'b' (boolean) to int8"),
        "{e}"
    );
}

#[test]
fn nulls_are_refused_naming_the_column_or_filled_with_a_2d_mask() {
    let batch = RecordBatch::try_from_iter([
        ("x", Arc::new(Int32Array::from(vec![1, 2, 3])) as ArrayRef),
        (
            "y",
            Arc::new(Int32Array::from(vec![Some(4), None, Some(6)])) as _,
        ),
    ])
    .unwrap();
    let e = record_batch_to_dlpack(&batch, &options(CopyPolicy::IfNeeded, Order::Any)).unwrap_err();
    assert_eq!(e.status(), Status::ARROW_DLPACK_HAS_NULLS);
    assert!(e.message().starts_with("column 1 'y' has 1 nulls"), "{e}");
    for order in [Order::RowMajor, Order::ColumnMajor] {
        let mut o = options(CopyPolicy::IfNeeded, order);
        o.fill_nulls = Some(-1.0);
        o.validity = true;
        let made = record_batch_to_dlpack(&batch, &o).unwrap();
        let (t, mask) = (made.tensor, made.validity.unwrap());
        assert_eq!(t.strides(), mask.strides(), "the mask in the data's order");
        let at = |t: &Tensor, i: i64, j: i64| {
            let s = t.strides().unwrap();
            (s[0] * i + s[1] * j) as usize
        };
        // SAFETY: elements of the live tensors.
        unsafe {
            let values = t.data_ptr().cast::<i32>();
            let valid = mask.data_ptr().cast::<u8>();
            let want = [[1, 4], [2, -1], [3, 6]];
            for i in 0..3 {
                for j in 0..2 {
                    assert_eq!(*values.add(at(&t, i, j)), want[i as usize][j as usize]);
                    let null = (i, j) == (1, 1);
                    assert_eq!(*valid.add(at(&mask, i, j)), !null as u8);
                }
            }
        }
    }
}

#[test]
fn struct_level_nulls_are_refused_naming_rows_or_fill_whole_rows() {
    let fields = vec![
        Field::new("p", DataType::Float64, false),
        Field::new("q", DataType::Float64, false),
    ];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0, 4.0])),
        Arc::new(Float64Array::from(vec![5.0, 6.0, 7.0, 8.0])),
    ];
    let nulls = NullBuffer::from(vec![true, true, false, true]);
    let array = StructArray::new(fields.clone().into(), columns, Some(nulls));
    let field = Field::new("", array.data_type().clone(), true);
    let e = arrow_dlpack::to_dlpack_with_options(
        &field,
        &array,
        &options(CopyPolicy::IfNeeded, Order::Any),
    )
    .unwrap_err();
    assert_eq!(e.status(), Status::ARROW_DLPACK_HAS_NULLS);
    assert!(
        e.message().contains("1 null rows (the first: row 2)"),
        "{e}"
    );
    let mut o = options(CopyPolicy::IfNeeded, Order::Any);
    o.fill_nulls = Some(0.0);
    let t = arrow_dlpack::to_dlpack_with_options(&field, &array, &o)
        .unwrap()
        .tensor;
    assert_eq!(elements_f64(&t), [1.0, 5.0, 2.0, 6.0, 0.0, 0.0, 4.0, 8.0]);
    // A slice of the struct: its offset applies to the children.
    let sliced = array.slice(1, 2);
    let t = arrow_dlpack::to_dlpack_with_options(&field, &sliced, &o)
        .unwrap()
        .tensor;
    assert_eq!(elements_f64(&t), [2.0, 6.0, 0.0, 0.0]);
}

#[test]
fn nested_and_non_numeric_columns_are_named() {
    let batch = RecordBatch::try_from_iter([
        ("n", Arc::new(Int32Array::from(vec![1])) as ArrayRef),
        ("s", Arc::new(StringArray::from(vec!["a"])) as _),
    ])
    .unwrap();
    let e = record_batch_to_dlpack(&batch, &options(CopyPolicy::IfNeeded, Order::Any)).unwrap_err();
    assert_eq!(e.status(), Status::ARROW_DLPACK_UNSUPPORTED_TYPE);
    assert!(
        e.message()
            .starts_with("column 1 's': unsupported format 'u'"),
        "{e}"
    );
    let list = arrow_array::FixedSizeListArray::from_iter_primitive::<Int32Type, _, _>(
        [Some(vec![Some(1), Some(2)])],
        2,
    );
    let batch = RecordBatch::try_from_iter([("v", Arc::new(list) as ArrayRef)]).unwrap();
    let e = record_batch_to_dlpack(&batch, &options(CopyPolicy::IfNeeded, Order::Any)).unwrap_err();
    assert_eq!(e.status(), Status::ARROW_DLPACK_UNSUPPORTED_TYPE);
    assert!(
        e.message().starts_with("column 0 'v': a nested column"),
        "{e}"
    );
}

#[test]
fn batches_stack_row_after_row() {
    let schema = Schema::new(vec![
        Field::new("a", DataType::Int32, false),
        Field::new("b", DataType::Float32, false),
    ]);
    let batch = |r: std::ops::Range<i32>| {
        RecordBatch::try_new(
            Arc::new(schema.clone()),
            vec![
                Arc::new(Int32Array::from_iter_values(r.clone())),
                Arc::new(Float32Array::from_iter_values(r.map(|i| i as f32 + 0.5))),
            ],
        )
        .unwrap()
    };
    let batches = vec![batch(0..3), batch(3..3), batch(3..7)];
    let e =
        record_batches_to_dlpack(&schema, batches.clone(), &ExportOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::ARROW_DLPACK_NEEDS_COPY);
    for order in [Order::Any, Order::ColumnMajor] {
        let t = record_batches_to_dlpack(
            &schema,
            batches.clone(),
            &options(CopyPolicy::IfNeeded, order),
        )
        .unwrap()
        .tensor;
        assert_eq!(t.shape(), &[7, 2]);
        let want: Vec<f64> = (0..7).flat_map(|i| [i as f64, i as f64 + 0.5]).collect();
        assert_eq!(elements_f64(&t), want, "{order:?}"); // int32 + float32 -> float64
    }
    // No batch: [0, columns] of the promoted dtype.
    let t = record_batches_to_dlpack(&schema, vec![], &ExportOptions::default())
        .unwrap()
        .tensor;
    assert_eq!(t.shape(), &[0, 2]);
    assert_eq!((t.dtype().code, t.dtype().bits), (K_DL_FLOAT, 64));
}

#[test]
fn a_matrix_comes_back_as_named_columns_sharing_or_copying() {
    // Column-major: shared, each column pointing into the tensor.
    let (batch, base) = adjacent(4, 3);
    let t = record_batch_to_dlpack(&batch, &ExportOptions::default())
        .unwrap()
        .tensor;
    let back = record_batch_from_dlpack(t, Some(&["c0", "c1", "c2"]), &ImportOptions::default())
        .map_err(|(e, _)| e)
        .unwrap();
    assert_eq!(back, batch);
    for j in 0..3 {
        let col = back.column(j).as_primitive::<Float64Type>();
        assert_eq!(
            col.values().as_ptr() as usize,
            base + j * 4 * 8,
            "column {j} shared"
        );
    }
    // Row-major: the columns copied out, or refused.
    let t = record_batch_to_dlpack(&batch, &options(CopyPolicy::IfNeeded, Order::RowMajor))
        .unwrap()
        .tensor;
    let (e, t) = record_batch_from_dlpack(t, None, &ImportOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::ARROW_DLPACK_NEEDS_COPY, "{e}");
    let back = record_batch_from_dlpack(
        t,
        None,
        &ImportOptions {
            copy: CopyPolicy::IfNeeded,
            ..Default::default()
        },
    )
    .map_err(|(e, _)| e)
    .unwrap();
    assert_eq!(back.schema().field(2).name(), "2", "default names");
    assert_eq!(back.columns(), batch.columns());
    // Not 2-D.
    let t = arrow_dlpack::to_dlpack(&Int32Array::from(vec![1, 2])).unwrap();
    let (e, _) = record_batch_from_dlpack(t, None, &ImportOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::ARROW_DLPACK_INVALID_ARGUMENT);
    assert!(e.message().contains("2-D"), "{e}");
}

#[test]
fn bool_matrices_come_back_as_boolean_columns() {
    let batch = RecordBatch::try_from_iter([
        (
            "a",
            Arc::new(BooleanArray::from(vec![true, false, true])) as ArrayRef,
        ),
        (
            "b",
            Arc::new(BooleanArray::from(vec![false, false, true])) as _,
        ),
    ])
    .unwrap();
    for order in [Order::RowMajor, Order::ColumnMajor] {
        let t = record_batch_to_dlpack(&batch, &options(CopyPolicy::IfNeeded, order))
            .unwrap()
            .tensor;
        assert_eq!(t.dtype().code, K_DL_BOOL);
        let back = record_batch_from_dlpack(
            t,
            Some(&["a", "b"]),
            &ImportOptions {
                copy: CopyPolicy::IfNeeded,
                ..Default::default()
            },
        )
        .map_err(|(e, _)| e)
        .unwrap();
        assert_eq!(back, batch, "{order:?}");
    }
}

// ---- through the C entry points, by hand ----------------------------------------

/// Exports `raw` under `copy`; the status and message, the struct
/// checked untouched on failure.
fn export_raw(raw: &mut Raw, copy: i32) -> Result<(Vec<i64>, Vec<i64>), (Status, String)> {
    let before = raw.array_bytes();
    let mut error = new_error();
    let o = common::export_options(copy);
    // SAFETY: live structs; valid options and error.
    let t = unsafe { arrow_dlpack_export_with(raw.array_ptr(), raw.schema_ptr(), &o, &mut error) };
    if t.is_null() {
        assert_eq!(
            raw.array_bytes(),
            before,
            "a failure leaves the array as it was"
        );
        return Err((
            Status::from_raw(error.status as i32).unwrap(),
            message(&error),
        ));
    }
    // SAFETY: a live tensor, deleted once.
    unsafe {
        let d = &(*t).dl_tensor;
        let shape = std::slice::from_raw_parts(d.shape, 2).to_vec();
        let strides = std::slice::from_raw_parts(d.strides, 2).to_vec();
        ((*t).deleter.unwrap())(t);
        Ok((shape, strides))
    }
}

fn two_columns() -> Raw {
    Raw::struct_of(
        3,
        vec![
            Raw::primitive("i", &[1i32, 2, 3]),
            Raw::primitive("i", &[4i32, 5, 6]),
        ],
        &[c"x", c"y"],
    )
}

#[test]
fn malformed_struct_arrays_are_refused_naming_the_field() {
    type Break = fn(&mut Raw);
    let cases: [(Break, Status, &str); 7] = [
        (
            |r| r.array.n_children = 1,
            Status::ARROW_DLPACK_INVALID_ARROW,
            "n_children",
        ),
        (
            |r| r.array.n_buffers = 2,
            Status::ARROW_DLPACK_INVALID_ARROW,
            "n_buffers 2",
        ),
        (
            |r| r.array.children = ptr::null_mut(),
            Status::ARROW_DLPACK_INVALID_ARROW,
            "children",
        ),
        (
            |r| r.array.length = 4,
            Status::ARROW_DLPACK_INVALID_ARROW,
            "column 0 'x': length 3 is shorter",
        ),
        (
            |r| r.array.offset = -1,
            Status::ARROW_DLPACK_INVALID_ARROW,
            "offset -1",
        ),
        (
            |r| r.array.null_count = 2,
            Status::ARROW_DLPACK_INVALID_ARROW,
            "validity bitmap is NULL",
        ),
        (
            |r| r.child(1).array.n_buffers = 1,
            Status::ARROW_DLPACK_INVALID_ARROW,
            "column 1 'y'",
        ),
    ];
    for (i, (bad, status, needle)) in cases.into_iter().enumerate() {
        let mut raw = two_columns();
        bad(&mut raw);
        let (s, m) = export_raw(&mut raw, 1).unwrap_err();
        assert_eq!(s, status, "case {i}: {m}");
        assert!(m.contains(needle), "case {i}: {m}");
        assert_eq!(raw.release_count(), 0, "case {i}: not released");
    }
    // And the well-formed one: separate buffers, copied row-major.
    let mut raw = two_columns();
    assert_eq!(export_raw(&mut raw, 1).unwrap(), (vec![3, 2], vec![2, 1]));
    assert_eq!(raw.release_count(), 1, "copied, then released once");
}

#[test]
fn a_struct_offset_reaches_the_children_and_struct_nulls_name_rows() {
    let mut raw = two_columns();
    raw.array.offset = 1;
    raw.array.length = 2;
    assert_eq!(export_raw(&mut raw, 1).unwrap().0, vec![2, 2]);
    let mut raw = two_columns();
    raw.set_validity(&[true, false, false], 2);
    let (s, m) = export_raw(&mut raw, 1).unwrap_err();
    assert_eq!(s, Status::ARROW_DLPACK_HAS_NULLS);
    assert!(m.contains("2 null rows (the first: row 1)"), "{m}");
}

#[test]
fn as_columns_options_are_validated() {
    let t = arrow_dlpack::to_dlpack(&Int32Array::from(vec![1, 2])).unwrap();
    let raw = t.into_raw();
    let names: [*const c_char; 1] = [c"a".as_ptr()];
    for (as_columns, column_names, needle) in [
        (2, ptr::null(), "as_columns is 2"),
        (0, names.as_ptr(), "column_names is set"),
        (1, ptr::null(), "needs a 2-D tensor"),
    ] {
        let o = common::import_options(1, as_columns, column_names);
        // SAFETY: a live tensor, left untouched on failure.
        let (status, m) = unsafe { common::import_raw(raw, &o) }.unwrap_err();
        assert_eq!(status, Status::ARROW_DLPACK_INVALID_ARGUMENT);
        assert!(m.contains(needle), "{m}");
    }
    // SAFETY: still ours.
    unsafe { ((*raw).deleter.unwrap())(raw) };
}

#[test]
fn column_offsets_that_overflow_are_refused_and_leak_nothing() {
    // Rows dense, columns i64::MAX / 4 elements apart: no address holds
    // them. The reader refuses the strides before any column offset is
    // formed. (Under ASan, a schema built before the refusal would leak.)
    let mut values = [1.0f64; 4];
    let mut shape = [2i64, 3];
    let mut strides = [1i64, i64::MAX / 4];
    let mut t = float64_matrix(values.as_mut_ptr(), &mut shape, &mut strides);
    let o = common::import_options(0, 1, ptr::null());
    // SAFETY: a live tensor (its deleter None: nothing to free).
    let (status, m) = unsafe { common::import_raw(&mut t, &o) }.unwrap_err();
    assert_eq!(status, Status::ARROW_DLPACK_INVALID_ARGUMENT);
    assert!(m.contains("more than the address space"), "{m}");
}

#[test]
fn any_stride_of_a_one_row_matrix_is_copied_into_columns() {
    // One row: its stride is never stepped, whatever it is (the copy once
    // multiplied it by the width first and overflowed: found by fuzzing).
    // A stride that is stepped and leaves the address space is refused.
    for (row_stride, copy) in [(i64::MIN / 2, 2), (i64::MAX, 1)] {
        let mut values = [1.0f64, 2.0];
        let mut shape = [1i64, 2];
        let mut strides = [row_stride, 1];
        let mut t = float64_matrix(values.as_mut_ptr(), &mut shape, &mut strides);
        let o = common::import_options(copy, 1, ptr::null());
        // SAFETY: a live tensor (no deleter); on success the out structs
        // are ours to release.
        unsafe {
            let (mut a, mut s) =
                common::import_raw(&mut t, &o).unwrap_or_else(|(_, m)| panic!("{m}"));
            assert_eq!((a.length, a.n_children), (1, 2));
            for (j, want) in [1.0f64, 2.0].into_iter().enumerate() {
                let child = &**a.children.add(j);
                assert_eq!(*(*child.buffers.add(1)).cast::<f64>(), want);
            }
            (a.release.unwrap())(&mut a);
            (s.release.unwrap())(&mut s);
        }
    }
    let mut values = [1.0f64; 4];
    let mut shape = [2i64, 2];
    let mut strides = [i64::MIN / 2, 1];
    let mut t = float64_matrix(values.as_mut_ptr(), &mut shape, &mut strides);
    let o = common::import_options(2, 1, ptr::null());
    // SAFETY: a live tensor (no deleter: nothing to free).
    let (status, m) = unsafe { common::import_raw(&mut t, &o) }.unwrap_err();
    assert_eq!(status, Status::ARROW_DLPACK_INVALID_ARGUMENT);
    assert!(m.contains("more than the address space"), "{m}");
}

#[test]
fn a_stream_whose_rows_overflow_is_refused() {
    // Two batches of i64::MAX rows without columns: nothing to read, but
    // the tensor's extent would not fit.
    use arrow_array::RecordBatchOptions;
    let schema = Arc::new(Schema::empty());
    let options = RecordBatchOptions::new().with_row_count(Some(i64::MAX as usize));
    let batch = RecordBatch::try_new_with_options(schema.clone(), vec![], &options).unwrap();
    let e = record_batches_to_dlpack(&schema, vec![batch.clone(), batch], &options_if_needed())
        .unwrap_err();
    assert_eq!(e.status(), Status::ARROW_DLPACK_INVALID_ARROW, "{e}");
    assert!(e.message().contains("rows overflow"), "{e}");
}

fn options_if_needed() -> ExportOptions {
    options(CopyPolicy::IfNeeded, Order::Any)
}

#[test]
fn empty_batches_with_null_buffers_stack_with_the_others() {
    // A stream's empty chunk, made by hand with NULL value buffers (its
    // view addresses nothing), between two with rows, in both orders.
    for order in [1, 2] {
        let mut chunks = vec![
            Raw::struct_of(2, vec![Raw::primitive("g", &[1.0f64, 2.0])], &[c"a"]),
            Raw::struct_of(0, vec![Raw::new("g", 0, vec![None, None])], &[c"a"]),
            Raw::struct_of(1, vec![Raw::primitive("g", &[3.0f64])], &[c"a"]),
        ];
        let mut o = common::export_options(1);
        o.order = order;
        let mut stream = common::Stream {
            schema: Raw::struct_of(0, vec![Raw::new("g", 0, vec![None, None])], &[c"a"]),
            chunks: std::mem::take(&mut chunks),
            next: 0,
            released: false,
            fail_at: None,
        };
        let (t, error) = common::run_stream(&mut stream, &o);
        assert!(!t.is_null(), "{}", message(&error));
        // SAFETY: a live tensor of 3 float64 rows, deleted once.
        unsafe {
            let d = &(*t).dl_tensor;
            assert_eq!(std::slice::from_raw_parts(d.shape, 2), &[3, 1]);
            assert_eq!(
                std::slice::from_raw_parts(d.data.cast::<f64>(), 3),
                &[1.0, 2.0, 3.0]
            );
            ((*t).deleter.unwrap())(t);
        }
    }
}

#[test]
fn a_matrix_of_no_columns_and_any_rows_comes_back_at_once() {
    // [i64::MAX, 0], row-major strides: nothing to copy, however many rows
    // it claims (the copy kernels once counted them block by block).
    let mut shape = [i64::MAX, 0];
    let mut strides = [0i64, 1];
    let mut t = float64_matrix(ptr::null_mut(), &mut shape, &mut strides);
    let o = common::import_options(2, 1, ptr::null());
    // SAFETY: a live tensor (no deleter: nothing to free); on success the
    // out structs are ours to release.
    unsafe {
        let (mut a, mut s) = common::import_raw(&mut t, &o).unwrap_or_else(|(_, m)| panic!("{m}"));
        assert_eq!((a.length, a.n_children, s.n_children), (i64::MAX, 0, 0));
        (a.release.unwrap())(&mut a);
        (s.release.unwrap())(&mut s);
    }
}

/// A float64 2-D tensor over `data` without a deleter (the test owns
/// everything it points at).
fn float64_matrix(
    data: *mut f64,
    shape: &mut [i64; 2],
    strides: &mut [i64; 2],
) -> DLManagedTensorVersioned {
    DLManagedTensorVersioned {
        version: DLPackVersion { major: 1, minor: 3 },
        manager_ctx: ptr::null_mut(),
        deleter: None,
        flags: 0,
        dl_tensor: DLTensor {
            data: data.cast(),
            device: DLDevice {
                device_type: K_DL_CPU,
                device_id: 0,
            },
            ndim: 2,
            dtype: DLDataType {
                code: K_DL_FLOAT,
                bits: 64,
                lanes: 1,
            },
            shape: shape.as_mut_ptr(),
            strides: strides.as_mut_ptr(),
            byte_offset: 0,
        },
    }
}
