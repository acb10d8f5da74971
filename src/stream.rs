//! Reading an Arrow C stream (`struct ArrowArrayStream`): its schema and
//! every chunk, to the end. The stream is borrowed: never released here.
//! The schema and the chunks read become ours, released when dropped
//! unless moved out first.

use std::ffi::{CStr, c_void};
use std::ptr;

use crate::abi::{ArrowArray, ArrowArrayStream, ArrowSchema};
use crate::dims::MAX_NDIM;
use crate::error::{Error, err};

/// A stream's schema and chunks, owned.
pub struct Chunks {
    pub schema: ArrowSchema,
    pub arrays: Vec<ArrowArray>,
}

impl Drop for Chunks {
    fn drop(&mut self) {
        for array in &mut self.arrays {
            if let Some(release) = array.release {
                // SAFETY: a chunk we own, released once.
                unsafe { release(array) };
            }
        }
        if let Some(release) = self.schema.release {
            // SAFETY: the schema we own, released once.
            unsafe { release(&mut self.schema) };
        }
    }
}

impl Chunks {
    /// Reads `stream` to its end.
    ///
    /// # Safety
    /// `stream` is a live C stream (its callbacks follow the interface).
    pub unsafe fn read(stream: &mut ArrowArrayStream) -> Result<Chunks, Error> {
        let Some(release) = stream.release else {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "stream is released (stream.release is NULL)"
            ));
        };
        let _ = release;
        let (Some(get_schema), Some(get_next)) = (stream.get_schema, stream.get_next) else {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "stream.get_schema or stream.get_next is NULL"
            ));
        };
        let mut chunks = Chunks {
            schema: ArrowSchema::released(),
            arrays: Vec::new(),
        };
        // SAFETY: the producer's callback, writing a schema we then own.
        let code = unsafe { get_schema(stream, &mut chunks.schema) };
        if code != 0 {
            chunks.schema.release = None; // not written: nothing to release
            // SAFETY: as above.
            return Err(unsafe { failure(stream, "get_schema", code) });
        }
        loop {
            let mut array = ArrowArray::released();
            // SAFETY: the producer's callback, writing an array we then own.
            let code = unsafe { get_next(stream, &mut array) };
            if code != 0 {
                // SAFETY: as above.
                let e = unsafe { failure(stream, "get_next", code) };
                return Err(e.context(format_args!("chunk {}", chunks.arrays.len())));
            }
            if array.release.is_none() {
                return Ok(chunks); // the end
            }
            chunks.arrays.push(array);
        }
    }
}

/// The stream's own account of a failed call.
///
/// # Safety
/// `stream` is live.
unsafe fn failure(stream: &mut ArrowArrayStream, call: &str, code: i32) -> Error {
    let message = match stream.get_last_error {
        // SAFETY: the producer's callback; its result is NULL or a C string
        // valid until the next call.
        Some(last) => unsafe {
            let m = last(stream);
            (!m.is_null()).then(|| CStr::from_ptr(m).to_string_lossy().into_owned())
        },
        None => None,
    };
    err!(
        ARROW_DLPACK_INVALID_ARROW,
        "the stream's {call} failed with error {code}: {}",
        message.as_deref().unwrap_or("(no message)")
    )
}

unsafe extern "C" fn release_nothing(array: *mut ArrowArray) {
    // SAFETY: one of `EmptyArray`'s own structs.
    unsafe { (*array).release = None };
}

/// A zero-length array with the structure a schema describes (its
/// `fixed_size_list` levels and leaf), owning nothing: what a stream
/// without chunks is read as, so that its tensor has the schema's shape.
///
/// Its parts are raw heap pointers (from `Box::into_raw`), never boxes:
/// each level hands out pointers to the others, which a move or a `&mut`
/// of a box would invalidate under Rust's aliasing rules.
pub struct EmptyArray {
    levels: Vec<*mut ArrowArray>,
    children: Vec<*mut *mut ArrowArray>,
    buffers: *mut [*const c_void; 2],
}

impl Drop for EmptyArray {
    fn drop(&mut self) {
        // SAFETY: each pointer came from `Box::into_raw` in `of`, freed once.
        unsafe {
            for &level in &self.levels {
                drop(Box::from_raw(level));
            }
            for &slot in &self.children {
                drop(Box::from_raw(slot));
            }
            drop(Box::from_raw(self.buffers));
        }
    }
}

impl EmptyArray {
    /// # Safety
    /// `schema` is a valid schema.
    pub unsafe fn of(schema: &ArrowSchema) -> EmptyArray {
        let mut empty = EmptyArray {
            levels: Vec::new(),
            children: Vec::new(),
            buffers: Box::into_raw(Box::new([ptr::null(); 2])),
        };
        let mut level = schema;
        for _ in 0..MAX_NDIM {
            // SAFETY: a C string when not NULL (valid schema).
            let list = !level.format.is_null()
                && unsafe { CStr::from_ptr(level.format) }
                    .to_bytes()
                    .starts_with(b"+w:");
            let mut array = ArrowArray::released();
            array.buffers = empty.buffers.cast();
            array.n_buffers = if list { 1 } else { 2 };
            array.release = Some(release_nothing);
            empty.levels.push(Box::into_raw(Box::new(array)));
            // SAFETY: a list's single child, when the schema has one.
            let child = (list && level.n_children == 1 && !level.children.is_null())
                .then(|| unsafe { (*level.children).as_ref() })
                .flatten();
            let Some(child) = child else { break };
            level = child;
        }
        // Link each level to the next.
        for i in 1..empty.levels.len() {
            let slot = Box::into_raw(Box::new(empty.levels[i]));
            empty.children.push(slot);
            // SAFETY: a live level made above.
            unsafe {
                (*empty.levels[i - 1]).children = slot;
                (*empty.levels[i - 1]).n_children = 1;
            }
        }
        empty
    }

    pub fn root(&self) -> &ArrowArray {
        // SAFETY: a live level (there is always one), freed only by `drop`.
        unsafe { &*self.levels[0] }
    }
}
