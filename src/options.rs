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
pub struct ExportPolicy {
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

impl ExportPolicy {
    /// The defaults: share, never copy.
    // Not C: cbindgen would walk this struct literal's fields in no fixed
    // order, and the header's enums would come out in a random order.
    /// cbindgen:ignore
    pub const SHARE: ExportPolicy = ExportPolicy {
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
    pub fn from_c(options: Option<&ArrowDlpackExportOptions>) -> Result<ExportPolicy, Error> {
        match options {
            None => Ok(ExportPolicy::SHARE),
            Some(o) => Self::from_given(o),
        }
    }

    /// Validates options a caller gave.
    fn from_given(o: &ArrowDlpackExportOptions) -> Result<ExportPolicy, Error> {
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
        let dtype = dtype_field(o.dtype)?;
        Ok(ExportPolicy {
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

impl Side {
    /// The side named `"right"` or `"left"` (the Python keywords' values);
    /// `field` names the argument in a refusal.
    pub fn named(name: &str, field: Term) -> Result<Side, Error> {
        match name {
            "right" => Ok(Side::Right),
            "left" => Ok(Side::Left),
            other => Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "{field}must be 'right' or 'left', not {other:?}"
            )),
        }
    }

    /// The side numbered 0 (right) or 1 (left): the C fields.
    pub fn numbered(n: i32, field: Term) -> Result<Side, Error> {
        match n {
            0 => Ok(Side::Right),
            1 => Ok(Side::Left),
            n => Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "{field}{n} is unknown: 0 pads at the end, 1 at the start"
            )),
        }
    }
}

/// Validated padding: made only by [`Pad::new`] (or the default: 0,
/// on the right, to the longest row).
#[derive(Debug, Clone, Copy, Default)]
pub struct Pad {
    /// `None`: the longest row.
    length: Option<usize>,
    side: Side,
    value: f64,
}

impl Pad {
    /// Pad to `length` elements (`None`: each row set's longest; a
    /// length must be positive), at `side`, with `value` (checked against
    /// the dtype when the tensor is planned). `length_field` names the
    /// length in a refusal.
    pub fn new(
        length: Option<i64>,
        side: Side,
        value: f64,
        length_field: Term,
    ) -> Result<Pad, Error> {
        let length = match length {
            None => None,
            Some(n) if n > 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            Some(n) => {
                return Err(err!(
                    ARROW_DLPACK_INVALID_ARGUMENT,
                    "{length_field}must be a positive number of elements, or none for the longest row; got {n}"
                ));
            }
        };
        Ok(Pad {
            length,
            side,
            value,
        })
    }

    /// Validates the C padding (`None`: the defaults).
    pub fn from_c(padding: Option<&ArrowDlpackPadding>) -> Result<Pad, Error> {
        let Some(p) = padding else {
            return Ok(Pad::default());
        };
        reserved_zero(&p.reserved, "padding->")?;
        if p.reserved0 != 0 {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "padding->reserved0 is {}; it must be zero",
                p.reserved0
            ));
        }
        if p.length < 0 {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "{}{} is negative: 0 pads to the longest row",
                Term::PadLength,
                p.length
            ));
        }
        let length = (p.length > 0).then_some(p.length);
        let side = Side::numbered(p.side, Term::PadSide)?;
        Pad::new(length, side, p.value, Term::PadLength)
    }

    /// The length every row is cut or padded to (`None`: the longest).
    pub fn length(&self) -> Option<usize> {
        self.length
    }

    pub fn side(&self) -> Side {
        self.side
    }

    /// The padding value, as given.
    pub fn value(&self) -> f64 {
        self.value
    }
}

/// How a batch gives a list or string column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lists {
    /// `[rows, length, ...]` and its mask.
    #[default]
    Padded,
    /// Values and offsets (and the rows' validity with null rows).
    Jagged,
}

