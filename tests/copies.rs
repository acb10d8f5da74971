//! The copy options: `arrow_dlpack_export_with`, `arrow_dlpack_export_stream`
//! and `arrow_dlpack_import_with`. Each rule of the contract's "Copies"
//! section, and each refusal with its input untouched.

mod common;

use std::ffi::CStr;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_dlpack::Status;
use arrow_dlpack::abi::*;
use arrow_dlpack::capi::*;
use common::{Raw, Seen, Stream, message, new_error, struct_bytes, take};

const NEVER: i32 = ArrowDlpackCopy::ARROW_DLPACK_COPY_NEVER as i32;
const IF_NEEDED: i32 = ArrowDlpackCopy::ARROW_DLPACK_COPY_IF_NEEDED as i32;
const ALWAYS: i32 = ArrowDlpackCopy::ARROW_DLPACK_COPY_ALWAYS as i32;
fn options(copy: i32) -> ArrowDlpackExportOptions {
    common::export_options(copy)
}

fn export_with(raw: &mut Raw, o: &ArrowDlpackExportOptions) -> Result<Seen, (Status, String)> {
    let mut error = new_error();
    // SAFETY: valid structs.
    let t = unsafe { arrow_dlpack_export_with(raw.array_ptr(), raw.schema_ptr(), o, &mut error) };
    if t.is_null() {
        assert_eq!(raw.release_count(), 0, "a failure releases nothing");
        return Err((error.status, message(&error)));
    }
    assert!(raw.array.release.is_none(), "success moves the array");
    Ok(take(t))
}

/// Expects a refusal with the array byte-for-byte untouched.
fn refused(raw: &mut Raw, o: &ArrowDlpackExportOptions, status: Status, needle: &str) {
    let before = raw.array_bytes();
    let (s, m) = export_with(raw, o).expect_err("refused");
    assert_eq!(s, status, "{m}");
    assert!(m.contains(needle), "{m:?} lacks {needle:?}");
    assert_eq!(raw.array_bytes(), before);
}

fn bytes<T: Copy>(values: &[T]) -> Vec<u8> {
    // SAFETY: plain numbers.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast(), size_of_val(values)) }.to_vec()
}

fn dl(code: u8, bits: u8) -> DLDataType {
    DLDataType {
        code,
        bits,
        lanes: 1,
    }
}

#[test]
fn default_options_share_exactly_as_the_plain_export() {
    let mut raw = Raw::primitive("g", &[1.5f64, 2.5, 3.5]);
    raw.array.offset = 1;
    raw.array.length = 2;
    let address = raw.buffers[1] as usize + 8;
    for o in [None, Some(options(NEVER)), Some(options(IF_NEEDED))] {
        let mut raw = Raw::primitive("g", &[1.5f64, 2.5, 3.5]);
        raw.array.offset = 1;
        raw.array.length = 2;
        let address = raw.buffers[1] as usize + 8;
        let mut error = new_error();
        let o_ptr = o.as_ref().map_or(ptr::null(), |o| o as *const _);
        // SAFETY: valid structs; NULL options are the defaults.
        let t = unsafe {
            arrow_dlpack_export_with(raw.array_ptr(), raw.schema_ptr(), o_ptr, &mut error)
        };
        let seen = take(t);
        assert_eq!(
            (seen.data, seen.flags),
            (address, DLPACK_FLAG_BITMASK_READ_ONLY)
        );
        assert_eq!(seen.bytes, bytes(&[2.5f64, 3.5]));
        assert_eq!(raw.release_count(), 1);
    }
    let _ = address;
}

#[test]
fn always_gives_a_private_writable_copy_and_releases_the_array_at_once() {
    let mut raw = Raw::primitive("i", &[1i32, 2, 3]);
    let shared = raw.buffers[1] as usize;
    let seen = export_with(&mut raw, &options(ALWAYS)).unwrap();
    assert_ne!(seen.data, shared, "a copy");
    assert_eq!(seen.data % 64, 0, "64-byte aligned");
    assert_eq!(
        seen.flags, DLPACK_FLAG_BITMASK_IS_COPIED,
        "writable: no READ_ONLY"
    );
    assert_eq!(seen.bytes, bytes(&[1i32, 2, 3]));
    assert_eq!(raw.release_count(), 1, "released by the copy, once");
}

