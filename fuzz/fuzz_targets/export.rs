//! Fuzzes the export entry points with Arrow struct trees built from the
//! input: formats, n_buffers, lengths, offsets, null counts, validity bits,
//! nested fixed_size_list children, metadata blocks and extension JSON,
//! buffers pointing into a fuzz-owned arena. The trusted preconditions of
//! the C Data Interface hold by construction (buffers cover what the
//! claimed lengths need, strings are NUL-terminated); everything else is
//! the fuzzer's.
//!
//! Checks: on success the tensor's elements all lie inside the arena,
//! shape/strides are consistent, the array was moved, the deleter releases
//! it exactly once; on failure the array is byte-for-byte untouched.
#![no_main]

use std::ffi::{CString, c_void};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_dlpack::ArrowDlpackError;
use arrow_dlpack::abi::*;
use arrow_dlpack::capi::*;
use arrow_dlpack_testkit::Stream;
use libfuzzer_sys::fuzz_target;

const ARENA: usize = 1 << 16;
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
        // Mostly in range, sometimes wild.
        match self.byte() {
            250 => -1,
            251 => i64::MAX,
            252 => i64::MIN,
            253 => -(self.byte() as i64) - 2,
            b => (b as i64) % (max + 1),
        }
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

const FORMATS: [&str; 18] = [
    "c", "C", "s", "S", "i", "I", "l", "L", "e", "f", "g", "b", "u", "tdD", "+w:", "w:", "d:", "?",
];

/// A decimal's width in bytes (`d:p,s,bits`; 16 without the bits).
fn decimal_width(format: &str) -> Option<usize> {
    let params = format.strip_prefix("d:")?;
    Some(match params.split(',').nth(2) {
        Some(bits) => bits.parse::<usize>().unwrap_or(128) / 8,
        None => 16,
    })
}

/// Owns everything one level of the tree points at.
struct Level {
    format: CString,
    metadata: Vec<u8>,
    buffers: Vec<*const c_void>,
    child_array: Vec<*mut ArrowArray>,
    child_schema: Vec<*mut ArrowSchema>,
    array: Box<ArrowArray>,
    schema: Box<ArrowSchema>,
    child: Option<Box<Level>>,
    /// The extension JSON in the metadata, and which of the forms above
    /// made it (2: random bytes, which the model cannot interpret).
    json_form: Option<(u8, String)>,
}

