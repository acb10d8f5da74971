//! Fuzzes the import entry points with DLPack tensors built from the
//! input: dtype, ndim, shape, strides (or NULL), byte_offset, device and
//! version, the data pointing into a fuzz-owned arena.
//!
//! Checks: on success the Arrow array's values lie inside the arena (for
//! host imports) and releasing it calls the deleter exactly once; on
//! failure the tensor is byte-for-byte untouched and its deleter not called.
#![no_main]

use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_dlpack::ArrowDlpackError;
use arrow_dlpack::abi::*;
use arrow_dlpack::capi::*;
use libfuzzer_sys::fuzz_target;

static DELETES: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn delete_versioned(_: *mut DLManagedTensorVersioned) {
    DELETES.fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C" fn delete_legacy(_: *mut DLManagedTensor) {
    DELETES.fetch_add(1, Ordering::SeqCst);
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn signed(&mut self, max: i64) -> i64 {
        match self.byte() {
            250 => -1,
            251 => i64::MAX,
            252 => i64::MIN / 2,
            253 => -(self.byte() as i64) - 2,
            b => (b as i64) % (max + 1),
        }
    }
}

fn bytes_of<T>(value: &T) -> Vec<u8> {
    // SAFETY: reading a live value's bytes.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()).to_vec() }
}

/// Most elements whose addresses are compared one by one.
const MODEL_LIMIT: i64 = 1 << 14;

/// The entries of a C Data Interface metadata block.
///
/// # Safety
/// `metadata` is NULL or a well-formed block (the library wrote it).
unsafe fn metadata_entries(metadata: *const std::ffi::c_char) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    if metadata.is_null() {
        return out;
    }
    // SAFETY: within the block, as its lengths say.
    unsafe {
        let count = metadata.cast::<i32>().read_unaligned();
        let mut at = metadata.cast::<u8>().add(4);
        let mut next = || {
            let len = at.cast::<i32>().read_unaligned();
            assert!(len >= 0);
            let bytes = std::slice::from_raw_parts(at.add(4), len as usize).to_vec();
            at = at.add(4 + len as usize);
            bytes
        };
        for _ in 0..count {
            let key = next();
            out.push((key, next()));
        }
    }
    out
}

/// The integers in `"key":[...]` of a JSON object (the library's output).
fn json_ints(json: &str, key: &str) -> Option<Vec<i64>> {
    let at = json.find(&format!("\"{key}\":["))? + key.len() + 4;
    let end = at + json[at..].find(']')?;
    let ints = json[at..end]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty());
    Some(ints.map(|s| s.parse().expect("an integer")).collect())
}

/// A live tensor's shape and strides (row-major for NULL strides).
fn shape_strides(tensor: &DLTensor) -> (Vec<i64>, Vec<i64>) {
    let ndim = tensor.ndim as usize;
    if ndim == 0 {
        return (vec![], vec![]);
    }
    // SAFETY: a live tensor has `ndim` entries where not NULL.
    let shape = unsafe { std::slice::from_raw_parts(tensor.shape, ndim) }.to_vec();
    let strides = if tensor.strides.is_null() {
        let mut s = vec![1i64; ndim];
        for d in (0..ndim - 1).rev() {
            s[d] = s[d + 1] * shape[d + 1];
        }
        s
    } else {
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts(tensor.strides, ndim) }.to_vec()
    };
    (shape, strides)
}

