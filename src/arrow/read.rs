//! The only reader of untrusted Arrow C structs.
//!
//! Every input shape (a primitive array, a `fixed_size_list` or
//! `arrow.fixed_shape_tensor`, a struct array (a record batch), the chunks
//! of a stream, lists, strings and dictionary indices) is read here into
//! plain values, in layers, as nanoarrow validates
//! (`ArrowArrayViewSetArray` -> `ValidateMinimal` -> `ValidateFull`):
//!
//! 1. Types ([`read_type`]), from the schema alone, once per schema (a
//!    stream's chunks share theirs): every level's format, child count and
//!    pointers, dictionary, the extension's shape. Then each array's
//!    structure against its type: released flags, buffer and child counts,
//!    the pointers that lead to the next level.
//! 2. Ranges: lengths, offsets and every size derived from them, checked;
//!    the range of each level a piece covers (a list's child range from
//!    its first and last offset, which are read here and nowhere else in
//!    this layer); the null policy, deciding which bitmaps must be counted.
//! 3. [`Unchecked::count_nulls`]: the validity bits of the covered ranges,
//!    counted; possible only on an [`Unchecked`] piece, which only layers 1
//!    and 2 make, and the only way to a [`Piece`] ([`read_piece`] runs all
//!    three).
//!
//! A [`Piece`] is what one array contributes to a tensor: one column's
//! rows, with its values' address, the bitmaps over them and, for
//! variable-length rows, where its offsets are. Nothing outside this module
//! dereferences a raw Arrow pointer; the copy kernels read the buffers the
//! pieces address, as the pieces describe them.
//!
//! Trusted, as the C Data Interface lets a consumer trust them: a non-NULL
//! pointer points at what its field says, buffers are as long as the
//! format, length and offset require, and `null_count == 0` means no nulls.
//! Everything else is validated before it is used.

use std::ffi::{CStr, c_void};

use crate::abi::{ArrowArray, ArrowDeviceArray, ArrowSchema, DLDevice, K_DL_CPU};
use crate::bitmap;
use crate::dims::{Dims, MAX_NDIM};
pub use crate::dtype::Accept;
use crate::dtype::{self, DType, Format, Shown};
use crate::error::{Error, Term, err};
use crate::extension;

mod runs;

pub use runs::Runs;

/// Where the buffers live, as far as reading them is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Location {
    pub device: DLDevice,
}

impl Location {
    pub const CPU: Location = Location {
        device: DLDevice {
            device_type: K_DL_CPU,
            device_id: 0,
        },
    };

    /// Whether this process may dereference the buffers.
    pub fn is_host_readable(self) -> bool {
        crate::device::is_host_readable(self.device.device_type)
    }
}

/// The device of an `ArrowDeviceArray`, DLPack numbering.
pub fn device_of(array: &ArrowDeviceArray) -> Result<DLDevice, Error> {
    crate::device::from_arrow(array.device_type, array.device_id)
}

/// What a consumer is told of an `ArrowDeviceArray` before it is
/// exported: its device as DLPack numbers it (`(1, 0)` for the CPU; other
/// types as they are, mapped or not: the export checks them), and its
/// `sync_event`, which the consumer waits on before reading.
#[cfg_attr(not(feature = "python"), allow(dead_code))] // the Python face's
pub fn device_facts(array: &ArrowDeviceArray) -> ((i32, i64), *mut c_void) {
    let device = match array.device_type {
        crate::abi::ARROW_DEVICE_CPU => (K_DL_CPU, 0),
        other => (other, array.device_id),
    };
    (device, array.sync_event)
}

/// Prefixes errors found below the top level with where they were found:
/// "child 0", "child 0.0", ...: the path of child indices.
pub fn locate(depth: usize, e: Error) -> Error {
    match depth {
        0 => e,
        d => e.context(format_args!("child 0{}", ".0".repeat(d - 1))),
    }
}

// ---- layer 1: types -----------------------------------------------------------

/// How a column's rows lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// Rows of one shape, one after another: `rows * row_elements` values.
    Dense,
    /// A list (`+l`, `+L`): row `i` is the child's elements
    /// `offsets[i]..offsets[i + 1]`.
    List { large: bool },
    /// A list view (`+vl`, `+vL`): row `i` is `sizes[i]` child elements
    /// from `offsets[i]`.
    ListView { large: bool },
    /// utf8 or binary: row `i` is bytes `offsets[i]..offsets[i + 1]` of
    /// the data buffer.
    Binary { large: bool },
    /// utf8 or binary views: 16 bytes a row, its bytes inline (up to 12)
    /// or in one of the data buffers.
    BinaryView,
}

impl Rows {
    /// Whether a row's elements vary in number.
    pub fn is_variable(self) -> bool {
        self != Rows::Dense
    }

    /// Whether offsets (or view offsets) are int64.
    pub fn large(self) -> bool {
        matches!(
            self,
            Rows::List { large: true }
                | Rows::ListView { large: true }
                | Rows::Binary { large: true }
        )
    }
}

/// The dense part of a column: a primitive, or `fixed_size_list` levels
/// over one, as a tensor's element type and inner shape.
#[derive(Debug, Clone)]
pub struct Values {
    pub dtype: &'static DType,
    /// Levels of arrays: 1 (a primitive) plus the `fixed_size_list`
    /// levels above it; 0 for the bytes of a string (its array's own data
    /// buffer).
    pub depth: usize,
    /// The tensor's dims, the first extent a placeholder for the rows: the
    /// storage's `[rows, size_1, ..., size_n]` with row-major strides, or
    /// an `arrow.fixed_shape_tensor`'s logical shape and strides.
    pub dims: Dims,
    /// Whether `dims` are an extension's (its storage is then one list
    /// level of `row_elements`).
    reshaped: bool,
    /// Elements of one row (the product of the list sizes).
    row_elements: usize,
    /// A fixed-size binary leaf's byte width (its bytes are the last
    /// dimension, each entry of the leaf that many uint8 elements).
    binary_width: Option<i64>,
}

impl Values {
    /// Elements of one row (the product of the list sizes).
    pub fn row_elements(&self) -> usize {
        self.row_elements
    }

    /// The list size of level `d` (`d >= 1`).
    fn size(&self, d: usize) -> i64 {
        match self.reshaped {
            true => self.row_elements as i64,
            false => self.dims.shape()[d],
        }
    }

    /// Elements of one entry of level `d` (a row at the top, 1 at the
    /// leaf).
    fn per_entry(&self, d: usize) -> usize {
        match (self.reshaped, d) {
            (true, 0) => self.row_elements,
            (true, _) => 1,
            (false, _) => self.dims.strides()[d] as usize,
        }
    }

    /// Whether a row is a single element (a 1-D column).
    pub fn is_flat(&self) -> bool {
        self.dims.ndim() == 1
    }
}

/// Whether two schemas describe the same type: the same formats and names
/// at every level (children and dictionaries), whatever their metadata
/// and flags.
///
/// # Safety
/// Both are valid schemas (their formats and names C strings, their
/// children and dictionaries valid where not NULL).
pub unsafe fn same_type(a: &ArrowSchema, b: &ArrowSchema) -> bool {
    // SAFETY: `same_type`'s caller promises it: both are valid schemas (their formats and names
    // C strings, their children and dictionaries valid where not NULL).
    unsafe {
        let text = |p: *const std::ffi::c_char| (!p.is_null()).then(|| CStr::from_ptr(p));
        if text(a.format) != text(b.format) || text(a.name) != text(b.name) {
            return false;
        }
        if a.n_children != b.n_children || a.dictionary.is_null() != b.dictionary.is_null() {
            return false;
        }
        if !a.dictionary.is_null() && !same_type(&*a.dictionary, &*b.dictionary) {
            return false;
        }
        let children = |s: &ArrowSchema| -> Option<Vec<*mut ArrowSchema>> {
            match (s.n_children, s.children.is_null()) {
                (0, _) => Some(Vec::new()),
                (n, false) if n > 0 => {
                    Some(std::slice::from_raw_parts(s.children, n as usize).to_vec())
                }
                _ => None,
            }
        };
        match (children(a), children(b)) {
            (Some(x), Some(y)) => x
                .iter()
                .zip(&y)
                .all(|(&p, &q)| !p.is_null() && !q.is_null() && same_type(&*p, &*q)),
            _ => false,
        }
    }
}

/// A column's type, read from its schema.
#[derive(Debug, Clone)]
pub struct ColumnType<'s> {
    pub schema: &'s ArrowSchema,
    /// The schema's format string.
    pub format: &'s [u8],
    pub rows: Rows,
    /// Whether the arrays are a dictionary's indices (the dictionary is
    /// not read).
    pub dictionary: bool,
    /// The column's dense values, or its rows' elements.
    pub values: Values,
    /// How its arrays hold the rows: as they are, or encoded (decoded
    /// by a copy when read).
    pub encoding: Encoding,
    /// In a table: the way from its struct down to the column, one step
    /// per struct level (one step for a child of the table's struct);
    /// empty for a column read alone.
    pub path: Vec<Step>,
    /// A struct's field: its name qualified by its parents'
    /// (`parent.field`).
    qualified: Option<Box<[u8]>>,
}

/// How a dense column's arrays hold its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Row after row: shared where a tensor can be.
    Plain,
    /// Run-end encoded (`+r`): run ends of this integer type, and values.
    RunEnd { ends: &'static DType },
    /// A null array (`n`): every row null, no values.
    Null,
}

/// One step from a struct down to a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The child's index.
    pub index: usize,
    /// The struct's children (its schema's `n_children`, which its arrays
    /// must have).
    pub of: i64,
}

// SAFETY: a column's type points into its schema, which nothing writes
// while the export reads it; the copy kernels' threads only read it.
unsafe impl Sync for ColumnType<'_> {}

impl ColumnType<'_> {
    /// The column's name (the schema's), for messages and batches' keys.
    pub fn name(&self) -> &[u8] {
        match &self.qualified {
            Some(name) => name,
            // SAFETY: a schema that passed layer 1: `name` is NULL or a C
            // string.
            None => unsafe { name_of(self.schema) },
        }
    }
}

/// A struct schema's type: a record batch of columns (a struct child's
/// fields are columns, named `parent.field`).
#[derive(Debug)]
pub struct TableType<'s> {
    pub columns: Vec<ColumnType<'s>>,
    /// The struct's children (its arrays must have as many).
    pub children: i64,
}

impl<'s> TableType<'s> {
    /// A table of no columns (a placeholder until a schema is read).
    pub fn empty() -> TableType<'s> {
        TableType {
            columns: Vec::new(),
            children: 0,
        }
    }

    /// The columns `js`, in that order, as a table of their own (a group
    /// stacked into one matrix; its batches are the pieces already read).
    pub fn group(&self, js: &[usize]) -> TableType<'s> {
        TableType {
            columns: js.iter().map(|&j| self.columns[j].clone()).collect(),
            children: self.children,
        }
    }
}

/// What a schema describes.
#[derive(Debug)]
pub enum Type<'s> {
    /// Boxed: a column's type is several times a table's handle.
    Column(Box<ColumnType<'s>>),
    Table(TableType<'s>),
}

impl<'s> Type<'s> {
    /// The column's type; a table (a struct array read as a record
    /// batch) is `UNSUPPORTED_TYPE` where one column is expected.
    pub fn column(&self) -> Result<&ColumnType<'s>, Error> {
        match self {
            Type::Column(column) => Ok(column),
            Type::Table(_) => Err(err!(
                ARROW_DLPACK_UNSUPPORTED_TYPE,
                "a record batch (struct array) is a table, not one column: export its columns one at a time"
            )),
        }
    }
}

