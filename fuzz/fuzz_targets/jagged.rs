#![no_main]
//! Fuzzes the variable-length exports, `arrow_dlpack_export_jagged`,
//! `_padded` and their stream forms, over lists, large lists, list views,
//! strings, large strings and string views built in an arena: random
//! offsets (valid, or decreasing, negative, beyond the child), sizes and
//! views, slices, null rows (over empty or non-empty segments), null
//! elements, several chunks; and `arrow_dlpack_import_jagged` over random
//! offsets tensors. Checks, against a model built without the library:
//!
//! - a failure leaves every array untouched, releases nothing, writes no
//!   output;
//! - every element address a shared tensor hands out lies in the arena;
//!   offsets start at 0; each chunk is released exactly once, after both
//!   tensors are deleted, whatever the order;
//! - where the model finds the input valid, the jagged rows and the padded
//!   tensor equal the model's, value for value, and the masks too;
//! - an import succeeds exactly when the offsets are valid, and the list
//!   it makes points at the tensors' own memory;
//! - a dictionary array (random index widths, slices, nulls) is refused
//!   without `dictionary_as_indices` and, with it, exports its codes:
//!   shared at the indices' own address when nothing needs a copy, equal
//!   to them either way, the array released once.

use std::ffi::{CString, c_void};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_dlpack::ArrowDlpackError;
use arrow_dlpack::abi::*;
use arrow_dlpack::capi::*;
use arrow_dlpack_testkit::Stream;
use libfuzzer_sys::fuzz_target;

static RELEASES: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn release_array(array: *mut ArrowArray) {
    RELEASES.fetch_add(1, Ordering::SeqCst);
    // SAFETY: called once on a live array of the harness.
    unsafe { (*array).release = None };
}

unsafe extern "C" fn release_schema(schema: *mut ArrowSchema) {
    // SAFETY: a schema of the harness.
    unsafe { (*schema).release = None };
}

const ARENA: usize = 1 << 12;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn below(&mut self, n: usize) -> usize {
        self.byte() as usize % n.max(1)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    List,
    LargeList,
    ListView,
    Utf8,
    LargeUtf8,
    Utf8View,
}

impl Kind {
    fn format(self) -> &'static str {
        match self {
            Kind::List => "+l",
            Kind::LargeList => "+L",
            Kind::ListView => "+vl",
            Kind::Utf8 => "u",
            Kind::LargeUtf8 => "U",
            Kind::Utf8View => "vu",
        }
    }
    fn large(self) -> bool {
        matches!(self, Kind::LargeList | Kind::LargeUtf8)
    }
    fn is_list(self) -> bool {
        matches!(self, Kind::List | Kind::LargeList | Kind::ListView)
    }
}

/// Owns one array, its child (lists) and their schemas, all pointing
/// into the arena.
struct Built {
    array: Box<ArrowArray>,
    child: Box<ArrowArray>,
    child_ptr: Box<*mut ArrowArray>,
    buffers: Vec<*const c_void>,
    /// Boxed: the child array points at it, and `Built` moves.
    child_buffers: Box<[*const c_void; 2]>,
    schema: Box<ArrowSchema>,
    child_schema: Box<ArrowSchema>,
    child_schema_ptr: Box<*mut ArrowSchema>,
    _format: CString,
    /// The model: each covered row (None: null), its elements (None: a
    /// null element) as i64, and whether the input is valid.
    rows: Vec<Option<Vec<Option<i64>>>>,
    valid: bool,
}

fn schema(
    format: *const std::ffi::c_char,
    n_children: i64,
    children: *mut *mut ArrowSchema,
) -> ArrowSchema {
    ArrowSchema {
        format,
        name: ptr::null(),
        metadata: ptr::null(),
        flags: 0,
        n_children,
        children,
        dictionary: ptr::null_mut(),
        release: Some(release_schema),
        private_data: ptr::null_mut(),
    }
}

fn array(length: i64, buffers: *mut *const c_void, n_buffers: i64) -> ArrowArray {
    ArrowArray {
        length,
        null_count: 0,
        offset: 0,
        n_buffers,
        n_children: 0,
        buffers,
        children: ptr::null_mut(),
        dictionary: ptr::null_mut(),
        release: Some(release_array),
        private_data: ptr::null_mut(),
    }
}

