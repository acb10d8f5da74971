//! Test fixtures: Arrow C structs built by hand (for malformed input and
//! exact control of every field) and by arrow-rs (for real arrays).

#![allow(dead_code)]

use std::ffi::{CStr, c_char, c_void};
use std::ops::{Deref, DerefMut};
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_dlpack::abi::{
    ArrowArray, ArrowSchema, DLDataType, DLDevice, DLManagedTensor, DLManagedTensorVersioned,
    DLPackVersion, DLTensor, K_DL_CPU,
};
use arrow_dlpack::{ArrowDlpackError, Status};

/// A heap value behind a raw pointer: unlike `Box`, moving it does not
/// invalidate pointers into it (Miri's aliasing model retags a moved `Box`).
pub struct Heap<T>(std::ptr::NonNull<T>);

impl<T> Heap<T> {
    fn new(value: T) -> Heap<T> {
        Heap(std::ptr::NonNull::from(Box::leak(Box::new(value))))
    }

    /// The raw pointer, with the allocation's own provenance: it stays
    /// valid across later `&mut` uses of the value (unlike a pointer
    /// derived from a `&mut`, under Miri's aliasing model).
    pub fn as_ptr(&self) -> *mut T {
        self.0.as_ptr()
    }
}

impl<T> Deref for Heap<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: owned, live until drop.
        unsafe { self.0.as_ref() }
    }
}

impl<T> DerefMut for Heap<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: owned, live until drop.
        unsafe { self.0.as_mut() }
    }
}

impl<T> Drop for Heap<T> {
    fn drop(&mut self) {
        // SAFETY: made by `Box::leak` in `new`, dropped once.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// A hand-built array: every field is public, buffers are owned here, and
/// the release callback counts its calls.
pub struct Raw {
    pub array: Heap<ArrowArray>,
    pub schema: Heap<ArrowSchema>,
    pub buffers: Vec<*const c_void>,
    pub releases: Arc<AtomicUsize>,
    format: Vec<u8>,
    metadata: Vec<u8>,
    storage: Vec<Vec<u64>>,
    children: Vec<Raw>,
    child_arrays: Vec<*mut ArrowArray>,
    child_schemas: Vec<*mut ArrowSchema>,
}

unsafe extern "C" fn release_array(array: *mut ArrowArray) {
    // SAFETY: called by the consumer on an array made by `Raw`.
    unsafe {
        let counter = Box::from_raw((*array).private_data.cast::<Arc<AtomicUsize>>());
        counter.fetch_add(1, Ordering::SeqCst);
        (*array).release = None;
    }
}

unsafe extern "C" fn release_schema(schema: *mut ArrowSchema) {
    // SAFETY: called on a schema made by `Raw`.
    unsafe { (*schema).release = None };
}

impl Raw {
    /// An array of `format` with the given buffers (`None` = NULL pointer).
    pub fn new(format: &str, length: i64, buffers: Vec<Option<Vec<u8>>>) -> Raw {
        let format: Vec<u8> = format.bytes().chain([0]).collect();
        let mut storage = Vec::new();
        let mut pointers = Vec::new();
        for b in buffers {
            match b {
                None => pointers.push(ptr::null()),
                Some(bytes) => {
                    let words = aligned(&bytes);
                    pointers.push(words.as_ptr().cast());
                    storage.push(words);
                }
            }
        }
        let mut buffers = pointers;
        let releases = Arc::new(AtomicUsize::new(0));
        let array = Heap::new(ArrowArray {
            length,
            null_count: 0,
            offset: 0,
            n_buffers: buffers.len() as i64,
            n_children: 0,
            buffers: buffers.as_mut_ptr(),
            children: ptr::null_mut(),
            dictionary: ptr::null_mut(),
            release: Some(release_array),
            private_data: Box::into_raw(Box::new(releases.clone())).cast(),
        });
        let schema = Heap::new(ArrowSchema {
            format: format.as_ptr().cast(),
            name: ptr::null(),
            metadata: ptr::null(),
            flags: 0,
            n_children: 0,
            children: ptr::null_mut(),
            dictionary: ptr::null_mut(),
            release: Some(release_schema),
            private_data: ptr::null_mut(),
        });
        Raw {
            array,
            schema,
            buffers,
            releases,
            format,
            metadata: Vec::new(),
            storage,
            children: Vec::new(),
            child_arrays: Vec::new(),
            child_schemas: Vec::new(),
        }
    }

    /// A primitive array of little-endian values.
    pub fn primitive<T: Copy>(format: &str, values: &[T]) -> Raw {
        let bytes =
            // SAFETY: plain numbers, read as bytes.
            unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) };
        Raw::new(
            format,
            values.len() as i64,
            vec![None, Some(bytes.to_vec())],
        )
    }

