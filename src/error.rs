//! Status codes and error messages.
//!
//! An [`Error`] carries a status and a message formatted into a fixed
//! 256-byte buffer, the size of `ArrowDlpackError::message`: reporting an
//! error never allocates, and the message is copied to the caller as is.

use std::ffi::{CStr, c_char, c_int};
use std::fmt;

/// Outcome of a call. Values are stable: they cross the C ABI and may be
/// stored by other runtimes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum ArrowDlpackStatus {
    /// Success.
    ARROW_DLPACK_OK = 0,
    /// A NULL pointer, or a struct that was already released.
    ARROW_DLPACK_INVALID_ARGUMENT = 1,
    /// Malformed Arrow structs: format string, buffers, lengths, offsets...
    ARROW_DLPACK_INVALID_ARROW = 2,
    /// The array has missing values, which DLPack cannot represent.
    ARROW_DLPACK_HAS_NULLS = 3,
    /// A type DLPack cannot share as is (strings, booleans, nested...).
    ARROW_DLPACK_UNSUPPORTED_TYPE = 4,
    /// A device this library cannot map or must not read.
    ARROW_DLPACK_UNSUPPORTED_DEVICE = 5,
    /// Strides or shape that cannot be shared without a copy.
    ARROW_DLPACK_UNSUPPORTED_LAYOUT = 6,
    /// An allocation failed.
    ARROW_DLPACK_OUT_OF_MEMORY = 7,
    /// A bug in this library (a caught panic). Please report it.
    ARROW_DLPACK_INTERNAL_ERROR = 8,
    /// Possible, but only with a copy, and the options forbid one: the
    /// message says which copy and how to allow it.
    ARROW_DLPACK_NEEDS_COPY = 9,
}

pub use ArrowDlpackStatus as Status;

impl Status {
    /// The status's static, NUL-terminated description.
    pub fn description(self) -> &'static CStr {
        match self {
            Status::ARROW_DLPACK_OK => c"ok",
            Status::ARROW_DLPACK_INVALID_ARGUMENT => c"invalid argument",
            Status::ARROW_DLPACK_INVALID_ARROW => c"invalid Arrow data",
            Status::ARROW_DLPACK_HAS_NULLS => c"array has nulls",
            Status::ARROW_DLPACK_UNSUPPORTED_TYPE => c"unsupported type",
            Status::ARROW_DLPACK_UNSUPPORTED_DEVICE => c"unsupported device",
            Status::ARROW_DLPACK_UNSUPPORTED_LAYOUT => c"unsupported layout",
            Status::ARROW_DLPACK_OUT_OF_MEMORY => c"out of memory",
            Status::ARROW_DLPACK_INTERNAL_ERROR => c"internal error (a bug in arrow-dlpack)",
            Status::ARROW_DLPACK_NEEDS_COPY => c"needs a copy",
        }
    }

    /// Maps a raw integer from C to a status, if it is one.
    pub fn from_raw(raw: c_int) -> Option<Status> {
        const ALL: [Status; 10] = [
            Status::ARROW_DLPACK_OK,
            Status::ARROW_DLPACK_INVALID_ARGUMENT,
            Status::ARROW_DLPACK_INVALID_ARROW,
            Status::ARROW_DLPACK_HAS_NULLS,
            Status::ARROW_DLPACK_UNSUPPORTED_TYPE,
            Status::ARROW_DLPACK_UNSUPPORTED_DEVICE,
            Status::ARROW_DLPACK_UNSUPPORTED_LAYOUT,
            Status::ARROW_DLPACK_OUT_OF_MEMORY,
            Status::ARROW_DLPACK_INTERNAL_ERROR,
            Status::ARROW_DLPACK_NEEDS_COPY,
        ];
        ALL.into_iter().find(|s| *s as c_int == raw)
    }
}

/// Capacity of a message, terminating NUL included (the size of
/// `ArrowDlpackError::message`, written as a literal there for the header).
pub const MESSAGE_CAPACITY: usize = 256;

