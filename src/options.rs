//! The copy options of the C API (`ArrowDlpackExportOptions`,
//! `ArrowDlpackImportOptions`), validated once into plain Rust values.
//!
//! All zero is the default everywhere: share, never copy. Unknown enum
//! values and non-zero reserved fields are `INVALID_ARGUMENT`, so that a
//! later version can give them a meaning without changing what today's
//! callers get.

use std::ffi::c_char;

use crate::abi::{DLDataType, DLManagedTensorVersioned};
use crate::dtype::{self, DType};
use crate::error::{Error, Term, err};

/// When a copy is allowed. (C: `int32_t` fields hold these values.)
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(non_camel_case_types)]
pub enum ArrowDlpackCopy {
    /// Share, or fail with `ARROW_DLPACK_NEEDS_COPY` (the default).
    #[default]
    ARROW_DLPACK_COPY_NEVER = 0,
    /// Share when possible, else make one copy.
    ARROW_DLPACK_COPY_IF_NEEDED = 1,
    /// Always a fresh, writable copy.
    ARROW_DLPACK_COPY_ALWAYS = 2,
}

/// The layout of a 2-D tensor made from a struct array's columns.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(non_camel_case_types)]
pub enum ArrowDlpackOrder {
    /// Share columns laid end to end (column-major), else copy row-major.
    #[default]
    ARROW_DLPACK_ORDER_ANY = 0,
    ARROW_DLPACK_ROW_MAJOR = 1,
    ARROW_DLPACK_COLUMN_MAJOR = 2,
}

/// Options of `arrow_dlpack_export_with` and `arrow_dlpack_export_stream`;
/// all zero (or a NULL pointer) is the default: share, never copy.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ArrowDlpackExportOptions {
    /// An `ArrowDlpackCopy`.
    pub copy: i32,
    /// An `ArrowDlpackOrder` (for struct arrays: columns as a 2-D tensor).
    pub order: i32,
    /// 0: nulls are `ARROW_DLPACK_HAS_NULLS`; 1: each null becomes
    /// `fill_value` (a copy).
    pub fill_nulls: i32,
    /// 1: dates, times, timestamps and durations are shared as their
    /// int32/int64 storage (never copied).
    pub temporal_as_integer: i32,
    /// With `fill_nulls`: the value of nulls, converted to the tensor's
    /// dtype, which must hold it exactly.
    pub fill_value: f64,
    /// `{0, 0, 0}`: the array's own dtype; otherwise the tensor's dtype
    /// (int/uint 8-64, float 16/32/64, or kDLBool 8), converted as NumPy's
    /// `astype` with unsafe casting (a copy).
    pub dtype: DLDataType,
    /// NULL, or receives a kDLBool tensor of the same shape, 1 where the
    /// value is valid (always a copy, writable; the caller deletes it).
    pub validity: *mut *mut DLManagedTensorVersioned,
    /// 1: a dictionary-encoded array exports its indices (an integer
    /// tensor, shared like any primitive array); 0: dictionaries are
    /// `ARROW_DLPACK_UNSUPPORTED_TYPE`.
    pub dictionary_as_indices: i32,
    /// Threads a copy may run on: 0, the default (`ARROW_DLPACK_THREADS`,
    /// else the machine's cores, at most 8); 1, the calling thread only.
    /// The bytes are the same whatever the count; zero-copy exports start
    /// no thread. (Took the place of `reserved0`.)
    pub threads: i32,
    /// Must be zero.
    pub reserved: [i64; 3],
}

/// Options of `arrow_dlpack_import_with`; all zero (or a NULL pointer) is
/// the default: share, never copy.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ArrowDlpackImportOptions {
    /// An `ArrowDlpackCopy`.
    pub copy: i32,
    /// 1: a 2-D tensor `[rows, columns]` becomes a struct array of its
    /// columns: shared when each column is dense, else copied out.
    pub as_columns: i32,
    /// With `as_columns`: NULL (names "0", "1", ...) or one name per column.
    pub column_names: *const *const c_char,
    /// Threads a copy may run on, as in `ArrowDlpackExportOptions`. (It
    /// and `reserved0` took the place of `reserved[0]`.)
    pub threads: i32,
    /// Must be zero.
    pub reserved0: i32,
    /// Must be zero.
    pub reserved: [i64; 3],
}

impl Default for ArrowDlpackExportOptions {
    /// All zero: share, never copy (what a NULL pointer means).
    fn default() -> Self {
        ArrowDlpackExportOptions {
            copy: 0,
            order: 0,
            fill_nulls: 0,
            temporal_as_integer: 0,
            fill_value: 0.0,
            dtype: DLDataType {
                code: 0,
                bits: 0,
                lanes: 0,
            },
            validity: std::ptr::null_mut(),
            dictionary_as_indices: 0,
            threads: 0,
            reserved: [0; 3],
        }
    }
}

impl Default for ArrowDlpackImportOptions {
    /// All zero: share, never copy (what a NULL pointer means).
    fn default() -> Self {
        ArrowDlpackImportOptions {
            copy: 0,
            as_columns: 0,
            column_names: std::ptr::null(),
            threads: 0,
            reserved0: 0,
            reserved: [0; 3],
        }
    }
}