/// "column 2 'price'", in messages.
pub struct ColumnName<'a>(pub usize, pub &'a [u8]);

impl std::fmt::Display for ColumnName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "column {} '{}'", self.0, Shown(self.1))
    }
}

/// A schema's name: empty when NULL.
///
/// # Safety
/// `schema.name` is NULL or a C string.
unsafe fn name_of(schema: &ArrowSchema) -> &[u8] {
    match schema.name.is_null() {
        true => &[],
        // SAFETY: a C string (caller's contract).
        false => unsafe { CStr::from_ptr(schema.name) }.to_bytes(),
    }
}

/// A schema's format string.
///
/// # Safety
/// `schema` is valid; `format` NULL or a C string.
#[inline(always)]
unsafe fn format_of(schema: &ArrowSchema) -> Result<&[u8], Error> {
    if schema.format.is_null() {
        return Err(err!(ARROW_DLPACK_INVALID_ARROW, "schema.format is NULL"));
    }
    let format = schema.format.cast::<u8>();
    // SAFETY: non-NULL, and the C Data Interface requires a NUL-terminated
    // string: byte 0 exists, and byte 1 does when byte 0 is not the
    // terminator. One-character formats (every primitive) skip `strlen`.
    Ok(unsafe {
        if *format != 0 && *format.add(1) == 0 {
            std::slice::from_raw_parts(format, 1)
        } else {
            CStr::from_ptr(format.cast()).to_bytes()
        }
    })
}

/// `INVALID_ARGUMENT` for a released schema.
fn released_schema() -> Error {
    err!(
        ARROW_DLPACK_INVALID_ARGUMENT,
        "schema is released (schema.release is NULL)"
    )
}

/// Reads what `schema` describes: a column, or (where `accept.table`) a
/// struct's columns.
///
/// # Safety
/// `schema` is valid for reads and follows the C Data Interface as far as
/// it is trusted (see the module documentation).
pub unsafe fn read_type(schema: &ArrowSchema, accept: Accept) -> Result<Type<'_>, Error> {
    if schema.release.is_none() {
        return Err(released_schema());
    }
    // SAFETY: `read_type`'s caller promises it: `schema` is valid for reads and follows the C
    // Data Interface as far as it is trusted (see the module documentation).
    let format = unsafe { format_of(schema) }?;
    if accept.table && format == b"+s" && schema.dictionary.is_null() {
        // SAFETY: as for the block above, `read_type`'s caller promises it: `schema` is valid
        // for reads and follows the C Data Interface as far as it is trusted (see the module
        // documentation).
        return unsafe { table_type(schema, accept) }.map(Type::Table);
    }
    // SAFETY: as for the block above, `read_type`'s caller promises it: `schema` is valid for
    // reads and follows the C Data Interface as far as it is trusted (see the module
    // documentation).
    unsafe { column_type(schema, accept) }.map(|c| Type::Column(Box::new(c)))
}

/// Reads a column's type.
///
/// # Safety
/// As [`read_type`].
#[inline(always)]
pub unsafe fn column_type(schema: &ArrowSchema, accept: Accept) -> Result<ColumnType<'_>, Error> {
    if schema.release.is_none() {
        return Err(released_schema());
    }
    // The extension's parameters come first: they belong to the top schema.
    // SAFETY: `schema` is valid (caller's contract); its metadata block
    // is read only through checked lengths.
    let tensor_json = unsafe { extension::fixed_shape_tensor_json(schema) }?;
    // SAFETY: as for the block above, `schema` is valid (caller's contract); its metadata block
    // is read only through checked lengths.
    let format = unsafe { format_of(schema) }?;
    let parsed = dtype::classify(format, accept)?;
    let dictionary = !schema.dictionary.is_null();
    if dictionary {
        if !accept.dictionary {
            return Err(err!(
                ARROW_DLPACK_UNSUPPORTED_TYPE,
                "unsupported dictionary-encoded array (indices '{}'): {}",
                Shown(format),
                Term::DictionaryAdvice
            ));
        }
        if !matches!(parsed, Format::Primitive(t) if t.is_integer()) {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "a dictionary's indices must be integers, not '{}'",
                Shown(format)
            ));
        }
    }
    // Below the top, nothing but numbers and fixed-size lists of them.
    let inner = Accept {
        table: false,
        variable: false,
        dictionary: false,
        ..accept
    };
    let mut encoding = Encoding::Plain;
    let (rows, values) = match parsed {
        Format::RunEndEncoded => {
            // SAFETY: `column_type`'s caller promises it: as `read_type`'s.
            let (ends, values) = unsafe { run_end_type(schema, inner) }?;
            encoding = Encoding::RunEnd { ends };
            (Rows::Dense, values)
        }
        Format::Null => {
            // SAFETY: as for the block above.
            unsafe { no_children(schema, format) }?;
            encoding = Encoding::Null;
            (Rows::Dense, flat(&dtype::FLOAT32))
        }
        Format::Primitive(_)
        | Format::FixedSizeList(_)
        | Format::FixedSizeBinary(_)
        | Format::Decimal(_) => (
            Rows::Dense,
            // SAFETY: `column_type`'s caller promises it: as `read_type`'s: `schema` is valid
            // for reads and follows the C Data Interface as far as it is trusted (see the
            // module documentation).
            unsafe { values_type(schema, parsed, tensor_json, inner, 0) }?,
        ),
        Format::List { large } | Format::ListView { large } => {
            // SAFETY: `column_type`'s caller promises it: as `read_type`'s: `schema` is valid
            // for reads and follows the C Data Interface as far as it is trusted (see the
            // module documentation).
            let child = unsafe { only_child(schema, format) }?;
            // SAFETY: a valid child schema (trusted when non-NULL).
            let values = unsafe {
                let json = extension::fixed_shape_tensor_json(child).map_err(|e| locate(1, e))?;
                let child_format = format_of(child).map_err(|e| locate(1, e))?;
                if !child.dictionary.is_null() {
                    return Err(locate(
                        1,
                        err!(
                            ARROW_DLPACK_UNSUPPORTED_TYPE,
                            "unsupported dictionary-encoded list elements (indices '{}'): decode them first",
                            Shown(child_format)
                        ),
                    ));
                }
                let child_parsed =
                    dtype::classify(child_format, inner).map_err(|e| locate(1, e))?;
                values_type(child, child_parsed, json, inner, 1)
            }?;
            let rows = match parsed {
                Format::List { .. } => Rows::List { large },
                _ => Rows::ListView { large },
            };
            (rows, values)
        }
        Format::Binary { .. } | Format::BinaryView => {
            // SAFETY: `column_type`'s caller promises it: as `read_type`'s: `schema` is valid
            // for reads and follows the C Data Interface as far as it is trusted (see the
            // module documentation).
            unsafe { no_children(schema, format) }?;
            let rows = match parsed {
                Format::Binary { large } => Rows::Binary { large },
                _ => Rows::BinaryView,
            };
            (rows, bytes())
        }
        Format::Struct => {
            return Err(err!(
                ARROW_DLPACK_UNSUPPORTED_TYPE,
                "unsupported format '+s' (struct)"
            ));
        }
    };
    Ok(ColumnType {
        schema,
        format,
        rows,
        dictionary,
        values,
        encoding,
        path: Vec::new(),
        qualified: None,
    })
}

/// The type of a run-end encoded column: its run ends' integer type
/// (int16, int32 or int64) and its values'.
///
/// # Safety
/// As [`read_type`].
unsafe fn run_end_type(
    schema: &ArrowSchema,
    accept: Accept,
) -> Result<(&'static DType, Values), Error> {
    if schema.n_children != 2 || schema.children.is_null() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "schema.n_children is {} (children {}), format '+r' has 2: run ends and values",
            schema.n_children,
            if schema.children.is_null() {
                "NULL"
            } else {
                "set"
            }
        ));
    }
    let child = |i: usize| {
        // SAFETY: two entries (checked), NULL or valid schemas (trusted).
        match unsafe { (*schema.children.add(i)).as_ref() } {
            Some(c) if c.release.is_some() => Ok(c),
            Some(_) => Err(locate(1, released_schema())),
            None => Err(err!(ARROW_DLPACK_INVALID_ARROW, "children[{i}] is NULL")),
        }
    };
    let (ends, values) = (child(0)?, child(1)?);
    let at = |e| locate(1, e);
    // SAFETY: a valid schema (trusted).
    let ends_format = unsafe { format_of(ends) }.map_err(at)?;
    let ends_type = match dtype::classify(ends_format, Accept::default()) {
        Ok(Format::Primitive(t))
            if matches!(t.format, b's' | b'i' | b'l')
                && ends.n_children == 0
                && ends.dictionary.is_null() =>
        {
            t
        }
        _ => {
            return Err(at(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "run ends of format '{}': they are int16, int32 or int64",
                Shown(ends_format)
            )));
        }
    };
    // SAFETY: as above: a valid schema (trusted).
    let values_format = unsafe { format_of(values) }.map_err(at)?;
    if !values.dictionary.is_null() {
        return Err(at(err!(
            ARROW_DLPACK_UNSUPPORTED_TYPE,
            "unsupported dictionary-encoded run-end encoded values (indices '{}'): decode them first",
            Shown(values_format)
        )));
    }
    let parsed = dtype::classify(values_format, accept).map_err(at)?;
    if matches!(parsed, Format::RunEndEncoded | Format::Null) {
        return Err(at(err!(
            ARROW_DLPACK_UNSUPPORTED_TYPE,
            "unsupported run-end encoded values of format '{}'",
            Shown(values_format)
        )));
    }
    // SAFETY: as above: a valid schema (trusted).
    let values = unsafe {
        let json = extension::fixed_shape_tensor_json(values).map_err(at)?;
        values_type(values, parsed, json, accept, 1)
    }?;
    Ok((ends_type, values))
}

/// The values of a one-dimensional column of `dtype`.
fn flat(dtype: &'static DType) -> Values {
    let mut dims = Dims::new();
    dims.push_strided(0, 1).expect("one dimension");
    Values {
        dtype,
        depth: 1,
        dims,
        reshaped: false,
        row_elements: 1,
        binary_width: None,
    }
}

/// The values of a string or binary column: its bytes, as uint8.
fn bytes() -> Values {
    let mut dims = Dims::new();
    dims.push_strided(0, 1).expect("one dimension");
    Values {
        dtype: &dtype::UINT8,
        depth: 0,
        dims,
        reshaped: false,
        row_elements: 1,
        binary_width: None,
    }
}

/// Checks that a list schema has its one child, and returns it.
///
/// # Safety
/// As [`read_type`].
unsafe fn only_child<'s>(schema: &'s ArrowSchema, format: &[u8]) -> Result<&'s ArrowSchema, Error> {
    if schema.n_children != 1 {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "schema.n_children is {}, format '{}' has 1",
            schema.n_children,
            Shown(format)
        ));
    }
    if schema.children.is_null() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "children is NULL with n_children 1"
        ));
    }
    // SAFETY: one entry (checked), NULL or a valid schema (trusted).
    match unsafe { (*schema.children).as_ref() } {
        Some(child) if child.release.is_some() => Ok(child),
        Some(_) => Err(locate(1, released_schema())),
        None => Err(err!(ARROW_DLPACK_INVALID_ARROW, "children[0] is NULL")),
    }
}

/// Checks that a leaf schema has no children.
///
/// # Safety
/// As [`read_type`].
unsafe fn no_children(schema: &ArrowSchema, format: &[u8]) -> Result<(), Error> {
    match schema.n_children {
        0 => Ok(()),
        n => Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "schema.n_children is {n}, format '{}' has 0",
            Shown(format)
        )),
    }
}

