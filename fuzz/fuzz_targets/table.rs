//! Fuzzes the export of struct arrays (record batches) as 2-D tensors:
//! struct trees with random children (numeric, boolean, utf8, nested
//! lists), lengths, offsets, validity at both levels, children laid end to
//! end in the arena or scattered, streams of several batches, and random
//! options (copy policy, order, fill, dtype, validity mask). Besides
//! plain columns: run-end encoded float64 columns (run ends mostly
//! increasing, sometimes not, over values with their own offset and
//! validity) and struct columns of one float64 field (the struct's own
//! offset and validity), whose field is the table's column `col{j}.v`.
//!
//! Checks, against a model computed here without the library: on failure
//! every struct is byte-for-byte untouched and nothing released; on
//! success the shape is `[rows, columns]`, a shared tensor (read-only)
//! addresses each child's own elements and is released exactly once by
//! its deleter, a copy (is-copied) holds each element converted (float64
//! targets are compared by value) in the order asked for, nulls filled, and
//! the validity mask says which were null.
#![no_main]

use std::ffi::{CString, c_void};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_dlpack::ArrowDlpackError;
use arrow_dlpack::abi::*;
use arrow_dlpack::capi::*;
use arrow_dlpack_testkit::Stream;
use libfuzzer_sys::fuzz_target;

const ARENA: usize = 1 << 15;
static RELEASES: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn release_array(array: *mut ArrowArray) {
    // SAFETY: a live array built below.
    unsafe { (*array).release = None };
    RELEASES.fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C" fn release_schema(schema: *mut ArrowSchema) {
    // SAFETY: a live schema built below.
    unsafe { (*schema).release = None };
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn small(&mut self, max: i64) -> i64 {
        match self.byte() {
            250 => -1,
            251 => i64::MAX,
            253 => -(self.byte() as i64) - 2,
            b => (b as i64) % (max + 1),
        }
    }
}

const FORMATS: [&str; 12] = ["c", "C", "s", "S", "i", "I", "l", "L", "f", "g", "b", "u"];

fn width_of(format: &str) -> usize {
    match format {
        "b" => 0,
        "c" | "C" => 1,
        "s" | "S" => 2,
        "i" | "I" | "f" => 4,
        _ => 8,
    }
}

/// One column: its structs and what they point at.
struct Column {
    format: CString,
    name: CString,
    buffers: Box<[*const c_void; 2]>,
    array: Box<ArrowArray>,
    schema: Box<ArrowSchema>,
    /// A run-end encoded (`"r"`) or struct (`"n"`) column's children.
    inner: Option<Box<Inner>>,
}

/// The children of a run-end encoded column (run ends, values) or of a
/// struct column (its one field, `values`).
struct Inner {
    ends: Box<[i32]>,
    ends_buffers: Box<[*const c_void; 2]>,
    ends_array: Box<ArrowArray>,
    ends_schema: Box<ArrowSchema>,
    values: Column,
    arrays: Vec<*mut ArrowArray>,
    schemas: Vec<*mut ArrowSchema>,
}

fn array(length: i64, offset: i64, null_count: i64, n_buffers: i64) -> Box<ArrowArray> {
    Box::new(ArrowArray {
        length,
        null_count,
        offset,
        n_buffers,
        n_children: 0,
        buffers: ptr::null_mut(),
        children: ptr::null_mut(),
        dictionary: ptr::null_mut(),
        release: Some(release_array),
        private_data: ptr::null_mut(),
    })
}

fn schema(format: *const std::ffi::c_char, name: *const std::ffi::c_char) -> Box<ArrowSchema> {
    Box::new(ArrowSchema {
        format,
        name,
        metadata: ptr::null(),
        flags: 0,
        n_children: 0,
        children: ptr::null_mut(),
        dictionary: ptr::null_mut(),
        release: Some(release_schema),
        private_data: ptr::null_mut(),
    })
}