#[test]
fn booleans_unpack_at_any_bit_offset_only_where_a_copy_is_allowed() {
    // Bits 0b1011_0110 0b01: from offset 3, length 7 -> 0 1 1 0 1 0 0... (LSB first)
    let mut raw = Raw::new("b", 16, vec![None, Some(vec![0b1011_0110, 0b0000_0001])]);
    raw.array.offset = 3;
    raw.array.length = 7;
    refused(
        &mut raw,
        &options(NEVER),
        Status::ARROW_DLPACK_NEEDS_COPY,
        "unpacking boolean bits",
    );
    refused(
        &mut raw,
        &options(NEVER),
        Status::ARROW_DLPACK_NEEDS_COPY,
        "ARROW_DLPACK_COPY_IF_NEEDED",
    );
    let seen = export_with(&mut raw, &options(IF_NEEDED)).unwrap();
    assert_eq!(seen.dtype, dl(K_DL_BOOL, 8));
    assert_eq!(seen.bytes, vec![0, 1, 1, 0, 1, 1, 0]);
    assert_eq!(seen.flags, DLPACK_FLAG_BITMASK_IS_COPIED);
    // The plain export still names the type, as before.
    let mut raw = Raw::new("b", 8, vec![None, Some(vec![1])]);
    let mut error = new_error();
    // SAFETY: valid structs.
    let t = unsafe { arrow_dlpack_export_versioned(raw.array_ptr(), raw.schema_ptr(), &mut error) };
    assert!(t.is_null());
    assert_eq!(error.status, Status::ARROW_DLPACK_UNSUPPORTED_TYPE);
    assert!(message(&error).contains("boolean: bit-packed, needs a copy"));
}

#[test]
fn nulls_are_filled_with_an_exact_value_and_masked() {
    let make = || {
        let mut raw = Raw::primitive("i", &[10i32, 11, 12, 13, 14]);
        raw.set_validity(&[true, false, true, true, false], 2);
        raw
    };
    let mut o = options(IF_NEEDED);
    refused(
        &mut make(),
        &o,
        Status::ARROW_DLPACK_HAS_NULLS,
        "set options.fill_nulls",
    );
    o.fill_nulls = 1;
    o.fill_value = -1.0;
    let mut never = o;
    never.copy = NEVER;
    refused(
        &mut make(),
        &never,
        Status::ARROW_DLPACK_NEEDS_COPY,
        "filling nulls",
    );
    for bad in [0.5, f64::NAN, 3e9] {
        o.fill_value = bad;
        refused(
            &mut make(),
            &o,
            Status::ARROW_DLPACK_INVALID_ARGUMENT,
            "cannot be held exactly by",
        );
    }
    o.fill_value = -1.0;
    let mut validity: *mut DLManagedTensorVersioned = ptr::null_mut();
    o.validity = &mut validity;
    let mut raw = make();
    let seen = export_with(&mut raw, &o).unwrap();
    assert_eq!(seen.bytes, bytes(&[10i32, -1, 12, 13, -1]));
    let mask = take(validity);
    assert_eq!((mask.dtype, mask.shape), (dl(K_DL_BOOL, 8), vec![5]));
    assert_eq!(mask.bytes, vec![1, 0, 1, 1, 0]);
    assert_eq!(mask.flags, DLPACK_FLAG_BITMASK_IS_COPIED);
    // Without nulls, a validity mask of ones beside a shared tensor.
    let mut raw = Raw::primitive("i", &[1i32, 2]);
    let mut o = options(NEVER);
    let mut validity: *mut DLManagedTensorVersioned = ptr::null_mut();
    o.validity = &mut validity;
    let seen = export_with(&mut raw, &o).unwrap();
    assert_eq!(seen.flags, DLPACK_FLAG_BITMASK_READ_ONLY);
    assert_eq!(take(validity).bytes, vec![1, 1]);
}