/// The dense values whose top schema is `schema` (of format `parsed`,
/// extension parameters `tensor_json`), found `base` levels below the
/// column's top (for messages).
///
/// # Safety
/// As [`read_type`].
#[inline(always)]
unsafe fn values_type(
    schema: &ArrowSchema,
    parsed: Format,
    tensor_json: Option<&[u8]>,
    accept: Accept,
    base: usize,
) -> Result<Values, Error> {
    let mut dims = Dims::new();
    dims.push(0)?;
    let (mut schema, mut parsed, mut depth) = (schema, parsed, 0);
    let mut binary_width = None;
    let dtype = loop {
        let at = |e| locate(base + depth, e);
        if depth > 0 && !schema.dictionary.is_null() {
            // SAFETY: a valid schema (trusted when reached).
            let format = unsafe { format_of(schema) }.map_err(at)?;
            return Err(at(err!(
                ARROW_DLPACK_UNSUPPORTED_TYPE,
                "unsupported dictionary-encoded array (indices '{}'): decode it first",
                Shown(format)
            )));
        }
        match parsed {
            Format::Primitive(t) | Format::Decimal(t) => {
                if schema.n_children != 0 {
                    // SAFETY: as for the block above, a valid schema (trusted when reached).
                    let format = unsafe { format_of(schema) }.map_err(at)?;
                    return Err(at(err!(
                        ARROW_DLPACK_INVALID_ARROW,
                        "schema.n_children is {}, format '{}' has 0",
                        schema.n_children,
                        Shown(format)
                    )));
                }
                break t;
            }
            Format::FixedSizeBinary(width) => {
                // SAFETY: as for the block above, a valid schema (trusted when reached).
                let format = unsafe { format_of(schema) }.map_err(at)?;
                // SAFETY: as for the block above, a valid schema (trusted when reached).
                unsafe { no_children(schema, format) }.map_err(at)?;
                if tensor_json.is_some() {
                    return Err(err!(
                        ARROW_DLPACK_UNSUPPORTED_TYPE,
                        "an arrow.fixed_shape_tensor over fixed-size binary ('{}'): its storage must be a fixed_size_list of numbers",
                        Shown(format)
                    ));
                }
                dims.push(width)?;
                binary_width = Some(width);
                break &dtype::UINT8;
            }
            Format::FixedSizeList(size) => {
                if depth + 1 == MAX_NDIM {
                    return Err(err!(
                        ARROW_DLPACK_UNSUPPORTED_LAYOUT,
                        "more than {} nested fixed_size_list levels; DLPack consumers allow at most {MAX_NDIM} dimensions",
                        MAX_NDIM - 1
                    ));
                }
                // SAFETY: as for the block above, a valid schema (trusted when reached).
                let format = unsafe { format_of(schema) }.map_err(at)?;
                // SAFETY: `values_type`'s caller promises it: as `read_type`'s: `schema` is
                // valid for reads and follows the C Data Interface as far as it is trusted (see
                // the module documentation).
                schema = unsafe { only_child(schema, format) }.map_err(at)?;
                dims.push(size)?;
                depth += 1;
                let at = |e| locate(base + depth, e);
                // SAFETY: a valid child schema (trusted when non-NULL).
                let format = unsafe { format_of(schema) }.map_err(at)?;
                parsed = dtype::classify(format, accept).map_err(at)?;
            }
            _ => {
                // SAFETY: as for the block above, a valid child schema (trusted when non-NULL).
                let format = unsafe { format_of(schema) }.map_err(at)?;
                return Err(at(dtype::classify(format, Accept::default())
                    .err()
                    .unwrap_or_else(|| {
                        err!(
                            ARROW_DLPACK_UNSUPPORTED_TYPE,
                            "unsupported format '{}' inside a fixed-size list",
                            Shown(format)
                        )
                    })));
            }
        }
    };
    dims.set_row_major_strides()?;
    // The first stride is a row's elements (checked by the strides).
    let row_elements = dims.strides()[0] as usize;
    let reshaped = match tensor_json {
        Some(json) => {
            extension::reshape(&mut dims, json)?;
            true
        }
        None => false,
    };
    Ok(Values {
        dtype,
        depth: depth + 1,
        dims,
        reshaped,
        row_elements,
        binary_width,
    })
}

/// Reads a struct schema's columns.
///
/// # Safety
/// As [`read_type`].
unsafe fn table_type(schema: &ArrowSchema, accept: Accept) -> Result<TableType<'_>, Error> {
    let accept = Accept {
        table: false,
        ..accept
    };
    let mut columns = Vec::new();
    // SAFETY: `table_type`'s caller promises it: as `read_type`'s.
    let children = unsafe { struct_children(schema) }?;
    // SAFETY: as for the block above.
    unsafe { flatten(schema, accept, &mut Vec::new(), &[], &mut columns) }?;
    Ok(TableType { columns, children })
}

/// A struct schema's children, checked: `n_children >= 0`, each non-NULL.
///
/// # Safety
/// As [`read_type`].
unsafe fn struct_children(schema: &ArrowSchema) -> Result<i64, Error> {
    let n = schema.n_children;
    // SAFETY: `n` entries when not NULL (the interface's layout).
    if n < 0 || (n > 0 && unsafe { missing(schema.children, n as usize) }) {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "struct schema: n_children {n} with children (or one of them) NULL"
        ));
    }
    Ok(n)
}

/// Struct levels a table's column may lie under (a deeper schema is
/// refused, not followed down the stack).
const MAX_STRUCT_DEPTH: usize = 32;

/// The columns of struct `schema` (found along `path`, named from
/// `prefix`) into `columns`: each child a column, or, a struct itself, its
/// fields as columns named `parent.field` (recursively).
///
/// # Safety
/// As [`read_type`]; `schema`'s children were checked
/// ([`struct_children`]).
unsafe fn flatten<'s>(
    schema: &'s ArrowSchema,
    accept: Accept,
    path: &mut Vec<Step>,
    prefix: &[u8],
    columns: &mut Vec<ColumnType<'s>>,
) -> Result<(), Error> {
    let n = schema.n_children;
    for j in 0..n as usize {
        // SAFETY: `n` non-NULL entries (checked by the caller), valid schemas (trusted).
        let child = unsafe { &**schema.children.add(j) };
        let mut name = prefix.to_vec();
        // SAFETY: as above; a name is NULL or a C string.
        name.extend_from_slice(unsafe { name_of(child) });
        let at = |e: Error| e.context(format_args!("{}", ColumnName(columns.len(), &name)));
        path.push(Step { index: j, of: n });
        // SAFETY: as above: a valid schema (trusted); its format NULL or a C string.
        let nested = child.release.is_some()
            && child.dictionary.is_null()
            && unsafe { format_of(child) }.is_ok_and(|f| f == b"+s");
        if nested {
            if path.len() > MAX_STRUCT_DEPTH {
                return Err(at(err!(
                    ARROW_DLPACK_UNSUPPORTED_TYPE,
                    "structs nested more than {MAX_STRUCT_DEPTH} deep"
                )));
            }
            // SAFETY: as above: a valid schema (trusted).
            unsafe { struct_children(child) }.map_err(at)?;
            name.push(b'.');
            // SAFETY: as above; its children just checked.
            unsafe { flatten(child, accept, path, &name, columns) }?;
        } else {
            // SAFETY: as above: a valid schema (trusted).
            let mut column = unsafe { column_type(child, accept) }.map_err(at)?;
            column.path = path.clone();
            if !prefix.is_empty() {
                column.qualified = Some(name.into());
            }
            columns.push(column);
        }
        path.pop();
    }
    Ok(())
}

/// Whether `children` (of `n` entries when not NULL) or one of them is
/// NULL.
///
/// # Safety
/// `children` is NULL or holds `n` pointers.
unsafe fn missing<T>(children: *mut *mut T, n: usize) -> bool {
    // SAFETY: `n` entries (caller's contract).
    children.is_null() || (0..n).any(|i| unsafe { (*children.add(i)).is_null() })
}

// ---- layers 1 (arrays) and 2: pieces -------------------------------------------

/// What a read accepts of the data.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mode {
    /// Nulls are kept (to be counted, filled or masked) rather than refused.
    pub keep_nulls: bool,
    /// A run-end encoded array without null values is left for the copy
    /// to decode straight into the tensor ([`Piece::runs`]: a layout by
    /// row ranges decodes it, a gather by picks cannot); else decoded when
    /// read.
    pub decode_later: bool,
}

/// Where a validity bitmap sits in the column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The struct array around the column: a null row of a record batch.
    Struct,
    /// A level of the column's own tree (0: the array itself).
    Depth(usize),
}

/// The validity bits of one level's covered range, and what they cover.
#[derive(Debug, Clone, Copy)]
pub struct NullMap {
    /// A host-readable bitmap.
    pub bitmap: *const u8,
    /// The bit of the first covered entry.
    pub first: usize,
    /// Covered entries.
    pub count: usize,
    /// Elements of the values each entry covers (a list level's row, 1 at
    /// the leaf). For the rows of a variable-length column, 0: a row's
    /// elements are its offsets'.
    pub per_entry: usize,
    /// Entries of this level each row holds (1 at the top).
    pub per_row: usize,
    pub level: Level,
    /// Whether it covers the rows of a variable-length column (else
    /// values).
    pub rows: bool,
}

impl NullMap {
    /// The map of rows `first..first + rows` of the covered range.
    pub fn slice(&self, first: usize, rows: usize) -> NullMap {
        NullMap {
            first: self.first + first * self.per_row,
            count: rows * self.per_row,
            ..*self
        }
    }

    /// Null entries among those covered.
    ///
    /// # Safety
    /// The bitmap holds `first + count` bits.
    pub unsafe fn nulls(&self) -> usize {
        let bytes = (self.first + self.count).div_ceil(8);
        // SAFETY: `nulls`'s caller promises it: the bitmap holds `first + count` bits.
        let bits = unsafe { std::slice::from_raw_parts(self.bitmap, bytes) };
        self.count - bitmap::count_set_bits(bits, self.first, self.count)
    }

    /// The first null entry, if any.
    ///
    /// # Safety
    /// As [`NullMap::nulls`].
    pub unsafe fn first_null(&self) -> Option<usize> {
        // SAFETY: `first_null`'s caller promises it: as `nulls`'s: The bitmap holds `first +
        // count` bits.
        (0..self.count).find(|&i| unsafe { !bitmap::bit(self.bitmap, self.first + i) })
    }
}

/// The offsets of a variable-length piece.
#[derive(Debug, Clone, Copy)]
pub struct Offsets {
    /// The entry of the first covered row: `rows + 1` entries (lists,
    /// strings) or `rows` (views) from here.
    pub data: *const u8,
    /// The first and last offsets of a list or string piece (read in
    /// layer 2): the values' covered range is `first..last`.
    pub first: i64,
    pub last: i64,
    /// A list view's sizes (`rows` entries from the first covered row).
    pub sizes: *const u8,
    /// A view's data buffers (`n_data` of them).
    pub data_buffers: *const *const c_void,
    pub n_data: usize,
}

