//! Status codes and error messages.
//!
//! An [`Error`] carries a status and a message formatted into a fixed
//! 256-byte buffer, the size of `ArrowDlpackError::message`: reporting an
//! error never allocates. A message names what is wrong and where in one
//! text; where it speaks of what the caller wrote (an option, a function to
//! call instead), it holds a [`Term`], which each face renders in its own
//! words: the C ABI says `options.fill_value`, the Python package
//! `null_value=`.

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

/// Who reads a message: the words a [`Term`] becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// The C ABI (and the Rust API): option fields and function names.
    C,
    /// The Python package: keyword arguments and its functions.
    Python,
}

/// What the caller wrote or can write, in a message: rendered in the words
/// of the face that reports it (see `Face`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Term {
    /// How to fill nulls.
    FillAdvice,
    /// The fill value, written before the value.
    FillValue,
    /// The copy option that forbids copies.
    CopyNever,
    /// How to allow a copy.
    CopyAllow,
    /// The option asking for a row-major tensor.
    RowMajor,
    /// The option asking for a dtype.
    Dtype,
    /// How to export a dictionary's indices.
    DictionaryAdvice,
    /// The functions that export variable-length columns.
    JaggedOrPadded,
    /// The option that makes a 2-D tensor columns.
    AsColumns,
    /// The padding's length, written before the value.
    PadLength,
    /// The padding's value, written before the value.
    PadValue,
    /// The padding's side, written before the value.
    PadSide,
    /// A batcher's batch size, written before what is wrong with it.
    BatchSize,
    /// A batcher's list of columns.
    Columns,
    /// A batcher's groups of stacked columns.
    Stack,
    /// How a batcher gives lists.
    Lists,
    /// A batcher's padding length.
    BatchPadLength,
    /// A batcher's padding side.
    BatchPadSide,
    /// A loader's number of ranks, written before the value.
    WorldSize,
    /// A loader's rank, written before the value.
    Rank,
    /// A loader's shuffle window, written before the value.
    Window,
    /// A loader's batches made ahead, written before the value.
    Prefetch,
    /// A loader's list of columns when it may not be empty.
    RowIds,
    /// How to export a decimal: as a float dtype.
    DecimalAdvice,
}

/// The byte that starts a term in a message buffer (the next byte is
/// `TERM_BASE` plus the term's number). Both are ASCII, so a raw message
/// stays UTF-8.
const TERM_MARK: u8 = 0x01;
const TERM_BASE: u8 = b'A';

const TERMS: [Term; 24] = [
    Term::FillAdvice,
    Term::FillValue,
    Term::CopyNever,
    Term::CopyAllow,
    Term::RowMajor,
    Term::Dtype,
    Term::DictionaryAdvice,
    Term::JaggedOrPadded,
    Term::AsColumns,
    Term::PadLength,
    Term::PadValue,
    Term::PadSide,
    Term::BatchSize,
    Term::Columns,
    Term::Stack,
    Term::Lists,
    Term::BatchPadLength,
    Term::BatchPadSide,
    Term::WorldSize,
    Term::Rank,
    Term::Window,
    Term::Prefetch,
    Term::RowIds,
    Term::DecimalAdvice,
];

impl Term {
    /// The term in `face`'s words.
    pub fn words(self, face: Face) -> &'static str {
        match (self, face) {
            (Term::FillAdvice, Face::C) => {
                "set options.fill_nulls to write them as options.fill_value (a copy)"
            }
            (Term::FillAdvice, Face::Python) => {
                "pass null_value=<a number> to write them as that number (a copy)"
            }
            (Term::FillValue, Face::C) => "options.fill_value ",
            (Term::FillValue, Face::Python) => "null_value=",
            (Term::CopyNever, Face::C) => "options.copy = ARROW_DLPACK_COPY_NEVER",
            (Term::CopyNever, Face::Python) => "copy=False",
            (Term::CopyAllow, Face::C) => "ARROW_DLPACK_COPY_IF_NEEDED",
            (Term::CopyAllow, Face::Python) => "copy=None (the default) or copy=True",
            (Term::RowMajor, Face::C) => "options.order",
            (Term::RowMajor, Face::Python) => "order='C'",
            (Term::Dtype, Face::C) => "options.dtype",
            (Term::Dtype, Face::Python) => "dtype=",
            (Term::DecimalAdvice, Face::C) => {
                "set options.dtype to float64 or float32 (kDLFloat, 64 or 32 bits)"
            }
            (Term::DecimalAdvice, Face::Python) => "pass dtype='float64' or dtype='float32'",
            (Term::DictionaryAdvice, Face::C) => {
                "set options.dictionary_as_indices to export its indices, or decode it first"
            }
            (Term::DictionaryAdvice, Face::Python) => {
                "pass dictionary_as_indices=True to export its indices, or decode it first"
            }
            (Term::JaggedOrPadded, Face::C) => {
                "arrow_dlpack_export_jagged or arrow_dlpack_export_padded"
            }
            (Term::JaggedOrPadded, Face::Python) => {
                "arrow_dlpack.to_jagged or arrow_dlpack.to_padded"
            }
            (Term::AsColumns, Face::C) => "options.as_columns",
            (Term::AsColumns, Face::Python) => "columns=",
            (Term::PadLength, Face::C) => "padding->length ",
            (Term::PadLength, Face::Python) => "the padding length ",
            (Term::PadValue, Face::C) => "padding->value ",
            (Term::PadValue, Face::Python) => "the padding value ",
            (Term::PadSide, Face::C) => "padding->side ",
            (Term::PadSide, Face::Python) => "the padding side ",
            (Term::BatchSize, Face::C) => "options.batch_size ",
            (Term::BatchSize, Face::Python) => "batch_size ",
            (Term::Columns, Face::C) => "options.columns ",
            (Term::Columns, Face::Python) => "columns ",
            (Term::Stack, Face::C) => "options.stack ",
            (Term::Stack, Face::Python) => "stack ",
            (Term::Lists, Face::C) => "options.lists ",
            (Term::Lists, Face::Python) => "lists ",
            (Term::BatchPadLength, Face::C) => "options.pad_length ",
            (Term::BatchPadLength, Face::Python) => "pad_length ",
            (Term::BatchPadSide, Face::C) => "options.pad_side ",
            (Term::BatchPadSide, Face::Python) => "pad_side ",
            (Term::WorldSize, Face::C) => "options.world_size ",
            (Term::WorldSize, Face::Python) => "world_size ",
            (Term::Rank, Face::C) => "options.rank ",
            (Term::Rank, Face::Python) => "rank ",
            (Term::Window, Face::C) => "options.window ",
            (Term::Window, Face::Python) => "window ",
            (Term::Prefetch, Face::C) => "options.prefetch ",
            (Term::Prefetch, Face::Python) => "prefetch ",
            (Term::RowIds, Face::C) => "options.row_ids",
            (Term::RowIds, Face::Python) => "row_ids=True",
        }
    }
}