#[test]
fn nulls_of_a_list_level_fill_whole_rows() {
    let leaf = Raw::primitive("s", &[1i16, 2, 3, 4, 5, 6]);
    let mut raw = Raw::fixed_size_list(2, 3, leaf);
    raw.set_validity(&[true, false, true], 1);
    raw.child(0)
        .set_validity(&[true, true, true, true, false, true], 1);
    let mut o = options(IF_NEEDED);
    o.fill_nulls = 1;
    o.fill_value = 0.0;
    let mut validity: *mut DLManagedTensorVersioned = ptr::null_mut();
    o.validity = &mut validity;
    let seen = export_with(&mut raw, &o).unwrap();
    assert_eq!(seen.shape, vec![3, 2]);
    assert_eq!(seen.bytes, bytes(&[1i16, 2, 0, 0, 0, 6]));
    assert_eq!(take(validity).bytes, vec![1, 1, 0, 0, 0, 1]);
}

#[test]
fn dtypes_convert_as_numpy_astype() {
    let mut o = options(IF_NEEDED);
    o.dtype = dl(K_DL_INT, 32);
    let seen = export_with(&mut Raw::primitive("g", &[-2.7f64, 2.7, 1e3]), &o).unwrap();
    assert_eq!(seen.bytes, bytes(&[-2i32, 2, 1000]));
    o.dtype = dl(K_DL_BOOL, 8);
    let seen = export_with(&mut Raw::primitive("c", &[0i8, -3, 4]), &o).unwrap();
    assert_eq!(seen.bytes, vec![0, 1, 1]);
    // The natural dtype asked for explicitly is no conversion: shared.
    o.copy = NEVER;
    o.dtype = dl(K_DL_FLOAT, 64);
    let seen = export_with(&mut Raw::primitive("g", &[1.0f64]), &o).unwrap();
    assert_eq!(seen.flags, DLPACK_FLAG_BITMASK_READ_ONLY);
    o.dtype = dl(K_DL_FLOAT, 32);
    refused(
        &mut Raw::primitive("g", &[1.0f64]),
        &o,
        Status::ARROW_DLPACK_NEEDS_COPY,
        "float64 to float32",
    );
    o.dtype = dl(K_DL_COMPLEX, 64);
    refused(
        &mut Raw::primitive("g", &[1.0f64]),
        &o,
        Status::ARROW_DLPACK_UNSUPPORTED_TYPE,
        "options.dtype",
    );
}

#[test]
fn temporal_types_share_their_integer_storage_never_copied() {
    let mut raw = Raw::primitive("tdD", &[18000i32, 18001]);
    let address = raw.buffers[1] as usize;
    let mut o = options(NEVER);
    refused(
        &mut raw,
        &o,
        Status::ARROW_DLPACK_UNSUPPORTED_TYPE,
        "date32",
    );
    o.temporal_as_integer = 1;
    let seen = export_with(&mut raw, &o).unwrap();
    assert_eq!((seen.data, seen.dtype), (address, dl(K_DL_INT, 32)));
    let mut raw = Raw::primitive("tsu:UTC", &[1i64, 2]);
    let seen = export_with(&mut raw, &o).unwrap();
    assert_eq!(
        (seen.dtype, seen.flags),
        (dl(K_DL_INT, 64), DLPACK_FLAG_BITMASK_READ_ONLY)
    );
}

#[test]
fn bad_options_are_invalid_arguments_and_change_nothing() {
    type Spoil = fn(&mut ArrowDlpackExportOptions);
    let cases: [(Spoil, &str); 5] = [
        (|o| o.copy = 3, "options.copy is 3"),
        (|o| o.order = -1, "options.order is -1"),
        (|o| o.fill_nulls = 2, "options.fill_nulls is 2"),
        (
            |o| o.temporal_as_integer = 7,
            "options.temporal_as_integer is 7",
        ),
        (|o| o.reserved[2] = 1, "options.reserved[2] is 1"),
    ];
    for (spoil, needle) in cases {
        let mut o = options(IF_NEEDED);
        spoil(&mut o);
        refused(
            &mut Raw::primitive("i", &[1i32]),
            &o,
            Status::ARROW_DLPACK_INVALID_ARGUMENT,
            needle,
        );
    }
}

// ---- streams ----------------------------------------------------------------