/// What one array contributes to a tensor: one column's covered rows.
#[derive(Debug, Clone)]
pub struct Piece {
    /// The first covered value (for a bit-packed boolean: the byte holding
    /// its bit); NULL when there is none. For a list: the child's element
    /// `offsets.first`; for a string: byte `offsets.first` of its data; for
    /// views: their first 16-byte view.
    pub data: *mut c_void,
    /// For a bit-packed boolean: the first value's bit in `data[0]`.
    pub bit_offset: usize,
    /// Rows covered.
    pub rows: usize,
    /// Values covered: `rows * row_elements` for a dense column, the
    /// child's covered elements (or bytes) for a list (or string); 0 for
    /// views (their values lie anywhere).
    pub elements: usize,
    /// The bitmaps that may hold nulls (layer 3 counts them), outermost
    /// first: over the values, in value rows (a dense column's rows, a
    /// list's child elements), and, for a variable-length column, over its
    /// rows (`NullMap::rows`: its own, and a struct's around it). Empty,
    /// and unallocated, where no level may hold a null.
    pub maps: Vec<NullMap>,
    /// Null entries of the values found by [`Unchecked::count_nulls`], over
    /// all levels.
    pub nulls: usize,
    /// Null rows of a variable-length column found by
    /// [`Unchecked::count_nulls`].
    pub null_rows: usize,
    /// The outermost level where they were found.
    pub null_level: Level,
    /// Variable-length rows: where their offsets are.
    pub offsets: Option<Offsets>,
    /// A run-end encoded piece left for the copy to decode: `data` is its
    /// value row 0, its rows the runs' (see [`Mode::decode_later`]).
    pub runs: Option<Runs>,
    /// A decoded piece (run-end encoded, null): the memory its data and
    /// bitmap point into, which no array holds (never shared).
    decoded: Option<std::sync::Arc<runs::Decoded>>,
    /// Private: a piece is made only by this reader, after every layer
    /// ([`read_piece`], [`read_batch`]), or derived from one it made
    /// ([`Piece::values_run`]); a struct literal elsewhere does not
    /// compile.
    _checked: Checked,
}

/// The mark of a piece the reader made (see [`Piece`]).
#[derive(Debug, Clone, Copy)]
struct Checked;

// SAFETY: a piece describes memory its arrays keep alive and that nothing
// writes while they live (Arrow buffers are immutable); the copy kernels
// only read it, from as many threads as a copy is split over.
unsafe impl Sync for Piece {}

/// A level's format, as messages name it.
#[derive(Clone, Copy)]
enum LevelFormat<'a> {
    Schema(&'a [u8]),
    Dtype(&'static DType),
    FixedSizeList(i64),
    FixedSizeBinary(i64),
}

impl std::fmt::Display for LevelFormat<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LevelFormat::Schema(format) => write!(f, "{}", Shown(format)),
            LevelFormat::Dtype(t) => write!(f, "{}", Shown(t.c_format.to_bytes())),
            LevelFormat::FixedSizeList(size) => write!(f, "+w:{size}"),
            LevelFormat::FixedSizeBinary(width) => write!(f, "w:{width}"),
        }
    }
}

/// Checks the buffer and child counts and pointers of one level of an
/// array against its format.
///
/// # Safety
/// `array` is valid for reads.
#[inline(always)]
unsafe fn level_structure(
    array: &ArrowArray,
    format: LevelFormat<'_>,
    n_buffers: i64,
    n_children: i64,
    dictionary: bool,
) -> Result<(), Error> {
    // Views have a variable number of data buffers (and a buffer of their
    // sizes): at least 3.
    let buffers_ok = match format {
        LevelFormat::Schema(b"vu" | b"vz") => array.n_buffers >= 3,
        _ => array.n_buffers == n_buffers,
    };
    if !buffers_ok {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "array.n_buffers is {}, format '{format}' has {n_buffers}",
            array.n_buffers,
        ));
    }
    if array.n_children != n_children {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "array.n_children is {}, format '{format}' has {n_children}",
            array.n_children,
        ));
    }
    match (dictionary, array.dictionary.is_null()) {
        (false, false) => {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "array.dictionary is set but the schema has no dictionary"
            ));
        }
        (true, true) => {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "array.dictionary is NULL but the schema has a dictionary"
            ));
        }
        _ => {}
    }
    if array.buffers.is_null() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "array.buffers is NULL with n_buffers {}",
            array.n_buffers
        ));
    }
    if n_children == 1 && array.children.is_null() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "children is NULL with n_children 1"
        ));
    }
    Ok(())
}

/// The child of a list level (structure checked: one entry).
///
/// # Safety
/// `array.children` holds one entry, NULL or valid.
#[inline(always)]
unsafe fn child_array(array: &ArrowArray) -> Result<&ArrowArray, Error> {
    // SAFETY: one entry (caller's contract), NULL or valid (trusted).
    match unsafe { (*array.children).as_ref() } {
        Some(child) => Ok(child),
        None => Err(err!(ARROW_DLPACK_INVALID_ARROW, "children[0] is NULL")),
    }
}

/// What layer 2 established about one level.
struct Covered {
    /// Physical index of the first element covered.
    first: i64,
    /// The validity bits to count, if this level may have nulls in the
    /// covered range.
    nulls: Option<NullMap>,
}

/// Checks length, offset and the null policy over the covered range
/// `[start, start + count)` of one level (logical indices). Reads the
/// buffers array's first entry (a pointer), never what it points at.
#[inline(always)]
fn level_range(
    a: &ArrowArray,
    start: i64,
    count: i64,
    depth: usize,
    location: Location,
    mode: Mode,
) -> Result<Covered, Error> {
    if a.length < 0 {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "array.length is negative ({})",
            a.length
        ));
    }
    if a.offset < 0 {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "array.offset is negative ({})",
            a.offset
        ));
    }
    if a.null_count < -1 {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "array.null_count is {}; it must be -1 (unknown) or a count",
            a.null_count
        ));
    }
    // Ranges are computed in i64 with overflow checks: every later pointer
    // offset is derived from them.
    if start.checked_add(count).is_none_or(|end| end > a.length) {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "array.length is {}, the parent needs {} elements from {}",
            a.length,
            count,
            start
        ));
    }
    let Some(first) = a.offset.checked_add(start) else {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "array.offset {} + {} overflows",
            a.offset,
            start
        ));
    };
    if first.checked_add(count).is_none() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "array.offset {} + length {} overflows",
            first,
            count
        ));
    }
    // SAFETY: `buffers` is non-NULL with `n_buffers >= 1` entries (layer 1).
    let validity = unsafe { *a.buffers };
    let nulls = match a.null_count {
        0 => None,
        n if n > 0 && validity.is_null() => {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "array.null_count is {n} but buffers[0] (validity) is NULL"
            ));
        }
        // A child's count covers all of it, not only the covered range:
        // count that range where the bitmap may be read. Where nulls are
        // kept, every level's are counted.
        n if n > 0 && ((depth == 0 && !mode.keep_nulls) || !location.is_host_readable()) => {
            return Err(err!(
                ARROW_DLPACK_HAS_NULLS,
                "array has {n} nulls; DLPack cannot represent missing values"
            ));
        }
        -1 if validity.is_null() => None,
        -1 if !location.is_host_readable() => {
            return Err(err!(
                ARROW_DLPACK_UNSUPPORTED_DEVICE,
                "array.null_count is -1 (unknown) and the validity bitmap is in device memory \
                 (device type {}), which is never read: compute the null count on the device",
                location.device.device_type
            ));
        }
        _ => Some(NullMap {
            bitmap: validity.cast(),
            first: first as usize,
            count: count as usize,
            // Set once the levels below are known.
            per_entry: 1,
            per_row: 1,
            level: Level::Depth(depth),
            rows: false,
        }),
    };
    Ok(Covered { first, nulls })
}

/// The address of element `first` of a primitive level's values buffer
/// (for bit-packed booleans: of the byte holding its bit, and the bit).
#[inline(always)]
fn values_at(
    a: &ArrowArray,
    t: &DType,
    first: i64,
    count: i64,
) -> Result<(*mut c_void, usize), Error> {
    let width = t.width() as i64;
    let end = first.checked_add(count);
    let byte_end = match t.is_bit_packed() {
        true => end.map(|end| end / 8 + 1),
        false => end.and_then(|end| end.checked_mul(width)),
    };
    if byte_end.is_none_or(|end| end > isize::MAX as i64) {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "(array.offset + array.length) * {width} bytes overflows: offset {first}, length {count}"
        ));
    }
    if count == 0 {
        return Ok((std::ptr::null_mut(), 0));
    }
    // SAFETY: a primitive level has two buffer entries (layer 1).
    let values = unsafe { *a.buffers.add(1) };
    if values.is_null() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "buffers[1] (values) is NULL with length {count}"
        ));
    }
    // `wrapping_add`: the address may be device memory this process cannot
    // see; the offset is in bounds of the producer's buffer.
    let (byte, bit) = match t.is_bit_packed() {
        true => (first / 8, (first % 8) as usize),
        false => (first * width, 0),
    };
    let address = values.cast::<u8>().wrapping_add(byte as usize);
    Ok((address.cast_mut().cast(), bit))
}

/// Reads the dense values of `array` (the top of `values`' tree) over its
/// logical value rows `start..start + count` (each `row_elements`
/// values): their address; the bitmaps that may hold nulls go to `maps`,
/// in value rows. `top` is the column level of `array` (for messages);
/// `dictionary`, whether it holds a dictionary's indices.
///
/// # Safety
/// `array` is valid for reads (the C Data Interface's guarantees).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn dense(
    array: &ArrowArray,
    values: &Values,
    format: &[u8],
    dictionary: bool,
    (start, count): (i64, i64),
    top: usize,
    location: Location,
    mode: Mode,
    maps: &mut Vec<NullMap>,
) -> Result<(*mut c_void, usize), Error> {
    let (mut array, mut start, mut count) = (array, start, count);
    for depth in 0..values.depth {
        let level = top + depth;
        let at = |e| locate(level, e);
        let leaf = depth + 1 == values.depth;
        let (name, n_buffers, n_children) = match (leaf, depth) {
            (true, 0) => (LevelFormat::Schema(format), 2, 0),
            (true, _) if values.binary_width.is_some() => (
                LevelFormat::FixedSizeBinary(values.binary_width.unwrap_or(0)),
                2,
                0,
            ),
            (true, _) => (LevelFormat::Dtype(values.dtype), 2, 0),
            (false, _) => (LevelFormat::FixedSizeList(values.size(depth + 1)), 1, 1),
        };
        // SAFETY: forwarded from the caller (child levels: non-NULL
        // pointers checked below, trusted to be valid).
        unsafe { level_structure(array, name, n_buffers, n_children, dictionary && depth == 0) }
            .map_err(at)?;
        let covered = level_range(array, start, count, level, location, mode).map_err(at)?;
        if let Some(mut map) = covered.nulls {
            // Entries of this level each value row holds, and the values
            // each covers.
            map.per_entry = values.per_entry(depth);
            map.per_row = values.row_elements / map.per_entry.max(1);
            maps.push(map);
        }
        if leaf {
            // A fixed-size binary's entries are `leaf_size` bytes each.
            let w = values.binary_width.unwrap_or(1);
            let (Some(first), Some(elements)) =
                (covered.first.checked_mul(w), count.checked_mul(w))
            else {
                return Err(at(err!(
                    ARROW_DLPACK_INVALID_ARROW,
                    "fixed-size binary of width {w}: (offset {} + length {count}) * width overflows",
                    covered.first
                )));
            };
            return values_at(array, values.dtype, first, elements).map_err(at);
        }
        let size = values.size(depth + 1);
        let (Some(child_start), Some(child_count)) =
            (covered.first.checked_mul(size), count.checked_mul(size))
        else {
            return Err(at(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "fixed_size_list of size {size}: (offset {} + length {count}) * size overflows",
                covered.first
            )));
        };
        // SAFETY: one child (checked by `level_structure`).
        array = unsafe { child_array(array) }.map_err(at)?;
        (start, count) = (child_start, child_count);
    }
    Ok((std::ptr::null_mut(), 0))
}