impl Lists {
    /// `"padded"` or `"jagged"` (the Python keyword's values).
    pub fn named(name: &str) -> Result<Lists, Error> {
        match name {
            "padded" => Ok(Lists::Padded),
            "jagged" => Ok(Lists::Jagged),
            other => Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "{}must be 'padded' or 'jagged', not {other:?}",
                Term::Lists
            )),
        }
    }

    /// 0 (padded) or 1 (jagged): the C field.
    pub fn numbered(n: i32) -> Result<Lists, Error> {
        match n {
            0 => Ok(Lists::Padded),
            1 => Ok(Lists::Jagged),
            n => Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "{}{n} is unknown: 0 pads lists, 1 gives them jagged",
                Term::Lists
            )),
        }
    }
}

/// How a batcher cuts and converts, checked when built: a batch size and
/// a padding refused here never reach a batcher. What needs the source's
/// schema (that each named column exists, that a `stack` group's columns
/// are dense, that no column is in two places) is checked when the
/// batcher reads the schema.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    batch_size: usize,
    columns: Option<Vec<String>>,
    stack: Vec<(String, Vec<String>)>,
    lists: Lists,
    padding: Pad,
    fill: Option<f64>,
    dtype: Option<&'static DType>,
    drop_last: bool,
    pinned: bool,
    threads: usize,
}

impl BatchOptions {
    /// Batches of `batch_size` rows (positive), every other option at its
    /// default: every column, lists padded to each batch's longest row,
    /// nulls refused, the columns' own dtypes, the last batch kept, the
    /// default thread count.
    pub fn new(batch_size: i64) -> Result<BatchOptions, Error> {
        let Some(batch_size) = usize::try_from(batch_size).ok().filter(|&n| n > 0) else {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "{}must be positive, not {batch_size}",
                Term::BatchSize
            ));
        };
        Ok(BatchOptions {
            batch_size,
            columns: None,
            stack: Vec::new(),
            lists: Lists::Padded,
            padding: Pad::default(),
            fill: None,
            dtype: None,
            drop_last: false,
            pinned: false,
            threads: 0,
        })
    }

    /// The columns each batch has, by name, each once (`None`: every
    /// column not in a `stack` group, in the schema's order).
    pub fn columns(mut self, columns: Option<Vec<String>>) -> Result<BatchOptions, Error> {
        if let Some(names) = &columns {
            if let Some(twice) = first_repeated(names.iter()) {
                return Err(err!(
                    ARROW_DLPACK_INVALID_ARGUMENT,
                    "{}names {twice:?} twice",
                    Term::Columns
                ));
            }
        }
        self.columns = columns;
        Ok(self)
    }

    /// Groups of dense columns, each one row-major matrix under its name:
    /// each group named once, none empty.
    pub fn stack(mut self, groups: Vec<(String, Vec<String>)>) -> Result<BatchOptions, Error> {
        if let Some(twice) = first_repeated(groups.iter().map(|(name, _)| name)) {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "{}names group {twice:?} twice",
                Term::Stack
            ));
        }
        if let Some((name, _)) = groups.iter().find(|(_, members)| members.is_empty()) {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "stack group {name:?} has no columns"
            ));
        }
        self.stack = groups;
        Ok(self)
    }

    /// Lists and strings padded or jagged, and the padding.
    pub fn lists(mut self, lists: Lists, padding: Pad) -> BatchOptions {
        self.lists = lists;
        self.padding = padding;
        self
    }

    /// Nulls become `fill` (`None`: nulls are an error; the value is
    /// checked against each tensor's dtype when it is planned).
    pub fn fill(mut self, fill: Option<f64>) -> BatchOptions {
        self.fill = fill;
        self
    }

    /// Every tensor's dtype (`None`: the columns' own, a group's promoted).
    pub fn dtype(mut self, dtype: Option<&'static DType>) -> BatchOptions {
        self.dtype = dtype;
        self
    }

    /// The last, shorter batch dropped.
    pub fn drop_last(mut self, drop_last: bool) -> BatchOptions {
        self.drop_last = drop_last;
        self
    }

    /// Every tensor a copy in page-locked memory: refused here when the
    /// CUDA driver cannot give it.
    pub fn pinned(mut self, pinned: bool) -> Result<BatchOptions, Error> {
        if pinned {
            crate::pinned::check()?;
        }
        self.pinned = pinned;
        Ok(self)
    }

    /// Threads a copy runs on (0: the default).
    pub fn threads(mut self, threads: usize) -> BatchOptions {
        self.threads = threads;
        self
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    pub fn column_names(&self) -> Option<&[String]> {
        self.columns.as_deref()
    }

    pub fn groups(&self) -> &[(String, Vec<String>)] {
        &self.stack
    }

    pub fn list_mode(&self) -> Lists {
        self.lists
    }

    pub fn padding(&self) -> &Pad {
        &self.padding
    }

    pub fn fill_value(&self) -> Option<f64> {
        self.fill
    }

    pub fn target(&self) -> Option<&'static DType> {
        self.dtype
    }

    pub fn drops_last(&self) -> bool {
        self.drop_last
    }

    pub fn is_pinned(&self) -> bool {
        self.pinned
    }

    pub fn thread_count(&self) -> usize {
        self.threads
    }
}