fn export_stream(me: &mut Stream, o: &ArrowDlpackExportOptions) -> Result<Seen, (Status, String)> {
    let (t, error) = common::run_stream(me, o);
    let released = |me: &Stream| me.chunks.iter().map(Raw::release_count).sum::<usize>();
    if t.is_null() {
        assert_eq!(released(me), me.next, "every chunk read is released once");
        return Err((error.status, message(&error)));
    }
    let seen = take(t); // a shared chunk is released with the tensor
    assert_eq!(released(me), me.chunks.len(), "every chunk released once");
    Ok(seen)
}

fn stream_of(chunks: Vec<Raw>) -> Stream {
    Stream {
        schema: Raw::primitive("f", &[0f32; 0]),
        chunks,
        next: 0,
        released: false,
        fail_at: None,
    }
}

#[test]
fn one_chunk_is_shared_several_are_concatenated_none_is_empty() {
    let chunk = Raw::primitive("f", &[1f32, 2.0]);
    let address = chunk.buffers[1] as usize;
    let seen = export_stream(&mut stream_of(vec![chunk]), &options(NEVER)).unwrap();
    assert_eq!(
        (seen.data, seen.flags),
        (address, DLPACK_FLAG_BITMASK_READ_ONLY)
    );
    let chunks = || {
        vec![
            Raw::primitive("f", &[1f32, 2.0]),
            Raw::primitive("f", &[0f32; 0]),
            Raw::primitive("f", &[3f32]),
        ]
    };
    let (s, m) = export_stream(&mut stream_of(chunks()), &options(NEVER)).unwrap_err();
    assert_eq!(s, Status::ARROW_DLPACK_NEEDS_COPY);
    assert!(m.contains("concatenating the chunks"), "{m}");
    let seen = export_stream(&mut stream_of(chunks()), &options(IF_NEEDED)).unwrap();
    assert_eq!(
        (seen.shape, seen.bytes),
        (vec![3], bytes(&[1f32, 2.0, 3.0]))
    );
    let seen = export_stream(&mut stream_of(vec![]), &options(NEVER)).unwrap();
    assert_eq!((seen.shape, seen.data), (vec![0], 0));
}

#[test]
fn n_d_chunks_concatenate_along_the_first_dimension() {
    let list = |values: &[i16]| {
        Raw::fixed_size_list(2, values.len() as i64 / 2, Raw::primitive("s", values))
    };
    let mut me = stream_of(vec![list(&[1, 2, 3, 4]), list(&[5, 6])]);
    me.schema = list(&[]);
    let seen = export_stream(&mut me, &options(IF_NEEDED)).unwrap();
    assert_eq!((seen.shape, seen.strides), (vec![3, 2], vec![2, 1]));
    assert_eq!(seen.bytes, bytes(&[1i16, 2, 3, 4, 5, 6]));
    let mut empty = stream_of(vec![]);
    empty.schema = list(&[]);
    let seen = export_stream(&mut empty, &options(NEVER)).unwrap();
    assert_eq!(seen.shape, vec![0, 2]);
}

#[test]
fn a_chunk_unlike_the_schema_or_a_failing_stream_is_named() {
    let mut me = stream_of(vec![
        Raw::primitive("f", &[1f32]),
        Raw::primitive("l", &[1i64]),
    ]);
    me.chunks[1].array.n_buffers = 3;
    let (s, m) = export_stream(&mut me, &options(IF_NEEDED)).unwrap_err();
    assert_eq!(s, Status::ARROW_DLPACK_INVALID_ARROW);
    assert!(m.starts_with("chunk 1: array.n_buffers is 3"), "{m}");
    let mut me = stream_of(vec![
        Raw::primitive("f", &[1f32]),
        Raw::primitive("f", &[2f32]),
    ]);
    me.fail_at = Some(1);
    let (s, m) = export_stream(&mut me, &options(IF_NEEDED)).unwrap_err();
    assert_eq!(s, Status::ARROW_DLPACK_INVALID_ARROW);
    assert!(
        m.contains("chunk 1: the stream's get_next failed with error 5: the producer broke"),
        "{m}"
    );
}