/// A primitive array, or one `fixed_size_list` level over one, read
/// whole: what most exports are.
#[derive(Debug, Clone, Copy)]
pub struct Flat {
    pub dtype: &'static DType,
    /// The first element; NULL without elements.
    pub data: *mut c_void,
    pub rows: i64,
    /// The list size of a `fixed_size_list` (a row of `size` elements).
    pub size: Option<i64>,
}

/// The one-character primitive format of a schema with nothing else to it
/// (no metadata, dictionary or children), if it is one.
///
/// # Safety
/// `schema` is valid.
#[inline(always)]
unsafe fn plain_primitive(schema: &ArrowSchema) -> Option<&'static DType> {
    if !schema.metadata.is_null()
        || !schema.dictionary.is_null()
        || schema.n_children != 0
        || schema.format.is_null()
    {
        return None;
    }
    // SAFETY: a non-NULL C string (the interface's contract): byte 1
    // exists when byte 0 is not the terminator.
    let (c, end) = unsafe {
        let f = schema.format.cast::<u8>();
        (*f, *f != 0 && *f.add(1) == 0)
    };
    dtype::primitive(c).filter(|_| end)
}

/// The common cases, read without building a type or a piece: a schema of
/// a one-character primitive format, or of one `fixed_size_list` level
/// over one, without metadata, dictionaries or other children, and its
/// array, through the same layers and checks as [`read_piece`] (every
/// level's structure and ranges, then the validity bits; any null is
/// `HAS_NULLS`). `Ok(None)`: not such a schema; read it with
/// [`column_type`] and [`read_piece`].
///
/// # Safety
/// As [`read_type`] and [`read_piece`].
#[inline(always)]
pub unsafe fn read_flat(
    array: &ArrowArray,
    schema: &ArrowSchema,
    location: Location,
) -> Result<Option<Flat>, Error> {
    if schema.release.is_none() {
        return Ok(None);
    }
    // The schema first: a primitive, or `+w:N` of one.
    // SAFETY: `read_flat`'s caller promises it: as `read_type`'s and [`read_piece`]: `schema`
    // is valid for reads and follows the C Data Interface as far as it is trusted (see the
    // module documentation).
    let (dtype, list) = match unsafe { plain_primitive(schema) } {
        Some(t) => (t, None),
        None => {
            let format = match schema.format.is_null() {
                true => return Ok(None),
                // SAFETY: as above; a non-NULL format is a C string.
                false => unsafe { CStr::from_ptr(schema.format) }.to_bytes(),
            };
            let Some(size) = dtype::fixed_size_list(format) else {
                return Ok(None);
            };
            if !schema.metadata.is_null()
                || !schema.dictionary.is_null()
                || schema.n_children != 1
                || schema.children.is_null()
            {
                return Ok(None);
            }
            // SAFETY: one entry, NULL or a valid schema (trusted).
            let Some(child) = (unsafe { (*schema.children).as_ref() }) else {
                return Ok(None);
            };
            // SAFETY: as for the block above, one entry, NULL or a valid schema (trusted).
            match (child.release.is_some(), unsafe { plain_primitive(child) }) {
                (true, Some(t)) => (t, Some(size)),
                _ => return Ok(None),
            }
        }
    };
    if array.release.is_none() {
        return Err(released_array());
    }
    let mode = Mode::default();
    let (data, maps) = match list {
        None => {
            // SAFETY: `read_flat`'s caller promises it: `array` is valid for reads.
            unsafe { level_structure(array, LevelFormat::Dtype(dtype), 2, 0, false) }?;
            let covered = level_range(array, 0, array.length, 0, location, mode)?;
            let (data, _) = values_at(array, dtype, covered.first, array.length)?;
            // Layer 3 of the one level, here: this is every plain export's
            // path, and the loop below over both shapes' bitmaps measured
            // slower on it (docs/benchmarks.md, "Measured decisions").
            if let Some(map) = covered.nulls {
                // SAFETY: the bitmap holds its array's bits (trusted).
                let nulls = unsafe { map.nulls() };
                if nulls > 0 {
                    return Err(counted_nulls(nulls));
                }
            }
            return Ok(Some(Flat {
                dtype,
                data,
                rows: array.length,
                size: None,
            }));
        }
        Some(size) => {
            // SAFETY: `read_flat`'s caller promises it: as `read_type`'s and [`read_piece`]:
            // `schema` is valid for reads and follows the C Data Interface as far as it is
            // trusted (see the module documentation).
            unsafe { level_structure(array, LevelFormat::FixedSizeList(size), 1, 1, false) }?;
            let covered = level_range(array, 0, array.length, 0, location, mode)?;
            let (Some(start), Some(count)) = (
                covered.first.checked_mul(size),
                array.length.checked_mul(size),
            ) else {
                return Err(err!(
                    ARROW_DLPACK_INVALID_ARROW,
                    "fixed_size_list of size {size}: (offset {} + length {}) * size overflows",
                    covered.first,
                    array.length
                ));
            };
            // SAFETY: one child (checked by `level_structure`).
            let child = unsafe { child_array(array) }?;
            let at = |e| locate(1, e);
            // SAFETY: a valid child (trusted when non-NULL).
            unsafe { level_structure(child, LevelFormat::Dtype(dtype), 2, 0, false) }
                .map_err(at)?;
            let inner = level_range(child, start, count, 1, location, mode).map_err(at)?;
            let (data, _) = values_at(child, dtype, inner.first, count).map_err(at)?;
            (data, [covered.nulls, inner.nulls])
        }
    };
    // Layer 3, once every level passed the first two (the values' ranges
    // included: a bogus length is refused before any read), outermost first.
    for (depth, map) in maps.iter().enumerate() {
        if let Some(map) = map {
            // SAFETY: the bitmap holds its array's bits (trusted).
            let nulls = unsafe { map.nulls() };
            if nulls > 0 {
                return Err(locate(depth, counted_nulls(nulls)));
            }
        }
    }
    Ok(Some(Flat {
        dtype,
        data,
        rows: array.length,
        size: list,
    }))
}

/// `INVALID_ARGUMENT` for a released array.
#[cold]
fn released_array() -> Error {
    err!(
        ARROW_DLPACK_INVALID_ARGUMENT,
        "array is released (array.release is NULL)"
    )
}

/// `HAS_NULLS` for nulls a validity bitmap held.
#[cold]
fn counted_nulls(nulls: usize) -> Error {
    err!(
        ARROW_DLPACK_HAS_NULLS,
        "array has {nulls} nulls (counted in its validity bitmap); DLPack cannot represent missing values"
    )
}

/// Reads one array of a column over its logical rows `start..start + rows`
/// (the whole array: `0..length`), every layer: the structure and the
/// ranges, then the nulls counted (refused unless `mode.keep_nulls`). The
/// only way to a [`Piece`] outside this module.
///
/// # Safety
/// `array` is valid for reads (the C Data Interface's guarantees, as far
/// as they are trusted: see the module documentation).
#[inline(always)]
pub unsafe fn read_piece(
    array: &ArrowArray,
    column: &ColumnType<'_>,
    rows: Option<(i64, i64)>,
    location: Location,
    mode: Mode,
) -> Result<Piece, Error> {
    // SAFETY: `read_piece`'s caller promises it: `array` is valid for reads (the C Data
    // Interface's guarantees, as far as they are trusted: see the module documentation).
    let unchecked = unsafe { read_levels(array, column, rows, location, mode) }?;
    // SAFETY: the piece just passed layers 1 and 2.
    unsafe { unchecked.count_nulls(mode.keep_nulls) }
}

/// A piece that passed layers 1 and 2 (structure, ranges), its bitmaps not
/// counted yet: private, so that nothing outside the reader holds a piece
/// whose last layer did not run.
struct Unchecked(Piece);

/// Layers 1 and 2 of [`read_piece`].
///
/// # Safety
/// As [`read_piece`].
#[inline(always)]
unsafe fn read_levels(
    array: &ArrowArray,
    column: &ColumnType<'_>,
    rows: Option<(i64, i64)>,
    location: Location,
    mode: Mode,
) -> Result<Unchecked, Error> {
    if array.release.is_none() {
        return Err(released_array());
    }
    let range = rows.unwrap_or((0, array.length));
    let mut piece = Piece {
        data: std::ptr::null_mut(),
        bit_offset: 0,
        rows: range.1.max(0) as usize,
        elements: 0,
        maps: Vec::new(),
        nulls: 0,
        null_rows: 0,
        null_level: Level::Depth(0),
        offsets: None,
        runs: None,
        decoded: None,
        _checked: Checked,
    };
    match (column.rows, column.encoding) {
        (_, Encoding::Null) => {
            // SAFETY: `read_levels`'s caller promises it: `array` is valid for reads.
            return unsafe { runs::read_null(array, column, range) }.map(Unchecked);
        }
        (_, Encoding::RunEnd { ends }) => {
            // SAFETY: as above.
            return unsafe {
                runs::read_run_end(array, column, ends, range, location, mode.decode_later)
            }
            .map(Unchecked);
        }
        (Rows::Dense, Encoding::Plain) => {
            // SAFETY: `read_levels`'s caller promises it: as `read_piece`'s: `array` is valid
            // for reads (the C Data Interface's guarantees, as far as they are trusted: see the
            // module documentation).
            (piece.data, piece.bit_offset) = unsafe {
                dense(
                    array,
                    &column.values,
                    column.format,
                    column.dictionary,
                    range,
                    0,
                    location,
                    mode,
                    &mut piece.maps,
                )
            }?;
            piece.elements = piece.rows * column.values.row_elements();
        }
        // SAFETY: `read_levels`'s caller promises it: as `read_piece`'s: `array` is valid for
        // reads (the C Data Interface's guarantees, as far as they are trusted: see the module
        // documentation).
        _ => unsafe { variable(array, column, range, location, mode, &mut piece) }?,
    }
    Ok(Unchecked(piece))
}

