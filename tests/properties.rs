//! Property tests against brute force: every element's address, computed
//! from the tensor's strides, must be the one the Arrow layout gives it.

#![cfg(not(miri))] // thousands of cases: too slow under Miri; the unit cases run there

mod common;

use std::ptr;

use arrow_dlpack::Status;
use arrow_dlpack::abi::*;
use arrow_dlpack::capi::*;
use common::Raw;
use proptest::prelude::*;

/// Every index tuple of `shape`, row-major.
fn indices(shape: &[i64]) -> Vec<Vec<i64>> {
    let mut out = vec![vec![]];
    for &extent in shape {
        out = out
            .into_iter()
            .flat_map(|prefix| (0..extent).map(move |i| [prefix.clone(), vec![i]].concat()))
            .collect();
    }
    out
}

fn row_major_offset(index: &[i64], shape: &[i64]) -> i64 {
    index.iter().zip(shape).fold(0, |acc, (&i, &e)| acc * e + i)
}

/// A shape of 1-4 dimensions of extents 1-4 and a permutation of it.
fn shape_and_permutation() -> impl Strategy<Value = (Vec<i64>, Vec<usize>)> {
    prop::collection::vec(1i64..=4, 1..=4).prop_flat_map(|shape| {
        let n = shape.len();
        (Just(shape), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Export of arrow.fixed_shape_tensor: the tensor element at every
    /// logical index is the storage element the specification says.
    #[test]
    fn fixed_shape_tensor_strides_address_the_right_elements(
        (shape, permutation) in shape_and_permutation(),
        length in 0i64..4,
        offset in 0i64..3,
    ) {
        let size: i64 = shape.iter().product();
        let storage: Vec<i32> = (0..((length + offset) * size) as i32).collect();
        let leaf = Raw::primitive("i", &storage);
        let mut raw = Raw::fixed_size_list(size, length, leaf);
        raw.array.offset = offset;
        let json = format!(r#"{{"shape":{shape:?},"permutation":{permutation:?}}}"#);
        let mut block = 2i32.to_ne_bytes().to_vec();
        for part in [&b"ARROW:extension:name"[..], b"arrow.fixed_shape_tensor", b"ARROW:extension:metadata", json.as_bytes()] {
            block.extend((part.len() as i32).to_ne_bytes());
            block.extend(part);
        }
        raw.set_metadata(block);
        let base = raw.child(0).buffers[1] as usize;
        // SAFETY: valid hand-built structs.
        let t = unsafe { arrow_dlpack_export_versioned(raw.array_ptr(), raw.schema_ptr(), ptr::null_mut()) };
        prop_assert!(!t.is_null());
        // SAFETY: a live tensor.
        let d = unsafe { &(*t).dl_tensor };
        let n = d.ndim as usize;
        // SAFETY: `ndim` entries each.
        let (t_shape, t_strides) = unsafe { (std::slice::from_raw_parts(d.shape, n).to_vec(), std::slice::from_raw_parts(d.strides, n).to_vec()) };
        let logical: Vec<i64> = permutation.iter().map(|&p| shape[p]).collect();
        prop_assert_eq!(&t_shape[1..], &logical[..]);
        for index in indices(&t_shape) {
            let element = index.iter().zip(&t_strides).map(|(i, s)| i * s).sum::<i64>();
            let address = d.data as usize + element as usize * 4;
            // The specification: logical dim j is physical dim permutation[j].
            let mut physical = vec![0; shape.len()];
            for (j, &p) in permutation.iter().enumerate() {
                physical[p] = index[j + 1];
            }
            let expected = (offset + index[0]) * size + row_major_offset(&physical, &shape);
            prop_assert_eq!(address, base + expected as usize * 4);
        }
        // SAFETY: deleted once.
        unsafe { ((*t).deleter.unwrap())(t) };
    }

    /// Import: a tensor is accepted exactly when its element addresses are
    /// dense with each row (first dimension) a contiguous block; then every
    /// logical element lands where the Arrow layout (row-major physical
    /// shape plus permutation) puts it.
    #[test]
    fn the_import_classifier_agrees_with_brute_force(
        (shape, order) in shape_and_permutation().prop_flat_map(|(inner, order)| (1i64..4).prop_map(move |rows| {
            ([vec![rows], inner.clone()].concat(), order.clone())
        })),
        tweak in prop::option::of((0usize..5, -3i64..8)),
    ) {
        let inner = &shape[1..];
        // Dense strides for the physical order `order` (outermost first).
        let mut strides = vec![0i64; shape.len()];
        let mut stride = 1;
        for &d in order.iter().rev() {
            strides[d + 1] = stride;
            stride *= inner[d];
        }
        strides[0] = stride;
        if let Some((d, value)) = tweak {
            strides[d % shape.len()] = value;
        }
        let total: i64 = shape.iter().product();
        let row = total / shape[0];
        let offsets: Vec<i64> = indices(&shape).iter().map(|i| i.iter().zip(&strides).map(|(a, b)| a * b).sum()).collect();
        let mut sorted = offsets.clone();
        sorted.sort();
        let dense = sorted == (0..total).collect::<Vec<_>>();
        let rows_contiguous = indices(&shape).iter().zip(&offsets).all(|(i, &o)| o / row == i[0]);
        let expect_ok = dense && rows_contiguous;

        let storage: Vec<u32> = (0..total as u32).collect();
        let mut shape_c = shape.clone();
        let mut strides_c = strides.clone();
        unsafe extern "C" fn no_op(_: *mut DLManagedTensorVersioned) {}
        let mut tensor = DLManagedTensorVersioned {
            version: DLPackVersion { major: 1, minor: 3 },
            manager_ctx: ptr::null_mut(),
            deleter: Some(no_op),
            flags: 0,
            dl_tensor: DLTensor {
                data: storage.as_ptr().cast_mut().cast(),
                device: DLDevice { device_type: K_DL_CPU, device_id: 0 },
                ndim: shape.len() as i32,
                dtype: DLDataType { code: K_DL_UINT, bits: 32, lanes: 1 },
                shape: shape_c.as_mut_ptr(),
                strides: strides_c.as_mut_ptr(),
                byte_offset: 0,
            },
        };
        let mut array = std::mem::MaybeUninit::<ArrowArray>::uninit();
        let mut schema = std::mem::MaybeUninit::<ArrowSchema>::uninit();
        let mut error = common::new_error();
        // SAFETY: a valid tensor and writable out structs.
        let status = unsafe { arrow_dlpack_import_versioned(&mut tensor, array.as_mut_ptr(), schema.as_mut_ptr(), &mut error) };
        prop_assert_eq!(status == Status::ARROW_DLPACK_OK, expect_ok, "{:?} strides {:?}: {}", shape, strides, common::message(&error));
        if !expect_ok {
            prop_assert_eq!(status, Status::ARROW_DLPACK_UNSUPPORTED_LAYOUT);
            return Ok(());
        }
        // SAFETY: written on success.
        let (mut array, mut schema) = unsafe { (array.assume_init(), schema.assume_init()) };
        let field = arrow_schema::Field::try_from(unsafe { &*(&schema as *const ArrowSchema).cast::<arrow_schema::ffi::FFI_ArrowSchema>() }).unwrap();
        let json = field.metadata().get("ARROW:extension:metadata").cloned().unwrap_or_default();
        let t = arrow_dlpack::__internal::parse_tensor_type(json.as_bytes()).unwrap();
        prop_assert_eq!(t.shape().iter().product::<i64>(), row);
        // Every logical element: where DLPack says, and where Arrow says.
        for (index, &dl_offset) in indices(&shape).iter().zip(&offsets) {
            let mut physical = vec![0; t.shape().len()];
            for (j, &p) in t.permutation().iter().enumerate() {
                physical[p] = index[j + 1];
            }
            let arrow_offset = index[0] * row + row_major_offset(&physical, t.shape());
            prop_assert_eq!(arrow_offset, dl_offset, "index {:?}", index);
        }
        // SAFETY: release once each.
        unsafe {
            (array.release.unwrap())(&mut array);
            (schema.release.unwrap())(&mut schema);
        }
    }
}