    /// A `+w:size` array of `length` rows over `child`.
    pub fn fixed_size_list(size: i64, length: i64, child: Raw) -> Raw {
        let mut parent = Raw::new(&format!("+w:{size}"), length, vec![None]);
        parent.children.push(child);
        parent.link_children();
        parent
    }

    /// A list of `child`'s elements: `+l` with int32 offsets, `+L` with
    /// int64 (`large`); `offsets.len() - 1` rows.
    #[allow(dead_code)] // not every test file builds lists
    pub fn list(offsets: &[i64], large: bool, child: Raw) -> Raw {
        let (format, bytes) = offsets_bytes("+l", "+L", offsets, large);
        let mut parent = Raw::new(format, offsets.len() as i64 - 1, vec![None, Some(bytes)]);
        parent.children.push(child);
        parent.link_children();
        parent
    }

    /// A list view (`+vl` / `+vL`) of `child`: row `i` is `sizes[i]`
    /// elements from `offsets[i]`.
    #[allow(dead_code)]
    pub fn list_view(offsets: &[i64], sizes: &[i64], large: bool, child: Raw) -> Raw {
        let (format, offsets) = offsets_bytes("+vl", "+vL", offsets, large);
        let (_, sizes_bytes) = offsets_bytes("", "", sizes, large);
        let mut parent = Raw::new(
            format,
            sizes.len() as i64,
            vec![None, Some(offsets), Some(sizes_bytes)],
        );
        parent.children.push(child);
        parent.link_children();
        parent
    }

    /// A utf8 array (`u`, or `U` when `large`) of `rows`.
    #[allow(dead_code)]
    pub fn strings(rows: &[&str], large: bool) -> Raw {
        let mut offsets = vec![0i64];
        for r in rows {
            offsets.push(offsets.last().unwrap() + r.len() as i64);
        }
        let (format, bytes) = offsets_bytes("u", "U", &offsets, large);
        Raw::new(
            format,
            rows.len() as i64,
            vec![None, Some(bytes), Some(rows.concat().into_bytes())],
        )
    }

