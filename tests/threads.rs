//! Copies split over threads write the same bytes as on one: random tables
//! (widths, dtypes, conversions, nulls filled, slices, both orders), chunk
//! concatenation, padded and jagged copies, and the import's gathers and
//! column copies, each at 1 and at 2 to 8 threads; and many threads
//! exporting at once through the shared pool.
//!
//! Sizes are above the split's threshold (1 MiB written), so that the
//! threads do run. Not under Miri (far too slow there; Miri covers the
//! single-thread path through the other tests), and ThreadSanitizer runs
//! this file (scripts/test.sh, stage tsan).

mod common;

use std::ffi::CStr;
use std::ptr;

use arrow_dlpack::Status;
use arrow_dlpack::abi::*;
use arrow_dlpack::capi::*;
use common::{Raw, Seen, message, new_error, take};
use proptest::prelude::*;

const IF_NEEDED: i32 = ArrowDlpackCopy::ARROW_DLPACK_COPY_IF_NEEDED as i32;
const ALWAYS: i32 = ArrowDlpackCopy::ARROW_DLPACK_COPY_ALWAYS as i32;

/// Deterministic pseudo-random bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// The Arrow formats of the columns, with their widths.
const FORMATS: [(&str, usize); 6] = [("c", 1), ("S", 2), ("i", 4), ("f", 4), ("l", 8), ("g", 8)];

/// A column of `rows` rows (plus `offset` before them) of format `f`,
/// random values, nulls when `nulls`.
fn column(f: usize, rows: usize, offset: usize, nulls: bool, seed: u64) -> Raw {
    let (format, width) = FORMATS[f];
    let total = rows + offset;
    let mut bytes = noise(total * width, seed);
    if format == "f" || format == "g" {
        // Finite floats (NaN bit patterns compare unequal as values, not
        // as bytes; the check is on bytes, but conversions to integers of
        // NaN are a value question the other tests settle).
        for chunk in bytes.chunks_mut(width) {
            chunk[width - 1] &= 0x3f;
        }
    }
    let mut raw = Raw::new(format, rows as i64, vec![None, Some(bytes)]);
    raw.array.offset = offset as i64;
    if nulls {
        let bits: Vec<bool> = noise(total, seed ^ 0xabc)
            .iter()
            .map(|b| b % 7 != 0)
            .collect();
        raw.set_validity(&bits, -1);
    }
    raw
}

/// Column names `c0`, `c1`, ...: made once and kept in a static (so
/// that LeakSanitizer sees them reachable).
fn names(n: usize) -> Vec<&'static CStr> {
    static NAMES: std::sync::OnceLock<Vec<std::ffi::CString>> = std::sync::OnceLock::new();
    let all = NAMES.get_or_init(|| {
        (0..256)
            .map(|j| std::ffi::CString::new(format!("c{j}")).unwrap())
            .collect()
    });
    all[..n].iter().map(|c| c.as_c_str()).collect()
}

/// [`take`], then the library's kept allocation (it keeps the last large
/// copy's block for the next copy of about that size) filled with 0xA5 by
/// a copy of that many bytes: a byte that the next copy of this size fails
/// to write then differs from the one-thread result, instead of holding
/// the bytes of the copy before it.
fn take_poisoned(t: *mut DLManagedTensorVersioned) -> Seen {
    let seen = take(t);
    let n = seen.bytes.len();
    let mut raw = Raw::new("C", n as i64, vec![None, Some(vec![0xA5; n])]);
    let o = ArrowDlpackExportOptions {
        copy: ALWAYS,
        threads: 1,
        ..Default::default()
    };
    let mut error = new_error();
    // SAFETY: valid structs; the poison tensor is deleted once, unread.
    unsafe {
        let p = arrow_dlpack_export_with(raw.array_ptr(), raw.schema_ptr(), &o, &mut error);
        assert!(!p.is_null(), "{}", message(&error));
        ((*p).deleter.expect("a deleter"))(p);
    }
    seen
}

