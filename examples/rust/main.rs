//! A Rust program using the crate's safe API with arrow-rs: an Arrow array
//! becomes a DLPack tensor and comes back, sharing one buffer throughout.
//!
//!     cargo run --example roundtrip

use std::sync::Arc;

use arrow_array::{Array, FixedSizeListArray, Float32Array};
use arrow_schema::{DataType, Field};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Three 2-vectors, as a fixed_size_list: a 3x2 tensor.
    let values = Float32Array::from(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let vectors = FixedSizeListArray::new(item, 2, Arc::new(values.clone()), None);

    let tensor = arrow_dlpack::to_dlpack(&vectors)?;
    let shared = tensor.data_ptr() == values.values().as_ptr().cast();
    println!(
        "rust: tensor {:?} strides {:?}, shared: {}",
        tensor.shape(),
        tensor.strides().unwrap(),
        yes(shared)
    );

    let (field, back) = arrow_dlpack::from_dlpack(tensor).map_err(|(e, _)| e)?;
    let back = back
        .as_any()
        .downcast_ref::<FixedSizeListArray>()
        .expect("a fixed_size_list");
    let same = back.values().to_data().buffers()[0].as_ptr() == values.values().as_ptr().cast();
    println!(
        "rust: back as {} ({}), {} rows, same memory: {}",
        field.metadata()["ARROW:extension:name"],
        field.data_type(),
        back.len(),
        yes(same)
    );
    if shared && same {
        Ok(())
    } else {
        Err("a copy was made".into())
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