/// Checks an imported array against the tensor it came from: schema and
/// array agree; a fixed_size_list's size is the product of its extension
/// shape and its child covers it; every tensor element is read back at the
/// same address through the Arrow array.
fn check(tensor: &DLTensor, array: &ArrowArray, schema: &ArrowSchema) {
    // SAFETY: the library's NUL-terminated format.
    let format = unsafe { std::ffi::CStr::from_ptr(schema.format) }
        .to_str()
        .unwrap();
    let ndim = tensor.ndim as usize;
    let (shape, strides) = shape_strides(tensor);
    let shape = &shape[..];
    assert_eq!(array.length, if ndim == 0 { 1 } else { shape[0] });
    assert_eq!((array.offset, array.null_count), (0, 0));
    let width = tensor.dtype.bits as usize / 8;
    let first = tensor.data as usize + tensor.byte_offset as usize;
    // The values array, and how a logical row index maps into it.
    let (values, physical, permutation): (&ArrowArray, Vec<i64>, Vec<usize>) = if ndim <= 1 {
        assert_eq!(
            (array.n_buffers, array.n_children, schema.n_children),
            (2, 0, 0),
            "{format}"
        );
        assert!(schema.metadata.is_null());
        (array, vec![], vec![])
    } else {
        let size: i64 = format
            .strip_prefix("+w:")
            .expect("N-D is a fixed_size_list")
            .parse()
            .unwrap();
        assert_eq!(
            (array.n_buffers, array.n_children, schema.n_children),
            (1, 1, 1),
            "{format}"
        );
        // SAFETY: the library's own block.
        let entries = unsafe { metadata_entries(schema.metadata) };
        let name = entries
            .iter()
            .find(|(k, _)| k == b"ARROW:extension:name")
            .map(|e| &e.1[..]);
        assert_eq!(name, Some(&b"arrow.fixed_shape_tensor"[..]));
        let json = entries
            .iter()
            .find(|(k, _)| k == b"ARROW:extension:metadata")
            .expect("parameters");
        let json = std::str::from_utf8(&json.1).unwrap();
        let physical = json_ints(json, "shape").expect("a shape");
        let permutation: Vec<usize> = json_ints(json, "permutation")
            .map(|p| p.iter().map(|&d| d as usize).collect())
            .unwrap_or_else(|| (0..physical.len()).collect());
        let product = physical
            .iter()
            .rev()
            .try_fold(1i64, |n, &e| n.checked_mul(e));
        assert_eq!(
            product,
            Some(size),
            "list size != product of the extension shape {json}"
        );
        let mut sorted = permutation.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (0..physical.len()).collect::<Vec<_>>(),
            "not a permutation: {json}"
        );
        let logical: Vec<i64> = permutation.iter().map(|&p| physical[p]).collect();
        assert_eq!(&shape[1..], &logical[..], "{json}");
        // SAFETY: one child, asserted above.
        let (child, child_schema) = unsafe { (&**array.children, &**schema.children) };
        assert_eq!(
            child.length,
            array.length.checked_mul(size).unwrap(),
            "the child covers the list"
        );
        assert_eq!(
            (
                child.offset,
                child.null_count,
                child.n_buffers,
                child.n_children
            ),
            (0, 0, 2, 0)
        );
        assert_eq!(child_schema.n_children, 0);
        (child, physical, permutation)
    };
    // SAFETY: `n_buffers == 2` (asserted).
    let base = unsafe { *values.buffers.add(1) } as usize;
    let elements: i64 = shape.iter().product();
    if elements == 0 || elements > MODEL_LIMIT {
        return;
    }
    let mut index = vec![0i64; ndim];
    loop {
        let tensor_address =
            first + index.iter().zip(&strides).map(|(i, s)| i * s).sum::<i64>() as usize * width;
        let flat = if ndim <= 1 {
            index.first().copied().unwrap_or(0)
        } else {
            let mut physical_index = vec![0i64; physical.len()];
            for (d, &p) in permutation.iter().enumerate() {
                physical_index[p] = index[d + 1];
            }
            physical_index
                .iter()
                .zip(&physical)
                .fold(index[0], |f, (i, e)| f * e + i)
        };
        assert_eq!(
            base + flat as usize * width,
            tensor_address,
            "element {index:?}"
        );
        let mut d = ndim;
        loop {
            if d == 0 {
                return;
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

/// Checks a copied import against the tensor's elements read through its
/// strides: the Arrow values are the tensor's, row-major (booleans: packed
/// bits, nonzero bytes true).
fn check_copy(tensor: &DLTensor, array: &ArrowArray, schema: &ArrowSchema) {
    // SAFETY: the library's NUL-terminated format.
    let format = unsafe { std::ffi::CStr::from_ptr(schema.format) }
        .to_str()
        .unwrap();
    let ndim = tensor.ndim as usize;
    let (shape, strides) = shape_strides(tensor);
    assert!(
        format == "b" || !format.starts_with('+') || format.starts_with("+w:"),
        "{format}"
    );
    // SAFETY: the library's structs: a list has one child.
    let values = unsafe {
        match array.n_children {
            0 => array,
            _ => &**array.children,
        }
    };
    // SAFETY: two buffers (checked by the shared-path check's rules).
    let base = unsafe { *values.buffers.add(1) }.cast::<u8>();
    let count: i64 = shape.iter().product();
    assert_eq!(values.length, count, "every element copied");
    if count == 0 || count > MODEL_LIMIT {
        return;
    }
    let width = tensor.dtype.bits as usize / 8;
    let bool_packed = tensor.dtype.code == K_DL_BOOL;
    let first = tensor.data as usize + tensor.byte_offset as usize;
    let mut index = vec![0i64; ndim];
    for k in 0..count as usize {
        let offset: i64 = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        let at = (first as i64 + offset * width as i64) as usize;
        // SAFETY: the tensor's element lies in the arena; the copy holds
        // `count` elements.
        unsafe {
            let source = std::slice::from_raw_parts(at as *const u8, width);
            if bool_packed {
                let bit = (*base.add(k / 8) >> (k % 8)) & 1;
                assert_eq!(bit, (source[0] != 0) as u8, "bool element {k}");
            } else {
                let got = std::slice::from_raw_parts(base.add(k * width), width);
                assert_eq!(got, source, "element {k}");
            }
        }
        for d in (0..ndim).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
}

/// Checks an `as_columns` import of a 2-D tensor: a struct of `shape[1]`
/// children of `shape[0]` rows, each child's element `i` the tensor's
/// element `(i, j)`; shared children point at it.
fn check_columns(tensor: &DLTensor, array: &ArrowArray, schema: &ArrowSchema, copied: bool) {
    let (shape, strides) = shape_strides(tensor);
    assert_eq!(
        tensor.ndim, 2,
        "as_columns of a tensor that is not 2-D accepted"
    );
    // SAFETY: the library's NUL-terminated format.
    let format = unsafe { std::ffi::CStr::from_ptr(schema.format) }.to_bytes();
    assert_eq!(format, b"+s");
    assert_eq!((array.n_children, schema.n_children), (shape[1], shape[1]));
    assert_eq!((array.length, array.n_buffers), (shape[0], 1));
    let width = tensor.dtype.bits as usize / 8;
    let bools = tensor.dtype.code == K_DL_BOOL;
    let first = tensor.data as usize + tensor.byte_offset as usize;
    if shape[0] * shape[1] > MODEL_LIMIT {
        return;
    }
    for j in 0..shape[1] as usize {
        // SAFETY: `n_children` children, each a primitive array the
        // library made.
        let child = unsafe { &**array.children.add(j) };
        assert_eq!(
            (child.length, child.n_buffers, child.n_children),
            (shape[0], 2, 0)
        );
        // SAFETY: two buffers.
        let values = unsafe { *child.buffers.add(1) }.cast::<u8>();
        for i in 0..shape[0] as usize {
            let offset = i as i64 * strides[0] + j as i64 * strides[1];
            let at = (first as i64 + offset * width as i64) as usize;
            // SAFETY: the tensor's element lies in the arena; the child
            // holds `length` elements from its offset.
            unsafe {
                let source = std::slice::from_raw_parts(at as *const u8, width);
                if bools {
                    let k = child.offset as usize + i;
                    let bit = (*values.add(k / 8) >> (k % 8)) & 1;
                    assert_eq!(bit, (source[0] != 0) as u8, "bool ({i}, {j})");
                } else {
                    let got = values.add((child.offset as usize + i) * width);
                    if !copied {
                        assert_eq!(got as usize, at, "shared column {j} points into the tensor");
                    }
                    assert_eq!(std::slice::from_raw_parts(got, width), source, "({i}, {j})");
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    // Distinct bytes everywhere, so that a value read from the wrong place shows.
    let arena: Vec<u64> = (0..1u64 << 13)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .collect();
    let ndim = match input.byte() % 8 {
        7 => input.signed(70) as i32,
        n => n as i32 % 5,
    };
    let n = ndim.clamp(0, 70) as usize;
    let mut shape: Vec<i64> = (0..n).map(|_| input.signed(5)).collect();
    let mut strides: Vec<i64> = (0..n).map(|_| input.signed(40)).collect();
    let dtype = DLDataType {
        code: input.byte() % 20,
        bits: [8, 16, 32, 64, 4, 128][input.byte() as usize % 6],
        lanes: if input.byte() % 16 == 0 { 4 } else { 1 },
    };
    let device_type = [
        K_DL_CPU,
        K_DL_CPU,
        K_DL_CUDA,
        K_DL_CUDA_HOST,
        K_DL_MAIA,
        5,
        -1,
    ][input.byte() as usize % 7];
    let null_strides = input.byte() % 4 == 0;
    let tensor = DLTensor {
        // Host tensors: the arena's first byte; the trusted precondition is
        // that the tensor's elements lie in its memory, which the harness
        // ensures by skipping tensors whose extent exceeds the arena.
        data: arena.as_ptr().cast_mut().cast(),
        device: DLDevice {
            device_type,
            device_id: input.signed(3) as i32,
        },
        ndim,
        dtype,
        shape: if input.byte() % 16 == 0 {
            ptr::null_mut()
        } else {
            shape.as_mut_ptr()
        },
        strides: if null_strides {
            ptr::null_mut()
        } else {
            strides.as_mut_ptr()
        },
        byte_offset: (input.byte() as u64 % 4) * 8,
    };
    // Skip inputs that break DLPack's own guarantee (the memory spans the
    // strided elements): the library trusts it, as consumers must.
    let width = (dtype.bits as i64 / 8).max(1);
    let extent = if shape.iter().any(|&e| e <= 0) || n != shape.len() {
        0
    } else {
        let strides_used: Vec<i64> = if null_strides {
            let mut s = vec![1i64; n];
            for d in (0..n.saturating_sub(1)).rev() {
                s[d] = s[d + 1].saturating_mul(shape[d + 1]);
            }
            s
        } else {
            strides.clone()
        };
        if strides_used.iter().any(|&s| s < 0) {
            return;
        }
        shape
            .iter()
            .zip(&strides_used)
            .map(|(e, s)| (e - 1).saturating_mul(*s))
            .fold(0i64, i64::saturating_add)
    };
    if extent
        .saturating_add(4)
        .saturating_mul(width)
        .saturating_add(32)
        > (arena.len() * 8) as i64
    {
        return;
    }
    let version = DLPackVersion {
        major: if input.byte() % 16 == 0 { 2 } else { 1 },
        minor: 3,
    };
    let which = input.byte() % 4;
    let copy_policy = [0, 1, 1, 2, 3][input.byte() as usize % 5];
    // as_columns: 0, 1, or a bad value; names given or not.
    let as_columns = [0, 0, 1, 1, 1, 2][input.byte() as usize % 6];
    let names: Vec<std::ffi::CString> = (0..shape.get(1).copied().unwrap_or(0).clamp(0, 64))
        .map(|j| std::ffi::CString::new(format!("c{j}")).unwrap())
        .collect();
    let name_ptrs: Vec<*const std::ffi::c_char> = names.iter().map(|n| n.as_ptr()).collect();
    let with_names =
        as_columns == 1 && input.byte() % 2 == 0 && shape.get(1).is_some_and(|&c| c <= 64);
    // The order the struct (shape[1]) and its children are released in.
    let release_seed = input.byte() as usize;
    let mut copied = false;
    // A copy allocates every element: a broadcast tensor (stride 0) may
    // claim billions in a few bytes, which is a real allocation, not a bug.
    let elements = shape.iter().fold(1i64, |n, &e| n.saturating_mul(e.max(0)));
    if which == 3 && elements > 1 << 20 {
        return;
    }
    let deletes = DELETES.load(Ordering::SeqCst);
    let mut error = ArrowDlpackError {
        status: arrow_dlpack::Status::ARROW_DLPACK_OK,
        message: [0; 256],
    };
    // The managed tensors live until their deleter runs (after the match).
    let mut legacy = DLManagedTensor {
        dl_tensor: DLTensor { ..tensor },
        manager_ctx: ptr::null_mut(),
        deleter: Some(delete_legacy),
    };
    let mut versioned = DLManagedTensorVersioned {
        version,
        manager_ctx: ptr::null_mut(),
        deleter: Some(delete_versioned),
        flags: 0,
        dl_tensor: DLTensor { ..tensor },
    };
    // SAFETY: tensors valid as far as DLPack lets a consumer trust them.
    unsafe {
        let mut schema = std::mem::MaybeUninit::<ArrowSchema>::uninit();
        let status;
        let mut released_array: Option<ArrowArray> = None;
        match which {
            0 => {
                let t = &mut legacy;
                let before = bytes_of(t);
                let mut array = std::mem::MaybeUninit::<ArrowArray>::uninit();
                status =
                    arrow_dlpack_import(t, array.as_mut_ptr(), schema.as_mut_ptr(), &mut error);
                if status == arrow_dlpack::Status::ARROW_DLPACK_OK {
                    released_array = Some(array.assume_init());
                } else {
                    assert_eq!(bytes_of(t), before);
                }
            }
            1 => {
                let t = &mut versioned;
                let before = bytes_of(t);
                let mut array = std::mem::MaybeUninit::<ArrowArray>::uninit();
                status = arrow_dlpack_import_versioned(
                    t,
                    array.as_mut_ptr(),
                    schema.as_mut_ptr(),
                    &mut error,
                );
                if status == arrow_dlpack::Status::ARROW_DLPACK_OK {
                    released_array = Some(array.assume_init());
                } else {
                    assert_eq!(bytes_of(t), before);
                }
            }
            3 => {
                let t = &mut versioned;
                let before = bytes_of(t);
                let options = ArrowDlpackImportOptions {
                    copy: copy_policy,
                    as_columns,
                    column_names: if with_names {
                        name_ptrs.as_ptr()
                    } else {
                        ptr::null()
                    },
                    threads: 0,
                    reserved0: 0,
                    reserved: [0; 3],
                };
                let mut array = std::mem::MaybeUninit::<ArrowArray>::uninit();
                status = arrow_dlpack_import_with(
                    t,
                    &options,
                    array.as_mut_ptr(),
                    schema.as_mut_ptr(),
                    &mut error,
                );
                if as_columns == 2 || (as_columns == 1 && ndim != 2) {
                    assert_eq!(status, arrow_dlpack::Status::ARROW_DLPACK_INVALID_ARGUMENT);
                }
                if status == arrow_dlpack::Status::ARROW_DLPACK_OK {
                    copied = DELETES.load(Ordering::SeqCst) == deletes + 1;
                    assert!(copied || copy_policy != 2, "ALWAYS copies");
                    assert!(!copied || copy_policy != 0, "NEVER never copies");
                    released_array = Some(array.assume_init());
                } else {
                    assert_eq!(bytes_of(t), before);
                }
            }
            _ => {
                let t = &mut versioned;
                let before = bytes_of(t);
                let mut array = std::mem::MaybeUninit::<ArrowDeviceArray>::uninit();
                status = arrow_dlpack_import_device(
                    t,
                    array.as_mut_ptr(),
                    schema.as_mut_ptr(),
                    &mut error,
                );
                if status == arrow_dlpack::Status::ARROW_DLPACK_OK {
                    let device = array.assume_init();
                    assert!(device.sync_event.is_null());
                    released_array = Some(device.array);
                } else {
                    assert_eq!(bytes_of(t), before);
                }
            }
        }
        assert_eq!(status, error.status);
        match released_array {
            Some(mut array) => {
                let mut schema = schema.assume_init();
                assert!(array.length >= 0 && array.release.is_some());
                if which == 3 && as_columns == 1 {
                    check_columns(&tensor, &array, &schema, copied);
                    if with_names && array.n_children > 0 {
                        let last = &**schema.children.add(array.n_children as usize - 1);
                        let name = std::ffi::CStr::from_ptr(last.name);
                        assert_eq!(name, names[array.n_children as usize - 1].as_c_str());
                    }
                    // Children moved out, then everything released in an
                    // order from the input: deleted once, after the last.
                    let n = array.n_children as usize;
                    let mut moved: Vec<ArrowArray> = (0..n)
                        .map(|j| {
                            let child = *array.children.add(j);
                            let taken = ptr::read(child);
                            (*child).release = None;
                            taken
                        })
                        .collect();
                    let mut order: Vec<usize> = (0..=n).collect();
                    let len = order.len();
                    order.rotate_left(release_seed % len);
                    for (k, &who) in order.iter().enumerate() {
                        if !copied {
                            assert_eq!(
                                DELETES.load(Ordering::SeqCst),
                                deletes,
                                "deleted early ({k})"
                            );
                        }
                        match who == n {
                            true => (array.release.unwrap())(&mut array),
                            false => (moved[who].release.unwrap())(&mut moved[who]),
                        }
                    }
                    assert_eq!(
                        DELETES.load(Ordering::SeqCst),
                        deletes + 1,
                        "deleted exactly once"
                    );
                    (schema.release.unwrap())(&mut schema);
                    return;
                }
                if copied {
                    check_copy(&tensor, &array, &schema);
                } else {
                    check(&tensor, &array, &schema);
                    assert_eq!(
                        DELETES.load(Ordering::SeqCst),
                        deletes,
                        "not deleted while the array lives"
                    );
                }
                (array.release.unwrap())(&mut array);
                assert_eq!(
                    DELETES.load(Ordering::SeqCst),
                    deletes + 1,
                    "deleted exactly once"
                );
                (schema.release.unwrap())(&mut schema);
            }
            None => {
                assert_eq!(
                    DELETES.load(Ordering::SeqCst),
                    deletes,
                    "a failed import never deletes"
                );
                assert_ne!(error.message[0], 0, "failures carry a message");
            }
        }
    }
});