// ---- import -----------------------------------------------------------------

struct Tensor {
    storage: Vec<u64>,
    shape: Vec<i64>,
    strides: Vec<i64>,
    managed: Box<DLManagedTensorVersioned>,
    /// Shared with the deleter (an `Arc`: moving the tensor around does
    /// not invalidate the deleter's pointer to it).
    deletes: Arc<AtomicUsize>,
}

unsafe extern "C" fn count_delete(t: *mut DLManagedTensorVersioned) {
    // SAFETY: manager_ctx is the test's counter, alive with the tensor.
    unsafe { (*(*t).manager_ctx.cast::<AtomicUsize>()).fetch_add(1, Ordering::SeqCst) };
}

fn tensor(
    dtype: DLDataType,
    values: &[u8],
    shape: &[i64],
    strides: &[i64],
    offset: usize,
) -> Tensor {
    let mut storage = vec![0u64; values.len().div_ceil(8) + 1];
    // SAFETY: room for the bytes.
    unsafe { ptr::copy_nonoverlapping(values.as_ptr(), storage.as_mut_ptr().cast(), values.len()) };
    let mut t = Tensor {
        storage,
        shape: shape.to_vec(),
        strides: strides.to_vec(),
        managed: Box::new(DLManagedTensorVersioned {
            version: DLPackVersion { major: 1, minor: 3 },
            manager_ctx: ptr::null_mut(),
            deleter: Some(count_delete),
            flags: 0,
            dl_tensor: DLTensor {
                data: ptr::null_mut(),
                device: DLDevice {
                    device_type: K_DL_CPU,
                    device_id: 0,
                },
                ndim: shape.len() as i32,
                dtype,
                shape: ptr::null_mut(),
                strides: ptr::null_mut(),
                byte_offset: offset as u64,
            },
        }),
        deletes: Arc::new(AtomicUsize::new(0)),
    };
    t.managed.manager_ctx = Arc::as_ptr(&t.deletes).cast_mut().cast();
    t.managed.dl_tensor.data = t.storage.as_mut_ptr().cast();
    t.managed.dl_tensor.shape = t.shape.as_mut_ptr();
    t.managed.dl_tensor.strides = t.strides.as_mut_ptr();
    t
}

/// Imports with `copy`; the Arrow array's format, length, values buffer
/// bytes (`n` of them) and the schema's format, then releases both.
fn import_with(
    t: &mut Tensor,
    copy: i32,
    n: usize,
) -> Result<(String, i64, Vec<u8>), (Status, String)> {
    let o = common::import_options(copy, 0, ptr::null());
    let before = struct_bytes(&*t.managed);
    // SAFETY: a valid tensor.
    let (mut array, mut schema) = match unsafe { common::import_raw(&mut *t.managed, &o) } {
        Ok(out) => out,
        Err(e) => {
            assert_eq!(
                struct_bytes(&*t.managed),
                before,
                "a failure leaves the tensor untouched"
            );
            assert_eq!(t.deletes.load(Ordering::SeqCst), 0);
            return Err(e);
        }
    };
    // SAFETY: the library's structs.
    let out = unsafe {
        let format = CStr::from_ptr(schema.format).to_str().unwrap().to_string();
        let values = match array.n_children {
            0 => &array,
            _ => &**array.children,
        };
        let data = *values.buffers.add(1);
        (
            format,
            array.length,
            std::slice::from_raw_parts(data.cast::<u8>(), n).to_vec(),
        )
    };
    // SAFETY: released once each.
    unsafe {
        (array.release.unwrap())(&mut array);
        (schema.release.unwrap())(&mut schema);
    }
    assert_eq!(
        t.deletes.load(Ordering::SeqCst),
        1,
        "the tensor is deleted exactly once"
    );
    Ok(out)
}

#[test]
fn kdlbool_tensors_import_as_packed_booleans() {
    let mut t = tensor(
        dl(K_DL_BOOL, 8),
        &[1, 0, 1, 1, 0, 0, 0, 0, 1],
        &[9],
        &[1],
        0,
    );
    let (s, m) = import_with(&mut t, NEVER, 0).unwrap_err();
    assert_eq!(s, Status::ARROW_DLPACK_NEEDS_COPY);
    assert!(m.contains("packing kDLBool"), "{m}");
    let (format, length, bits) = import_with(&mut t, IF_NEEDED, 2).unwrap();
    assert_eq!((format.as_str(), length), ("b", 9));
    assert_eq!(bits, vec![0b0000_1101, 0b0000_0001]);
}