/// Reads a variable-length column's array (list, list view, string,
/// binary, view) into `piece`: where its offsets are, their first and last
/// value (the range the rows cover), and the child's covered values.
///
/// # Safety
/// As [`read_piece`].
unsafe fn variable(
    array: &ArrowArray,
    column: &ColumnType<'_>,
    (start, count): (i64, i64),
    location: Location,
    mode: Mode,
    piece: &mut Piece,
) -> Result<(), Error> {
    if !location.is_host_readable() {
        return Err(err!(
            ARROW_DLPACK_UNSUPPORTED_DEVICE,
            "a variable-length column on device type {} would need its offsets read: arrow_dlpack never reads device memory",
            location.device.device_type
        ));
    }
    let format = column.format;
    let (n_buffers, n_children) = match column.rows {
        Rows::List { .. } => (2, 1),
        Rows::ListView { .. } => (3, 1),
        Rows::Binary { .. } | Rows::BinaryView => (3, 0),
        Rows::Dense => unreachable!("dense columns are read by `dense`"),
    };
    // SAFETY: `variable`'s caller promises it: as `read_piece`'s: `array` is valid for reads
    // (the C Data Interface's guarantees, as far as they are trusted: see the module
    // documentation).
    unsafe {
        level_structure(
            array,
            LevelFormat::Schema(format),
            n_buffers,
            n_children,
            false,
        )
    }?;
    // The rows' own nulls are kept whatever the mode: the planner names
    // them as null rows.
    let covered = level_range(
        array,
        start,
        count,
        0,
        location,
        Mode {
            keep_nulls: true,
            ..Mode::default()
        },
    )?;
    if let Some(mut map) = covered.nulls {
        map.per_entry = 0; // a row's elements are its offsets'
        map.rows = true;
        piece.maps.push(map);
    }
    let large = column.rows.large();
    let width = if large { 8 } else { 4 };
    let first = covered.first as usize;
    let mut o = Offsets {
        data: std::ptr::null(),
        first: 0,
        last: 0,
        sizes: std::ptr::null(),
        data_buffers: std::ptr::null(),
        n_data: 0,
    };
    // Entries of the offsets (or views) buffer the rows use, from `first`.
    let (entries, entry_width) = match column.rows {
        Rows::BinaryView => (count, 16),
        Rows::ListView { .. } => (count, width),
        _ => (count + 1, width),
    };
    let byte_end = (covered.first as u64)
        .checked_add(entries as u64)
        .and_then(|n| n.checked_mul(entry_width as u64));
    if byte_end.is_none_or(|b| b > isize::MAX as u64) {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "array.offset {} + length {count} of {entry_width}-byte entries overflows",
            covered.first
        ));
    }
    // SAFETY: at least two buffer entries (layer 1).
    let entries_buffer = unsafe { *array.buffers.add(1) };
    let what = match column.rows {
        Rows::BinaryView => "views",
        _ => "offsets",
    };
    if entries_buffer.is_null() && count > 0 {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "buffers[1] ({what}) is NULL with length {count}"
        ));
    }
    let at = entries_buffer
        .cast::<u8>()
        .wrapping_add(first * entry_width);
    match column.rows {
        Rows::BinaryView => {
            // The views' data buffers, and the buffer of their sizes (the
            // last one): every view is checked against them by the copy
            // that follows it.
            let n = array.n_buffers as usize;
            // SAFETY: `n_buffers >= 3` entries (layer 1).
            let sizes = unsafe { *array.buffers.add(n - 1) };
            if n > 3 && sizes.is_null() {
                return Err(err!(
                    ARROW_DLPACK_INVALID_ARROW,
                    "buffers[{}] (the data buffers' sizes) is NULL with {} data buffers",
                    n - 1,
                    n - 3
                ));
            }
            piece.data = at.cast_mut().cast();
            o.data = at;
            o.sizes = sizes.cast();
            // SAFETY: as above: entries 2 to `n - 2` are the data buffers.
            o.data_buffers = unsafe { array.buffers.add(2) };
            o.n_data = n - 3;
            piece.offsets = Some(o);
            return Ok(());
        }
        Rows::ListView { .. } => {
            // SAFETY: three buffer entries (layer 1).
            let sizes = unsafe { *array.buffers.add(2) };
            if count > 0 && sizes.is_null() {
                return Err(err!(
                    ARROW_DLPACK_INVALID_ARROW,
                    "buffers[2] (sizes) is NULL with length {count}"
                ));
            }
            o.data = at;
            o.sizes = sizes.cast::<u8>().wrapping_add(first * width);
            // Views point anywhere in the child: all of it is checked, and
            // each view against it by the copy that follows it.
            // SAFETY: one child (layer 1).
            let child = unsafe { child_array(array) }?;
            o.last = child.length.max(0);
        }
        _ => {
            o.data = at;
            if !entries_buffer.is_null() {
                // SAFETY: the offsets buffer holds `offset + length + 1`
                // entries (trusted); 0 and `count` are among those the
                // rows use (checked above).
                (o.first, o.last) = unsafe {
                    (
                        Piece::entry(at, large, 0),
                        Piece::entry(at, large, count as usize),
                    )
                };
            }
            check_span((o.first, o.last), start, count)?;
        }
    }
    let elements = o.last - o.first;
    match column.rows {
        Rows::Binary { .. } => {
            // SAFETY: three buffer entries (layer 1).
            let data = unsafe { *array.buffers.add(2) };
            if elements > 0 && data.is_null() {
                return Err(err!(
                    ARROW_DLPACK_INVALID_ARROW,
                    "buffers[2] (data) is NULL with {elements} bytes"
                ));
            }
            piece.data = data
                .cast::<u8>()
                .wrapping_add(o.first as usize)
                .cast_mut()
                .cast();
        }
        _ => {
            // The child's value rows `first..last`, read as dense values.
            // SAFETY: one child (layer 1).
            let child = unsafe { child_array(array) }?;
            // SAFETY: a schema that passed layer 1: the list's child.
            let child_format =
                unsafe { format_of(&**column.schema.children) }.map_err(|e| locate(1, e))?;
            // SAFETY: `variable`'s caller promises it: as `read_piece`'s: `array` is valid for
            // reads (the C Data Interface's guarantees, as far as they are trusted: see the
            // module documentation).
            (piece.data, piece.bit_offset) = unsafe {
                dense(
                    child,
                    &column.values,
                    child_format,
                    false,
                    (o.first, elements),
                    1,
                    location,
                    mode,
                    &mut piece.maps,
                )
            }?;
        }
    }
    piece.elements = (elements as usize)
        .checked_mul(column.values.row_elements())
        .ok_or_else(|| {
            err!(
                ARROW_DLPACK_INVALID_ARROW,
                "{elements} list elements of {} values overflow",
                column.values.row_elements()
            )
        })?;
    piece.offsets = Some(o);
    Ok(())
}

/// The first and last offsets of rows `start..start + count`, as every
/// reader of offsets checks them before following any: the first `>= 0`,
/// the last no smaller.
fn check_span((first, last): (i64, i64), start: i64, count: i64) -> Result<(), Error> {
    if first < 0 || last < first {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "offsets of rows {start}..{} run from {first} to {last}: the first must be >= 0 and the last no smaller",
            start + count,
        ));
    }
    Ok(())
}

/// A list of primitives, a string or a binary array that a jagged export
/// shares as it is ([`read_flat_list`]).
pub struct FlatList {
    /// The values' type (uint8 for strings and binaries).
    pub dtype: &'static DType,
    /// The first value; NULL without values.
    pub values: *mut c_void,
    pub elements: i64,
    /// The rows' `rows + 1` offsets, the first 0.
    pub offsets: *const c_void,
    pub rows: i64,
    /// int64 offsets.
    pub large: bool,
}

/// The common jagged case, read without building a type or a piece: a
/// `+l`/`+L` of a one-character primitive, or a `u` `z` `U` `Z` array,
/// without metadata or dictionaries, no nulls at any level and offsets
/// starting at 0, through the same layers and checks as [`read_piece`]
/// (structure, ranges, the first and last offsets). `Ok(None)`: anything
/// else (nulls, a slice whose offsets need rebasing, other formats, a
/// device): read it with [`column_type`] and [`read_piece`], which also
/// gives the errors of what is merely unusual.
///
/// # Safety
/// As [`read_type`] and [`read_piece`].
#[inline(always)]
pub unsafe fn read_flat_list(
    array: &ArrowArray,
    schema: &ArrowSchema,
    location: Location,
) -> Result<Option<FlatList>, Error> {
    if schema.release.is_none()
        || schema.format.is_null()
        || !schema.metadata.is_null()
        || !schema.dictionary.is_null()
        || !location.is_host_readable()
    {
        return Ok(None);
    }
    // The format's first three bytes, without a `strlen`: each is read
    // only when the one before is not the terminator.
    // SAFETY: a non-NULL format is a C string (the interface's contract).
    let format: &[u8] = unsafe {
        let f = schema.format.cast::<u8>();
        let len = match (*f, *f != 0 && *f.add(1) != 0) {
            (0, _) => 0,
            (_, false) => 1,
            (_, true) => 2 + (*f.add(2) != 0) as usize,
        };
        std::slice::from_raw_parts(f, len)
    };
    let (large, child_type) = match format {
        b"+l" | b"+L" => {
            if schema.n_children != 1 || schema.children.is_null() {
                return Ok(None);
            }
            // SAFETY: one entry, NULL or a valid schema (trusted).
            let Some(child) = (unsafe { (*schema.children).as_ref() }) else {
                return Ok(None);
            };
            // SAFETY: as for the block above, one entry, NULL or a valid schema (trusted).
            match (child.release.is_some(), unsafe { plain_primitive(child) }) {
                (true, Some(t)) if !t.is_bit_packed() => (format == b"+L", Some(t)),
                _ => return Ok(None),
            }
        }
        b"u" | b"z" => (false, None),
        b"U" | b"Z" => (true, None),
        _ => return Ok(None),
    };
    if schema.n_children != child_type.is_some() as i64 {
        return Ok(None);
    }
    if array.release.is_none() {
        return Err(released_array());
    }
    let (n_buffers, n_children) = match child_type {
        Some(_) => (2, 1),
        None => (3, 0),
    };
    // SAFETY: `read_flat_list`'s caller promises it: as `read_type`'s and [`read_piece`]:
    // `schema` is valid for reads and follows the C Data Interface as far as it is trusted (see
    // the module documentation).
    unsafe {
        level_structure(
            array,
            LevelFormat::Schema(format),
            n_buffers,
            n_children,
            false,
        )
    }?;
    let mode = Mode {
        keep_nulls: true,
        ..Mode::default()
    };
    let count = array.length;
    let covered = level_range(array, 0, count, 0, location, mode)?;
    if covered.nulls.is_some() {
        return Ok(None);
    }
    let width: u64 = if large { 8 } else { 4 };
    let byte_end = (covered.first as u64)
        .checked_add(count as u64 + 1)
        .and_then(|n| n.checked_mul(width));
    // SAFETY: at least two buffer entries (layer 1).
    let buffer = unsafe { *array.buffers.add(1) };
    if byte_end.is_none_or(|b| b > isize::MAX as u64) || buffer.is_null() {
        return Ok(None);
    }
    let at = buffer
        .cast::<u8>()
        .wrapping_add(covered.first as usize * width as usize);
    // SAFETY: the offsets buffer holds `offset + length + 1` entries
    // (trusted); entries 0 and `length` from `offset` are among them.
    let (first, last) = unsafe {
        (
            Piece::entry(at, large, 0),
            Piece::entry(at, large, count as usize),
        )
    };
    check_span((first, last), 0, count)?;
    if first != 0 || (at as usize) % width as usize != 0 {
        return Ok(None); // rebased (a copy), or read through a gather
    }
    let elements = last;
    let (dtype, values) = match child_type {
        Some(t) => {
            // SAFETY: one child (layer 1).
            let child = unsafe { child_array(array) }?;
            let at = |e| locate(1, e);
            // SAFETY: a valid child (trusted when non-NULL).
            unsafe { level_structure(child, LevelFormat::Dtype(t), 2, 0, false) }.map_err(at)?;
            let inner = level_range(child, 0, elements, 1, location, mode).map_err(at)?;
            if inner.nulls.is_some() {
                return Ok(None);
            }
            let (data, _) = values_at(child, t, inner.first, elements).map_err(at)?;
            (t, data)
        }
        None => {
            // SAFETY: three buffer entries (layer 1).
            let data = unsafe { *array.buffers.add(2) };
            if elements > 0 && data.is_null() {
                return Ok(None);
            }
            (&crate::dtype::UINT8, data.cast_mut())
        }
    };
    Ok(Some(FlatList {
        dtype,
        values,
        elements,
        offsets: at.cast(),
        rows: count,
        large,
    }))
}

impl Unchecked {
    /// Layer 3: counts the validity bits of the covered ranges: any null
    /// value is `HAS_NULLS`, unless `keep` (then they are counted, into
    /// [`Piece::nulls`]); null rows of a variable-length column are always
    /// counted, into [`Piece::null_rows`]. The checked piece.
    ///
    /// # Safety
    /// Each bitmap holds its array's `offset + length` bits (trusted, as
    /// the C Data Interface says).
    #[inline(always)]
    unsafe fn count_nulls(mut self, keep: bool) -> Result<Piece, Error> {
        if !self.0.maps.is_empty() {
            // SAFETY: `count_nulls`'s caller promises it: each bitmap holds its array's `offset
            // + length` bits (trusted, as the C Data Interface says).
            unsafe { self.0.count_maps(keep) }?;
        }
        Ok(self.0)
    }
}

