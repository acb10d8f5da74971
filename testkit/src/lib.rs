//! Test fixtures shared by arrow-dlpack's Rust tests, benches and fuzz
//! targets (a dev-only crate, never shipped): [`Stream`], the one C stream
//! producer they all drive the library with.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

use std::ffi::{c_char, c_int};
use std::ptr;

use arrow_dlpack::abi::{ArrowArray, ArrowArrayStream, ArrowSchema};

/// A C stream producer over arrays the caller built, counting what the
/// consumer does to it.
///
/// `get_schema` hands out a bitwise copy of `schema` (so its release
/// callback must be harmless on copies: one that only marks the struct
/// released, or none of the copies' fields own anything); `get_next` moves
/// the chunks out one by one (the consumer releases them), then signals
/// the end. `fail_at: Some(i)` makes the call for chunk `i` fail with error
/// 5 and the message [`Stream::MESSAGE`]. The stream must stay in place
/// while a C stream made by [`Stream::c_stream`] is in use.
pub struct Stream {
    pub schema: ArrowSchema,
    pub chunks: Vec<ArrowArray>,
    /// Chunks handed out so far.
    pub next: usize,
    /// Whether the consumer released the stream.
    pub released: bool,
    pub fail_at: Option<usize>,
    /// `get_schema` calls.
    pub schema_calls: usize,
}

impl Stream {
    /// What `get_last_error` says after a failure.
    pub const MESSAGE: &'static str = "the producer broke";

    /// A stream of `chunks` of type `schema` (a bitwise copy is kept).
    ///
    /// # Safety
    /// `schema` is valid for as long as the stream is used, and its copies
    /// may be released (see the type's documentation).
    pub unsafe fn new(schema: &ArrowSchema, chunks: Vec<ArrowArray>) -> Stream {
        Stream {
            // SAFETY: a bitwise copy (caller's contract).
            schema: unsafe { ptr::read(schema) },
            chunks,
            next: 0,
            released: false,
            fail_at: None,
            schema_calls: 0,
        }
    }

    /// The C stream over this producer.
    pub fn c_stream(&mut self) -> ArrowArrayStream {
        ArrowArrayStream {
            get_schema: Some(get_schema),
            get_next: Some(get_next),
            get_last_error: Some(get_last_error),
            release: Some(release),
            private_data: (self as *mut Stream).cast(),
        }
    }
}

impl Drop for Stream {
    /// Releases the chunks never handed out.
    fn drop(&mut self) {
        let next = self.next.min(self.chunks.len());
        for chunk in &mut self.chunks[next..] {
            if let Some(release) = chunk.release {
                // SAFETY: a chunk the stream still owns, released once.
                unsafe { release(chunk) };
            }
        }
    }
}

/// # Safety
/// `s` is a stream made by [`Stream::c_stream`], whose producer is alive.
unsafe fn producer<'a>(s: *mut ArrowArrayStream) -> &'a mut Stream {
    // SAFETY: `private_data` is the producer (caller's contract).
    unsafe { &mut *(*s).private_data.cast::<Stream>() }
}

unsafe extern "C" fn get_schema(s: *mut ArrowArrayStream, out: *mut ArrowSchema) -> c_int {
    // SAFETY: called by the consumer on our stream; `out` is writable.
    unsafe {
        let me = producer(s);
        me.schema_calls += 1;
        out.write(ptr::read(&me.schema));
    }
    0
}

unsafe extern "C" fn get_next(s: *mut ArrowArrayStream, out: *mut ArrowArray) -> c_int {
    // SAFETY: as above.
    unsafe {
        let me = producer(s);
        if me.fail_at == Some(me.next) {
            return 5;
        }
        match me.chunks.get_mut(me.next) {
            Some(chunk) => {
                out.write(ptr::read(chunk));
                chunk.release = None; // moved out
                me.next += 1;
            }
            None => out.write(ArrowArray::released()),
        }
    }
    0
}

unsafe extern "C" fn get_last_error(_: *mut ArrowArrayStream) -> *const c_char {
    c"the producer broke".as_ptr()
}

unsafe extern "C" fn release(s: *mut ArrowArrayStream) {
    // SAFETY: as above.
    unsafe {
        producer(s).released = true;
        (*s).release = None;
    }
}