/// One export of `make()`'s array under `o`: the tensor's bytes, or the
/// refusal.
fn export(mut raw: Raw, o: &ArrowDlpackExportOptions) -> Result<Seen, String> {
    let mut error = new_error();
    // SAFETY: valid structs.
    let t = unsafe { arrow_dlpack_export_with(raw.array_ptr(), raw.schema_ptr(), o, &mut error) };
    match t.is_null() {
        true => Err(message(&error)),
        false => Ok(take_poisoned(t)),
    }
}

/// The bytes of `make()` exported on one thread and on each of 2 to 8.
fn same_on_every_count(
    make: impl Fn() -> Raw,
    o: ArrowDlpackExportOptions,
) -> Result<(), TestCaseError> {
    let one = export(make(), &ArrowDlpackExportOptions { threads: 1, ..o });
    for threads in 2..=8 {
        let many = export(make(), &ArrowDlpackExportOptions { threads, ..o });
        match (&one, &many) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(&a.shape, &b.shape);
                prop_assert!(a.bytes == b.bytes, "bytes differ on {} threads", threads);
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            _ => prop_assert!(
                false,
                "{:?} on 1 thread, {:?} on {}",
                one.is_ok(),
                many.is_ok(),
                threads
            ),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    #[cfg_attr(miri, ignore)]
    fn tables_are_the_same_bytes_on_any_thread_count(
        formats in prop::collection::vec(0..FORMATS.len(), 1..40),
        bytes_out in 1usize << 20..3 << 20,
        offset in 0usize..70,
        nulls in prop::collection::vec(any::<bool>(), 40),
        order in 1i32..=2,
        target in 0usize..3,
        seed in any::<u64>(),
    ) {
        let columns = formats.len();
        let rows = bytes_out / (columns * 8);
        let make = || {
            let children = formats
                .iter()
                .enumerate()
                .map(|(j, &f)| column(f, rows, offset, nulls[j], seed + j as u64))
                .collect();
            Raw::struct_of(rows as i64, children, &names(columns))
        };
        let dtype = [
            DLDataType { code: 0, bits: 0, lanes: 0 },
            DLDataType { code: K_DL_FLOAT, bits: 64, lanes: 1 },
            DLDataType { code: K_DL_FLOAT, bits: 32, lanes: 1 },
        ][target];
        // Mixed columns need a common dtype: float64 when none is given.
        let dtype = match (target, formats.iter().all(|&f| f == formats[0])) {
            (0, false) => DLDataType { code: K_DL_FLOAT, bits: 64, lanes: 1 },
            _ => dtype,
        };
        let o = ArrowDlpackExportOptions {
            copy: IF_NEEDED,
            order,
            fill_nulls: 1,
            fill_value: -1.0,
            dtype,
            ..Default::default()
        };
        same_on_every_count(make, o)?;
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn a_column_with_nulls_converted_is_the_same_on_any_thread_count(
        f in 0..FORMATS.len(),
        rows in 300_000usize..700_000,
        offset in 0usize..70,
        seed in any::<u64>(),
    ) {
        let make = || column(f, rows, offset, true, seed);
        let o = ArrowDlpackExportOptions {
            copy: ALWAYS,
            fill_nulls: 1,
            dtype: DLDataType { code: K_DL_FLOAT, bits: 64, lanes: 1 },
            ..Default::default()
        };
        same_on_every_count(make, o)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// A run-end encoded column decoded by the copy straight into the
    /// tensor, each thread from the run holding its first row: the bytes
    /// of a naive decode, on any thread count, converted or not.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn run_end_decoding_is_the_same_on_any_thread_count(
        runs in 1200usize..2400,
        offset in 0usize..50,
        seed in any::<u64>(),
        to_f32 in any::<bool>(),
    ) {
        // Run lengths 1..=255: about 128 rows a run, 1 to 3 MiB written
        // (above the split's threshold).
        let lengths: Vec<usize> = noise(runs, seed).iter().map(|&b| b as usize + 1).collect();
        let ends: Vec<i32> = lengths
            .iter()
            .scan(0, |end, &n| {
                *end += n as i32;
                Some(*end)
            })
            .collect();
        let total = *ends.last().unwrap() as usize;
        let offset = offset.min(total - 1);
        let values: Vec<f64> = (0..runs).map(|k| k as f64 + 0.5).collect();
        let make = || {
            let mut raw = Raw::run_end(total as i64, &ends, Raw::primitive("g", &values));
            (raw.array.offset, raw.array.length) = (offset as i64, (total - offset) as i64);
            raw
        };
        let mut o = common::export_options(IF_NEEDED);
        if to_f32 {
            o.dtype = DLDataType { code: K_DL_FLOAT, bits: 32, lanes: 1 };
        }
        same_on_every_count(make, o)?;
        let want: Vec<f64> = lengths
            .iter()
            .enumerate()
            .flat_map(|(k, &n)| std::iter::repeat_n(values[k], n))
            .skip(offset)
            .collect();
        let seen = export(make(), &o).unwrap();
        let got: Vec<f64> = match to_f32 {
            true => seen.bytes.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
            false => seen.bytes.chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
        };
        prop_assert!(got == want, "decoded rows differ");
    }
}

/// A `list<int32>` column of `rows` rows of 0 to 90 elements, some rows
/// null (over their elements), sliced by `offset`.
fn token_lists(rows: usize, offset: usize, seed: u64) -> Raw {
    let lengths = noise(rows + offset, seed);
    let mut offsets = vec![0i64];
    for &l in &lengths {
        offsets.push(offsets.last().unwrap() + (l % 91) as i64);
    }
    let total = *offsets.last().unwrap() as usize;
    let values: Vec<i32> = noise(total * 4, seed ^ 1)
        .chunks(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let mut raw = Raw::list(&offsets, false, Raw::primitive("i", &values));
    raw.array.offset = offset as i64;
    raw.array.length = rows as i64;
    let bits: Vec<bool> = lengths.iter().map(|b| b % 11 != 0).collect();
    raw.set_validity(&bits, -1);
    raw
}

#[test]
#[cfg_attr(miri, ignore)]
fn padded_and_jagged_copies_are_the_same_on_any_thread_count() {
    for (rows, offset, seed) in [(40_000, 0, 1), (33_333, 17, 2)] {
        let padded = |threads: i32, side: i32| {
            let mut raw = token_lists(rows, offset, seed);
            let mut mask = ptr::null_mut();
            let o = ArrowDlpackExportOptions {
                fill_nulls: 1,
                threads,
                validity: &mut mask,
                ..Default::default()
            };
            let padding = ArrowDlpackPadding {
                side,
                value: 7.0,
                ..Default::default()
            };
            let mut error = new_error();
            // SAFETY: valid structs.
            let t = unsafe {
                arrow_dlpack_export_padded(
                    raw.array_ptr(),
                    raw.schema_ptr(),
                    &o,
                    &padding,
                    &mut error,
                )
            };
            assert!(!t.is_null(), "{}", message(&error));
            (take_poisoned(t).bytes, take_poisoned(mask).bytes)
        };
        let jagged = |threads: i32| {
            let mut raw = token_lists(rows, offset, seed);
            let mut mask = ptr::null_mut();
            let o = ArrowDlpackExportOptions {
                copy: ALWAYS,
                fill_nulls: 1,
                threads,
                validity: &mut mask,
                ..Default::default()
            };
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
                    &o,
                    &mut out,
                    &mut error,
                )
            };
            assert_eq!(status, Status::ARROW_DLPACK_OK, "{}", message(&error));
            (
                take_poisoned(out.values).bytes,
                take_poisoned(out.offsets).bytes,
                take_poisoned(mask).bytes,
            )
        };
        for side in [0, 1] {
            let one = padded(1, side);
            for threads in [2, 3, 8] {
                assert!(
                    padded(threads, side) == one,
                    "padded, side {side}, {threads} threads"
                );
            }
        }
        let one = jagged(1);
        for threads in [2, 5, 8] {
            assert!(jagged(threads) == one, "jagged, {threads} threads");
        }
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn concatenated_chunks_are_the_same_on_any_thread_count() {
    let run = |threads: i32| {
        let chunks = (0..7)
            .map(|c| column(5, 40_000 + c * 1_001, c % 3, c % 2 == 0, c as u64))
            .collect();
        let mut me = common::Stream {
            schema: Raw::primitive("g", &[0f64; 0]),
            chunks,
            next: 0,
            released: false,
            fail_at: None,
        };
        let o = ArrowDlpackExportOptions {
            copy: IF_NEEDED,
            fill_nulls: 1,
            threads,
            ..Default::default()
        };
        let (t, error) = common::run_stream(&mut me, &o);
        assert!(!t.is_null(), "{}", message(&error));
        take_poisoned(t).bytes
    };
    let one = run(1);
    for threads in 2..=8 {
        assert!(run(threads) == one, "{threads} threads");
    }
}

/// A chunked table (a stream of record batches of 40 columns, some with
/// nulls, mixed dtypes converted) as a column-major matrix with its nulls
/// filled, and its validity mask: wide enough that the copy splits by
/// whole columns, each column's chunks written by one thread.
#[test]
#[cfg_attr(miri, ignore)]
fn chunked_tables_in_column_order_are_the_same_on_any_thread_count() {
    const COLUMNS: usize = 40;
    let batch = |c: usize, rows: usize| {
        let children = (0..COLUMNS)
            .map(|j| {
                let f = if j % 3 == 0 { 2 } else { 5 };
                column(f, rows, c % 2, j % 4 == 0, (c * COLUMNS + j) as u64)
            })
            .collect();
        Raw::struct_of(rows as i64, children, &names(COLUMNS))
    };
    let run = |threads: i32, validity: bool| {
        let mut me = common::Stream {
            schema: batch(0, 0),
            chunks: (0..3).map(|c| batch(c, 2_000 + c * 1_001)).collect(),
            next: 0,
            released: false,
            fail_at: None,
        };
        let o = ArrowDlpackExportOptions {
            copy: IF_NEEDED,
            order: 2,
            fill_nulls: 1,
            fill_value: -1.0,
            dtype: DLDataType {
                code: K_DL_FLOAT,
                bits: 64,
                lanes: 1,
            },
            threads,
            ..Default::default()
        };
        let (t, error) = match validity {
            false => common::run_stream(&mut me, &o),
            true => {
                let mut producer = common::producer(&me.schema, &mut me.chunks);
                let mut stream = producer.c_stream();
                let mut error = new_error();
                // SAFETY: a valid stream, read to its end here.
                let t = unsafe { arrow_dlpack_export_validity_stream(&mut stream, &o, &mut error) };
                (t, error)
            }
        };
        assert!(!t.is_null(), "{}", message(&error));
        let seen = take_poisoned(t);
        assert_eq!(seen.shape, [9_003, COLUMNS as i64]);
        seen.bytes
    };
    for validity in [false, true] {
        let one = run(1, validity);
        for threads in 2..=8 {
            assert!(
                run(threads, validity) == one,
                "{threads} threads, mask: {validity}"
            );
        }
    }
}

/// A `rows x columns` float64 tensor over `data`, with the given strides.
struct Tensor {
    shape: [i64; 2],
    strides: [i64; 2],
    managed: DLManagedTensorVersioned,
}

unsafe extern "C" fn no_delete(_: *mut DLManagedTensorVersioned) {}

fn tensor(data: &mut [f64], shape: [i64; 2], strides: [i64; 2]) -> Box<Tensor> {
    let mut t = Box::new(Tensor {
        shape,
        strides,
        managed: DLManagedTensorVersioned {
            version: DLPackVersion { major: 1, minor: 3 },
            manager_ctx: ptr::null_mut(),
            deleter: Some(no_delete),
            flags: 0,
            dl_tensor: DLTensor {
                data: data.as_mut_ptr().cast(),
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
                shape: ptr::null_mut(),
                strides: ptr::null_mut(),
                byte_offset: 0,
            },
        },
    });
    t.managed.dl_tensor.shape = t.shape.as_mut_ptr();
    t.managed.dl_tensor.strides = t.strides.as_mut_ptr();
    t
}

/// Every buffer of an imported array and its children, as bytes.
///
/// # Safety
/// A live array, released here.
unsafe fn buffers_of(mut a: ArrowArray, rows: usize) -> Vec<Vec<u8>> {
    // SAFETY: forwarded from the caller.
    unsafe {
        let mut out = Vec::new();
        let mut read = |a: &ArrowArray| {
            let data = *a.buffers.add(a.n_buffers as usize - 1);
            out.push(
                std::slice::from_raw_parts(data.cast::<u8>().add(a.offset as usize * 8), rows * 8)
                    .to_vec(),
            );
        };
        match a.n_children {
            0 => read(&a),
            n => (0..n as usize).for_each(|j| read(&**a.children.add(j))),
        }
        (a.release.unwrap())(&mut a);
        out
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn import_copies_are_the_same_on_any_thread_count() {
    let (rows, columns) = (100_000usize, 6usize);
    let mut data: Vec<f64> = (0..rows * columns).map(|i| i as f64 * 0.5).collect();
    let run = |threads: i32, as_columns: bool, data: &mut [f64]| {
        // A transposed view (column-major memory read as a row-major
        // [rows, columns]): gathered, or copied out column by column.
        let mut t = tensor(data, [rows as i64, columns as i64], [1, rows as i64]);
        let o = ArrowDlpackImportOptions {
            copy: IF_NEEDED,
            as_columns: as_columns as i32,
            threads,
            ..Default::default()
        };
        let mut a = std::mem::MaybeUninit::<ArrowArray>::uninit();
        let mut s = std::mem::MaybeUninit::<ArrowSchema>::uninit();
        let mut error = new_error();
        // SAFETY: a live tensor; writable out structs.
        let status = unsafe {
            arrow_dlpack_import_with(
                &mut t.managed,
                &o,
                a.as_mut_ptr(),
                s.as_mut_ptr(),
                &mut error,
            )
        };
        assert_eq!(status, Status::ARROW_DLPACK_OK, "{}", message(&error));
        // SAFETY: written on success.
        unsafe {
            let mut s = s.assume_init();
            (s.release.unwrap())(&mut s);
            let elements = if as_columns { rows } else { rows * columns };
            buffers_of(a.assume_init(), elements)
        }
    };
    for as_columns in [false, true] {
        let one = run(1, as_columns, &mut data);
        for threads in [2, 4, 8] {
            assert!(
                run(threads, as_columns, &mut data) == one,
                "as_columns {as_columns}, {threads} threads"
            );
        }
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn many_threads_exporting_at_once_share_the_pool() {
    // Each thread copies tables on the default count (the shared pool: one
    // copy has it, the others run on their own threads), and checks its
    // bytes against a copy on one thread.
    let make = |seed: u64| {
        let children = (0..4)
            .map(|j| column(5, 50_000, 3, j % 2 == 0, seed + j))
            .collect();
        Raw::struct_of(50_000, children, &names(4))
    };
    let options = || ArrowDlpackExportOptions {
        copy: IF_NEEDED,
        order: 1,
        fill_nulls: 1,
        ..Default::default()
    };
    std::thread::scope(|scope| {
        for k in 0..6u64 {
            scope.spawn(move || {
                let o = options();
                let expected =
                    export(make(k), &ArrowDlpackExportOptions { threads: 1, ..o }).unwrap();
                for _ in 0..8 {
                    let got = export(make(k), &o).unwrap();
                    assert!(got.bytes == expected.bytes, "thread {k}");
                }
            });
        }
    });
}
