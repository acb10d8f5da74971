//! Reading an Arrow C stream (`struct ArrowArrayStream`): its schema, then
//! its chunks one at a time, to the end. The stream is borrowed: never
//! released here. The schema and the chunks read become the reader's,
//! released when dropped unless moved out first.

use std::cell::Cell;
use std::ffi::{CStr, c_int};
use std::marker::PhantomData;

use super::release::Release;
use crate::abi::{ArrowArray, ArrowArrayStream, ArrowSchema};
use crate::error::{Error, err};

/// One chunk of a stream, owned: released when dropped, unless moved
/// (its `release` set to NULL by a share).
#[derive(Debug)]
pub struct Chunk(pub ArrowArray);

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: a chunk the stream handed over, ours (or moved out).
        unsafe { self.0.release_once() };
    }
}

pub type GetNext = unsafe extern "C" fn(*mut ArrowArrayStream, *mut ArrowArray) -> c_int;

/// A stream being read: its schema (owned) and the next chunk to ask for.
pub struct Reader<'a> {
    stream: *mut ArrowArrayStream,
    get_next: GetNext,
    pub schema: ArrowSchema,
    /// Chunks handed out so far.
    read: Cell<usize>,
    /// Whether the end (or a failure) was reached.
    done: Cell<bool>,
    _stream: PhantomData<&'a mut ArrowArrayStream>,
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        // SAFETY: the schema the stream gave us (or taken out: released).
        unsafe { self.schema.release_once() };
    }
}

impl<'a> Reader<'a> {
    /// Checks `stream` and reads its schema.
    ///
    /// # Safety
    /// `stream` is a live C stream (its callbacks follow the interface).
    pub unsafe fn open(stream: &'a mut ArrowArrayStream) -> Result<Reader<'a>, Error> {
        if stream.release.is_none() {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "stream is released (stream.release is NULL)"
            ));
        }
        let (Some(get_schema), Some(get_next)) = (stream.get_schema, stream.get_next) else {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "stream.get_schema or stream.get_next is NULL"
            ));
        };
        let mut schema = ArrowSchema::released();
        // SAFETY: the producer's callback, writing a schema we then own.
        let code = unsafe { get_schema(stream, &mut schema) };
        if code != 0 {
            // Not written: nothing to release.
            // SAFETY: as for the block above, the producer's callback, writing a schema we then
            // own.
            return Err(unsafe { failure(stream, "get_schema", code) });
        }
        Ok(Reader {
            stream,
            get_next,
            schema,
            read: Cell::new(0),
            done: Cell::new(false),
            _stream: PhantomData,
        })
    }

    /// The next chunk, or `None` at the end. After the end or a failure,
    /// the stream is not called again.
    ///
    /// # Safety
    /// The stream is live (as it was when opened).
    pub unsafe fn next(&self) -> Result<Option<Chunk>, Error> {
        if self.done.get() {
            return Ok(None);
        }
        // SAFETY: the reader's stream, live (its contract).
        match unsafe { next_array(self.stream, self.get_next) } {
            Err(e) => {
                self.done.set(true);
                Err(e.context(format_args!("chunk {}", self.read.get())))
            }
            Ok(None) => {
                self.done.set(true);
                Ok(None) // the end
            }
            Ok(Some(array)) => {
                self.read.set(self.read.get() + 1);
                Ok(Some(Chunk(array)))
            }
        }
    }

    /// Every remaining chunk.
    ///
    /// # Safety
    /// As [`Reader::next`].
    pub unsafe fn rest(&self) -> Result<Vec<Chunk>, Error> {
        let mut chunks = Vec::new();
        // SAFETY: `rest`'s caller promises it: as `next`'s: The stream is live (as it was when
        // opened).
        while let Some(chunk) = unsafe { self.next() }? {
            chunks.push(chunk);
        }
        Ok(chunks)
    }
}

/// The stream's own account of a failed call.
///
/// # Safety
/// `stream` is live.
/// The chunks' arrays, to move or release (what the exports take).
pub fn arrays(chunks: &mut [Chunk]) -> Vec<&mut ArrowArray> {
    chunks.iter_mut().map(|c| &mut c.0).collect()
}

/// The stream's next array through its `get_next`: `None` at the end
/// (the producer wrote a released array). The array is the caller's.
///
/// # Safety
/// `stream` is a live stream and `get_next` its callback.
pub unsafe fn next_array(
    stream: *mut ArrowArrayStream,
    get_next: GetNext,
) -> Result<Option<ArrowArray>, Error> {
    let mut array = ArrowArray::released();
    // SAFETY: the producer's callback, writing an array we then own.
    let code = unsafe { get_next(stream, &mut array) };
    if code != 0 {
        // SAFETY: as for the block above, the producer's callback, writing an array we then
        // own.
        return Err(unsafe { failure(stream, "get_next", code) });
    }
    Ok(array.release.is_some().then_some(array))
}

/// The `get_next` of a live stream (`INVALID_ARROW` when NULL).
pub fn get_next_of(stream: &ArrowArrayStream) -> Result<GetNext, Error> {
    stream.get_next.ok_or_else(|| {
        err!(
            ARROW_DLPACK_INVALID_ARROW,
            "stream.get_schema or stream.get_next is NULL"
        )
    })
}

unsafe fn failure(stream: *mut ArrowArrayStream, call: &str, code: i32) -> Error {
    // SAFETY: live (caller's contract).
    let message = match unsafe { (*stream).get_last_error } {
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