/// Makes `c` (a `"g"` column as built) the values of a run-end encoded
/// column (`"r"`) or the field `v` of a struct column (`"n"`) of
/// `length` rows from `offset`, with `validity` for a struct.
fn wrap(
    input: &mut Input,
    mut c: Column,
    kind: &str,
    length: i64,
    offset: i64,
    validity: *const c_void,
) -> Column {
    let runs = (input.byte() % 9) as usize;
    let mut end = 0i32;
    let ends: Box<[i32]> = (0..runs)
        .map(|_| {
            // Mostly increasing by 1 to 6, sometimes anything.
            end = match input.byte() % 16 {
                0 => input.small(60) as i32,
                b => end.saturating_add(i32::from(b % 6) + 1),
            };
            end
        })
        .collect();
    let mut inner = Box::new(Inner {
        ends_buffers: Box::new([ptr::null(), ends.as_ptr().cast()]),
        ends,
        ends_array: array(runs as i64, 0, 0, 2),
        ends_schema: schema(c"i".as_ptr(), c"run_ends".as_ptr()),
        values: Column {
            format: CString::new("g").unwrap(),
            name: CString::new("v").unwrap(),
            buffers: c.buffers.clone(),
            array: array(0, 0, 0, 2),
            schema: schema(ptr::null(), ptr::null()),
            inner: None,
        },
        arrays: Vec::new(),
        schemas: Vec::new(),
    });
    // The built column's array becomes the values (or the field).
    std::mem::swap(&mut inner.values.array, &mut c.array);
    inner.values.schema.format = inner.values.format.as_ptr();
    inner.values.schema.name = inner.values.name.as_ptr();
    inner.values.array.buffers = inner.values.buffers.as_mut_ptr();
    inner.ends_array.buffers = inner.ends_buffers.as_mut_ptr();
    if kind == "r" {
        inner.arrays = vec![&mut *inner.ends_array, &mut *inner.values.array];
        inner.schemas = vec![&mut *inner.ends_schema, &mut *inner.values.schema];
        c.format = CString::new("+r").unwrap();
        c.array = array(length, offset, 0, 0);
        c.array.n_children = 2;
    } else {
        inner.arrays = vec![&mut *inner.values.array];
        inner.schemas = vec![&mut *inner.values.schema];
        c.format = CString::new("+s").unwrap();
        c.buffers = Box::new([validity, ptr::null()]);
        let null_count = if validity.is_null() { 0 } else { -1 };
        c.array = array(length, offset, null_count, 1);
        c.array.buffers = c.buffers.as_mut_ptr();
        c.array.n_children = 1;
    }
    c.array.children = inner.arrays.as_mut_ptr();
    c.schema.n_children = inner.schemas.len() as i64;
    c.schema.children = inner.schemas.as_mut_ptr();
    c.schema.format = c.format.as_ptr();
    c.inner = Some(inner);
    c
}

/// One record batch: the struct level and its columns.
struct Batch {
    columns: Vec<Column>,
    child_arrays: Vec<*mut ArrowArray>,
    child_schemas: Vec<*mut ArrowSchema>,
    buffers: Box<[*const c_void; 1]>,
    array: Box<ArrowArray>,
    schema: Box<ArrowSchema>,
}