/// Validated export options.
#[derive(Debug, Clone, Copy)]
pub struct ExportOptions {
    pub copy: ArrowDlpackCopy,
    /// The layout of a struct array's 2-D tensor.
    pub order: ArrowDlpackOrder,
    /// `Some(value)`: nulls become `value`.
    pub fill: Option<f64>,
    pub temporal_as_integer: bool,
    /// `Some(t)`: the tensor's dtype, converted to.
    pub dtype: Option<&'static DType>,
    /// Dictionary-encoded arrays export their indices.
    pub dictionary_as_indices: bool,
    /// Also make the validity mask.
    pub mask: bool,
    /// Threads a copy may run on (0: the default).
    pub threads: usize,
    /// Copies are written into page-locked memory (`batches(pin_memory=
    /// True)`; not a C option).
    pub pinned: bool,
}

impl ExportOptions {
    /// The defaults: share, never copy.
    // Not C: cbindgen would walk this struct literal's fields in no fixed
    // order, and the header's enums would come out in a random order.
    /// cbindgen:ignore
    pub const SHARE: ExportOptions = ExportOptions {
        copy: ArrowDlpackCopy::ARROW_DLPACK_COPY_NEVER,
        order: ArrowDlpackOrder::ARROW_DLPACK_ORDER_ANY,
        fill: None,
        temporal_as_integer: false,
        dtype: None,
        dictionary_as_indices: false,
        mask: false,
        threads: 0,
        pinned: false,
    };

    /// Validates the C options (`None`: the defaults). Inlined: most
    /// callers pass NULL, which is then a constant, not a call.
    #[inline(always)]
    pub fn from_c(options: Option<&ArrowDlpackExportOptions>) -> Result<ExportOptions, Error> {
        match options {
            None => Ok(ExportOptions::SHARE),
            Some(o) => Self::from_given(o),
        }
    }

    /// Validates options a caller gave.
    fn from_given(o: &ArrowDlpackExportOptions) -> Result<ExportOptions, Error> {
        reserved_zero(&o.reserved, "options.")?;
        let threads = thread_count(o.threads)?;
        let copy = copy_policy(o.copy)?;
        let order = match o.order {
            0 => ArrowDlpackOrder::ARROW_DLPACK_ORDER_ANY,
            1 => ArrowDlpackOrder::ARROW_DLPACK_ROW_MAJOR,
            2 => ArrowDlpackOrder::ARROW_DLPACK_COLUMN_MAJOR,
            n => {
                return Err(err!(
                    ARROW_DLPACK_INVALID_ARGUMENT,
                    "options.order is {n}; it must be an ArrowDlpackOrder (0 any, 1 row-major, 2 column-major)"
                ));
            }
        };
        let fill = match o.fill_nulls {
            0 => None,
            1 => Some(o.fill_value),
            n => {
                return Err(err!(
                    ARROW_DLPACK_INVALID_ARGUMENT,
                    "options.fill_nulls is {n}; it must be 0 or 1"
                ));
            }
        };
        let temporal_as_integer = flag(o.temporal_as_integer, "temporal_as_integer")?;
        let dictionary_as_indices = flag(o.dictionary_as_indices, "dictionary_as_indices")?;
        let natural = DLDataType {
            code: 0,
            bits: 0,
            lanes: 0,
        };
        let dtype = match o.dtype {
            t if t == natural => None,
            t => Some(dtype::target(t).ok_or_else(|| {
                dtype::unsupported_dlpack(t).context(format_args!("{}", Term::Dtype))
            })?),
        };
        Ok(ExportOptions {
            copy,
            order,
            fill,
            temporal_as_integer,
            dtype,
            dictionary_as_indices,
            mask: !o.validity.is_null(),
            threads,
            pinned: false,
        })
    }
}

/// How `arrow_dlpack_export_padded` pads: all zero (or a NULL pointer)
/// pads with 0, on the right, to the longest row.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ArrowDlpackPadding {
    /// 0: the longest row; > 0: every row cut or padded to it.
    pub length: i64,
    /// 0: pad and cut at the end (right padding); 1: at the start (left
    /// padding: each row's last element in the last column).
    pub side: i32,
    /// Must be zero.
    pub reserved0: i32,
    /// The padding, converted to the tensor's dtype, which must hold it
    /// exactly.
    pub value: f64,
    /// Must be zero.
    pub reserved: [i64; 2],
}

/// Which end of a row padding goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Side {
    /// Pad (and cut) at the end.
    #[default]
    Right,
    /// Pad (and cut) at the start.
    Left,
}

/// Validated padding.
#[derive(Debug, Clone, Copy, Default)]
pub struct Padding {
    /// `None`: the longest row.
    pub length: Option<usize>,
    pub side: Side,
    pub value: f64,
}

