//! Export costs, each against a baseline measured in the same run:
//!
//! - `export_cycle/*`: export + delete of one tensor, against a minimal
//!   hand-written export (`minimal_export`: the format and null count
//!   checked, a context allocated and filled, the array moved, as a C
//!   library would do it with no other checks) and against allocating a
//!   context of the same size, calling the array's release and freeing it
//!   (the least any owning export could do).
//! - `import_cycle/*`: import + release of the array and schema, against
//!   the same baseline.
//! - `null_scan/*`: counting an unknown null count, against a plain read of
//!   the same bitmap.
//! - `copies/*`: the one-copy conversions (concatenating chunks, filling
//!   nulls, unpacking booleans) on 64 MiB outputs, against `memcpy` of
//!   64 MiB.
//! - `tables/*`: record batches of float64 columns (1 to 1,000 of them,
//!   64 MiB in all) copied into row-major and column-major matrices,
//!   against `memcpy` of 64 MiB; columns laid end to end, shared.
//! - `jagged/*`: the jagged export of an unsliced `list<int32>` column of
//!   1,000 and 1,000,000 rows (shared: O(1) in rows) against the plain
//!   export of its values array; the padded copy of 50,000 token rows
//!   (5-127 ids) against `memcpy` of the bytes it writes.
//!
//! `python3 benches/report.py` turns the results into the README's table.

use std::alloc::{Layout, alloc, dealloc};
use std::ffi::c_void;
use std::hint::black_box;
use std::ptr;

use arrow_dlpack::__internal::count_set_bits;
use arrow_dlpack::abi::{
    ArrowArray, ArrowSchema, DLDataType, DLDevice, DLManagedTensorVersioned, DLPackVersion,
    DLTensor, K_DL_CPU, K_DL_FLOAT,
};
use arrow_dlpack::capi::{
    ArrowDlpackCopy, ArrowDlpackExportOptions, ArrowDlpackJagged, ArrowDlpackPadding,
    arrow_dlpack_export_jagged, arrow_dlpack_export_padded, arrow_dlpack_export_stream,
    arrow_dlpack_export_versioned, arrow_dlpack_export_with, arrow_dlpack_import_versioned,
};
use arrow_dlpack_testkit::Stream;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

unsafe extern "C" fn release_array(array: *mut ArrowArray) {
    // SAFETY: called once on a live array.
    unsafe { (*array).release = None };
}

unsafe extern "C" fn release_schema(schema: *mut ArrowSchema) {
    // SAFETY: as above.
    unsafe { (*schema).release = None };
}

fn schema(format: &'static std::ffi::CStr, children: *mut *mut ArrowSchema) -> ArrowSchema {
    ArrowSchema {
        format: format.as_ptr(),
        name: ptr::null(),
        metadata: ptr::null(),
        flags: 0,
        n_children: !children.is_null() as i64,
        children,
        dictionary: ptr::null_mut(),
        release: Some(release_schema),
        private_data: ptr::null_mut(),
    }
}

fn array(length: i64, buffers: &mut [*const c_void], children: *mut *mut ArrowArray) -> ArrowArray {
    ArrowArray {
        length,
        null_count: 0,
        offset: 0,
        n_buffers: buffers.len() as i64,
        n_children: !children.is_null() as i64,
        buffers: buffers.as_mut_ptr(),
        children,
        dictionary: ptr::null_mut(),
        release: Some(release_array),
        private_data: ptr::null_mut(),
    }
}

/// One export + delete.
fn cycle(template: &ArrowArray, schema: &ArrowSchema) {
    // SAFETY: a bitwise copy of a template whose release only clears itself.
    let mut a = unsafe { ptr::read(template) };
    // SAFETY: valid structs.
    let t = unsafe { arrow_dlpack_export_versioned(&mut a, schema, ptr::null_mut()) };
    assert!(!t.is_null());
    // SAFETY: a live tensor, deleted once.
    unsafe { ((*t).deleter.unwrap())(black_box(t)) };
}