    /// A `+s` array of `length` rows over `children`, named by
    /// `names`.
    #[allow(dead_code)] // not every test file builds structs
    pub fn struct_of(length: i64, children: Vec<Raw>, names: &[&'static CStr]) -> Raw {
        let mut parent = Raw::new("+s", length, vec![None]);
        parent.children = children;
        for (c, name) in parent.children.iter_mut().zip(names) {
            c.schema.name = name.as_ptr();
        }
        parent.link_children();
        parent
    }

    /// A run-end encoded array (`+r`) of `length` rows: int32 run ends
    /// `ends` over `values`.
    #[allow(dead_code)] // not every test file encodes runs
    pub fn run_end(length: i64, ends: &[i32], mut values: Raw) -> Raw {
        let mut ends = Raw::primitive("i", ends);
        ends.schema.name = c"run_ends".as_ptr();
        values.schema.name = c"values".as_ptr();
        Raw::new("+r", length, vec![]).with_children(vec![ends, values])
    }

    /// This array and schema with `children` (their own arrays and
    /// schemas linked in).
    #[allow(dead_code)] // not every test file nests arrays
    pub fn with_children(mut self, children: Vec<Raw>) -> Raw {
        self.children = children;
        self.link_children();
        self
    }

    fn link_children(&mut self) {
        self.child_arrays = self.children.iter_mut().map(|c| c.array.as_ptr()).collect();
        self.child_schemas = self
            .children
            .iter_mut()
            .map(|c| c.schema.as_ptr())
            .collect();
        self.array.n_children = self.children.len() as i64;
        self.schema.n_children = self.children.len() as i64;
        self.array.children = self.child_arrays.as_mut_ptr();
        self.schema.children = self.child_schemas.as_mut_ptr();
    }

    pub fn child(&mut self, i: usize) -> &mut Raw {
        &mut self.children[i]
    }

    /// Sets the validity bitmap (LSB-first bits).
    pub fn set_validity(&mut self, bits: &[bool], null_count: i64) {
        let mut bytes = vec![0u8; bits.len().div_ceil(8)];
        for (i, &b) in bits.iter().enumerate() {
            bytes[i / 8] |= (b as u8) << (i % 8);
        }
        let words = aligned(&bytes);
        self.buffers[0] = words.as_ptr().cast();
        self.storage.push(words);
        self.array.null_count = null_count;
    }

    /// Changes the schema's format string.
    #[allow(dead_code)]
    pub fn set_format(&mut self, format: &str) {
        self.format = format.bytes().chain([0]).collect();
        self.schema.format = self.format.as_ptr().cast();
    }

    /// Sets the schema's raw metadata bytes.
    pub fn set_metadata(&mut self, bytes: Vec<u8>) {
        self.metadata = bytes;
        self.schema.metadata = self.metadata.as_ptr().cast();
    }

    pub fn array_ptr(&mut self) -> *mut ArrowArray {
        self.array.as_ptr()
    }

    pub fn schema_ptr(&self) -> *const ArrowSchema {
        self.schema.as_ptr()
    }

    pub fn release_count(&self) -> usize {
        self.releases.load(Ordering::SeqCst)
    }

    /// The array struct's bytes, to prove a failed call left it as it was.
    pub fn array_bytes(&self) -> Vec<u8> {
        struct_bytes(&*self.array)
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        if let Some(release) = self.array.release {
            // SAFETY: our own callback on our own array.
            unsafe { release(self.array.as_ptr()) };
        }
    }
}

/// The format (`small` or `large`) and the bytes of offsets as int32 or
/// int64.
fn offsets_bytes(
    small: &'static str,
    large_format: &'static str,
    offsets: &[i64],
    large: bool,
) -> (&'static str, Vec<u8>) {
    match large {
        true => (
            large_format,
            offsets.iter().flat_map(|o| o.to_le_bytes()).collect(),
        ),
        false => (
            small,
            offsets
                .iter()
                .flat_map(|&o| (o as i32).to_le_bytes())
                .collect(),
        ),
    }
}

/// `bytes` stored as u64 words: 8-byte aligned, like Arrow buffers.
fn aligned(bytes: &[u8]) -> Vec<u64> {
    let mut words = vec![0u64; bytes.len().div_ceil(8).max(1)];
    // SAFETY: `words` holds at least `bytes.len()` bytes.
    unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), words.as_mut_ptr().cast(), bytes.len()) };
    words
}

pub fn struct_bytes<T>(value: &T) -> Vec<u8> {
    // SAFETY: reading the bytes of a live value (all our structs are
    // pointer/integer fields without padding).
    unsafe {
        std::slice::from_raw_parts((value as *const T).cast::<u8>(), std::mem::size_of::<T>())
            .to_vec()
    }
}

pub fn new_error() -> ArrowDlpackError {
    ArrowDlpackError {
        status: Status::ARROW_DLPACK_INTERNAL_ERROR,
        message: [0x55; 256],
    }
}