impl fmt::Display for Term {
    /// Writes the term's mark, rendered when the message is reported.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = TERM_BASE + *self as u8;
        f.write_str(std::str::from_utf8(&[TERM_MARK, code]).expect("ASCII"))
    }
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

    /// The message as the C ABI reports it.
    pub fn message(&self) -> String {
        self.message_for(Face::C)
    }

    /// The message in `face`'s words.
    pub fn message_for(&self, face: Face) -> String {
        let mut out = String::new();
        let _ = self.render(face, &mut out);
        out
    }

    /// The message with its terms in `face`'s words.
    fn render(&self, face: Face, out: &mut impl fmt::Write) -> fmt::Result {
        let raw = self.raw();
        let mut rest = raw;
        while let Some(at) = rest.find(TERM_MARK as char) {
            out.write_str(&rest[..at])?;
            let Some(&code) = rest.as_bytes().get(at + 1) else {
                break; // a mark cut off by the buffer's end
            };
            if let Some(term) = TERMS.get(code.wrapping_sub(TERM_BASE) as usize) {
                out.write_str(term.words(face))?;
            }
            rest = rest.get(at + 2..).unwrap_or("");
        }
        out.write_str(rest)
    }

    /// The message as stored (terms as marks).
    fn raw(&self) -> &str {
        // The buffer only ever receives whole UTF-8 characters.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }

    /// Prefixes the message with where the error happened (`"child 0: "`).
    #[cold]
    pub fn context(self, args: fmt::Arguments<'_>) -> Error {
        let mut e = Error::new(self.status, args);
        let _ = fmt::Write::write_str(&mut e, ": ");
        let _ = fmt::Write::write_str(&mut e, self.raw());
        e
    }

    /// Copies the error, in C words, into a caller's report.
    pub fn write_to(&self, out: &mut ArrowDlpackError) {
        out.status = self.status;
        let mut text = Capped::default();
        let _ = self.render(Face::C, &mut text);
        for (dst, src) in out.message.iter_mut().zip(&text.buf[..text.len]) {
            *dst = *src as c_char;
        }
        out.message[text.len] = 0;
    }
}

/// A message rendered into 255 bytes, cut at a character boundary.
struct Capped {
    buf: [u8; MESSAGE_CAPACITY - 1],
    len: usize,
}

impl Default for Capped {
    fn default() -> Capped {
        Capped {
            buf: [0; MESSAGE_CAPACITY - 1],
            len: 0,
        }
    }
}

impl fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut take = s.len().min(self.buf.len() - self.len);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

impl fmt::Write for Error {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len as usize;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        // A term is two bytes: never keep the first without the second.
        if take > 0 && take < s.len() && s.as_bytes()[take - 1] == TERM_MARK {
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
        write!(f, "{:?}: ", self.status)?;
        self.render(Face::C, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.render(Face::C, f)
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
    fn terms_are_written_in_each_faces_words() {
        let e = err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "{}{} cannot be held exactly",
            Term::FillValue,
            f64::NAN
        )
        .context(format_args!("chunk {}", 2));
        assert_eq!(
            e.message(),
            "chunk 2: options.fill_value NaN cannot be held exactly"
        );
        assert_eq!(
            e.message_for(Face::Python),
            "chunk 2: null_value=NaN cannot be held exactly"
        );
        let mut out = ArrowDlpackError {
            status: Status::ARROW_DLPACK_OK,
            message: [1; 256],
        };
        e.write_to(&mut out);
        // SAFETY: NUL-terminated by `write_to`.
        let text = unsafe { CStr::from_ptr(out.message.as_ptr()) };
        assert_eq!(text.to_str().unwrap(), e.message());
        // A rendering longer than the buffer is cut.
        let long = err!(
            ARROW_DLPACK_HAS_NULLS,
            "{}",
            format!("{}", Term::FillAdvice).repeat(60)
        );
        long.write_to(&mut out);
        // SAFETY: as for the block above, nUL-terminated by `write_to`.
        let text = unsafe { CStr::from_ptr(out.message.as_ptr()) };
        assert_eq!(text.to_bytes().len(), MESSAGE_CAPACITY - 1);
        assert!(
            text.to_str()
                .unwrap()
                .starts_with(Term::FillAdvice.words(Face::C))
        );
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