/// The baseline: allocate a context as large as our owner (tensor, array,
/// ndim, shape and strides), release the array, free.
fn baseline(template: &ArrowArray, ndim: usize) {
    let layout = Layout::from_size_align(
        size_of::<DLManagedTensorVersioned>() + size_of::<ArrowArray>() + 8 + 16 * ndim,
        8,
    )
    .unwrap();
    // SAFETY: non-zero size.
    let ctx = black_box(unsafe { alloc(layout) });
    assert!(!ctx.is_null());
    // SAFETY: a bitwise copy of the template, released once.
    let mut a = unsafe { ptr::read(template) };
    // SAFETY: as above.
    unsafe { (a.release.unwrap())(&mut a) };
    // SAFETY: allocated above with this layout.
    unsafe { dealloc(ctx, layout) };
}

/// What a minimal C export allocates: the tensor, the moved array and a
/// 1-D shape and stride.
#[repr(C)]
struct Minimal {
    tensor: DLManagedTensorVersioned,
    array: ArrowArray,
    shape: i64,
    stride: i64,
}

unsafe extern "C" fn minimal_delete(tensor: *mut DLManagedTensorVersioned) {
    let ctx = tensor.cast::<Minimal>();
    // SAFETY: a context made by `minimal_export`, deleted once.
    unsafe {
        if let Some(release) = (*ctx).array.release {
            release(&mut (*ctx).array);
        }
        libc::free(ctx.cast());
    }
}

/// The export a hand-written C library would make of a primitive array:
/// the format and null count checked, one `malloc`, the tensor filled, the
/// array moved.
///
/// # Safety
/// Valid structs.
unsafe fn minimal_export(a: &mut ArrowArray, s: &ArrowSchema) -> *mut DLManagedTensorVersioned {
    // SAFETY: valid structs (caller's contract): a C string format, a
    // values buffer.
    unsafe {
        let f = s.format.cast::<u8>();
        if f.is_null() || *f == 0 || *f.add(1) != 0 {
            return ptr::null_mut();
        }
        let (code, bits) = match *f {
            b'l' => (0u8, 64u8),
            b'g' => (K_DL_FLOAT, 64),
            b'i' => (0, 32),
            b'f' => (K_DL_FLOAT, 32),
            _ => return ptr::null_mut(),
        };
        if a.release.is_none() || a.null_count != 0 || a.n_buffers != 2 {
            return ptr::null_mut();
        }
        let ctx = libc::malloc(size_of::<Minimal>()).cast::<Minimal>();
        if ctx.is_null() {
            return ptr::null_mut();
        }
        let data = (*a.buffers.add(1))
            .cast::<u8>()
            .wrapping_add(a.offset as usize * bits as usize / 8);
        ctx.write(Minimal {
            tensor: DLManagedTensorVersioned {
                version: DLPackVersion { major: 1, minor: 3 },
                manager_ctx: ctx.cast(),
                deleter: Some(minimal_delete),
                flags: 1,
                dl_tensor: DLTensor {
                    data: data.cast_mut().cast(),
                    device: DLDevice {
                        device_type: K_DL_CPU,
                        device_id: 0,
                    },
                    ndim: 1,
                    dtype: DLDataType {
                        code,
                        bits,
                        lanes: 1,
                    },
                    shape: &raw mut (*ctx).shape,
                    strides: &raw mut (*ctx).stride,
                    byte_offset: 0,
                },
            },
            array: ptr::read(a),
            shape: a.length,
            stride: 1,
        });
        a.release = None;
        &raw mut (*ctx).tensor
    }
}

/// One minimal export + delete.
fn minimal_cycle(template: &ArrowArray, schema: &ArrowSchema) {
    // SAFETY: a bitwise copy of a template whose release only clears itself.
    let mut a = unsafe { ptr::read(template) };
    // SAFETY: valid structs.
    let t = unsafe { minimal_export(&mut a, schema) };
    assert!(!t.is_null());
    // SAFETY: a live tensor, deleted once.
    unsafe { ((*t).deleter.unwrap())(black_box(t)) };
}