#[test]
fn strides_arrow_cannot_share_are_gathered_row_major() {
    let values = bytes(&[0i32, 1, 2, 3, 4, 5]);
    // Reversed 1-D, starting at the last element.
    let mut t = tensor(dl(K_DL_INT, 32), &values, &[6], &[-1], 20);
    let (s, m) = import_with(&mut t, NEVER, 0).unwrap_err();
    assert_eq!(s, Status::ARROW_DLPACK_NEEDS_COPY);
    assert!(m.contains("tensor strides [-1]"), "{m}");
    let (format, _, got) = import_with(&mut t, IF_NEEDED, 24).unwrap();
    assert_eq!((format.as_str(), got), ("i", bytes(&[5i32, 4, 3, 2, 1, 0])));
    // Fortran order: a 2x3 stored column-major.
    let mut t = tensor(dl(K_DL_INT, 32), &values, &[2, 3], &[1, 2], 0);
    let (format, length, got) = import_with(&mut t, IF_NEEDED, 24).unwrap();
    assert_eq!((format.as_str(), length), ("+w:3", 2));
    assert_eq!(got, bytes(&[0i32, 2, 4, 1, 3, 5]));
    // Dense tensors are shared under IF_NEEDED, copied under ALWAYS.
    let mut t = tensor(dl(K_DL_INT, 32), &values, &[6], &[1], 0);
    let (_, _, got) = import_with(&mut t, ALWAYS, 24).unwrap();
    assert_eq!(got, values);
}

#[test]
fn import_options_are_validated() {
    let mut t = tensor(dl(K_DL_INT, 32), &bytes(&[1i32]), &[1], &[1], 0);
    for (o, needle) in [
        (
            ArrowDlpackImportOptions {
                reserved: [0, 0, 9],
                ..common::import_options(0, 0, ptr::null())
            },
            "options.reserved[2] is 9",
        ),
        (
            ArrowDlpackImportOptions {
                reserved0: 3,
                ..common::import_options(0, 0, ptr::null())
            },
            "options.reserved0 is 3",
        ),
        (
            ArrowDlpackImportOptions {
                threads: -1,
                ..common::import_options(0, 0, ptr::null())
            },
            "options.threads is -1",
        ),
    ] {
        // SAFETY: a valid tensor.
        let (status, m) = unsafe { common::import_raw(&mut *t.managed, &o) }.unwrap_err();
        assert_eq!(status, Status::ARROW_DLPACK_INVALID_ARGUMENT);
        assert!(m.contains(needle), "{m}");
        assert_eq!(t.deletes.load(Ordering::SeqCst), 0);
    }
}

// ---- the mask alone -----------------------------------------------------------

/// The mask `arrow_dlpack_export_with` makes beside a copy (nulls filled
/// with 0), and the mask `arrow_dlpack_export_validity` makes alone of a
/// twin of the same array: the same tensor, and the array only read.
fn masks(make: impl Fn() -> Raw) -> (Seen, Seen) {
    let mut with = make();
    let mut o = options(IF_NEEDED);
    o.fill_nulls = 1;
    let mut mask = ptr::null_mut();
    o.validity = &mut mask;
    export_with(&mut with, &o).unwrap();
    let with = take(mask);
    let mut alone = make();
    let before = alone.array_bytes();
    let mut error = new_error();
    // SAFETY: valid structs; the array is only read.
    let t = unsafe {
        arrow_dlpack_export_validity(
            alone.array_ptr(),
            alone.schema_ptr(),
            ptr::null(),
            &mut error,
        )
    };
    assert!(!t.is_null(), "{}", message(&error));
    assert_eq!(alone.array_bytes(), before, "the array is only read");
    assert_eq!(alone.release_count(), 0);
    let alone = take(t);
    assert_eq!(
        alone.flags, DLPACK_FLAG_BITMASK_IS_COPIED,
        "a fresh, writable mask"
    );
    assert_eq!(alone.dtype, dl(K_DL_BOOL, 8));
    (with, alone)
}