/// The first name that appears twice.
fn first_repeated<'a>(names: impl Iterator<Item = &'a String>) -> Option<&'a String> {
    let mut seen = std::collections::HashSet::new();
    names.into_iter().find(|n| !seen.insert(n.as_str()))
}

/// Validated import options.
#[derive(Debug, Clone, Copy)]
pub struct ImportPolicy {
    pub copy: ArrowDlpackCopy,
    /// A 2-D tensor's columns become a struct array's children.
    pub as_columns: bool,
    /// With `as_columns`: NULL, or one C string per column (checked when
    /// the number of columns is known).
    pub column_names: *const *const c_char,
    /// Threads a copy may run on (0: the default).
    pub threads: usize,
}

impl ImportPolicy {
    /// The defaults: share, never copy, one array.
    // As `ExportPolicy::SHARE`.
    /// cbindgen:ignore
    pub const SHARE: ImportPolicy = ImportPolicy {
        copy: ArrowDlpackCopy::ARROW_DLPACK_COPY_NEVER,
        as_columns: false,
        column_names: std::ptr::null(),
        threads: 0,
    };

    /// Validates the C options (`None`: the defaults).
    pub fn from_c(options: Option<&ArrowDlpackImportOptions>) -> Result<ImportPolicy, Error> {
        let Some(o) = options else {
            return Ok(ImportPolicy::SHARE);
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
        Ok(ImportPolicy {
            copy,
            as_columns,
            column_names: o.column_names,
            threads,
        })
    }
}

/// `options.dtype`: `{0, 0, 0}` (`None`: each column's own) or a
/// conversion target.
pub(crate) fn dtype_field(t: DLDataType) -> Result<Option<&'static DType>, Error> {
    let natural = DLDataType {
        code: 0,
        bits: 0,
        lanes: 0,
    };
    if t == natural {
        return Ok(None);
    }
    dtype::target(t)
        .map(Some)
        .ok_or_else(|| dtype::unsupported_dlpack(t).context(format_args!("{}", Term::Dtype)))
}

/// `options.threads`: 0 (the default) or a positive count.
pub(crate) fn thread_count(raw: i32) -> Result<usize, Error> {
    match usize::try_from(raw) {
        Ok(n) => Ok(n),
        Err(_) => Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "options.threads is {raw}; it must be 0 (the default) or a positive count"
        )),
    }
}

/// A 0/1 field.
pub(crate) fn flag(raw: i32, name: &str) -> Result<bool, Error> {
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
pub(crate) fn reserved_zero(reserved: &[i64], owner: &str) -> Result<(), Error> {
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