fn export_cycle(c: &mut Criterion) {
    let values = vec![0u64; 1024];
    let mut group = c.benchmark_group("export_cycle");

    let mut buffers = [ptr::null(), values.as_ptr().cast::<c_void>()];
    let one_d = array(1024, &mut buffers, ptr::null_mut());
    let one_d_schema = schema(c"l", ptr::null_mut());
    // The three alternate within the group, so that load changes hit them
    // alike.
    group.bench_function("1d/arrow_dlpack", |b| {
        b.iter(|| cycle(&one_d, &one_d_schema))
    });
    group.bench_function("1d/minimal_export", |b| {
        b.iter(|| minimal_cycle(&one_d, &one_d_schema))
    });
    group.bench_function("1d/baseline", |b| b.iter(|| baseline(&one_d, 1)));

    // +w:4 of float64: a 256 x 4 tensor.
    let mut child_buffers = [ptr::null(), values.as_ptr().cast::<c_void>()];
    let mut child = array(1024, &mut child_buffers, ptr::null_mut());
    let mut child_schema = schema(c"g", ptr::null_mut());
    let mut child_ptr: *mut ArrowArray = &mut child;
    let mut child_schema_ptr: *mut ArrowSchema = &mut child_schema;
    let mut list_buffers = [ptr::null()];
    let two_d = array(256, &mut list_buffers, &mut child_ptr);
    let two_d_schema = schema(c"+w:4", &mut child_schema_ptr);
    group.bench_function("2d/arrow_dlpack", |b| {
        b.iter(|| cycle(&two_d, &two_d_schema))
    });
    group.bench_function("2d/baseline", |b| b.iter(|| baseline(&two_d, 2)));
    group.finish();
}

unsafe extern "C" fn no_op_deleter(_: *mut DLManagedTensorVersioned) {}

/// One import (a 1-D or N-D tensor) and the release of the array and schema.
fn import_cycle(template: &DLManagedTensorVersioned) {
    // SAFETY: a bitwise copy of a template whose deleter does nothing.
    let mut tensor = unsafe { ptr::read(template) };
    let mut array = std::mem::MaybeUninit::<ArrowArray>::uninit();
    let mut schema = std::mem::MaybeUninit::<ArrowSchema>::uninit();
    // SAFETY: a valid tensor, writable out structs.
    let status = unsafe {
        arrow_dlpack_import_versioned(
            &mut tensor,
            array.as_mut_ptr(),
            schema.as_mut_ptr(),
            ptr::null_mut(),
        )
    };
    assert_eq!(status as i32, 0);
    // SAFETY: written on success; each released once.
    unsafe {
        let (mut array, mut schema) = (array.assume_init(), schema.assume_init());
        (array.release.unwrap())(black_box(&mut array));
        (schema.release.unwrap())(&mut schema);
    }
}

fn import(c: &mut Criterion) {
    let mut values = vec![0f32; 1024];
    let mut group = c.benchmark_group("import_cycle");
    for (name, mut shape) in [("1d", vec![1024i64]), ("2d", vec![256, 4])] {
        let template = DLManagedTensorVersioned {
            version: DLPackVersion { major: 1, minor: 3 },
            manager_ctx: ptr::null_mut(),
            deleter: Some(no_op_deleter),
            flags: 0,
            dl_tensor: DLTensor {
                data: values.as_mut_ptr().cast(),
                device: DLDevice {
                    device_type: K_DL_CPU,
                    device_id: 0,
                },
                ndim: shape.len() as i32,
                dtype: DLDataType {
                    code: K_DL_FLOAT,
                    bits: 32,
                    lanes: 1,
                },
                shape: shape.as_mut_ptr(),
                strides: ptr::null_mut(),
                byte_offset: 0,
            },
        };
        let mut buffers = [ptr::null(), values.as_ptr().cast::<c_void>()];
        let baseline_array = array(1024, &mut buffers, ptr::null_mut());
        group.bench_function(format!("{name}_arrow_dlpack"), |b| {
            b.iter(|| import_cycle(&template))
        });
        group.bench_function(format!("{name}_baseline"), |b| {
            b.iter(|| baseline(&baseline_array, 1))
        });
    }
    group.finish();
}