fn build(input: &mut Input, arena: &mut [u8], depth: usize) -> Box<Level> {
    let mut format = FORMATS[input.byte() as usize % FORMATS.len()].to_string();
    let list_size = input.small(6);
    if format == "+w:" || format == "w:" {
        format = format!("{format}{}", list_size.max(0));
    }
    if format == "d:" {
        // decimal32, 64 and 128 (value-checked below), at their largest
        // precision; the scale from -5 to 34, or out of range.
        let (bits, precision) = [(32, 9), (64, 18), (128, 38)][list_size.max(0) as usize % 3];
        let scale = input.small(40).saturating_sub(5);
        // Sometimes one digit past the width's limit (refused).
        let precision = precision + i64::from(input.byte() % 8 == 0);
        format = match input.byte() % 2 {
            0 if bits == 128 => format!("d:{precision},{scale}"),
            _ => format!("d:{precision},{scale},{bits}"),
        };
    }
    let length = input.small(40);
    let offset = input.small(8);
    let null_count = input.small(3);
    let n_buffers = if input.byte() % 8 == 0 {
        input.small(3)
    } else if format.starts_with("+w") {
        1
    } else {
        2
    };
    let width = match format.as_str() {
        // A fixed-size binary's entries are its width in bytes.
        w if w.starts_with("w:") => (list_size.max(1)) as usize,
        d if d.starts_with("d:") => decimal_width(d).unwrap_or(16),
        "c" | "C" => 1,
        "s" | "S" | "e" => 2,
        "i" | "I" | "f" => 4,
        _ => 8,
    };
    // Buffers: a NULL pointer, or an arena region large enough for what
    // the claimed offset + length need (the trusted precondition).
    // Saturating: a bogus length must not wrap into a small, satisfiable size.
    let needed = (offset.max(0).saturating_add(length.max(0)) as usize)
        .saturating_mul(width)
        .saturating_add(16);
    let mut buffers = Vec::new();
    for _ in 0..n_buffers.clamp(0, 3) {
        if input.byte() % 5 == 0 || needed > ARENA / 2 {
            buffers.push(ptr::null());
        } else {
            let at = (input.byte() as usize * 64) % (ARENA / 2);
            let bits = input.byte();
            arena[at..at + 8].fill(bits);
            buffers.push(arena[at..].as_ptr().cast());
        }
    }
    let mut metadata = Vec::new();
    let mut json_form = None;
    if input.byte() % 4 == 0 {
        let form = input.byte() % 4;
        let json = match form {
            0 => format!(r#"{{"shape":[{},{}]}}"#, input.small(4), input.small(4)),
            1 => format!(
                r#"{{"shape":[2,{}],"permutation":[{},{}]}}"#,
                input.small(4),
                input.small(2),
                input.small(2)
            ),
            2 => {
                let n = input.byte() as usize % 24;
                String::from_utf8_lossy(&input.bytes(n)).into_owned()
            }
            _ => r#"{"shape":[1],"dim_names":["x"],"x":[{"y":null}]}"#.to_string(),
        };
        json_form = Some((form, json.clone()));
        let entries: [(&[u8], &[u8]); 2] = [
            (b"ARROW:extension:name", b"arrow.fixed_shape_tensor"),
            (b"ARROW:extension:metadata", json.as_bytes()),
        ];
        let corrupt = input.byte() % 16 == 0;
        metadata.extend((if corrupt { -3i32 } else { 2 }).to_ne_bytes());
        for (k, v) in entries {
            metadata.extend((k.len() as i32).to_ne_bytes());
            metadata.extend(k);
            metadata.extend((v.len() as i32).to_ne_bytes());
            metadata.extend(v);
        }
    }
    let child = (format.starts_with("+w") && depth < 4 && input.byte() % 8 != 0)
        .then(|| build(input, arena, depth + 1));
    let format = CString::new(format).unwrap();
    let mut level = Box::new(Level {
        format,
        metadata,
        buffers,
        child_array: Vec::new(),
        child_schema: Vec::new(),
        array: Box::new(ArrowArray {
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
        child,
        json_form,
    });
    level.schema.format = level.format.as_ptr();
    if !level.metadata.is_empty() {
        level.schema.metadata = level.metadata.as_ptr().cast();
    }
    if input.byte() % 16 != 0 {
        level.array.buffers = level.buffers.as_mut_ptr();
    }
    if let Some(child) = level.child.as_mut() {
        level.child_array.push(&mut *child.array);
        level.child_schema.push(&mut *child.schema);
        let n = if input.byte() % 8 == 0 {
            input.small(2)
        } else {
            1
        };
        level.array.n_children = n;
        level.schema.n_children = n;
        level.array.children = level.child_array.as_mut_ptr();
        level.schema.children = level.child_schema.as_mut_ptr();
    }
    // The children counts must not lie about the pointers (trusted).
    if level.array.n_children > level.child_array.len() as i64 || level.array.children.is_null() {
        level.array.n_children = level.array.n_children.min(level.child_array.len() as i64);
        level.schema.n_children = level.array.n_children;
    }
    level
}

fn bytes_of<T>(value: &T) -> Vec<u8> {
    // SAFETY: reading a live value's bytes (no padding in ArrowArray).
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()).to_vec() }
}

/// Most elements the model enumerates; larger tensors get the cheap checks.
const MODEL_LIMIT: i128 = 1 << 14;

/// What the C Data Interface says a tree holds, computed here without the
/// library.
struct Model {
    /// `[length, N, M, ...]`.
    storage: Vec<i64>,
    format: String,
    /// Bytes per element (booleans: 0, one bit each).
    width: usize,
    /// The leaf buffer's address.
    values: usize,
    /// Each covered leaf element's index in the leaf buffer, in row-major
    /// storage order (`None` beyond `MODEL_LIMIT` elements).
    indices: Option<Vec<i128>>,
    /// Whether each is valid: every level's bit set.
    valid: Option<Vec<bool>>,
}

impl Model {
    fn addresses(&self) -> Option<Vec<usize>> {
        let w = self.width as i128;
        let i = self.indices.as_ref()?;
        Some(i.iter().map(|&i| self.values + (i * w) as usize).collect())
    }
}

/// The model of an accepted tree. Asserts the invariants an accepted tree
/// must meet: formats agree between schema and array, every child covers
/// its parent's range, and (unless `nulls` may be filled) no covered null.
fn model(root: &Level, nulls: bool) -> Model {
    let mut level = root;
    let mut shape = vec![root.array.length];
    // Logical indices (before the level's own offset) of covered elements.
    let (mut start, mut count) = (0i128, root.array.length as i128);
    let mut elements: Option<Vec<(i128, bool)>> =
        (count <= MODEL_LIMIT).then(|| (0..count).map(|i| (i, true)).collect());
    let mut depth = 0;
    loop {
        let (a, s) = (&*level.array, &*level.schema);
        // SAFETY: the harness's own NUL-terminated format string.
        let format = unsafe { std::ffi::CStr::from_ptr(s.format) }
            .to_str()
            .unwrap();
        assert!(
            a.length >= 0 && a.offset >= 0,
            "depth {depth}: negative length or offset accepted"
        );
        assert!(
            start + count <= a.length as i128,
            "depth {depth}: a child shorter than its parent's range was accepted"
        );
        let first = a.offset as i128 + start;
        assert!(
            a.null_count >= -1,
            "depth {depth}: null_count {} accepted",
            a.null_count
        );
        // SAFETY: `n_buffers >= 1` entries (the library checked the count
        // against the format before accepting; asserted below).
        let validity = if a.buffers.is_null() {
            ptr::null()
        } else {
            unsafe { *a.buffers }
        };
        let bit = |i: i128| {
            // SAFETY: the bitmap lies in the arena and covers the range.
            let byte = unsafe { *validity.cast::<u8>().add((i / 8) as usize) };
            byte >> (i % 8) & 1 == 1
        };
        if a.null_count != 0 && !validity.is_null() {
            if let Some(e) = elements.as_mut() {
                for (i, valid) in e.iter_mut() {
                    let set = bit(a.offset as i128 + *i);
                    assert!(set || nulls, "depth {depth}: a null at {i} was accepted");
                    *valid &= set;
                }
            }
        } else {
            assert!(a.null_count <= 0 || depth > 0, "nulls accepted");
        }
        if let Some(size) = format.strip_prefix("+w:") {
            let size: i128 = size.parse().unwrap();
            assert_eq!(
                (a.n_buffers, a.n_children, s.n_children),
                (1, 1, 1),
                "{format}"
            );
            shape.push(size as i64);
            (start, count) = (first * size, count * size);
            elements = elements
                .filter(|e| e.len() as i128 * size <= MODEL_LIMIT)
                .map(|e| {
                    e.iter()
                        .flat_map(|&(i, v)| {
                            (0..size).map(move |j| ((a.offset as i128 + i) * size + j, v))
                        })
                        .collect()
                });
            level = level.child.as_deref().expect("a list level has a child");
            depth += 1;
            continue;
        }
        if let Some(size) = format.strip_prefix("w:") {
            // The leaf's entries are `size` bytes each, read as uint8.
            let size: i128 = size.parse().unwrap();
            assert_eq!(
                (a.n_buffers, a.n_children, s.n_children),
                (2, 0, 0),
                "{format}"
            );
            assert!(
                root.json_form.is_none(),
                "an extension over fixed-size binary was accepted"
            );
            shape.push(size as i64);
            let bytes = elements
                .filter(|e| e.len() as i128 * size <= MODEL_LIMIT)
                .map(|e| {
                    e.iter()
                        .flat_map(|&(i, v)| {
                            (0..size).map(move |j| ((a.offset as i128 + i) * size + j, v))
                        })
                        .collect::<Vec<_>>()
                });
            // SAFETY: two entries, asserted above.
            let values = unsafe { *a.buffers.add(1) } as usize;
            return Model {
                storage: shape,
                format: "C".to_string(),
                width: 1,
                values,
                indices: bytes.as_ref().map(|e| e.iter().map(|&(i, _)| i).collect()),
                valid: bytes.map(|e| e.iter().map(|&(_, v)| v).collect()),
            };
        }
        assert_eq!(
            (a.n_buffers, a.n_children, s.n_children),
            (2, 0, 0),
            "{format}"
        );
        let width = match format {
            d if d.starts_with("d:") => decimal_width(d).unwrap(),
            "b" => 0,
            "c" | "C" => 1,
            "s" | "S" | "e" => 2,
            "i" | "I" | "f" | "tdD" => 4,
            "l" | "L" | "g" => 8,
            other => panic!("format {other:?} accepted"),
        };
        // SAFETY: two entries, asserted above.
        let values = unsafe { *a.buffers.add(1) } as usize;
        return Model {
            storage: shape,
            format: format.to_string(),
            width,
            values,
            indices: elements
                .as_ref()
                .map(|e| e.iter().map(|&(i, _)| a.offset as i128 + i).collect()),
            valid: elements.map(|e| e.iter().map(|&(_, v)| v).collect()),
        };
    }
}

/// The value of leaf element `index` as `target` (`None`: natural) would
/// hold it: a naive reference conversion, for the wide targets the fuzzer
/// asks for (kDLBool, int64, float64), little-endian bytes.
fn reference(m: &Model, index: i128, target: Option<DLDataType>) -> Vec<u8> {
    let at = m.values + (index * m.width as i128) as usize;
    // SAFETY: the element lies in the arena (the model's address).
    let raw = |n: usize| unsafe { std::slice::from_raw_parts(at as *const u8, n) }.to_vec();
    if m.format == "b" {
        // SAFETY: the bit lies in the arena.
        let byte = unsafe { *((m.values + (index / 8) as usize) as *const u8) };
        let b = (byte >> (index % 8)) & 1;
        return match target.map(|t| (t.code, t.bits)) {
            None | Some((K_DL_BOOL, 8)) => vec![b],
            Some((K_DL_INT, 64)) => (b as i64).to_le_bytes().to_vec(),
            _ => (b as f64).to_le_bytes().to_vec(),
        };
    }
    let Some(t) = target else {
        return raw(m.width);
    };
    let r = raw(m.width);
    if let Some(scale) = m
        .format
        .strip_prefix("d:")
        .and_then(|p| p.split(',').nth(1))
    {
        // The nearest float64 to integer / 10^scale, by Rust's correctly
        // rounded parser.
        let mut word = [0u8; 16];
        word[..m.width].copy_from_slice(&r);
        let shift = 128 - 8 * m.width as u32;
        let x = (i128::from_le_bytes(word) << shift) >> shift;
        let scale: i64 = scale.parse().unwrap();
        let v: f64 = format!("{x}e{}", -scale).parse().unwrap();
        return v.to_le_bytes().to_vec();
    }
    enum V {
        I(i128),
        F(f64),
    }
    let v = match m.format.as_str() {
        "c" => V::I(r[0] as i8 as i128),
        "C" => V::I(r[0] as i128),
        "s" => V::I(i16::from_le_bytes([r[0], r[1]]) as i128),
        "S" => V::I(u16::from_le_bytes([r[0], r[1]]) as i128),
        "i" | "tdD" => V::I(i32::from_le_bytes(r[..4].try_into().unwrap()) as i128),
        "I" => V::I(u32::from_le_bytes(r[..4].try_into().unwrap()) as i128),
        "l" => V::I(i64::from_le_bytes(r[..8].try_into().unwrap()) as i128),
        "L" => V::I(u64::from_le_bytes(r[..8].try_into().unwrap()) as i128),
        "f" => V::F(f32::from_le_bytes(r[..4].try_into().unwrap()) as f64),
        "g" => V::F(f64::from_le_bytes(r[..8].try_into().unwrap())),
        _ => unreachable!("float16 sources are not value-checked"),
    };
    match ((t.code, t.bits), v) {
        ((K_DL_BOOL, 8), V::I(i)) => vec![(i != 0) as u8],
        ((K_DL_BOOL, 8), V::F(f)) => vec![(f != 0.0) as u8],
        ((K_DL_INT, 64), V::I(i)) => (i as i64).to_le_bytes().to_vec(),
        ((K_DL_INT, 64), V::F(f)) => (f as i64).to_le_bytes().to_vec(),
        (_, V::I(i)) => (i as f64).to_le_bytes().to_vec(),
        (_, V::F(f)) => f.to_le_bytes().to_vec(),
    }
}

/// The addresses of a tensor's elements in row-major order of its shape.
fn tensor_addresses(data: usize, shape: &[i64], strides: &[i64], width: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut index = vec![0i64; shape.len()];
    if shape.iter().any(|&e| e == 0) {
        return out;
    }
    loop {
        let offset: i64 = index.iter().zip(strides).map(|(i, s)| i * s).sum();
        out.push(data + offset as usize * width);
        let mut d = shape.len();
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
}

/// The `[..]` after `"key":` in the harness's own JSON forms.
fn json_ints(json: &str, key: &str) -> Option<Vec<i64>> {
    let at = json.find(&format!("\"{key}\":["))? + key.len() + 4;
    let end = at + json[at..].find(']')?;
    json[at..end]
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.trim().parse().ok())
        .collect()
}

/// Checks an exported tensor against the model of the tree it came from.
fn check(tensor: &DLTensor, root: &Level, arena: &[u8]) {
    let n = tensor.ndim as usize;
    assert!(n >= 1 && !tensor.shape.is_null() && !tensor.strides.is_null());
    // SAFETY: a live tensor has `ndim` entries.
    let (shape, strides) = unsafe {
        (
            std::slice::from_raw_parts(tensor.shape, n),
            std::slice::from_raw_parts(tensor.strides, n),
        )
    };
    assert_eq!(tensor.byte_offset, 0);
    assert!(shape.iter().all(|&e| e >= 0) && strides.iter().all(|&s| s >= 0));
    let m = model(root, false);
    assert!(!m.format.starts_with("d:"), "a decimal was shared");
    let (storage, width, expected) = (m.storage.clone(), m.width, m.addresses());
    assert_eq!(tensor.dtype.bits as usize, width * 8);
    assert_eq!(shape[0], storage[0], "the first dimension is the length");
    // Element counts as mathematics has them: 0 if any extent is 0.
    let count = |dims: &[i64]| match dims.contains(&0) {
        true => 0,
        false => dims
            .iter()
            .try_fold(1i64, |n, &e| n.checked_mul(e))
            .expect("a non-empty tensor's size overflows"),
    };
    let (elements, stored) = (count(shape), count(&storage));
    assert_eq!(
        elements, stored,
        "shape {shape:?} does not hold the storage {storage:?}"
    );
    if elements == 0 {
        assert!(tensor.data.is_null(), "an empty tensor has data NULL");
        return;
    }
    let start = tensor.data as usize;
    let last: i64 = shape.iter().zip(strides).map(|(e, s)| (e - 1) * s).sum();
    let range = arena.as_ptr() as usize..arena.as_ptr() as usize + arena.len();
    assert!(range.contains(&start), "data outside the arena");
    assert!(
        range.contains(&(start + last as usize * width + width - 1)),
        "last element outside the arena"
    );
    let Some(expected) = expected else { return };
    // Accepted metadata always names arrow.fixed_shape_tensor: it applied.
    let known = root.json_form.as_ref().map(|(form, json)| {
        (
            *form,
            json_ints(json, "shape"),
            json_ints(json, "permutation"),
        )
    });
    match known {
        // Storage order is the tensor's order.
        None => {
            assert_eq!(shape, &storage[..]);
            assert_eq!(tensor_addresses(start, shape, strides, width), expected);
        }
        // A fixed_shape_tensor: logical dimension i is physical dimension
        // permutation[i]; the list size is the product of the shape.
        Some((form, Some(physical), permutation)) if form != 2 => {
            let list_size: i64 = physical.iter().product();
            assert_eq!(storage.len(), 2);
            assert_eq!(
                storage[1], list_size,
                "list size != product of the extension shape"
            );
            let permutation: Vec<usize> = permutation
                .map(|p| p.iter().map(|&d| d as usize).collect())
                .unwrap_or_else(|| (0..physical.len()).collect());
            let logical: Vec<i64> = permutation.iter().map(|&p| physical[p]).collect();
            assert_eq!(&shape[1..], &logical[..]);
            let got = tensor_addresses(start, shape, strides, width);
            let mut index = vec![0i64; n];
            for address in got {
                let mut physical_index = vec![0i64; physical.len()];
                for (d, &p) in permutation.iter().enumerate() {
                    physical_index[p] = index[d + 1];
                }
                let flat = physical_index
                    .iter()
                    .zip(&physical)
                    .fold(index[0], |f, (i, e)| f * e + i);
                assert_eq!(address, expected[flat as usize], "element {index:?}");
                for d in (0..n).rev() {
                    index[d] += 1;
                    if index[d] < shape[d] {
                        break;
                    }
                    index[d] = 0;
                }
            }
        }
        // JSON the model cannot read: each row holds the row's elements.
        Some(_) => {
            let mut got = tensor_addresses(start, shape, strides, width);
            let row = (elements / shape[0]) as usize;
            for (r, (g, e)) in got.chunks_mut(row).zip(expected.chunks(row)).enumerate() {
                g.sort_unstable();
                let mut e = e.to_vec();
                e.sort_unstable();
                assert_eq!(g, &e[..], "row {r}");
            }
        }
    }
}

/// Random export options, mostly valid; `validity` is set by the caller.
fn random_options(input: &mut Input) -> ArrowDlpackExportOptions {
    let dtype = |code, bits| DLDataType {
        code,
        bits,
        lanes: 1,
    };
    ArrowDlpackExportOptions {
        copy: [0, 1, 1, 2, 3][input.byte() as usize % 5],
        order: if input.byte() % 32 == 0 { 5 } else { 0 },
        fill_nulls: (input.byte() % 2) as i32,
        temporal_as_integer: (input.byte() % 2) as i32,
        fill_value: [0.0, 1.0, -1.0, 0.5, 300.0, f64::NAN][input.byte() as usize % 6],
        dtype: [
            dtype(0, 0),
            dtype(0, 0),
            dtype(K_DL_BOOL, 8),
            dtype(K_DL_INT, 64),
            dtype(K_DL_FLOAT, 64),
            dtype(K_DL_COMPLEX, 64),
        ][input.byte() as usize % 6],
        validity: ptr::null_mut(),
        // The tree builder makes no dictionary: 0, or an invalid value.
        dictionary_as_indices: (input.byte() % 64 == 0) as i32 * 2,
        threads: (input.byte() % 4) as i32,
        reserved: [0, 0, (input.byte() % 64 == 0) as i64],
    }
}

/// The bytes `value` (exact, as the library checked) has as an element
/// of format `format` converted to `target`.
fn fill_bytes(value: f64, format: &str, target: DLDataType) -> Vec<u8> {
    match (target.code, target.bits, format) {
        (K_DL_BOOL, 8, _) | (0, 0, "b") => vec![value as u8],
        (K_DL_INT, 64, _) | (0, 0, "l") => (value as i64).to_le_bytes().to_vec(),
        (K_DL_FLOAT, 64, _) | (0, 0, "g") => value.to_le_bytes().to_vec(),
        (0, 0, "c") => vec![value as i8 as u8],
        (0, 0, "C") => vec![value as u8],
        (0, 0, "s") => (value as i16).to_le_bytes().to_vec(),
        (0, 0, "S") => (value as u16).to_le_bytes().to_vec(),
        (0, 0, "i" | "tdD") => (value as i32).to_le_bytes().to_vec(),
        (0, 0, "I") => (value as u32).to_le_bytes().to_vec(),
        (0, 0, "L") => (value as u64).to_le_bytes().to_vec(),
        (0, 0, "f") => (value as f32).to_le_bytes().to_vec(),
        _ => unreachable!("float16 is not value-checked"),
    }
}

/// Checks a tensor made under `o` from `copies` copies of `root`: flags,
/// and (without an extension reshaping it) every element against the
/// naive reference, nulls written as the fill value, and the mask.
fn check_with(
    t: *mut DLManagedTensorVersioned,
    mask: *mut DLManagedTensorVersioned,
    root: &Level,
    o: &ArrowDlpackExportOptions,
    copies: usize,
    arena: &[u8],
) {
    // SAFETY: a live tensor from the library.
    let (tensor, flags) = unsafe { (&(*t).dl_tensor, (*t).flags) };
    let shared = flags == DLPACK_FLAG_BITMASK_READ_ONLY;
    if shared {
        assert!(o.copy != 2, "ALWAYS copies");
        if copies == 1 && o.temporal_as_integer == 0 {
            check(tensor, root, arena);
        }
    } else {
        assert_eq!(flags, DLPACK_FLAG_BITMASK_IS_COPIED);
        assert!(o.copy != 0, "NEVER never copies");
        assert_eq!(tensor.data as usize % 64, 0, "copies are 64-byte aligned");
    }
    let m = model(root, o.fill_nulls == 1);
    let natural = o.dtype.bits == 0;
    let target = (!natural).then_some(o.dtype);
    let decimal = m.format.starts_with("d:");
    if decimal {
        assert_eq!(
            (o.dtype.code, o.dtype.bits),
            (K_DL_FLOAT, 64),
            "a decimal only as the float asked for"
        );
    }
    let n = tensor.ndim as usize;
    // SAFETY: `ndim` entries.
    let shape = unsafe { std::slice::from_raw_parts(tensor.shape, n) };
    assert_eq!(shape[0], m.storage[0] * copies as i64, "chunks concatenate");
    let (Some(indices), Some(valid)) = (&m.indices, &m.valid) else {
        return;
    };
    if root.json_form.is_some() || m.format == "e" {
        return;
    }
    let width = tensor.dtype.bits as usize / 8;
    let per_copy = indices.len();
    for c in 0..copies {
        for (k, (&index, &ok)) in indices.iter().zip(valid).enumerate() {
            let expected = match ok {
                true => reference(&m, index, target),
                false => fill_bytes(o.fill_value, &m.format, o.dtype),
            };
            let at = (tensor.data as usize) + (c * per_copy + k) * width;
            // SAFETY: inside the tensor (row-major, no extension).
            let got = unsafe { std::slice::from_raw_parts(at as *const u8, width) };
            match decimal && ok {
                // Within one ulp of the nearest float (documented).
                true => {
                    let as_bits = |b: &[u8]| i64::from_le_bytes(b.try_into().unwrap());
                    let (g, e) = (as_bits(got), as_bits(&expected));
                    assert!((g - e).abs() <= 1, "element {k}: {g:x} vs {e:x}");
                }
                false => assert_eq!(got, &expected[..], "element {k} of copy {c}"),
            }
            if !mask.is_null() {
                // SAFETY: a live kDLBool tensor of the same shape.
                let bit = unsafe { *(*mask).dl_tensor.data.cast::<u8>().add(c * per_copy + k) };
                assert_eq!(bit, ok as u8, "mask of element {k}");
            }
        }
    }
}

/// Deletes a tensor made under options, and its mask (may be NULL).
fn delete_both(t: *mut DLManagedTensorVersioned, mask: *mut DLManagedTensorVersioned) {
    // SAFETY: live tensors from the library, deleted once each.
    unsafe {
        ((*t).deleter.unwrap())(t);
        if !mask.is_null() {
            ((*mask).deleter.unwrap())(mask);
        }
    }
}

/// `arrow_dlpack_export_with[_legacy]` under random options.
///
/// # Safety
/// `root` is a tree built by `build`.
unsafe fn export_with(input: &mut Input, root: &mut Level, arena: &[u8], released: usize) {
    let mut o = random_options(input);
    let mut mask: *mut DLManagedTensorVersioned = ptr::null_mut();
    if input.byte() % 2 == 0 {
        o.validity = &mut mask;
    }
    let before = bytes_of(&*root.array);
    let mut error = ArrowDlpackError {
        status: arrow_dlpack::Status::ARROW_DLPACK_OK,
        message: [0; 256],
    };
    // SAFETY: valid structs; valid options.
    let t = unsafe { arrow_dlpack_export_with(&mut *root.array, &*root.schema, &o, &mut error) };
    if t.is_null() {
        assert_eq!(
            bytes_of(&*root.array),
            before,
            "failure left the array untouched"
        );
        assert!(mask.is_null(), "a failure writes no validity");
        assert_ne!(error.message[0], 0);
        return;
    }
    assert!(root.array.release.is_none(), "the array is moved");
    check_with(t, mask, root, &o, 1, arena);
    delete_both(t, mask);
    assert_eq!(
        RELEASES.load(Ordering::SeqCst),
        released + 1,
        "released once"
    );
}

/// `arrow_dlpack_export_stream[_legacy]` over 0-3 copies of the tree.
///
/// # Safety
/// As [`export_with`].
unsafe fn export_stream(input: &mut Input, root: &mut Level, arena: &[u8], released: usize) {
    let copies = input.byte() as usize % 4;
    let mut o = random_options(input);
    let mut mask: *mut DLManagedTensorVersioned = ptr::null_mut();
    if input.byte() % 2 == 0 {
        o.validity = &mut mask;
    }
    // SAFETY: bitwise copies of a valid array: each is released once,
    // and releasing only counts; the schema's copies own nothing.
    let mut chunks = unsafe {
        Stream::new(
            &root.schema,
            (0..copies).map(|_| ptr::read(&*root.array)).collect(),
        )
    };
    root.array.release = None; // its copies are the chunks
    let mut stream = chunks.c_stream();
    let mut error = ArrowDlpackError {
        status: arrow_dlpack::Status::ARROW_DLPACK_OK,
        message: [0; 256],
    };
    // SAFETY: a valid stream and options.
    let t = unsafe { arrow_dlpack_export_stream(&mut stream, &o, &mut error) };
    assert!(!chunks.released, "the stream is borrowed");
    if t.is_null() {
        assert!(mask.is_null(), "a failure writes no validity");
        assert_eq!(
            RELEASES.load(Ordering::SeqCst),
            released + chunks.next,
            "every chunk read is released once"
        );
        return;
    }
    assert_eq!(chunks.next, copies, "read to the end");
    if copies > 0 {
        check_with(t, mask, root, &o, copies, arena);
    }
    delete_both(t, mask);
    assert_eq!(
        RELEASES.load(Ordering::SeqCst),
        released + copies,
        "each chunk released once"
    );
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    // Distinct bytes everywhere, so that a value read from the wrong place shows.
    let mut arena: Vec<u8> = (0..ARENA)
        .map(|i| (i.wrapping_mul(0x9e37_79b9) >> 7) as u8)
        .collect();
    let mut root = build(&mut input, &mut arena, 0);
    let which = input.byte() % 5;
    let before = bytes_of(&*root.array);
    let released = RELEASES.load(Ordering::SeqCst);
    let mut error = ArrowDlpackError {
        status: arrow_dlpack::Status::ARROW_DLPACK_OK,
        message: [0; 256],
    };
    // SAFETY: structs built above, valid as far as the C Data Interface
    // lets a consumer trust them.
    unsafe {
        match which {
            0 => {
                let t = arrow_dlpack_export(&mut *root.array, &*root.schema, &mut error);
                if t.is_null() {
                    assert_eq!(
                        bytes_of(&*root.array),
                        before,
                        "failure left the array untouched"
                    );
                } else {
                    assert!(root.array.release.is_none());
                    check(&(*t).dl_tensor, &root, &arena);
                    ((*t).deleter.unwrap())(t);
                    assert_eq!(RELEASES.load(Ordering::SeqCst), released + 1);
                }
            }
            1 => {
                let t = arrow_dlpack_export_versioned(&mut *root.array, &*root.schema, &mut error);
                if t.is_null() {
                    assert_eq!(
                        bytes_of(&*root.array),
                        before,
                        "failure left the array untouched"
                    );
                } else {
                    check(&(*t).dl_tensor, &root, &arena);
                    ((*t).deleter.unwrap())(t);
                    assert_eq!(RELEASES.load(Ordering::SeqCst), released + 1);
                }
            }
            3 => export_with(&mut input, &mut root, &arena, released),
            4 => export_stream(&mut input, &mut root, &arena, released),
            _ => {
                let device_type =
                    [ARROW_DEVICE_CPU, ARROW_DEVICE_CUDA, 5, 99][input.byte() as usize % 4];
                let mut device = ArrowDeviceArray {
                    array: ptr::read(&*root.array),
                    device_id: input.small(3),
                    device_type,
                    sync_event: ptr::null_mut(),
                    reserved: [0; 3],
                };
                root.array.release = None; // moved into `device`
                let producer_event = ptr::without_provenance_mut(0xe7e7);
                device.sync_event = if input.byte() % 2 == 0 {
                    producer_event
                } else {
                    ptr::null_mut()
                };
                let mut event = ptr::without_provenance_mut(1);
                // Either flavour: they differ only in the struct around the
                // tensor. The tensor (NULL on failure) and its deletion.
                macro_rules! export_with {
                    ($export:ident) => {{
                        let t = $export(&mut device, &*root.schema, &mut event, &mut error);
                        let tensor: *const DLTensor = if t.is_null() {
                            ptr::null()
                        } else {
                            &(*t).dl_tensor
                        };
                        let delete: Box<dyn FnOnce()> =
                            Box::new(move || ((*t).deleter.unwrap())(t));
                        (tensor, delete)
                    }};
                }
                let (tensor, delete) = if input.byte() % 2 == 0 {
                    export_with!(arrow_dlpack_export_device)
                } else {
                    export_with!(arrow_dlpack_export_device_legacy)
                };
                if tensor.is_null() {
                    assert_eq!(bytes_of(&device.array), before);
                    assert!(event.is_null(), "a failure hands back no event");
                } else {
                    assert!(device.array.release.is_none(), "the inner array is moved");
                    assert_eq!(
                        event, device.sync_event,
                        "the producer's event is handed back"
                    );
                    check(&*tensor, &root, &arena);
                    delete();
                    assert_eq!(RELEASES.load(Ordering::SeqCst), released + 1);
                }
            }
        }
    }
    if error.status != arrow_dlpack::Status::ARROW_DLPACK_OK {
        assert!(error.message.contains(&0), "messages are NUL-terminated");
        assert_ne!(error.message[0], 0, "failures carry a message");
    }
});