/// Error report filled in by every function (when the pointer is not NULL).
///
/// Caller-owned, typically on the stack. On failure `status` is the returned
/// status and `message` a NUL-terminated sentence naming the offending field
/// and value. On success `status` is `ARROW_DLPACK_OK` and `message` empty.
#[repr(C)]
#[derive(Clone)]
pub struct ArrowDlpackError {
    /// The outcome of the call.
    pub status: ArrowDlpackStatus,
    /// NUL-terminated, human-readable, says what and where.
    pub message: [c_char; 256],
}

/// An error: a status and a message that names the field and value.
#[derive(Clone)]
pub struct Error {
    status: Status,
    len: u8,
    buf: [u8; MESSAGE_CAPACITY - 1],
}

impl Error {
    /// Formats a new error; a message longer than 255 bytes is cut at a
    /// character boundary. Cold and out of line: it keeps the formatting
    /// machinery off the success path's code and stack.
    #[cold]
    #[inline(never)]
    pub fn new(status: Status, args: fmt::Arguments<'_>) -> Error {
        let mut e = Error {
            status,
            len: 0,
            buf: [0; MESSAGE_CAPACITY - 1],
        };
        // `write_str` below never fails; truncation is silent by design.
        let _ = fmt::write(&mut e, args);
        e
    }

    pub fn status(&self) -> Status {
        self.status
    }

    pub fn message(&self) -> &str {
        // The buffer only ever receives whole UTF-8 characters.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }

    /// Prefixes the message with where the error happened (`"child 0: "`).
    #[cold]
    pub fn context(self, args: fmt::Arguments<'_>) -> Error {
        let mut e = Error::new(self.status, args);
        let _ = fmt::Write::write_str(&mut e, ": ");
        let _ = fmt::Write::write_str(&mut e, self.message());
        e
    }

    /// Copies the error into a caller's report.
    pub fn write_to(&self, out: &mut ArrowDlpackError) {
        out.status = self.status;
        let n = self.len as usize;
        for (dst, src) in out.message.iter_mut().zip(&self.buf[..n]) {
            *dst = *src as c_char;
        }
        out.message[n] = 0;
    }
}

impl fmt::Write for Error {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len as usize;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        let start = self.len as usize;
        self.buf[start..start + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take as u8;
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.status, self.message())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Error {}

/// `return Err(err!(STATUS, "fmt", args...))`: builds an [`Error`].
macro_rules! err {
    ($status:ident, $($arg:tt)+) => {
        $crate::error::Error::new($crate::error::Status::$status, format_args!($($arg)+))
    };
}
pub(crate) use err;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_at_a_char_boundary() {
        let e = err!(ARROW_DLPACK_INVALID_ARROW, "{}", "é".repeat(300));
        assert_eq!(e.message().len(), 254);
        assert!(e.message().chars().all(|c| c == 'é'));
        let mut out = ArrowDlpackError {
            status: Status::ARROW_DLPACK_OK,
            message: [1; 256],
        };
        e.write_to(&mut out);
        assert_eq!(out.status, Status::ARROW_DLPACK_INVALID_ARROW);
        assert_eq!(out.message[254], 0);
    }

    #[test]
    fn context_prefixes_the_message() {
        let e = err!(ARROW_DLPACK_HAS_NULLS, "array has {} nulls", 3)
            .context(format_args!("child {}", 0));
        assert_eq!(e.message(), "child 0: array has 3 nulls");
        assert_eq!(e.status(), Status::ARROW_DLPACK_HAS_NULLS);
    }

    #[test]
    fn every_status_round_trips_through_its_raw_value() {
        for raw in 0..10 {
            assert_eq!(Status::from_raw(raw).map(|s| s as c_int), Some(raw));
        }
        assert_eq!(Status::from_raw(10), None);
        assert_eq!(Status::from_raw(-1), None);
    }
}