fn null_scan(c: &mut Criterion) {
    let mut group = c.benchmark_group("null_scan");
    // In L1/L2, in L3, and in main memory.
    for bytes in [64 << 10, 4 << 20, 64 << 20] {
        let bitmap: Vec<u8> = vec![0xff; bytes];
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_with_input(
            BenchmarkId::new("count_set_bits", bytes),
            &bitmap,
            |b, m| {
                // Bit offset 3: the unaligned case.
                b.iter(|| count_set_bits(black_box(m), 3, m.len() * 8 - 3))
            },
        );
        group.bench_with_input(BenchmarkId::new("plain_read", bytes), &bitmap, |b, m| {
            b.iter(|| {
                black_box(m).chunks_exact(8).fold(0u64, |acc, w| {
                    acc ^ u64::from_le_bytes(w.try_into().unwrap())
                })
            })
        });
    }
    group.finish();
}

/// `export_with` / `export_stream` of host data under `copy`, deleting the
/// tensor; `arrays` are re-armed (their `release` restored) each time.
fn copy_export(
    arrays: &mut [ArrowArray],
    schema: &ArrowSchema,
    o: &ArrowDlpackExportOptions,
    stream: bool,
) {
    for a in arrays.iter_mut() {
        a.release = Some(release_array);
    }
    let mut error = arrow_dlpack::ArrowDlpackError {
        status: arrow_dlpack::Status::ARROW_DLPACK_OK,
        message: [0; 256],
    };
    let t = if stream {
        // SAFETY: bitwise copies of the arrays (re-armed above); the
        // schema's release only marks it released.
        let mut producer =
            unsafe { Stream::new(schema, arrays.iter_mut().map(|a| ptr::read(a)).collect()) };
        let mut s = producer.c_stream();
        // SAFETY: a valid stream over valid chunks.
        unsafe { arrow_dlpack_export_stream(&mut s, o, &mut error) }
    } else {
        // SAFETY: a valid array and schema.
        unsafe { arrow_dlpack_export_with(&mut arrays[0], schema, o, &mut error) }
    };
    assert!(!t.is_null(), "status {:?}", error.status);
    // SAFETY: a live tensor, deleted once.
    unsafe { ((*t).deleter.unwrap())(t) };
}