#[test]
fn the_mask_alone_is_the_mask_of_the_copy_and_copies_no_value() {
    let cases: Vec<Box<dyn Fn() -> Raw>> = vec![
        Box::new(|| {
            let mut raw = Raw::primitive("i", &[1i32, 2, 3, 4]);
            raw.set_validity(&[true, false, true, false], 2);
            raw
        }),
        Box::new(|| {
            // Nulls at the list level and in the child: whole rows, and
            // single elements.
            let mut child = Raw::primitive("s", &[1i16, 2, 3, 4, 5, 6]);
            child.set_validity(&[true, true, true, true, false, true], -1);
            let mut list = Raw::fixed_size_list(2, 3, child);
            list.set_validity(&[false, true, true], 1);
            list
        }),
        Box::new(|| {
            let mut y = Raw::primitive("g", &[1.0f64, 2.0, 3.0]);
            y.set_validity(&[true, false, true], 1);
            let mut batch = Raw::struct_of(
                3,
                vec![Raw::primitive("g", &[4.0f64, 5.0, 6.0]), y],
                &[c"x", c"y"],
            );
            batch.set_validity(&[true, true, false], 1);
            batch
        }),
        Box::new(|| Raw::primitive("f", &[1f32, 2.0])),
    ];
    for (i, make) in cases.iter().enumerate() {
        let (with, alone) = masks(make);
        assert_eq!(with.shape, alone.shape, "case {i}");
        assert_eq!(with.strides, alone.strides, "case {i}");
        assert_eq!(with.bytes, alone.bytes, "case {i}");
    }
    // The batch: row-major, its null row and its column's null cleared.
    let (_, alone) = masks(&cases[2]);
    assert_eq!((alone.shape, alone.strides), (vec![3, 2], vec![2, 1]));
    assert_eq!(alone.bytes, vec![1, 1, 1, 0, 0, 0]);
}

#[test]
fn the_mask_alone_takes_the_options_and_refuses_what_export_with_refuses() {
    let mut raw = Raw::primitive("u", &[0u8; 4]);
    let mut error = new_error();
    // SAFETY: valid structs.
    let t = unsafe {
        arrow_dlpack_export_validity(raw.array_ptr(), raw.schema_ptr(), ptr::null(), &mut error)
    };
    assert!(t.is_null());
    assert_eq!(error.status, Status::ARROW_DLPACK_UNSUPPORTED_TYPE);
    let mut o = options(NEVER);
    o.threads = -2;
    let mut raw = Raw::primitive("i", &[1i32]);
    // SAFETY: valid structs.
    let t =
        unsafe { arrow_dlpack_export_validity(raw.array_ptr(), raw.schema_ptr(), &o, &mut error) };
    assert!(t.is_null());
    assert_eq!(error.status, Status::ARROW_DLPACK_INVALID_ARGUMENT);
    assert!(
        message(&error).contains("options.threads is -2"),
        "{}",
        message(&error)
    );
    // A stream: read to its end, the chunks released, the stream not.
    let mut me = stream_of(vec![
        Raw::primitive("f", &[1f32]),
        Raw::primitive("f", &[2f32, 3.0]),
    ]);
    me.chunks[1].set_validity(&[false, true], 1);
    let mut producer = common::producer(&me.schema, &mut me.chunks);
    let mut stream = producer.c_stream();
    // SAFETY: a valid stream.
    let t = unsafe { arrow_dlpack_export_validity_stream(&mut stream, ptr::null(), &mut error) };
    assert!(!t.is_null(), "{}", message(&error));
    assert!(!producer.released, "the stream is borrowed");
    assert_eq!(producer.next, 2, "read to its end");
    assert_eq!(
        me.chunks.iter().map(Raw::release_count).sum::<usize>(),
        2,
        "each chunk released once"
    );
    let seen = take(t);
    assert_eq!((seen.shape, seen.bytes), (vec![3], vec![1, 0, 1]));
}