impl Piece {
    /// Whether its rows are not in its arrays' memory as a tensor lies
    /// (run-end encoded, decoded or to decode; null): a tensor of it is
    /// always a copy.
    pub fn is_encoded(&self) -> bool {
        self.decoded.is_some() || self.runs.is_some()
    }

    /// The piece as a gather from it sees it: its null counts over the
    /// rows `rows` alone (a batch's picks from its chunk), what the
    /// planner weighs for that batch. The data and bitmaps stay the
    /// chunk's.
    ///
    /// # Safety
    /// The piece's bitmaps hold their bits (it came from this reader, its
    /// arrays alive); each row is one of its rows.
    pub unsafe fn counted_at(&self, rows: &[usize]) -> Piece {
        let mut piece = self.clone();
        (piece.nulls, piece.null_rows) = (0, 0);
        for map in &self.maps {
            // SAFETY: a row of the piece: its entries lie in the map's
            // covered range (caller's contract).
            let n: usize = rows
                .iter()
                .map(|&r| unsafe { map.slice(r, 1).nulls() })
                .sum();
            match map.rows {
                true => piece.null_rows += n,
                false => {
                    if piece.nulls == 0 && n > 0 {
                        piece.null_level = map.level;
                    }
                    piece.nulls += n;
                }
            }
        }
        piece
    }

    /// A variable-length piece's covered values as a dense run of value
    /// rows (as many as its offsets span, with the values' bitmaps: the
    /// rows' own are dropped), to be copied end to end.
    pub fn values_run(&self) -> Piece {
        Piece {
            rows: self.offsets.map_or(0, |o| (o.last - o.first) as usize),
            maps: self.maps.iter().filter(|m| !m.rows).copied().collect(),
            offsets: None,
            ..self.clone()
        }
    }

    /// [`Unchecked::count_nulls`] where there are bitmaps, out of line.
    ///
    /// # Safety
    /// As [`Unchecked::count_nulls`].
    #[inline(never)]
    unsafe fn count_maps(&mut self, keep: bool) -> Result<(), Error> {
        let mut total = 0;
        for map in &self.maps {
            // SAFETY: `count_maps`'s caller promises it: as `count_nulls`'s: Each bitmap holds
            // its array's `offset + length` bits (trusted, as the C Data Interface says).
            let nulls = unsafe { map.nulls() };
            if map.rows {
                self.null_rows += nulls;
                continue;
            }
            let depth = match map.level {
                Level::Depth(d) => d,
                Level::Struct => 0,
            };
            if nulls > 0 && !keep {
                return Err(locate(depth, counted_nulls(nulls)));
            }
            if total == 0 && nulls > 0 {
                self.null_level = map.level;
            }
            total += nulls;
        }
        self.nulls = total;
        Ok(())
    }
}

/// Layer 3 of a variable-length column's pieces: every row's offsets (or
/// views) followed and checked, a failure naming the chunk where there
/// are several; the rows' facts. The only maker of [`RowFacts`], which the
/// plans that follow rows take.
///
/// # Safety
/// The pieces were read ([`read_piece`], [`read_batch`]) from live arrays
/// of `column`, still live.
pub unsafe fn check_rows(
    column: &ColumnType<'_>,
    pieces: &[Piece],
) -> Result<Vec<RowFacts>, Error> {
    let many = pieces.len() > 1;
    pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            // SAFETY: a piece of a live array of `column` (caller's
            // contract).
            unsafe { p.check_rows(column) }.map_err(|e| match many {
                true => e.context(format_args!("chunk {i}")),
                false => e,
            })
        })
        .collect()
}

/// A variable-length piece as a gather of its rows `rows` sees it: the
/// piece counting only those rows (`rows` their number, `nulls` their
/// elements' nulls, `null_rows` theirs), and their facts. Its data and
/// bitmaps stay the chunk's.
///
/// # Safety
/// The piece's rows were checked ([`check_rows`]) and its arrays are
/// alive; each row is one of its rows.
pub unsafe fn picked_rows(
    column: &ColumnType<'_>,
    piece: &Piece,
    rows: &[usize],
) -> (Piece, RowFacts) {
    let mut counted = piece.clone();
    (counted.rows, counted.nulls, counted.null_rows) = (rows.len(), 0, 0);
    let mut facts = RowFacts::default();
    for &r in rows {
        // SAFETY: a checked row of the piece (caller's contract).
        let row = unsafe { piece.row(column, r) };
        if row.null {
            counted.null_rows += 1;
            facts.null_rows_cover_values |= row.len > 0;
            continue;
        }
        facts.longest = facts.longest.max(row.len);
        facts.total += row.len;
        for map in piece.maps.iter().filter(|m| !m.rows) {
            // SAFETY: the row's elements lie in the map's covered range.
            let nulls = unsafe { map.slice(row.first, row.len).nulls() };
            if counted.nulls == 0 && nulls > 0 {
                counted.null_level = map.level;
            }
            counted.nulls += nulls;
        }
    }
    (counted, facts)
}

/// Where one row of a variable-length piece lies.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// Its first value (a bit-packed boolean: the byte holding its bit).
    pub data: *const u8,
    pub bit: usize,
    /// Its elements (value rows; a string's bytes).
    pub len: usize,
    /// Its first element's value row among the piece's values (what the
    /// values' null maps count from).
    pub first: usize,
    pub null: bool,
}

/// What layer 3 found in a variable-length piece's rows.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowFacts {
    /// Elements of the longest row that is not null.
    pub longest: usize,
    /// Elements of the rows that are not null, in all.
    pub total: usize,
    /// Whether a null row's segment holds elements (a compaction would
    /// drop them).
    pub null_rows_cover_values: bool,
}

impl Piece {
    /// Entry `i` of a list's or string's offsets (`i <= rows`), or of a
    /// list view's offsets or sizes (`i < rows`).
    ///
    /// # Safety
    /// `at` is the piece's offsets (or sizes) pointer; the buffer holds the
    /// entry (the C Data Interface's promise).
    #[inline(always)]
    unsafe fn entry(at: *const u8, large: bool, i: usize) -> i64 {
        // SAFETY: forwarded from the caller; any alignment.
        unsafe {
            match large {
                true => at.add(i * 8).cast::<i64>().read_unaligned(),
                false => i64::from(at.add(i * 4).cast::<i32>().read_unaligned()),
            }
        }
    }

    /// Whether row `r` is null (a bitmap over the rows says so).
    ///
    /// # Safety
    /// The piece's row maps hold their bits.
    #[inline(always)]
    pub unsafe fn row_is_null(&self, r: usize) -> bool {
        // SAFETY: `row_is_null`'s caller promises it: the piece's row maps hold their bits.
        self.maps
            .iter()
            .any(|m| m.rows && unsafe { !bitmap::bit(m.bitmap, m.first + r) })
    }

    /// A string view's `(length, buffer, offset)`.
    ///
    /// # Safety
    /// Row `r` is covered: its 16-byte view is readable.
    #[inline(always)]
    unsafe fn view(&self, r: usize) -> (i32, i32, i32) {
        let view = self.data.cast::<u8>().cast_const().wrapping_add(r * 16);
        // SAFETY: 16 bytes of the covered view (caller's contract).
        unsafe {
            (
                view.cast::<i32>().read_unaligned(),
                view.add(8).cast::<i32>().read_unaligned(),
                view.add(12).cast::<i32>().read_unaligned(),
            )
        }
    }

    /// Layer 3 for variable-length rows: every offset a copy follows,
    /// checked against what it indexes (lists and strings: non-decreasing,
    /// within the covered range; list views: each row's offset and size
    /// within the child; string views: each length, and each buffer and
    /// offset within that buffer), and the facts a copy needs. Rows that
    /// are null are never read, and views of null rows not checked.
    ///
    /// # Safety
    /// The piece came from [`read_piece`] of `column` (a variable-length
    /// one); the buffers hold the entries the C Data Interface says.
    unsafe fn check_rows(&self, column: &ColumnType<'_>) -> Result<RowFacts, Error> {
        let mut facts = RowFacts::default();
        let Some(o) = self.offsets else {
            return Ok(facts); // an empty array without offsets
        };
        let large = column.rows.large();
        for r in 0..self.rows {
            // SAFETY: the row maps hold their bits (caller's contract).
            let null = unsafe { self.row_is_null(r) };
            let len = match column.rows {
                Rows::List { .. } | Rows::Binary { .. } => {
                    // SAFETY: entries `r` and `r + 1 <= rows` exist.
                    let (start, end) = unsafe {
                        (
                            Self::entry(o.data, large, r),
                            Self::entry(o.data, large, r + 1),
                        )
                    };
                    if start > end || start < o.first || end > o.last {
                        return Err(err!(
                            ARROW_DLPACK_INVALID_ARROW,
                            "row {r}: offsets {start} to {end} decrease or leave the range {}..{} of the values",
                            o.first,
                            o.last
                        ));
                    }
                    if null && end > start {
                        facts.null_rows_cover_values = true;
                    }
                    (end - start) as usize
                }
                Rows::ListView { .. } if null => 0,
                Rows::ListView { .. } => {
                    // SAFETY: entry `r < rows` of each.
                    let (start, size) = unsafe {
                        (
                            Self::entry(o.data, large, r),
                            Self::entry(o.sizes, large, r),
                        )
                    };
                    if start < 0
                        || size < 0
                        || start.checked_add(size).is_none_or(|end| end > o.last)
                    {
                        return Err(err!(
                            ARROW_DLPACK_INVALID_ARROW,
                            "row {r}: view offset {start} and size {size} leave the child's {} elements",
                            o.last
                        ));
                    }
                    size as usize
                }
                Rows::BinaryView if null => 0,
                Rows::BinaryView => {
                    // SAFETY: row `r` is covered.
                    let (len, buffer, offset) = unsafe { self.view(r) };
                    if len < 0 {
                        return Err(err!(
                            ARROW_DLPACK_INVALID_ARROW,
                            "row {r}: view length {len} is negative"
                        ));
                    }
                    if len > 12 {
                        let size = match usize::try_from(buffer) {
                            // SAFETY: the sizes buffer holds an int64 for
                            // each data buffer.
                            Ok(b) if b < o.n_data => unsafe {
                                o.sizes.cast::<i64>().add(b).read_unaligned()
                            },
                            _ => {
                                return Err(err!(
                                    ARROW_DLPACK_INVALID_ARROW,
                                    "row {r}: view buffer {buffer} of {} data buffers",
                                    o.n_data
                                ));
                            }
                        };
                        let end = i64::from(offset) + i64::from(len);
                        if offset < 0 || end > size {
                            return Err(err!(
                                ARROW_DLPACK_INVALID_ARROW,
                                "row {r}: view bytes {offset}..{end} leave buffer {buffer} of {size} bytes"
                            ));
                        }
                    }
                    len as usize
                }
                Rows::Dense => unreachable!("a variable-length piece"),
            };
            if !null {
                facts.longest = facts.longest.max(len);
                facts.total += len;
            }
        }
        Ok(facts)
    }