/// `n` float64 values `0, 1, ...`, backed by transparent huge pages where
/// the kernel grants them, as the library's own large copies are: the
/// `memcpy` baselines then differ from the copies only in the copying.
fn warm_buffer(n: usize) -> Vec<f64> {
    let mut v = Vec::<f64>::with_capacity(n);
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = (v.as_ptr() as usize).next_multiple_of(HUGE);
        let end = (v.as_ptr() as usize + n * 8) / HUGE * HUGE;
        if end > start {
            // SAFETY: a range of the vector's own allocation; advice only.
            unsafe { libc::madvise(start as *mut c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    v.extend((0..n).map(|i| i as f64));
    v
}

/// The baselines of the copies, `n` float64 (named `memcpy{sep}64MiB` and
/// `malloc_memcpy_free{sep}64MiB`): `memcpy` into warm memory, and what any
/// copy into new memory also pays (its pages faulted in). Returns the
/// source values.
fn memcpy_baselines(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    sep: &str,
    n: usize,
) -> Vec<f64> {
    let values = warm_buffer(n);
    let mut out = warm_buffer(n);
    group.throughput(Throughput::Bytes((n * 8) as u64));
    group.bench_function(format!("memcpy{sep}64MiB"), |b| {
        b.iter(|| out.copy_from_slice(black_box(&values)))
    });
    group.bench_function(format!("malloc_memcpy_free{sep}64MiB"), |b| {
        b.iter(|| {
            let mut fresh = Vec::<f64>::with_capacity(n);
            fresh.extend_from_slice(black_box(&values));
            black_box(fresh)
        })
    });
    values
}

/// One copy, at memory speed: each kernel beside `memcpy` of the bytes it
/// writes, in the same run.
fn copies(c: &mut Criterion) {
    let mut group = c.benchmark_group("copies");
    group.sample_size(20);
    let n: usize = 8 << 20; // 8M float64: 64 MiB out
    let values = memcpy_baselines(&mut group, "_", n);
    let o = |fill: bool| ArrowDlpackExportOptions {
        copy: ArrowDlpackCopy::ARROW_DLPACK_COPY_IF_NEEDED as i32,
        fill_nulls: fill as i32,
        fill_value: -1.0,
        ..Default::default()
    };
    // Eight chunks of 1M, concatenated.
    let per = n / 8;
    let mut chunk_buffers: Vec<[*const c_void; 2]> = (0..8)
        .map(|k| [ptr::null(), values[k * per..].as_ptr().cast()])
        .collect();
    let mut chunks: Vec<ArrowArray> = chunk_buffers
        .iter_mut()
        .map(|b| array(per as i64, b, ptr::null_mut()))
        .collect();
    let g = schema(c"g", ptr::null_mut());
    group.bench_function("concatenate_8_chunks_64MiB", |b| {
        b.iter(|| copy_export(&mut chunks, &g, &o(false), true))
    });
    // Nulls: one in a hundred, filled.
    let bitmap: Vec<u8> = (0..n / 8)
        .map(|i| if i % 12 == 0 { 0xfe } else { 0xff })
        .collect();
    let mut buffers = [bitmap.as_ptr().cast::<c_void>(), values.as_ptr().cast()];
    let mut with_nulls = [array(n as i64, &mut buffers, ptr::null_mut())];
    with_nulls[0].null_count = -1;
    group.bench_function("fill_nulls_64MiB", |b| {
        b.iter(|| copy_export(&mut with_nulls, &g, &o(true), false))
    });
    // Booleans: 64M bits unpacked to 64 MiB of bytes.
    let bits: Vec<u8> = (0..n).map(|i| (i * 37) as u8).collect();
    let mut bool_buffers = [ptr::null(), bits.as_ptr().cast::<c_void>()];
    let mut booleans = [array((n * 8) as i64, &mut bool_buffers, ptr::null_mut())];
    let b_schema = schema(c"b", ptr::null_mut());
    group.bench_function("unpack_booleans_64M", |b| {
        b.iter(|| copy_export(&mut booleans, &b_schema, &o(false), false))
    });
    group.finish();
}

/// `columns` float64 columns of `rows` rows: separate buffers (`adjacent`
/// false) or one buffer cut in columns laid end to end.
struct Table {
    _values: Vec<Vec<f64>>,
    _buffers: Vec<[*const c_void; 2]>,
    children: Vec<ArrowArray>,
    child_ptrs: Vec<*mut ArrowArray>,
    schemas: Vec<ArrowSchema>,
    schema_ptrs: Vec<*mut ArrowSchema>,
    parent_buffers: [*const c_void; 1],
}

impl Table {
    fn new(rows: usize, columns: usize, adjacent: bool) -> Box<Table> {
        // Backed by huge pages as the baselines' buffers are, so that the
        // ratios compare copying only.
        let values: Vec<Vec<f64>> = match adjacent {
            true => vec![warm_buffer(rows * columns)],
            false => (0..columns).map(|_| warm_buffer(rows)).collect(),
        };
        let buffers: Vec<[*const c_void; 2]> = (0..columns)
            .map(|j| {
                let data = match adjacent {
                    true => values[0][j * rows..].as_ptr(),
                    false => values[j].as_ptr(),
                };
                [ptr::null(), data.cast()]
            })
            .collect();
        let mut t = Box::new(Table {
            _values: values,
            _buffers: buffers,
            children: Vec::new(),
            child_ptrs: Vec::new(),
            schemas: (0..columns)
                .map(|_| schema(c"g", ptr::null_mut()))
                .collect(),
            schema_ptrs: Vec::new(),
            parent_buffers: [ptr::null()],
        });
        let children: Vec<ArrowArray> = t
            ._buffers
            .iter_mut()
            .map(|b| array(rows as i64, b, ptr::null_mut()))
            .collect();
        t.children = children;
        t.child_ptrs = t.children.iter_mut().map(|c| c as *mut _).collect();
        t.schema_ptrs = t.schemas.iter_mut().map(|s| s as *mut _).collect();
        t
    }

    /// The struct array and schema over the columns.
    fn parent(&mut self, rows: usize) -> (ArrowArray, ArrowSchema) {
        let mut a = array(
            rows as i64,
            &mut self.parent_buffers,
            self.child_ptrs.as_mut_ptr(),
        );
        a.n_buffers = 1;
        a.n_children = self.children.len() as i64;
        let mut s = schema(c"+s", self.schema_ptrs.as_mut_ptr());
        s.n_children = self.children.len() as i64;
        (a, s)
    }
}

/// Record batches as matrices: row-major and column-major copies of
/// float64 columns against `memcpy` of the same bytes (warm, and into
/// fresh memory), and the share of adjacent columns at growing sizes.
fn tables(c: &mut Criterion) {
    let mut group = c.benchmark_group("tables");
    group.sample_size(20);
    let order = |order: i32, copy: ArrowDlpackCopy| ArrowDlpackExportOptions {
        copy: copy as i32,
        order,
        ..Default::default()
    };
    let if_needed = ArrowDlpackCopy::ARROW_DLPACK_COPY_IF_NEEDED;
    // 8 columns x 1M rows (64 MiB), then 1 to 1,000 columns of 64 MiB in
    // all; on 1 and 2 threads and the default (0: the machine's cores, at
    // most 8).
    for columns in [8usize, 1, 2, 100, 1000] {
        let rows = (8 << 20) / columns;
        let bytes = (rows * columns * 8) as u64;
        group.throughput(Throughput::Bytes(bytes));
        let mut table = Table::new(rows, columns, false);
        let (parent, s) = table.parent(rows);
        let mut arrays = [parent];
        let counts: &[i32] = match columns {
            8 | 100 | 1000 => &[1, 2, 0],
            _ => &[0],
        };
        for &threads in counts {
            for (name, o) in [("row_major", 1), ("column_major", 2)] {
                let options = ArrowDlpackExportOptions {
                    threads,
                    ..order(o, if_needed)
                };
                group.bench_function(format!("{name}_copy_t{threads}/{columns}x{rows}"), |b| {
                    b.iter(|| copy_export(&mut arrays, &s, &options, false))
                });
            }
        }
    }
    // memcpy of 64 MiB split over N threads (scoped, spawned each time: a
    // few microseconds of a copy of milliseconds): what N threads can move.
    let n = 8 << 20;
    let (source, mut out) = (warm_buffer(n), warm_buffer(n));
    let default = arrow_dlpack::threads();
    let mut counts = vec![2usize, default];
    counts.dedup();
    for threads in counts {
        group.bench_function(format!("memcpy_64MiB_t{threads}"), |b| {
            b.iter(|| {
                let part = n.div_ceil(threads);
                std::thread::scope(|scope| {
                    for (dst, src) in out.chunks_mut(part).zip(source.chunks(part)) {
                        scope.spawn(move || dst.copy_from_slice(black_box(src)));
                    }
                });
            })
        });
    }
    memcpy_baselines(&mut group, "/", 8 << 20);
    // Shared: O(1) whatever the size.
    for rows in [1usize << 10, 1 << 20] {
        let mut table = Table::new(rows, 8, true);
        let (parent, s) = table.parent(rows);
        let mut arrays = [parent];
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("shared/8x{rows}"), |b| {
            b.iter(|| {
                copy_export(
                    &mut arrays,
                    &s,
                    &order(0, ArrowDlpackCopy::ARROW_DLPACK_COPY_NEVER),
                    false,
                )
            })
        });
    }
    group.finish();
}

/// Criterion's settings: its defaults, or, with
/// `ARROW_DLPACK_BENCH_SMOKE=1` (CI runs the docs' commands so), a few
/// short samples: the run proves that every bench runs, and measures
/// nothing worth publishing.
fn settings() -> Criterion {
    let criterion = Criterion::default();
    match std::env::var("ARROW_DLPACK_BENCH_SMOKE").as_deref() {
        Ok("1") => criterion
            .warm_up_time(std::time::Duration::from_millis(20))
            .measurement_time(std::time::Duration::from_millis(100))
            .sample_size(10),
        _ => criterion,
    }
}

criterion_group! {
    name = benches;
    config = settings();
    targets = export_cycle, import, null_scan, copies, tables, jagged
}
criterion_main!(benches);

/// A `list<int32>` column: `rows` rows of 5 to 127 ids (a fixed
/// pseudo-random sequence), its offsets and values.
fn token_lists(rows: usize) -> (Vec<i32>, Vec<i32>) {
    let mut offsets = Vec::with_capacity(rows + 1);
    offsets.push(0i32);
    let mut state = 0x2545_f491_u32;
    for _ in 0..rows {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        offsets.push(offsets.last().unwrap() + 5 + (state % 123) as i32);
    }
    let values = (0..*offsets.last().unwrap()).map(|i| i % 50_000).collect();
    (offsets, values)
}

fn jagged(c: &mut Criterion) {
    let mut group = c.benchmark_group("jagged");
    let item = schema(c"i", ptr::null_mut());
    for rows in [1_000usize, 1_000_000] {
        let (offsets, values) = token_lists(rows);
        let mut child_buffers = [ptr::null(), values.as_ptr().cast::<c_void>()];
        let mut child = array(values.len() as i64, &mut child_buffers, ptr::null_mut());
        let mut child_ptr: *mut ArrowArray = &mut child;
        let mut buffers = [ptr::null(), offsets.as_ptr().cast::<c_void>()];
        let list = array(rows as i64, &mut buffers, &mut child_ptr);
        let mut item_ptr = &item as *const ArrowSchema as *mut ArrowSchema;
        let list_schema = schema(c"+l", &mut item_ptr);
        group.bench_function(BenchmarkId::new("export_jagged", rows), |b| {
            b.iter(|| {
                // SAFETY: bitwise copies of templates whose release only
                // clears themselves.
                let mut a = unsafe { ptr::read(&list) };
                let mut out = ArrowDlpackJagged {
                    values: ptr::null_mut(),
                    offsets: ptr::null_mut(),
                };
                // SAFETY: valid structs.
                let status = unsafe {
                    arrow_dlpack_export_jagged(
                        &mut a,
                        &list_schema,
                        ptr::null(),
                        &mut out,
                        ptr::null_mut(),
                    )
                };
                assert_eq!(status, arrow_dlpack::Status::ARROW_DLPACK_OK);
                // SAFETY: live tensors, each deleted once.
                unsafe {
                    ((*out.values).deleter.unwrap())(black_box(out.values));
                    ((*out.offsets).deleter.unwrap())(black_box(out.offsets));
                }
            })
        });
        group.bench_function(BenchmarkId::new("export_values", rows), |b| {
            b.iter(|| cycle(&child, &item))
        });
    }
    // The padded copy of 50,000 rows, right-padded to the longest.
    let rows = 50_000;
    let (offsets, values) = token_lists(rows);
    let mut child_buffers = [ptr::null(), values.as_ptr().cast::<c_void>()];
    let mut child = array(values.len() as i64, &mut child_buffers, ptr::null_mut());
    let mut child_ptr: *mut ArrowArray = &mut child;
    let mut buffers = [ptr::null(), offsets.as_ptr().cast::<c_void>()];
    let list = array(rows as i64, &mut buffers, &mut child_ptr);
    let mut item_ptr = &item as *const ArrowSchema as *mut ArrowSchema;
    let list_schema = schema(c"+l", &mut item_ptr);
    let longest = offsets.windows(2).map(|w| w[1] - w[0]).max().unwrap() as usize;
    // Values and mask.
    let written = rows * longest * (4 + 1);
    let source = vec![1u8; written];
    let mut out = vec![0u8; written];
    group.throughput(Throughput::Bytes(written as u64));
    group.bench_function("memcpy_padded_bytes", |b| {
        b.iter(|| out.copy_from_slice(black_box(&source)))
    });
    group.bench_function("padded_50000", |b| {
        b.iter(|| {
            // SAFETY: as above.
            let mut a = unsafe { ptr::read(&list) };
            let mut mask: *mut DLManagedTensorVersioned = ptr::null_mut();
            let o = ArrowDlpackExportOptions {
                validity: &mut mask,
                ..Default::default()
            };
            let padding = ArrowDlpackPadding::default();
            // SAFETY: valid structs.
            let t = unsafe {
                arrow_dlpack_export_padded(&mut a, &list_schema, &o, &padding, ptr::null_mut())
            };
            assert!(!t.is_null());
            // SAFETY: live tensors, each deleted once.
            unsafe {
                ((*t).deleter.unwrap())(black_box(t));
                ((*mask).deleter.unwrap())(black_box(mask));
            }
        })
    });
    group.finish();
}