impl Padding {
    /// Validates the C padding (`None`: the defaults).
    pub fn from_c(padding: Option<&ArrowDlpackPadding>) -> Result<Padding, Error> {
        let Some(p) = padding else {
            return Ok(Padding::default());
        };
        reserved_zero(&p.reserved, "padding->")?;
        if p.reserved0 != 0 {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "padding->reserved0 is {}; it must be zero",
                p.reserved0
            ));
        }
        let length = match p.length {
            0 => None,
            n if n > 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            n => {
                return Err(err!(
                    ARROW_DLPACK_INVALID_ARGUMENT,
                    "{}{n} is negative: 0 pads to the longest row",
                    Term::PadLength
                ));
            }
        };
        let side = match p.side {
            0 => Side::Right,
            1 => Side::Left,
            n => {
                return Err(err!(
                    ARROW_DLPACK_INVALID_ARGUMENT,
                    "{}{n} is unknown: 0 pads at the end, 1 at the start",
                    Term::PadSide
                ));
            }
        };
        Ok(Padding {
            length,
            side,
            value: p.value,
        })
    }
}

/// Validated import options.
#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    pub copy: ArrowDlpackCopy,
    /// A 2-D tensor's columns become a struct array's children.
    pub as_columns: bool,
    /// With `as_columns`: NULL, or one C string per column (checked when
    /// the number of columns is known).
    pub column_names: *const *const c_char,
    /// Threads a copy may run on (0: the default).
    pub threads: usize,
}

impl ImportOptions {
    /// The defaults: share, never copy, one array.
    // As `ExportOptions::SHARE`.
    /// cbindgen:ignore
    pub const SHARE: ImportOptions = ImportOptions {
        copy: ArrowDlpackCopy::ARROW_DLPACK_COPY_NEVER,
        as_columns: false,
        column_names: std::ptr::null(),
        threads: 0,
    };

    /// Validates the C options (`None`: the defaults).
    pub fn from_c(options: Option<&ArrowDlpackImportOptions>) -> Result<ImportOptions, Error> {
        let Some(o) = options else {
            return Ok(ImportOptions::SHARE);
        };
        reserved_zero(&o.reserved, "options.")?;
        if o.reserved0 != 0 {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "options.reserved0 is {}; it must be zero",
                o.reserved0
            ));
        }
        let threads = thread_count(o.threads)?;
        let copy = copy_policy(o.copy)?;
        let as_columns = match o.as_columns {
            0 => false,
            1 => true,
            n => {
                return Err(err!(
                    ARROW_DLPACK_INVALID_ARGUMENT,
                    "options.as_columns is {n}; it must be 0 or 1"
                ));
            }
        };
        if !as_columns && !o.column_names.is_null() {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "options.column_names is set but options.as_columns is 0: names are for the columns of a 2-D tensor"
            ));
        }
        Ok(ImportOptions {
            copy,
            as_columns,
            column_names: o.column_names,
            threads,
        })
    }
}

/// `options.threads`: 0 (the default) or a positive count.
fn thread_count(raw: i32) -> Result<usize, Error> {
    match usize::try_from(raw) {
        Ok(n) => Ok(n),
        Err(_) => Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "options.threads is {raw}; it must be 0 (the default) or a positive count"
        )),
    }
}

/// A 0/1 field.
fn flag(raw: i32, name: &str) -> Result<bool, Error> {
    match raw {
        0 => Ok(false),
        1 => Ok(true),
        n => Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "options.{name} is {n}; it must be 0 or 1"
        )),
    }
}

fn copy_policy(raw: i32) -> Result<ArrowDlpackCopy, Error> {
    match raw {
        0 => Ok(ArrowDlpackCopy::ARROW_DLPACK_COPY_NEVER),
        1 => Ok(ArrowDlpackCopy::ARROW_DLPACK_COPY_IF_NEEDED),
        2 => Ok(ArrowDlpackCopy::ARROW_DLPACK_COPY_ALWAYS),
        n => Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "options.copy is {n}; it must be an ArrowDlpackCopy (0 never, 1 if needed, 2 always)"
        )),
    }
}

/// `INVALID_ARGUMENT` unless every reserved field of `owner` (how its
/// fields are named: `options.`, `padding->`) is zero.
fn reserved_zero(reserved: &[i64], owner: &str) -> Result<(), Error> {
    match reserved.iter().position(|&r| r != 0) {
        None => Ok(()),
        Some(i) => Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "{owner}reserved[{i}] is {}; it must be zero",
            reserved[i]
        )),
    }
}

/// `NEEDS_COPY` for a conversion `what` that `copy` forbids, saying how to
/// allow it.
#[cold]
pub fn needs_copy(what: std::fmt::Arguments<'_>) -> Error {
    err!(
        ARROW_DLPACK_NEEDS_COPY,
        "{what} needs a copy, which {} forbids: allow it with {}",
        Term::CopyNever,
        Term::CopyAllow
    )
}

/// `HAS_NULLS` for nulls (`what` they are) that no fill value was given
/// for.
#[cold]
pub fn has_nulls(what: std::fmt::Arguments<'_>) -> Error {
    err!(
        ARROW_DLPACK_HAS_NULLS,
        "{what}; DLPack cannot represent missing values: {}",
        Term::FillAdvice
    )
}