pub fn message(error: &ArrowDlpackError) -> String {
    // SAFETY: the library NUL-terminates the message.
    unsafe { std::ffi::CStr::from_ptr(error.message.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

// ---- tensors ---------------------------------------------------------------

/// What a test reads of a tensor before deleting it.
#[derive(Debug)]
pub struct Seen {
    pub shape: Vec<i64>,
    pub strides: Vec<i64>,
    pub dtype: arrow_dlpack::abi::DLDataType,
    pub flags: u64,
    pub data: usize,
    /// The elements' bytes, row-major over `shape` through `strides`.
    pub bytes: Vec<u8>,
}

/// Reads a live tensor and deletes it.
#[allow(dead_code)] // not every test file reads tensors
pub fn take(t: *mut arrow_dlpack::abi::DLManagedTensorVersioned) -> Seen {
    // SAFETY: a live tensor from the library, deleted once below.
    unsafe {
        let d = &(*t).dl_tensor;
        let n = d.ndim as usize;
        let shape = std::slice::from_raw_parts(d.shape, n).to_vec();
        let strides = std::slice::from_raw_parts(d.strides, n).to_vec();
        let width = d.dtype.bits as usize / 8;
        let mut bytes = Vec::new();
        let count: i64 = shape.iter().product();
        for flat in 0..count {
            let mut rest = flat;
            let mut offset = 0;
            for k in (0..n).rev() {
                offset += (rest % shape[k]) * strides[k];
                rest /= shape[k];
            }
            let at = d.data.cast::<u8>().add(offset as usize * width);
            bytes.extend_from_slice(std::slice::from_raw_parts(at, width));
        }
        let seen = Seen {
            shape,
            strides,
            dtype: d.dtype,
            flags: (*t).flags,
            data: d.data as usize,
            bytes,
        };
        ((*t).deleter.unwrap())(t);
        seen
    }
}

// ---- a DLPack tensor by hand ----------------------------------------------

/// A DLPack tensor built by hand over owned storage; its deleter counts.
pub struct Fixture {
    pub storage: Vec<u64>,
    shape: Vec<i64>,
    strides: Vec<i64>,
    deletes: Arc<AtomicUsize>,
    pub managed: Box<DLManagedTensorVersioned>,
    pub legacy: Box<DLManagedTensor>,
}

unsafe extern "C" fn delete_versioned(t: *mut DLManagedTensorVersioned) {
    // SAFETY: manager_ctx is the fixture's counter.
    unsafe { (*(*t).manager_ctx.cast::<AtomicUsize>()).fetch_add(1, Ordering::SeqCst) };
}

unsafe extern "C" fn delete_legacy(t: *mut DLManagedTensor) {
    // SAFETY: as above.
    unsafe { (*(*t).manager_ctx.cast::<AtomicUsize>()).fetch_add(1, Ordering::SeqCst) };
}

impl Fixture {
    pub fn new(code: u8, bits: u8, shape: &[i64], strides: Option<&[i64]>) -> Fixture {
        let storage: Vec<u64> = (0..64).collect();
        let deletes = Arc::new(AtomicUsize::new(0));
        // Data, shape and strides are set below, once the storage is in place;
        // the legacy tensor then takes a copy of the versioned one's.
        let blank = DLTensor {
            data: ptr::null_mut(),
            device: DLDevice {
                device_type: K_DL_CPU,
                device_id: 0,
            },
            ndim: shape.len() as i32,
            dtype: DLDataType {
                code,
                bits,
                lanes: 1,
            },
            shape: ptr::null_mut(),
            strides: ptr::null_mut(),
            byte_offset: 0,
        };
        let mut f = Fixture {
            storage,
            shape: shape.to_vec(),
            strides: strides.map(<[i64]>::to_vec).unwrap_or_default(),
            managed: Box::new(DLManagedTensorVersioned {
                version: DLPackVersion { major: 1, minor: 3 },
                manager_ctx: Arc::as_ptr(&deletes).cast_mut().cast(),
                deleter: Some(delete_versioned),
                flags: 0,
                dl_tensor: DLTensor { ..blank },
            }),
            legacy: Box::new(DLManagedTensor {
                dl_tensor: DLTensor { ..blank },
                manager_ctx: Arc::as_ptr(&deletes).cast_mut().cast(),
                deleter: Some(delete_legacy),
            }),
            deletes,
        };
        let t = &mut f.managed.dl_tensor;
        t.data = f.storage.as_mut_ptr().cast();
        t.shape = f.shape.as_mut_ptr();
        t.strides = if strides.is_some() {
            f.strides.as_mut_ptr()
        } else {
            ptr::null_mut()
        };
        f.legacy.dl_tensor = DLTensor { ..*t };
        f
    }

    /// A 1-D int32 tensor of `values`.
    pub fn int32s(values: &[i32]) -> Fixture {
        let mut f = Fixture::new(
            arrow_dlpack::abi::K_DL_INT,
            32,
            &[values.len() as i64],
            None,
        );
        // SAFETY: the storage holds 64 words, room for the values.
        unsafe {
            ptr::copy_nonoverlapping(values.as_ptr(), f.storage.as_mut_ptr().cast(), values.len())
        };
        f
    }

    pub fn deletes(&self) -> usize {
        self.deletes.load(Ordering::SeqCst)
    }

    pub fn data(&self) -> usize {
        self.storage.as_ptr() as usize
    }
}

// ---- a C stream producer ----------------------------------------------------

/// A C stream over hand-built chunks (the testkit's producer), counting
/// what the library does to it.
pub struct Stream {
    pub schema: Raw,
    pub chunks: Vec<Raw>,
    pub next: usize,
    pub released: bool,
    pub fail_at: Option<usize>,
}

/// A C stream producer of `chunks` (their structs moved in: each `Raw`
/// keeps counting the releases of its array) of `schema`'s type.
#[allow(dead_code)] // not every test file streams
pub fn producer(schema: &Raw, chunks: &mut [Raw]) -> arrow_dlpack_testkit::Stream {
    let arrays = chunks
        .iter_mut()
        .map(|c| {
            // SAFETY: a bitwise move of a live array: `Raw` forgets it.
            let moved = unsafe { ptr::read(&*c.array) };
            c.array.release = None;
            moved
        })
        .collect();
    // SAFETY: the schema's release only marks its copies released.
    unsafe { arrow_dlpack_testkit::Stream::new(&schema.schema, arrays) }
}

/// Runs `arrow_dlpack_export_stream` over `me`; the tensor (NULL on
/// failure) and the error. Checks that the stream itself is never released.
#[allow(dead_code)] // not every test file streams
pub fn run_stream(
    me: &mut Stream,
    o: &arrow_dlpack::capi::ArrowDlpackExportOptions,
) -> (
    *mut arrow_dlpack::abi::DLManagedTensorVersioned,
    ArrowDlpackError,
) {
    // The chunks' structs move to the producer; those never read come back.
    let mut producer = producer(&me.schema, &mut me.chunks);
    producer.fail_at = me.fail_at;
    let mut stream = producer.c_stream();
    let mut error = new_error();
    // SAFETY: a valid stream.
    let t = unsafe { arrow_dlpack::capi::arrow_dlpack_export_stream(&mut stream, o, &mut error) };
    assert!(!producer.released, "the stream is borrowed, never released");
    (me.next, me.released) = (producer.next, producer.released);
    for (raw, array) in me
        .chunks
        .iter_mut()
        .zip(&mut producer.chunks)
        .skip(producer.next)
    {
        // SAFETY: a chunk never handed out: back to its `Raw`.
        *raw.array = unsafe { ptr::read(array) };
        array.release = None;
    }
    (t, error)
}

/// Export options: `copy`, everything else the default (all zero).
#[allow(dead_code)] // not every test file copies
pub fn export_options(copy: i32) -> arrow_dlpack::capi::ArrowDlpackExportOptions {
    arrow_dlpack::capi::ArrowDlpackExportOptions {
        copy,
        ..Default::default()
    }
}

#[allow(dead_code)] // not every test file imports
pub fn import_options(
    copy: i32,
    as_columns: i32,
    column_names: *const *const c_char,
) -> arrow_dlpack::capi::ArrowDlpackImportOptions {
    arrow_dlpack::capi::ArrowDlpackImportOptions {
        copy,
        as_columns,
        column_names,
        ..Default::default()
    }
}

/// `arrow_dlpack_import_with` into fresh out structs: the array and
/// schema, or the status and message (the status checked against the
/// error's).
///
/// # Safety
/// `tensor` is live.
#[allow(dead_code)]
pub unsafe fn import_raw(
    tensor: *mut arrow_dlpack::abi::DLManagedTensorVersioned,
    o: &arrow_dlpack::capi::ArrowDlpackImportOptions,
) -> Result<(ArrowArray, ArrowSchema), (Status, String)> {
    let mut error = new_error();
    let mut a = std::mem::MaybeUninit::<ArrowArray>::uninit();
    let mut s = std::mem::MaybeUninit::<ArrowSchema>::uninit();
    // SAFETY: forwarded from the caller; writable out structs.
    let status = unsafe {
        arrow_dlpack::capi::arrow_dlpack_import_with(
            tensor,
            o,
            a.as_mut_ptr(),
            s.as_mut_ptr(),
            &mut error,
        )
    };
    assert_eq!(status as i32, error.status as i32);
    match status as i32 == Status::ARROW_DLPACK_OK as i32 {
        // SAFETY: written on success.
        true => Ok(unsafe { (a.assume_init(), s.assume_init()) }),
        false => Err((Status::from_raw(status as i32).unwrap(), message(&error))),
    }
}
