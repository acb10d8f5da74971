//! A record batch to a matrix and back, with arrow-rs: feature columns
//! into one `[rows, columns]` tensor (a row-major copy, as a model wants
//! it), then a model's output matrix back into named columns (shared: a
//! column-major matrix's columns are dense).
//!
//! `cargo run --example table`

use std::sync::Arc;

use arrow_array::{ArrayRef, Float32Array, Int32Array, RecordBatch};
use arrow_dlpack::{CopyPolicy, ExportOptions, ImportOptions, Order};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let batch = RecordBatch::try_from_iter([
        (
            "age",
            Arc::new(Int32Array::from(vec![31, 45, 27])) as ArrayRef,
        ),
        (
            "height",
            Arc::new(Float32Array::from(vec![1.7, 1.8, 1.6])) as _,
        ),
    ])?;
    // int32 + float32 promote to float64 (NumPy's result_type); the
    // columns are separate buffers, so a row-major matrix is one copy.
    let options = ExportOptions {
        copy: CopyPolicy::IfNeeded,
        order: Order::RowMajor,
        ..Default::default()
    };
    let matrix = arrow_dlpack::record_batch_to_dlpack(&batch, &options)?.tensor;
    println!(
        "features: shape {:?}, strides {:?}, dtype code {} bits {}",
        matrix.shape(),
        matrix.strides().unwrap_or_default(),
        matrix.dtype().code,
        matrix.dtype().bits
    );

    // A column-major copy of it (what a Fortran-order model output is) comes
    // back as named columns pointing into the tensor.
    let options = ExportOptions {
        copy: CopyPolicy::Always,
        order: Order::ColumnMajor,
        ..Default::default()
    };
    let output = arrow_dlpack::record_batch_to_dlpack(&batch, &options)?.tensor;
    let data = output.data_ptr() as usize;
    let columns = arrow_dlpack::record_batch_from_dlpack(
        output,
        Some(&["age", "height"]),
        &ImportOptions::default(),
    )
    .map_err(|(e, _)| e)?;
    let height = columns.column(1).to_data().buffers()[0].as_ptr() as usize;
    let names: Vec<&str> = columns
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    println!("columns back: {names:?}, {} rows", columns.num_rows());
    println!(
        "columns shared with the matrix: {}",
        if height == data + 3 * 8 { "yes" } else { "no" }
    );
    Ok(())
}