/// Bit `i` of the arena's bytes from `at`.
fn bit(arena: &[u8], at: usize, i: usize) -> bool {
    (arena[at + i / 8] >> (i % 8)) & 1 == 1
}

fn write(arena: &mut [u8], at: usize, value: i64, width: usize) {
    arena[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
}

fn read(arena: &[u8], at: usize, width: usize) -> i64 {
    let mut b = [0u8; 8];
    b[..width].copy_from_slice(&arena[at..at + width]);
    match width {
        4 => i64::from(i32::from_le_bytes(b[..4].try_into().unwrap())),
        _ => i64::from_le_bytes(b),
    }
}

/// Builds an array of `kind` in the arena (from byte `base`), and its model.
fn build(input: &mut Input, arena: &mut [u8], base: usize, kind: Kind) -> Built {
    let width = if kind.large() { 8 } else { 4 };
    let child_len = input.below(24) as i64;
    let total_rows = input.below(12);
    // Regions of the arena: offsets, sizes (views), child values (int32) or
    // bytes, validity bits, views.
    let (off_at, size_at, val_at, rows_bits_at, child_bits_at, views_at) = (
        base,
        base + 128,
        base + 256,
        base + 384,
        base + 392,
        base + 400,
    );
    // Offsets (or views): mostly valid, sometimes not.
    let wild = input.byte() % 8 == 0;
    let mut position = 0i64;
    for r in 0..=total_rows {
        let value = match (wild, input.byte() % 4) {
            (true, 0) => -(input.byte() as i64),
            (true, 1) => child_len + input.byte() as i64,
            _ => {
                position = (position + input.below(4) as i64).min(child_len);
                position
            }
        };
        write(arena, off_at + r * width, value, width);
        if r < total_rows {
            let size = match wild {
                true => input.byte() as i64 - 8,
                false => input.below(4) as i64,
            };
            write(arena, size_at + r * width, size, width);
        }
    }
    let null_rows = input.byte() % 3 == 0;
    let null_elements = kind.is_list() && input.byte() % 3 == 0;
    let start = input.below(total_rows + 1);
    let length = input.below(total_rows - start + 1);
    let mut built = Built {
        array: Box::new(array(length as i64, ptr::null_mut(), 0)),
        child: Box::new(array(child_len, ptr::null_mut(), 2)),
        child_ptr: Box::new(ptr::null_mut()),
        buffers: Vec::new(),
        child_buffers: Box::new([ptr::null(), ptr::null()]),
        schema: Box::new(schema(ptr::null(), 0, ptr::null_mut())),
        child_schema: Box::new(schema(c"i".as_ptr(), 0, ptr::null_mut())),
        child_schema_ptr: Box::new(ptr::null_mut()),
        _format: CString::new(kind.format()).unwrap(),
        rows: Vec::new(),
        valid: true,
    };
    let arena_base = arena.as_ptr();
    let arena_at = |at: usize| arena_base.wrapping_add(at).cast::<c_void>();
    let validity = if null_rows {
        arena_at(rows_bits_at)
    } else {
        ptr::null()
    };
    built.array.offset = start as i64;
    built.array.null_count = if null_rows { -1 } else { 0 };
    built.schema.format = built._format.as_ptr();
    match kind {
        Kind::List | Kind::LargeList | Kind::ListView => {
            *built.child_buffers = [
                if null_elements {
                    arena_at(child_bits_at)
                } else {
                    ptr::null()
                },
                arena_at(val_at),
            ];
            built.child.buffers = built.child_buffers.as_mut_ptr();
            built.child.null_count = if null_elements { -1 } else { 0 };
            built.buffers = match kind {
                Kind::ListView => vec![validity, arena_at(off_at), arena_at(size_at)],
                _ => vec![validity, arena_at(off_at)],
            };
            *built.child_ptr = &mut *built.child;
            built.array.children = &mut *built.child_ptr;
            built.array.n_children = 1;
            *built.child_schema_ptr = &mut *built.child_schema;
            built.schema.children = &mut *built.child_schema_ptr;
            built.schema.n_children = 1;
        }
        Kind::Utf8 | Kind::LargeUtf8 => {
            built.buffers = vec![validity, arena_at(off_at), arena_at(val_at)];
        }
        Kind::Utf8View => {
            // Views: short (inline) or into one data buffer of 64 bytes.
            for r in 0..total_rows {
                let at = views_at + r * 16;
                let len = input.below(20) as i32 - (wild as i32) * input.below(3) as i32;
                arena[at..at + 4].copy_from_slice(&len.to_le_bytes());
                let buffer = if wild { input.below(3) as i32 - 1 } else { 0 };
                arena[at + 8..at + 12].copy_from_slice(&buffer.to_le_bytes());
                let offset = input.below(60) as i32;
                arena[at + 12..at + 16].copy_from_slice(&offset.to_le_bytes());
            }
            write(arena, size_at, 64, 8); // the data buffer's size
            built.buffers = vec![
                validity,
                arena_at(views_at),
                arena_at(val_at),
                arena_at(size_at),
            ];
        }
    }
    built.array.n_buffers = built.buffers.len() as i64;
    built.array.buffers = built.buffers.as_mut_ptr();
    // The model of the covered rows.
    let entry = |i: usize| read(arena, off_at + i * width, width);
    for r in start..start + length {
        let null = null_rows && !bit(arena, rows_bits_at, r);
        let span = match kind {
            Kind::List | Kind::LargeList | Kind::Utf8 | Kind::LargeUtf8 => (entry(r), entry(r + 1)),
            Kind::ListView => {
                let (o, s) = (entry(r), read(arena, size_at + r * width, width));
                (o, o.saturating_add(s))
            }
            Kind::Utf8View => (0, 0),
        };
        // Strings have no data length but their last offset: any span
        // inside the chunk's region is valid to the library.
        let limit = if kind.is_list() { child_len } else { 768 };
        let in_range = span.0 >= 0 && span.0 <= span.1 && span.1 <= limit;
        let contiguous = !matches!(kind, Kind::ListView | Kind::Utf8View);
        if contiguous && !in_range || (!contiguous && !null && !in_range && kind != Kind::Utf8View)
        {
            built.valid = false;
        }
        if contiguous && r > start && entry(r) < entry(r - 1) {
            built.valid = false;
        }
        let elements: Vec<Option<i64>> = match kind {
            Kind::Utf8View if !null => {
                let at = views_at + r * 16;
                let len = read(arena, at, 4);
                let buffer = read(arena, at + 8, 4);
                let offset = read(arena, at + 12, 4);
                if len < 0 || (len > 12 && (buffer != 0 || offset < 0 || offset + len > 64)) {
                    built.valid = false;
                    Vec::new()
                } else if len <= 12 {
                    (0..len as usize)
                        .map(|k| Some(arena[at + 4 + k] as i64))
                        .collect()
                } else {
                    (0..len as usize)
                        .map(|k| Some(arena[val_at + offset as usize + k] as i64))
                        .collect()
                }
            }
            _ if !in_range || null && !contiguous => Vec::new(),
            Kind::Utf8 | Kind::LargeUtf8 => (span.0..span.1)
                .map(|k| Some(arena[val_at + k as usize] as i64))
                .collect(),
            _ => (span.0..span.1)
                .map(|k| {
                    let k = k as usize;
                    let valid = !null_elements || bit(arena, child_bits_at, k);
                    valid.then(|| read(arena, val_at + k * 4, 4))
                })
                .collect(),
        };
        built.rows.push((!null).then_some(elements));
    }
    built
}

/// A DLPack tensor's elements as i64 (row-major over its shape).
///
/// # Safety
/// A live tensor.
unsafe fn elements(t: *mut DLManagedTensorVersioned) -> Vec<i64> {
    // SAFETY: forwarded from the caller.
    unsafe {
        let d = &(*t).dl_tensor;
        let n: i64 = std::slice::from_raw_parts(d.shape, d.ndim as usize)
            .iter()
            .product();
        let width = d.dtype.bits as usize / 8;
        (0..n as usize)
            .map(|i| {
                let at = d.data.cast::<u8>().add(i * width);
                match (d.dtype.code, width) {
                    (K_DL_INT, 4) => i64::from(at.cast::<i32>().read_unaligned()),
                    (K_DL_INT, 8) => at.cast::<i64>().read_unaligned(),
                    (_, 1) => i64::from(*at),
                    _ => at.cast::<i32>().read_unaligned() as i64,
                }
            })
            .collect()
    }
}

fn in_arena(arena: &[u8], t: *mut DLManagedTensorVersioned) -> bool {
    // SAFETY: a live tensor.
    let d = unsafe { &(*t).dl_tensor };
    let a = arena.as_ptr() as usize;
    let n: i64 = unsafe { std::slice::from_raw_parts(d.shape, d.ndim as usize) }
        .iter()
        .product();
    let end = d.data as usize + n as usize * d.dtype.bits as usize / 8;
    n == 0 || (d.data as usize >= a && end <= a + arena.len())
}

fn delete(t: *mut DLManagedTensorVersioned) {
    // SAFETY: a live tensor of the library, deleted once.
    unsafe { ((*t).deleter.unwrap())(t) };
}

fn new_error() -> ArrowDlpackError {
    ArrowDlpackError {
        status: arrow_dlpack::Status::ARROW_DLPACK_OK,
        message: [0; 256],
    }
}

/// The model's rows as the library lays them out: null rows empty, null
/// elements 0 (the fill value the harness uses).
fn model(rows: &[Option<Vec<Option<i64>>>]) -> Vec<Vec<i64>> {
    rows.iter()
        .map(|r| {
            r.as_ref()
                .map_or(Vec::new(), |r| r.iter().map(|v| v.unwrap_or(0)).collect())
        })
        .collect()
}

fn check_jagged(
    arena: &[u8],
    built: &[Built],
    mask: *mut DLManagedTensorVersioned,
    out: &ArrowDlpackJagged,
) {
    // SAFETY: live tensors of the library.
    let (values, offsets) = unsafe { (elements(out.values), elements(out.offsets)) };
    assert_eq!(offsets.first(), Some(&0), "offsets start at 0");
    let rows: usize = built.iter().map(|b| b.rows.len()).sum();
    assert_eq!(offsets.len(), rows + 1);
    // SAFETY: live tensors.
    unsafe {
        for t in [out.values, out.offsets] {
            if (*t).flags & DLPACK_FLAG_BITMASK_READ_ONLY != 0 {
                assert!(in_arena(arena, t), "a shared tensor lies in the arena");
            }
        }
    }
    if built.iter().all(|b| b.valid) {
        let expected: Vec<Vec<i64>> = built.iter().flat_map(|b| model(&b.rows)).collect();
        for (i, row) in expected.iter().enumerate() {
            let (s, e) = (offsets[i] as usize, offsets[i + 1] as usize);
            assert_eq!(&values[s..e], &row[..], "row {i}");
        }
        assert_eq!(*offsets.last().unwrap() as usize, values.len());
        if !mask.is_null() {
            // SAFETY: a live mask.
            let m = unsafe { elements(mask) };
            let expected: Vec<i64> = built
                .iter()
                .flat_map(|b| b.rows.iter().map(|r| r.is_some() as i64))
                .collect();
            assert_eq!(m, expected, "the row mask");
        }
    }
}

fn check_padded(
    built: &[Built],
    t: *mut DLManagedTensorVersioned,
    mask: *mut DLManagedTensorVersioned,
    padding: &ArrowDlpackPadding,
) {
    if !built.iter().all(|b| b.valid) {
        return;
    }
    // SAFETY: live tensors.
    let (values, m, shape) = unsafe {
        let d = &(*t).dl_tensor;
        (
            elements(t),
            elements(mask),
            std::slice::from_raw_parts(d.shape, 2).to_vec(),
        )
    };
    let rows: Vec<&Option<Vec<Option<i64>>>> = built.iter().flat_map(|b| &b.rows).collect();
    let longest = rows
        .iter()
        .filter_map(|r| r.as_ref().map(Vec::len))
        .max()
        .unwrap_or(0);
    let length = if padding.length > 0 {
        padding.length as usize
    } else {
        longest
    };
    assert_eq!(shape, vec![rows.len() as i64, length as i64]);
    for (i, row) in rows.iter().enumerate() {
        let full = (*row).clone().unwrap_or_default();
        let n = full.len().min(length);
        let (skip, at) = match padding.side {
            0 => (0, 0),
            _ => (full.len() - n, length - n),
        };
        for j in 0..length {
            let (want, real) = match j >= at && j < at + n {
                true => (
                    full[skip + j - at].unwrap_or(0),
                    full[skip + j - at].is_some() as i64,
                ),
                false => (padding.value as i64, 0),
            };
            assert_eq!(values[i * length + j], want, "row {i} column {j}");
            assert_eq!(m[i * length + j], real, "mask row {i} column {j}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut arena: Vec<u8> = (0..ARENA)
        .map(|i| (i.wrapping_mul(0x9e37_79b9) >> 7) as u8)
        .collect();
    let kind = [
        Kind::List,
        Kind::LargeList,
        Kind::ListView,
        Kind::Utf8,
        Kind::LargeUtf8,
        Kind::Utf8View,
    ][input.below(6)];
    let chunks = 1 + input.below(3);
    let mut built: Vec<Built> = (0..chunks)
        .map(|c| build(&mut input, &mut arena, c * 1024, kind))
        .collect();
    let released = RELEASES.load(Ordering::SeqCst);
    let mut o = ArrowDlpackExportOptions {
        copy: [0, 1, 1, 2][input.below(4)] as i32,
        fill_nulls: (input.byte() % 2) as i32,
        ..Default::default()
    };
    let mut mask: *mut DLManagedTensorVersioned = ptr::null_mut();
    if input.byte() % 2 == 0 {
        o.validity = &mut mask;
    }
    let padded = input.byte() % 3 == 0;
    let padding = ArrowDlpackPadding {
        length: input.below(6) as i64 * (input.byte() % 2) as i64,
        side: (input.byte() % 2) as i32,
        value: 7.0,
        ..Default::default()
    };
    if padded {
        o.validity = &mut mask;
    }
    let before: Vec<Vec<u8>> = built
        .iter()
        .map(|b| {
            // SAFETY: plain integer and pointer fields.
            unsafe {
                std::slice::from_raw_parts(
                    (&*b.array as *const ArrowArray).cast::<u8>(),
                    size_of::<ArrowArray>(),
                )
                .to_vec()
            }
        })
        .collect();
    let mut error = new_error();
    let mut out = ArrowDlpackJagged {
        values: ptr::null_mut(),
        offsets: ptr::null_mut(),
    };
    let (ok, read) = if chunks == 1 {
        let b = &mut built[0];
        // SAFETY: valid structs (as far as the C Data Interface lets a
        // consumer trust them: the arena holds every buffer).
        let ok = unsafe {
            match padded {
                true => {
                    let t = arrow_dlpack_export_padded(
                        &mut *b.array,
                        &*b.schema,
                        &o,
                        &padding,
                        &mut error,
                    );
                    out.values = t;
                    !t.is_null()
                }
                false => {
                    arrow_dlpack_export_jagged(&mut *b.array, &*b.schema, &o, &mut out, &mut error)
                        == arrow_dlpack::Status::ARROW_DLPACK_OK
                }
            }
        };
        (ok, 1)
    } else {
        let arrays = built
            .iter_mut()
            .map(|b| {
                // SAFETY: a bitwise move of a valid array.
                let moved = unsafe { ptr::read(&*b.array) };
                b.array.release = None;
                moved
            })
            .collect();
        // SAFETY: the first schema; its release only clears it.
        let mut producer = unsafe { Stream::new(&built[0].schema, arrays) };
        let mut s = producer.c_stream();
        // SAFETY: a valid stream.
        let ok = unsafe {
            match padded {
                true => {
                    let t = arrow_dlpack_export_padded_stream(&mut s, &o, &padding, &mut error);
                    out.values = t;
                    !t.is_null()
                }
                false => {
                    arrow_dlpack_export_jagged_stream(&mut s, &o, &mut out, &mut error)
                        == arrow_dlpack::Status::ARROW_DLPACK_OK
                }
            }
        };
        assert!(!producer.released, "the stream is borrowed");
        let read = producer.next;
        for (b, a) in built.iter_mut().zip(&mut producer.chunks).skip(read) {
            // SAFETY: never handed out: back to its owner.
            *b.array = unsafe { ptr::read(a) };
            a.release = None;
        }
        (ok, read)
    };
    if !ok {
        assert_ne!(error.message[0], 0, "a failure has a message");
        assert!(mask.is_null(), "a failure writes no mask");
        if chunks == 1 {
            assert_eq!(
                RELEASES.load(Ordering::SeqCst),
                released,
                "nothing released on failure"
            );
            // SAFETY: as above.
            let after = unsafe {
                std::slice::from_raw_parts(
                    (&*built[0].array as *const ArrowArray).cast::<u8>(),
                    size_of::<ArrowArray>(),
                )
            };
            assert_eq!(after, &before[0][..], "the array left as it was");
        } else {
            assert_eq!(
                RELEASES.load(Ordering::SeqCst),
                released + read,
                "each chunk read released once"
            );
        }
        return;
    }
    if padded {
        check_padded(&built, out.values, mask, &padding);
        delete(out.values);
    } else {
        check_jagged(&arena, &built, mask, &out);
        // Either order.
        match input.byte() % 2 {
            0 => {
                delete(out.values);
                delete(out.offsets);
            }
            _ => {
                delete(out.offsets);
                delete(out.values);
            }
        }
    }
    if !mask.is_null() {
        delete(mask);
    }
    assert_eq!(
        RELEASES.load(Ordering::SeqCst),
        released + chunks,
        "each chunk released once"
    );
    import_jagged(&mut input);
    dictionary(&mut input);
});

unsafe extern "C" fn no_delete(_: *mut DLManagedTensorVersioned) {}

/// `arrow_dlpack_import_jagged` of random int32 offsets over 8 int32
/// values: accepted exactly when the offsets are valid.
fn import_jagged(input: &mut Input) {
    let mut values: Vec<i32> = (0..8).collect();
    let count = 1 + input.below(6);
    let mut offsets: Vec<i32> = (0..count).map(|_| input.below(11) as i32 - 1).collect();
    if input.byte() % 2 == 0 {
        offsets.sort();
    }
    let valid = offsets[0] >= 0
        && offsets.windows(2).all(|w| w[0] <= w[1])
        && *offsets.last().unwrap() <= 8;
    let mut shapes = [8i64, count as i64];
    let mut strides = [1i64, 1];
    let tensor = |data: *mut c_void, shape: *mut i64, stride: *mut i64| DLManagedTensorVersioned {
        version: DLPackVersion { major: 1, minor: 3 },
        manager_ctx: ptr::null_mut(),
        deleter: Some(no_delete),
        flags: 0,
        dl_tensor: DLTensor {
            data,
            device: DLDevice {
                device_type: K_DL_CPU,
                device_id: 0,
            },
            ndim: 1,
            dtype: DLDataType {
                code: K_DL_INT,
                bits: 32,
                lanes: 1,
            },
            shape,
            strides: stride,
            byte_offset: 0,
        },
    };
    let (shape_v, shape_o) = shapes.split_at_mut(1);
    let (stride_v, stride_o) = strides.split_at_mut(1);
    let mut v = tensor(
        values.as_mut_ptr().cast(),
        shape_v.as_mut_ptr(),
        stride_v.as_mut_ptr(),
    );
    let mut o = tensor(
        offsets.as_mut_ptr().cast(),
        shape_o.as_mut_ptr(),
        stride_o.as_mut_ptr(),
    );
    let mut a = std::mem::MaybeUninit::<ArrowArray>::uninit();
    let mut s = std::mem::MaybeUninit::<ArrowSchema>::uninit();
    let mut error = new_error();
    // SAFETY: live tensors (their deleters do nothing); writable out structs.
    let status = unsafe {
        arrow_dlpack_import_jagged(
            &mut v,
            &mut o,
            ptr::null(),
            a.as_mut_ptr(),
            s.as_mut_ptr(),
            &mut error,
        )
    };
    assert_eq!(
        status == arrow_dlpack::Status::ARROW_DLPACK_OK,
        valid,
        "{offsets:?}"
    );
    if valid {
        // SAFETY: written on success: a list over the tensors' memory.
        unsafe {
            let (mut a, mut s) = (a.assume_init(), s.assume_init());
            assert_eq!(*a.buffers.add(1), offsets.as_ptr().cast());
            assert_eq!(*(**a.children).buffers.add(1), values.as_ptr().cast());
            assert_eq!(a.length, count as i64 - 1);
            (a.release.unwrap())(&mut a);
            (s.release.unwrap())(&mut s);
        }
    }
}

/// A dictionary array over a three-string dictionary exported as its codes.
fn dictionary(input: &mut Input) {
    let (format, width, signed) = [
        (c"c", 1, true),
        (c"s", 2, true),
        (c"i", 4, true),
        (c"I", 4, false),
    ][input.below(4)];
    let rows = input.below(16);
    let mut codes = vec![0u8; 16 * 4];
    for b in codes.iter_mut() {
        *b = input.byte();
    }
    let bits = [input.byte(), input.byte()];
    let start = input.below(rows + 1);
    let length = input.below(rows - start + 1);
    let nulls = input.byte() % 3 == 0;
    let as_indices = input.byte() % 4 != 0;
    let fill = input.byte() % 2 == 0;
    // The dictionary: "a", "bc", "".
    let dict_offsets: [i32; 4] = [0, 1, 3, 3];
    let dict_data = b"abc";
    let mut dict_buffers = [
        ptr::null::<c_void>(),
        dict_offsets.as_ptr().cast(),
        dict_data.as_ptr().cast(),
    ];
    let mut dict = array(3, dict_buffers.as_mut_ptr(), 3);
    let mut buffers = [
        if nulls {
            bits.as_ptr().cast()
        } else {
            ptr::null()
        },
        codes.as_ptr().cast::<c_void>(),
    ];
    let mut a = array(length as i64, buffers.as_mut_ptr(), 2);
    a.offset = start as i64;
    a.null_count = if nulls { -1 } else { 0 };
    a.dictionary = &mut dict;
    let mut dict_schema = schema(c"u".as_ptr(), 0, ptr::null_mut());
    let mut s = schema(format.as_ptr(), 0, ptr::null_mut());
    s.dictionary = &mut dict_schema;
    let before = RELEASES.load(Ordering::SeqCst);
    let o = ArrowDlpackExportOptions {
        dictionary_as_indices: as_indices as i32,
        fill_nulls: fill as i32,
        copy: 1, // IF_NEEDED: filling nulls copies
        ..Default::default()
    };
    let mut error = new_error();
    // SAFETY: a valid array and schema, both the harness's.
    let t = unsafe { arrow_dlpack_export_with(&mut a, &s, &o, &mut error) };
    let covered_nulls = nulls && (start..start + length).any(|r| !bit(&bits, 0, r));
    if !as_indices {
        assert!(t.is_null(), "a dictionary needs dictionary_as_indices");
        assert_eq!(
            error.status,
            arrow_dlpack::Status::ARROW_DLPACK_UNSUPPORTED_TYPE
        );
        assert!(a.release.is_some(), "the array left with the caller");
        return;
    }
    if t.is_null() {
        // SAFETY: the library writes a NUL-terminated message.
        let message = unsafe { std::ffi::CStr::from_ptr(error.message.as_ptr()) };
        assert!(
            covered_nulls && !fill,
            "refused only for nulls nobody asked to fill: {message:?}"
        );
        assert!(a.release.is_some(), "the array left with the caller");
        return;
    }
    assert!(a.release.is_none(), "moved into the tensor");
    let expected: Vec<i64> = (start..start + length)
        .map(|r| {
            if covered_nulls && !bit(&bits, 0, r) {
                return 0;
            }
            let b = &codes[r * width..(r + 1) * width];
            match (width, signed) {
                (1, _) => i64::from(b[0] as i8),
                (2, _) => i64::from(i16::from_le_bytes([b[0], b[1]])),
                (_, true) => i64::from(i32::from_le_bytes(b.try_into().unwrap())),
                _ => i64::from(u32::from_le_bytes(b.try_into().unwrap())),
            }
        })
        .collect();
    // SAFETY: a live tensor of the library.
    unsafe {
        let d = &(*t).dl_tensor;
        assert_eq!(
            (d.dtype.bits as usize, d.dtype.code == K_DL_INT),
            (width * 8, signed)
        );
        if !covered_nulls && length > 0 {
            assert_eq!(
                d.data.cast::<u8>().add(d.byte_offset as usize),
                codes.as_ptr().add(start * width).cast_mut(),
                "codes shared"
            );
        }
        let got: Vec<i64> = (0..length)
            .map(|i| {
                let at = d.data.cast::<u8>().add(d.byte_offset as usize + i * width);
                let b = std::slice::from_raw_parts(at, width);
                match (width, signed) {
                    (1, _) => i64::from(b[0] as i8),
                    (2, _) => i64::from(i16::from_le_bytes([b[0], b[1]])),
                    (_, true) => i64::from(i32::from_le_bytes(b.try_into().unwrap())),
                    _ => i64::from(u32::from_le_bytes(b.try_into().unwrap())),
                }
            })
            .collect();
        assert_eq!(got, expected, "the codes");
    }
    delete(t);
    assert_eq!(RELEASES.load(Ordering::SeqCst), before + 1, "released once");
}
