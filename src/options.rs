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
use crate::error::{Error, err};

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
    /// Must be zero.
    pub reserved: [i64; 4],
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
    /// Must be zero.
    pub reserved: [i64; 4],
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
            reserved: [0; 4],
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
            reserved: [0; 4],
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
    /// Where the validity tensor goes, if asked for.
    pub validity: *mut *mut DLManagedTensorVersioned,
}

impl ExportOptions {
    /// The defaults: share, never copy.
    pub const SHARE: ExportOptions = ExportOptions {
        copy: ArrowDlpackCopy::ARROW_DLPACK_COPY_NEVER,
        order: ArrowDlpackOrder::ARROW_DLPACK_ORDER_ANY,
        fill: None,
        temporal_as_integer: false,
        dtype: None,
        validity: std::ptr::null_mut(),
    };

    /// Validates the C options (`None`: the defaults).
    pub fn from_c(options: Option<&ArrowDlpackExportOptions>) -> Result<ExportOptions, Error> {
        let Some(o) = options else {
            return Ok(ExportOptions::SHARE);
        };
        reserved_zero(&o.reserved)?;
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
        let temporal_as_integer = match o.temporal_as_integer {
            0 => false,
            1 => true,
            n => {
                return Err(err!(
                    ARROW_DLPACK_INVALID_ARGUMENT,
                    "options.temporal_as_integer is {n}; it must be 0 or 1"
                ));
            }
        };
        let natural = DLDataType {
            code: 0,
            bits: 0,
            lanes: 0,
        };
        let dtype = match o.dtype {
            t if t == natural => None,
            t => Some(dtype::from_dlpack_or_bool(t).ok_or_else(|| {
                dtype::unsupported_dlpack(t).context(format_args!("options.dtype"))
            })?),
        };
        Ok(ExportOptions {
            copy,
            order,
            fill,
            temporal_as_integer,
            dtype,
            validity: o.validity,
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
}

impl ImportOptions {
    /// The defaults: share, never copy, one array.
    pub const SHARE: ImportOptions = ImportOptions {
        copy: ArrowDlpackCopy::ARROW_DLPACK_COPY_NEVER,
        as_columns: false,
        column_names: std::ptr::null(),
    };

    /// Validates the C options (`None`: the defaults).
    pub fn from_c(options: Option<&ArrowDlpackImportOptions>) -> Result<ImportOptions, Error> {
        let Some(o) = options else {
            return Ok(ImportOptions::SHARE);
        };
        reserved_zero(&o.reserved)?;
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
        })
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

fn reserved_zero(reserved: &[i64; 4]) -> Result<(), Error> {
    match reserved.iter().position(|&r| r != 0) {
        None => Ok(()),
        Some(i) => Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "options.reserved[{i}] is {}; it must be zero",
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
        "{what} needs a copy, which options.copy = ARROW_DLPACK_COPY_NEVER forbids: allow it with ARROW_DLPACK_COPY_IF_NEEDED"
    )
}