/// Builds a batch of `formats` columns in `arena`: column buffers end to
/// end from `cursor` (adjacent) or at random places; every buffer covers
/// what its claimed offset + length need (the trusted precondition).
fn batch(
    input: &mut Input,
    arena: &mut [u8],
    formats: &[&'static str],
    adjacent: bool,
) -> Option<Batch> {
    let length = input.small(24);
    let offset = input.small(4);
    let mut cursor = (input.byte() as usize % 8) * 8;
    let mut columns = Vec::new();
    for (j, &format) in formats.iter().enumerate() {
        let extra = match input.byte() % 4 {
            0 => input.small(3),
            _ => 0,
        };
        let child_length = length.saturating_add(offset.max(0)).saturating_add(extra);
        let child_offset = match input.byte() % 4 {
            0 => input.small(3),
            _ => 0,
        };
        let w = width_of(format).max(1);
        let needed =
            (child_offset.max(0).saturating_add(child_length.max(0)) as usize).saturating_mul(w);
        if needed > ARENA / 4 {
            return None;
        }
        let at = match adjacent {
            true => cursor,
            false => (input.byte() as usize * 40) % (ARENA / 2),
        };
        if at + needed + 64 > ARENA {
            return None;
        }
        cursor = at + needed;
        let values = arena[at..].as_ptr().cast::<c_void>();
        // A validity bitmap sometimes, in the upper half of the arena.
        // Bitmaps of 16 bytes: only where they cover the claimed bits.
        let covered = child_offset.max(0).saturating_add(child_length.max(0)) <= 128;
        let validity: *const c_void = match input.byte() % 4 {
            0 if covered => {
                let v = ARENA / 2 + (input.byte() as usize * 16) % (ARENA / 4);
                let bits = input.byte() | 0x11;
                arena[v..v + 16].fill(bits);
                arena[v..].as_ptr().cast()
            }
            _ => ptr::null(),
        };
        let null_count = if validity.is_null() {
            0
        } else {
            [-1, 0, 1][input.byte() as usize % 3]
        };
        let mut c = Column {
            format: CString::new(format).unwrap(),
            name: CString::new(format!("col{j}")).unwrap(),
            buffers: Box::new([validity, values]),
            array: Box::new(ArrowArray {
                length: child_length,
                null_count,
                offset: child_offset,
                n_buffers: if format == "u" { 3 } else { 2 },
                n_children: 0,
                buffers: ptr::null_mut(),
                children: ptr::null_mut(),
                dictionary: ptr::null_mut(),
                release: Some(release_array),
                private_data: ptr::null_mut(),
            }),
            schema: Box::new(ArrowSchema {
                format: ptr::null(),
                name: ptr::null(),
                metadata: ptr::null(),
                flags: 0,
                n_children: 0,
                children: ptr::null_mut(),
                dictionary: ptr::null_mut(),
                release: Some(release_schema),
                private_data: ptr::null_mut(),
            }),
            inner: None,
        };
        if format == "u" {
            // utf8 is refused before its buffers are read.
            c.array.n_buffers = 2;
        }
        c.schema.format = c.format.as_ptr();
        c.schema.name = c.name.as_ptr();
        c.array.buffers = c.buffers.as_mut_ptr();
        if format == "r" || format == "n" {
            // The column built is the values (or the field): its own
            // length, offset and validity; the parent's own.
            let (length, offset) = (length.saturating_add(input.small(2)), input.small(3));
            let struct_validity = match input.byte() % 3 {
                0 if offset.max(0).saturating_add(length.max(0)) <= 128 => {
                    let v = ARENA / 2 + ARENA / 4 + (input.byte() as usize * 16) % (ARENA / 8);
                    let bits = input.byte() | 0x41;
                    arena[v..v + 16].fill(bits);
                    arena[v..].as_ptr().cast()
                }
                _ => ptr::null(),
            };
            if format == "r" {
                c.array.length = c.array.length.min(8); // at most as many values as runs, or so
            }
            c = wrap(input, c, format, length, offset, struct_validity);
        }
        columns.push(c);
    }
    let covered = offset.max(0).saturating_add(length.max(0)) <= 128;
    let struct_validity: *const c_void = match input.byte() % 4 {
        0 if covered => {
            let v = ARENA - 64;
            let bits = input.byte() | 0x21;
            arena[v..v + 16].fill(bits);
            arena[v..].as_ptr().cast()
        }
        _ => ptr::null(),
    };
    let mut b = Batch {
        child_arrays: columns
            .iter_mut()
            .map(|c| &mut *c.array as *mut _)
            .collect(),
        child_schemas: columns
            .iter_mut()
            .map(|c| &mut *c.schema as *mut _)
            .collect(),
        columns,
        buffers: Box::new([struct_validity]),
        array: Box::new(ArrowArray {
            length,
            null_count: if struct_validity.is_null() {
                0
            } else {
                [-1, 0, 2][input.byte() as usize % 3]
            },
            offset,
            n_buffers: 1,
            n_children: formats.len() as i64,
            buffers: ptr::null_mut(),
            children: ptr::null_mut(),
            dictionary: ptr::null_mut(),
            release: Some(release_array),
            private_data: ptr::null_mut(),
        }),
        schema: Box::new(ArrowSchema {
            format: c"+s".as_ptr(),
            name: ptr::null(),
            metadata: ptr::null(),
            flags: 0,
            n_children: formats.len() as i64,
            children: ptr::null_mut(),
            dictionary: ptr::null_mut(),
            release: Some(release_schema),
            private_data: ptr::null_mut(),
        }),
    };
    b.array.buffers = b.buffers.as_mut_ptr();
    b.array.children = b.child_arrays.as_mut_ptr();
    b.schema.children = b.child_schemas.as_mut_ptr();
    if input.byte() % 16 == 0 {
        b.array.n_children = input.small(8); // a count that lies
        b.array.n_children = b.array.n_children.min(formats.len() as i64);
    }
    Some(b)
}

fn bytes_of<T>(value: &T) -> Vec<u8> {
    // SAFETY: reading a live value's bytes.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()).to_vec() }
}

/// Bit `i` of a bitmap.
fn bit(bitmap: *const c_void, i: i64) -> bool {
    // SAFETY: the bitmap lies in the arena and covers the bit (trusted).
    unsafe { *bitmap.cast::<u8>().add((i / 8) as usize) >> (i % 8) & 1 == 1 }
}

/// Row `i` of column `j` of an accepted batch: its address (for a
/// bit-packed column, of the bit's byte), its value as f64, and whether it
/// is valid (its bit and its row's).
fn element(b: &Batch, j: usize, i: i64) -> (usize, f64, bool) {
    let c = &b.columns[j];
    let format = c.format.to_str().unwrap();
    let k = c.array.offset + b.array.offset + i;
    let mut valid = true;
    if let Some(inner) = &c.inner {
        if !b.buffers[0].is_null() && b.array.null_count != 0 {
            valid &= bit(b.buffers[0], b.array.offset + i);
        }
        let v = &inner.values;
        let index = match format {
            "+r" => {
                // Accepted: the run ends were checked; the run of `k`.
                let ends = &inner.ends;
                assert!(
                    ends.windows(2).all(|w| w[0] < w[1]) && ends.first().is_none_or(|&e| e > 0),
                    "run ends {ends:?} accepted"
                );
                let run = ends
                    .iter()
                    .position(|&e| i64::from(e) > k)
                    .expect("a run covers the row");
                assert!(
                    ends.last()
                        .is_some_and(|&e| i64::from(e) >= c.array.offset + c.array.length),
                    "run ends {ends:?} that do not cover the array accepted"
                );
                run as i64
            }
            _ => {
                if !c.buffers[0].is_null() {
                    valid &= bit(c.buffers[0], k);
                }
                k
            }
        };
        let at = v.array.offset + index;
        if !v.buffers[0].is_null() && v.array.null_count != 0 {
            valid &= bit(v.buffers[0], at);
        }
        let address = v.buffers[1] as usize + at as usize * 8;
        // SAFETY: the element lies in the arena.
        let value = unsafe { (address as *const f64).read_unaligned() };
        return (address, value, valid);
    }
    if !c.buffers[0].is_null() && c.array.null_count != 0 {
        valid &= bit(c.buffers[0], k);
    }
    if !b.buffers[0].is_null() && b.array.null_count != 0 {
        valid &= bit(b.buffers[0], b.array.offset + i);
    }
    if format == "b" {
        let v = bit(c.buffers[1], k);
        return (
            c.buffers[1] as usize + (k / 8) as usize,
            v as u8 as f64,
            valid,
        );
    }
    let w = width_of(format);
    let at = c.buffers[1] as usize + k as usize * w;
    // SAFETY: the element lies in the arena.
    let r = unsafe { std::slice::from_raw_parts(at as *const u8, w) };
    let v = match format {
        "c" => r[0] as i8 as f64,
        "C" => r[0] as f64,
        "s" => i16::from_le_bytes([r[0], r[1]]) as f64,
        "S" => u16::from_le_bytes([r[0], r[1]]) as f64,
        "i" => i32::from_le_bytes(r.try_into().unwrap()) as f64,
        "I" => u32::from_le_bytes(r.try_into().unwrap()) as f64,
        "l" => i64::from_le_bytes(r.try_into().unwrap()) as f64,
        "L" => u64::from_le_bytes(r.try_into().unwrap()) as f64,
        "f" => f32::from_le_bytes(r.try_into().unwrap()) as f64,
        _ => f64::from_le_bytes(r.try_into().unwrap()),
    };
    (at, v, valid)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut arena: Vec<u8> = (0..ARENA).map(|i| (i * 131 % 251) as u8).collect();
    let ncols = input.byte() as usize % 6;
    let formats: Vec<&str> = (0..ncols)
        .map(|_| match input.byte() % 8 {
            0 => FORMATS[input.byte() as usize % FORMATS.len()],
            1 if input.byte() % 4 == 0 => ["r", "n"][input.byte() as usize % 2],
            // Mostly one type, so that sharing is reachable.
            _ => "g",
        })
        .collect();
    let nbatches = match input.byte() % 4 {
        0 => input.byte() as usize % 4,
        _ => 1,
    };
    let adjacent = input.byte() % 2 == 0;
    let mut batches = Vec::new();
    for _ in 0..nbatches {
        match batch(&mut input, &mut arena, &formats, adjacent) {
            Some(b) => batches.push(b),
            None => return,
        }
    }
    let copy = [0, 1, 1, 2, 3][input.byte() as usize % 5];
    let order = [0, 0, 1, 2, 3][input.byte() as usize % 5];
    let fill = input.byte() % 3 == 0;
    let as_f64 = input.byte() % 2 == 0;
    let mut mask: *mut DLManagedTensorVersioned = ptr::null_mut();
    let want_mask = input.byte() % 3 == 0;
    let options = ArrowDlpackExportOptions {
        copy,
        order,
        fill_nulls: fill as i32,
        temporal_as_integer: 0,
        fill_value: -7.0,
        dtype: match as_f64 {
            true => DLDataType {
                code: K_DL_FLOAT,
                bits: 64,
                lanes: 1,
            },
            false => DLDataType {
                code: 0,
                bits: 0,
                lanes: 0,
            },
        },
        validity: if want_mask {
            &mut mask
        } else {
            ptr::null_mut()
        },
        dictionary_as_indices: 0,
        threads: 0,
        reserved: [0; 3],
    };
    let mut error = ArrowDlpackError {
        status: arrow_dlpack::Status::ARROW_DLPACK_OK,
        message: [0; 256],
    };
    let releases = RELEASES.load(Ordering::SeqCst);
    let single = nbatches == 1 && input.byte() % 2 == 0;
    let before: Vec<Vec<u8>> = batches.iter().map(|b| bytes_of(&*b.array)).collect();
    // The model, read before the export moves anything.
    let t = if single {
        let b = &mut batches[0];
        // SAFETY: structs valid as the C Data Interface lets a consumer trust them.
        unsafe { arrow_dlpack_export_with(&mut *b.array, &*b.schema, &options, &mut error) }
    } else if nbatches == 0 {
        return;
    } else {
        // The batches' structs move to the producer (a copy of the first
        // schema, which owns nothing, for the stream's).
        let arrays = batches
            .iter_mut()
            .map(|b| {
                // SAFETY: a bitwise move of a valid array.
                let moved = unsafe { ptr::read(&*b.array) };
                b.array.release = None;
                moved
            })
            .collect();
        // SAFETY: the first batch's schema, whose release only clears it.
        let mut stream = unsafe { Stream::new(&batches[0].schema, arrays) };
        let mut s = stream.c_stream();
        // SAFETY: a valid stream over the batches.
        let t = unsafe { arrow_dlpack_export_stream(&mut s, &options, &mut error) };
        assert!(!stream.released, "the stream is borrowed");
        // Every chunk read is the library's: released once, shared or not;
        // the others come back.
        let read = stream.next;
        for (b, a) in batches.iter_mut().zip(&mut stream.chunks).skip(read) {
            // SAFETY: never handed out: back to its batch.
            *b.array = unsafe { ptr::read(a) };
            a.release = None;
        }
        if t.is_null() {
            // The stream is read to its end or to the failure (invalid
            // options: not at all); each chunk read is released once.
            assert_eq!(
                RELEASES.load(Ordering::SeqCst) - releases,
                read,
                "chunks read, released"
            );
            assert!(mask.is_null());
            assert_ne!(error.message[0], 0);
            return;
        }
        t
    };
    if t.is_null() {
        assert!(mask.is_null(), "no mask on failure");
        assert_eq!(
            RELEASES.load(Ordering::SeqCst),
            releases,
            "nothing released on failure"
        );
        for (b, before) in batches.iter().zip(&before) {
            assert_eq!(&bytes_of(&*b.array), before, "the array left as it was");
        }
        assert_ne!(error.message[0], 0, "failures carry a message");
        return;
    }
    // SAFETY: a live tensor from the library.
    let tensor = unsafe { &(*t).dl_tensor };
    let flags = unsafe { (*t).flags };
    let rows: i64 = batches
        .iter()
        .try_fold(0i64, |n, b| n.checked_add(b.array.length))
        .expect("a stream whose rows overflow was accepted");
    assert_eq!(tensor.ndim, 2);
    // SAFETY: two entries each.
    let (shape, strides) = unsafe {
        (
            std::slice::from_raw_parts(tensor.shape, 2).to_vec(),
            std::slice::from_raw_parts(tensor.strides, 2).to_vec(),
        )
    };
    assert_eq!(shape, [rows, ncols as i64]);
    let column_major = strides == [1, rows];
    assert!(
        column_major || strides == [ncols as i64, 1],
        "strides {strides:?} of {shape:?}"
    );
    if order == 1 && ncols > 1 && rows > 1 {
        assert!(!column_major, "ROW_MAJOR gave column-major");
    }
    if order == 2 && ncols > 1 && rows > 1 {
        assert!(column_major, "COLUMN_MAJOR gave row-major");
    }
    let shared = flags & DLPACK_FLAG_BITMASK_READ_ONLY != 0;
    assert!(shared != (flags & DLPACK_FLAG_BITMASK_IS_COPIED != 0));
    assert!(!shared || copy != 2, "ALWAYS copies");
    let width = tensor.dtype.bits as usize / 8;
    let mut row0 = 0;
    for b in &batches {
        for i in 0..b.array.length {
            for j in 0..ncols {
                let r = row0 + i;
                let at = tensor.data as usize
                    + ((r * strides[0] + j as i64 * strides[1]) as usize) * width;
                let (source, value, valid) = element(b, j, i);
                assert!(valid || fill, "a null ({r}, {j}) exported without a fill");
                if shared {
                    assert_eq!(at, source, "shared ({r}, {j}) is the column's own element");
                } else if as_f64 {
                    // SAFETY: inside the tensor's own bytes.
                    let got = unsafe { (at as *const f64).read() };
                    let want = if valid { value } else { -7.0 };
                    assert!(
                        got == want || (got.is_nan() && want.is_nan()),
                        "({r}, {j}): {got} != {want}"
                    );
                }
                if !mask.is_null() {
                    // SAFETY: the mask has the tensor's shape and strides.
                    let m = unsafe {
                        let d = &(*mask).dl_tensor;
                        let s = std::slice::from_raw_parts(d.strides, 2);
                        *d.data
                            .cast::<u8>()
                            .add((r * s[0] + j as i64 * s[1]) as usize)
                    };
                    assert_eq!(m, valid as u8, "mask ({r}, {j})");
                }
            }
        }
        row0 += b.array.length;
    }
    let after = RELEASES.load(Ordering::SeqCst);
    // SAFETY: live tensors, deleted once.
    unsafe {
        ((*t).deleter.unwrap())(t);
        if !mask.is_null() {
            ((*mask).deleter.unwrap())(mask);
        }
    }
    let done = RELEASES.load(Ordering::SeqCst);
    // Every batch is released exactly once: a shared one by the deleter,
    // the others (copied, or empty chunks) before the export returned.
    let n = batches.len();
    let before_delete = match shared {
        true => n - 1,
        false => n,
    };
    assert_eq!(
        after - releases,
        before_delete,
        "released before the deleter"
    );
    assert_eq!(done - releases, n, "each batch released exactly once");
    for b in &batches {
        assert!(b.array.release.is_none(), "moved or released");
    }
});