    /// Where row `r` lies.
    ///
    /// # Safety
    /// As [`check_rows`], which passed: every offset followed here
    /// was checked.
    #[inline(always)]
    pub unsafe fn row(&self, column: &ColumnType<'_>, r: usize) -> Row {
        let o = self
            .offsets
            .expect("a variable-length piece with rows has offsets");
        let large = column.rows.large();
        let e = column.values.row_elements();
        let width = column.values.dtype.width();
        // SAFETY: the row maps hold their bits (caller's contract).
        let null = unsafe { self.row_is_null(r) };
        let (first, len) = match column.rows {
            // SAFETY: entries `r` and `r + 1` (checked).
            Rows::List { .. } | Rows::Binary { .. } => unsafe {
                let start = Self::entry(o.data, large, r);
                let end = Self::entry(o.data, large, r + 1);
                ((start - o.first) as usize, (end - start) as usize)
            },
            Rows::ListView { .. } if null => (0, 0),
            // SAFETY: entry `r` of each (checked).
            Rows::ListView { .. } => unsafe {
                (
                    Self::entry(o.data, large, r) as usize,
                    Self::entry(o.sizes, large, r) as usize,
                )
            },
            Rows::BinaryView => {
                // SAFETY: row `r` is covered; a non-null view was checked.
                let (len, buffer, offset) = unsafe { self.view(r) };
                let data = match (null, len) {
                    (true, _) => std::ptr::null(),
                    (false, 0..=12) => self.data.cast::<u8>().cast_const().wrapping_add(r * 16 + 4),
                    // SAFETY: buffer `buffer < n_data` (checked).
                    (false, _) => unsafe {
                        (*o.data_buffers.add(buffer as usize))
                            .cast::<u8>()
                            .wrapping_add(offset as usize)
                    },
                };
                let len = if null { 0 } else { len as usize };
                return Row {
                    data,
                    bit: 0,
                    len,
                    first: 0,
                    null,
                };
            }
            Rows::Dense => unreachable!("a variable-length piece"),
        };
        let (data, bit) = match column.values.dtype.is_bit_packed() {
            true => {
                let bit = self.bit_offset + first * e;
                (
                    self.data.cast::<u8>().cast_const().wrapping_add(bit / 8),
                    bit % 8,
                )
            }
            false => (
                self.data
                    .cast::<u8>()
                    .cast_const()
                    .wrapping_add(first * e * width),
                0,
            ),
        };
        Row {
            data,
            bit,
            len,
            first,
            null,
        }
    }
}

/// One record batch: a piece per column, each covering the batch's rows.
#[derive(Debug)]
pub struct Batch {
    pub rows: usize,
    pub columns: Vec<Piece>,
    /// Null rows of the struct array itself (counted in layer 3).
    pub null_rows: usize,
    /// The struct's own validity over the batch's rows, if it may hold
    /// nulls (also in each column's maps, after the column's own).
    pub row_map: Option<NullMap>,
}

impl Batch {
    /// The batch as a gather from it sees it: each column's and the
    /// struct's null counts over the rows `rows` alone
    /// ([`Piece::counted_at`]).
    ///
    /// # Safety
    /// As [`Piece::counted_at`].
    pub unsafe fn counted_at(&self, rows: &[usize]) -> Batch {
        Batch {
            rows: self.rows,
            // SAFETY: forwarded: `counted_at`'s caller promises the rows.
            columns: self
                .columns
                .iter()
                .map(|c| unsafe { c.counted_at(rows) })
                .collect(),
            null_rows: match &self.row_map {
                // SAFETY: as above, for the struct's own bitmap.
                Some(map) => rows
                    .iter()
                    .map(|&r| unsafe { map.slice(r, 1).nulls() })
                    .sum(),
                None => 0,
            },
            row_map: self.row_map,
        }
    }
}

/// An error of the struct `d + 1` levels below the table's, so placed.
fn locate_struct(d: usize, e: Error) -> Error {
    e.context(format_args!("the struct {}levels down", d + 1))
}

/// Checks struct array `s` (one of `of` children, none NULL) over its
/// logical rows `first..first + count`: the logical index of its
/// children's first row, and the bits of its null rows, if it may have
/// any.
///
/// # Safety
/// `s` is valid for reads (trusted).
unsafe fn nested_struct(
    s: &ArrowArray,
    of: i64,
    first: i64,
    count: i64,
) -> Result<(i64, Option<NullMap>), Error> {
    if s.release.is_none() {
        return Err(released_array());
    }
    if s.n_children != of {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "struct array has {} children (n_children), its schema {of}",
            s.n_children
        ));
    }
    // SAFETY: `of` entries when not NULL (the interface's layout).
    if of > 0 && unsafe { missing(s.children, of as usize) } {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "struct array: children (or one of them) is NULL with n_children {of}"
        ));
    }
    if s.n_buffers != 1 || s.buffers.is_null() || !s.dictionary.is_null() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "struct array has n_buffers {} (buffers {}, dictionary {}); a struct has 1 buffer, its validity, and no dictionary",
            s.n_buffers,
            if s.buffers.is_null() { "NULL" } else { "set" },
            if s.dictionary.is_null() {
                "NULL"
            } else {
                "set"
            },
        ));
    }
    let covered = level_range(
        s,
        first,
        count,
        0,
        Location::CPU,
        Mode {
            keep_nulls: true,
            ..Mode::default()
        },
    )?;
    let map = covered.nulls.map(|map| NullMap {
        level: Level::Struct,
        ..map
    });
    Ok((covered.first, map))
}

/// Reads a struct array (a record batch) of `table`'s type: the struct
/// level, then every column (the struct's offset applied to the child, as
/// the C Data Interface says), then (layer 3) every bitmap. Nulls are
/// kept: the planner refuses them naming their column.
///
/// # Safety
/// As [`read_piece`].
pub unsafe fn read_batch(array: &ArrowArray, table: &TableType<'_>) -> Result<Batch, Error> {
    let all = 0..table.columns.len();
    // SAFETY: `read_batch`'s caller promises it: as `read_piece`'s: `array` is valid for reads
    // (the C Data Interface's guarantees, as far as they are trusted: see the module
    // documentation).
    unsafe { read_batch_rows(array, table, None, all) }
}

/// As [`read_batch`], over the struct's rows `rows` (`(start, count)`
/// within its length; `None`: all of them) and only the columns `columns`
/// (the batch's pieces in that order): what a batch of training rows
/// reads of a record batch.
///
/// # Safety
/// As [`read_batch`].
pub unsafe fn read_batch_rows(
    array: &ArrowArray,
    table: &TableType<'_>,
    rows: Option<(usize, usize)>,
    columns: impl ExactSizeIterator<Item = usize>,
) -> Result<Batch, Error> {
    if array.release.is_none() {
        return Err(released_array());
    }
    let n = table.children;
    if array.n_children != n {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "struct array has {} children (n_children), its schema {n}",
            array.n_children
        ));
    }
    // SAFETY: `n` entries when not NULL (the interface's layout).
    if n > 0 && unsafe { missing(array.children, n as usize) } {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "struct array or schema: children (or one of them) is NULL with n_children {n}"
        ));
    }
    if array.n_buffers != 1 || array.buffers.is_null() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "struct array has n_buffers {} (buffers {}); a struct has 1, its validity",
            array.n_buffers,
            if array.buffers.is_null() {
                "NULL"
            } else {
                "set"
            }
        ));
    }
    if !array.dictionary.is_null() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "struct array or schema has a dictionary"
        ));
    }
    if array.length < 0 || array.offset < 0 || array.offset.checked_add(array.length).is_none() {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARROW,
            "struct array length {} and offset {}: negative or overflowing",
            array.length,
            array.offset
        ));
    }
    let (start, rows) = match rows {
        None => (0, array.length as usize),
        Some((start, count))
            if start
                .checked_add(count)
                .is_some_and(|e| e <= array.length as usize) =>
        {
            (start, count)
        }
        Some((start, count)) => {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "rows {start}..{} of a struct array of length {}",
                start.saturating_add(count),
                array.length
            ));
        }
    };
    let offset = array.offset as usize + start;
    // SAFETY: one buffer pointer (checked).
    let bitmap = unsafe { *array.buffers }.cast::<u8>();
    let row_map = match (array.null_count, bitmap.is_null()) {
        (0, _) | (-1, true) => None,
        (count, _) if count < -1 => {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "struct array null_count is {count}; it must be -1 (unknown) or a count"
            ));
        }
        (count, true) => {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARROW,
                "struct array null_count is {count} but its validity bitmap is NULL"
            ));
        }
        (_, false) => Some(NullMap {
            bitmap,
            first: offset,
            count: rows,
            per_entry: 1,
            per_row: 1,
            level: Level::Struct,
            rows: false,
        }),
    };
    let end = array.offset + array.length;
    let mut pieces = Vec::with_capacity(columns.len());
    let mut types = Vec::with_capacity(columns.len());
    for j in columns {
        let column = &table.columns[j];
        let at = |e: Error| e.context(format_args!("{}", ColumnName(j, column.name())));
        // The struct levels between the table and the column: each
        // checked, its null rows the column's nulls.
        let (mut parent, mut first, mut struct_maps) = (array, offset as i64, Vec::new());
        for (d, step) in column.path.iter().enumerate() {
            // SAFETY: `index < of` children, each non-NULL: checked for
            // the table's struct above, for a nested one by
            // `nested_struct` (the step before); valid (trusted).
            let child = unsafe { &**parent.children.add(step.index) };
            if child.length < end && d == 0 {
                return Err(at(err!(
                    ARROW_DLPACK_INVALID_ARROW,
                    "length {} is shorter than the struct array's offset + length {end}",
                    child.length
                )));
            }
            if let Some(next) = column.path.get(d + 1) {
                // SAFETY: as above: a valid array (trusted).
                let (inner, map) = unsafe { nested_struct(child, next.of, first, rows as i64) }
                    .map_err(|e| at(locate_struct(d, e)))?;
                struct_maps.extend(map);
                (first, parent) = (inner, child);
            } else {
                parent = child;
            }
        }
        let child = match column.path.is_empty() {
            // SAFETY: `n` non-NULL children (checked), valid (trusted).
            true => unsafe { &**array.children.add(j) },
            false => parent,
        };
        let keep = Mode {
            keep_nulls: true,
            ..Mode::default()
        };
        let range = Some((first, rows as i64));
        // SAFETY: `read_batch_rows`'s caller promises it: as `read_batch`'s: as `read_piece`'s:
        // `array` is valid for reads (the C Data Interface's guarantees, as far as they are
        // trusted: see the module documentation).
        let mut piece =
            unsafe { read_levels(child, column, range, Location::CPU, keep) }.map_err(at)?;
        // A struct's null row is null in each of its fields: all of the
        // row's values (for a variable-length column, the row itself).
        for map in struct_maps {
            piece.0.maps.push(match column.rows {
                Rows::Dense => NullMap {
                    per_entry: column.values.row_elements(),
                    ..map
                },
                _ => NullMap {
                    per_entry: 0,
                    rows: true,
                    ..map
                },
            });
        }
        pieces.push(piece);
        types.push(column);
    }
    let mut batch = Batch {
        rows,
        columns: Vec::with_capacity(pieces.len()),
        null_rows: 0,
        row_map,
    };
    // Layer 3: the bitmaps of the whole batch, once every column passed
    // the first two.
    if let Some(map) = &batch.row_map {
        // SAFETY: `offset + length` bits (trusted).
        batch.null_rows = unsafe { map.nulls() };
    }
    for (unchecked, column) in pieces.into_iter().zip(types) {
        // SAFETY: pieces just read.
        let mut piece = unsafe { unchecked.count_nulls(true) }?;
        if let Some(map) = row_map {
            // A null row is null in every column: all of its row's values
            // (for a variable-length column, the row itself).
            match column.rows {
                Rows::Dense => piece.maps.push(NullMap {
                    per_entry: column.values.row_elements(),
                    ..map
                }),
                _ => piece.maps.push(NullMap {
                    per_entry: 0,
                    rows: true,
                    ..map
                }),
            }
        }
        batch.columns.push(piece);
    }
    Ok(batch)
}
