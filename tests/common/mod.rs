//! Test fixtures: Arrow C structs built by hand (for malformed input and
//! exact control of every field) and by arrow-rs (for real arrays).

#![allow(dead_code)]

use std::ffi::{CStr, c_char, c_int, c_void};
use std::ops::{Deref, DerefMut};
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_dlpack::abi::{ArrowArray, ArrowArrayStream, ArrowSchema};
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

// ---- a C stream producer ----------------------------------------------------

/// A C stream over hand-built chunks, counting what the library does to it.
pub struct Stream {
    pub schema: Raw,
    pub chunks: Vec<Raw>,
    pub next: usize,
    pub released: bool,
    pub fail_at: Option<usize>,
}

unsafe extern "C" fn get_schema(s: *mut ArrowArrayStream, out: *mut ArrowSchema) -> c_int {
    // SAFETY: `private_data` is the test's `Stream`; `out` writable.
    unsafe {
        let me = &mut *(*s).private_data.cast::<Stream>();
        // A copy that owns nothing: released by the library, harmlessly.
        out.write(ArrowSchema {
            ..*me.schema.schema
        });
    }
    0
}

unsafe extern "C" fn get_next(s: *mut ArrowArrayStream, out: *mut ArrowArray) -> c_int {
    // SAFETY: as above.
    unsafe {
        let me = &mut *(*s).private_data.cast::<Stream>();
        if me.fail_at == Some(me.next) {
            return 5;
        }
        match me.chunks.get_mut(me.next) {
            Some(chunk) => {
                out.write(std::ptr::read(&*chunk.array));
                chunk.array.release = None; // moved out
                me.next += 1;
            }
            None => (*out).release = None,
        }
    }
    0
}

unsafe extern "C" fn get_last_error(_: *mut ArrowArrayStream) -> *const c_char {
    c"the producer broke".as_ptr()
}

unsafe extern "C" fn release_stream(s: *mut ArrowArrayStream) {
    // SAFETY: as above.
    unsafe { (*(*s).private_data.cast::<Stream>()).released = true };
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
    let mut stream = ArrowArrayStream {
        get_schema: Some(get_schema),
        get_next: Some(get_next),
        get_last_error: Some(get_last_error),
        release: Some(release_stream),
        private_data: (me as *mut Stream).cast(),
    };
    let mut error = new_error();
    // SAFETY: a valid stream.
    let t = unsafe { arrow_dlpack::capi::arrow_dlpack_export_stream(&mut stream, o, &mut error) };
    assert!(!me.released, "the stream is borrowed, never released");
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
