//! Training batches from a stream of record batches: `batch_size` rows at
//! a time, in order, each column (or group of columns) as its tensors.
//!
//! The stream is read chunk by chunk, only as far as the next batch needs:
//! memory stays bounded by a few chunks, whatever the source's size. A
//! chunk read is checked once (the whole record batch, as any export
//! checks it) and kept: the batches inside it share its columns (a slice
//! of each, zero-copy: the tensors hold a share of the chunk, released
//! when the last of them is deleted and the batcher has moved on), a batch
//! that spans two chunks is copied once, as a stream's chunks are. A
//! `stack` group is one row-major matrix, written in one pass; list and
//! string columns are padded or jagged (`export::padded_of`,
//! `export::jagged_of`). What each output is (which columns, the group's
//! dtype, promoted once from the schema) is decided when the batcher is
//! made, not for each batch.

use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::abi::{ArrowArray, ArrowArrayStream, ArrowSchema, DLManagedTensorVersioned};
use crate::arrow::read::{self, Batch, ColumnType, Location, Rows, TableType};
use crate::arrow::release::Release;
use crate::arrow::stream::Reader;
use crate::dtype::{self, Accept, DType};
use crate::error::{Error, err};
use crate::export::{self, Hold, Input, Made, MadeJagged};
pub use crate::options::BatchOptions;
use crate::options::{ArrowDlpackCopy, ArrowDlpackOrder, ExportPolicy, Lists};
use crate::owner::Kept;

/// One output of a batch.
pub enum Output {
    /// A dense column, or a `stack` group's matrix.
    Tensor(NonNull<DLManagedTensorVersioned>),
    /// A list or string column padded: `[rows, length, ...]` and the mask.
    Padded {
        values: NonNull<DLManagedTensorVersioned>,
        mask: NonNull<DLManagedTensorVersioned>,
    },
    /// A list or string column as values and offsets, and the rows'
    /// validity when there are null rows.
    Jagged {
        values: NonNull<DLManagedTensorVersioned>,
        offsets: NonNull<DLManagedTensorVersioned>,
        validity: Option<NonNull<DLManagedTensorVersioned>>,
    },
}

impl Output {
    /// Deletes the output's tensors (a batch not handed out).
    pub fn delete(self) {
        let all = match self {
            Output::Tensor(t) => [Some(t), None, None],
            Output::Padded { values, mask } => [Some(values), Some(mask), None],
            Output::Jagged {
                values,
                offsets,
                validity,
            } => [Some(values), Some(offsets), validity],
        };
        for t in all.into_iter().flatten() {
            // SAFETY: ours, live, not handed out.
            unsafe { crate::managed::delete(t) };
        }
    }
}

/// What one output is made of.
pub(crate) enum Kind {
    /// Column `j`, dense.
    Dense(usize),
    /// Columns `js` as one row-major matrix of `dtype`.
    Stack(Vec<usize>, &'static DType),
    /// Column `j`, a list or string.
    Variable(usize),
}

/// The type of a batch source's schema: a table (record batches) whose
/// columns a batch may hold (booleans, lists and strings included), or an
/// error in `who`'s words for a single column.
///
/// # Safety
/// `schema` is a valid schema.
pub(crate) unsafe fn table_of<'s>(
    schema: &'s ArrowSchema,
    who: &str,
) -> Result<TableType<'s>, Error> {
    let accept = Accept {
        boolean: true,
        temporal: false,
        table: true,
        variable: true,
        dictionary: false,
    };
    // SAFETY: forwarded: `table_of`'s caller promises a valid schema.
    match unsafe { read::read_type(schema, accept) }? {
        read::Type::Table(t) => Ok(t),
        read::Type::Column(_) => Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "{who} reads record batches (a table, a record batch reader, a dataset's scanner), not a single column"
        )),
    }
}

/// A list column's jagged pair as a batch output: its rows' validity kept
/// only where there are null rows.
pub(crate) fn jagged_output(made: MadeJagged<DLManagedTensorVersioned>) -> Output {
    let validity = match (made.mask, made.null_rows) {
        (Some(m), 0) => {
            // SAFETY: ours, not handed out.
            unsafe { crate::managed::delete(m) };
            None
        }
        (m, _) => m,
    };
    Output::Jagged {
        values: made.values,
        offsets: made.offsets,
        validity,
    }
}

/// A list column padded, with its mask, as a batch output.
pub(crate) fn padded_output(made: Made<DLManagedTensorVersioned>) -> Output {
    Output::Padded {
        values: made.tensor,
        mask: made.mask.expect("a padded batch's mask"),
    }
}

/// Decides each output of a batch of `table` under `options`: which
/// columns, dense or variable, and each `stack` group's dtype (promoted
/// once, from the schema). Names are checked here against the schema
/// (unknown columns, a column in two places, a list column in a group).
pub(crate) fn plan_outputs(
    table: &TableType<'_>,
    options: &BatchOptions,
) -> Result<Vec<(String, Kind)>, Error> {
    let index = |name: &str, what: &str| -> Result<usize, Error> {
        table
            .columns
            .iter()
            .position(|c| c.name() == name.as_bytes())
            .ok_or_else(|| {
                let names: Vec<String> = table
                    .columns
                    .iter()
                    .map(|c| String::from_utf8_lossy(c.name()).into_owned())
                    .collect();
                err!(
                    ARROW_DLPACK_INVALID_ARGUMENT,
                    "{what} {name:?} is not a column of the source (its columns: {})",
                    names.join(", ")
                )
            })
    };
    let mut placed: Vec<Option<String>> = vec![None; table.columns.len()];
    let mut place = |j: usize, at: &str| -> Result<(), Error> {
        if let Some(before) = &placed[j] {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "column {:?} is in two places: {before} and {at}",
                String::from_utf8_lossy(table.columns[j].name())
            ));
        }
        placed[j] = Some(at.to_string());
        Ok(())
    };
    let mut outputs = Vec::new();
    for (name, members) in options.groups() {
        let mut js = Vec::with_capacity(members.len());
        for m in members {
            let j = index(m, &format!("stack group {name:?}'s column"))?;
            if !matches!(table.columns[j].rows, Rows::Dense) {
                return Err(err!(
                    ARROW_DLPACK_INVALID_ARGUMENT,
                    "column {m:?} of stack group {name:?} is a list or string column: a group is one \
                     matrix of dense columns (batch it on its own, padded or jagged)"
                ));
            }
            if table.columns[j].values.row_elements() != 1 {
                return Err(err!(
                    ARROW_DLPACK_INVALID_ARGUMENT,
                    "column {m:?} of stack group {name:?} has rows of {} values: a group's columns hold \
                     one value a row",
                    table.columns[j].values.row_elements()
                ));
            }
            place(j, &format!("stack group {name:?}"))?;
            js.push(j);
        }
        // The group's dtype: the one asked for, else the members'
        // promoted (as NumPy's `result_type`), decided here once.
        let natural = js
            .iter()
            .map(|&j| table.columns[j].values.dtype)
            .reduce(dtype::promote)
            .unwrap_or(dtype::NO_COLUMNS);
        outputs.push((
            name.clone(),
            Kind::Stack(js, options.target().unwrap_or(natural)),
        ));
    }
    let dense_or_variable = |j: usize| match table.columns[j].rows {
        Rows::Dense => Kind::Dense(j),
        _ => Kind::Variable(j),
    };
    match options.column_names() {
        Some(names) => {
            for name in names {
                let j = index(name, "column")?;
                place(j, "columns")?;
                outputs.push((name.clone(), dense_or_variable(j)));
            }
        }
        None => {
            for (j, place) in placed.iter().enumerate() {
                if place.is_none() {
                    let name = String::from_utf8_lossy(table.columns[j].name()).into_owned();
                    outputs.push((name, dense_or_variable(j)));
                }
            }
        }
    }
    // The outputs in the order asked: the columns, then the groups.
    let groups = options.groups().len().min(outputs.len());
    outputs.rotate_left(groups);
    Ok(outputs)
}

/// The options every output of a batch is made under (a copy as needed;
/// every tensor a copy into pinned memory when asked).
pub(crate) fn export_policy(options: &BatchOptions) -> ExportPolicy {
    ExportPolicy {
        copy: match options.is_pinned() {
            // The point of pinned memory is the transfer: every
            // tensor is a copy into it.
            true => ArrowDlpackCopy::ARROW_DLPACK_COPY_ALWAYS,
            false => ArrowDlpackCopy::ARROW_DLPACK_COPY_IF_NEEDED,
        },
        order: ArrowDlpackOrder::ARROW_DLPACK_ROW_MAJOR,
        fill: options.fill_value(),
        temporal_as_integer: false,
        dtype: options.target(),
        dictionary_as_indices: false,
        mask: false,
        threads: options.thread_count(),
        pinned: options.is_pinned(),
    }
}

/// One output of a batch over `spans` (`(start, rows)`) of the chunks
/// `kept`, in order: shared where it lies in one chunk, else one copy.
///
/// # Safety
/// Each kept chunk is a struct array of `table`'s schema, checked when it
/// was read; the spans lie inside them.
pub(crate) unsafe fn output_of(
    table: &TableType<'_>,
    export: &ExportPolicy,
    batch: &BatchOptions,
    kind: &Kind,
    spans: &[(usize, usize)],
    kept: &[Arc<Kept>],
    rows: usize,
) -> Result<Output, Error> {
    let read = |columns: &[usize]| -> Result<Vec<Batch>, Error> {
        spans
            .iter()
            .zip(kept)
            .map(|(&(start, take), k)| {
                // SAFETY: a kept chunk the stream gave, checked when read.
                unsafe {
                    read::read_batch_rows(
                        k.array(),
                        table,
                        Some((start, take)),
                        columns.iter().copied(),
                    )
                }
            })
            .collect()
    };
    let column_pieces = |j: usize| -> Result<Vec<read::Piece>, Error> {
        Ok(read(&[j])?
            .into_iter()
            .map(|mut b| b.columns.pop().expect("one column"))
            .collect())
    };
    match kind {
        Kind::Dense(j) => {
            let input = Input::Column(&table.columns[*j], column_pieces(*j)?, rows);
            // SAFETY: the pieces were read from `kept`, in order.
            let made: Made<DLManagedTensorVersioned> =
                unsafe { export::made(&input, export, Hold::Kept(kept), Location::CPU.device) }?;
            Ok(Output::Tensor(made.tensor))
        }
        Kind::Stack(js, dtype) => {
            let group = table.group(js);
            let input = Input::Table(&group, read(js)?, rows);
            let options = ExportPolicy {
                dtype: Some(dtype),
                ..*export
            };
            // SAFETY: as for the block above, the pieces were read from `kept`, in order.
            let made: Made<DLManagedTensorVersioned> =
                unsafe { export::made(&input, &options, Hold::Kept(kept), Location::CPU.device) }?;
            Ok(Output::Tensor(made.tensor))
        }
        Kind::Variable(j) => {
            let column: &ColumnType<'_> = &table.columns[*j];
            let pieces = column_pieces(*j)?;
            match batch.list_mode() {
                Lists::Jagged => {
                    let options = ExportPolicy {
                        mask: batch.fill_value().is_some(),
                        ..*export
                    };
                    // SAFETY: as for the block above, the pieces were read from `kept`, in
                    // order.
                    let made: MadeJagged<DLManagedTensorVersioned> =
                        unsafe { export::jagged_of(column, &pieces, Hold::Kept(kept), &options) }?;
                    Ok(jagged_output(made))
                }
                Lists::Padded => {
                    let options = ExportPolicy {
                        mask: true,
                        ..*export
                    };
                    // SAFETY: pieces of kept chunks.
                    let made: Made<DLManagedTensorVersioned> =
                        unsafe { export::padded_of(column, &pieces, &options, batch.padding()) }?;
                    Ok(padded_output(made))
                }
            }
        }
    }
}

/// Where a batcher's chunks come from: a C stream, or (in the Python
/// face) an iterator of Arrow objects.
pub trait Source: Send {
    /// The next chunk, and its own schema when it comes with one (each
    /// must describe the same columns as the first); `None` at the end.
    fn next(&mut self) -> Result<Option<(ArrowArray, Option<ArrowSchema>)>, Error>;
}

/// A C stream, moved in; released when dropped.
struct Stream(Box<ArrowArrayStream>);

// SAFETY: the C Data Interface lets any thread call a stream's callbacks,
// one at a time (the batcher is used by one thread at a time).
unsafe impl Send for Stream {}

impl Source for Stream {
    fn next(&mut self) -> Result<Option<(ArrowArray, Option<ArrowSchema>)>, Error> {
        let get_next = crate::arrow::stream::get_next_of(&self.0)?;
        // SAFETY: the stream moved in, live.
        let array = unsafe { crate::arrow::stream::next_array(&mut *self.0, get_next) }?;
        Ok(array.map(|a| (a, None)))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: the stream moved in (`Batches::from_stream`).
        unsafe { self.0.release_once() };
    }
}

/// A chunk read and kept, and the rows of it not batched yet.
struct Pending {
    kept: Arc<Kept>,
    /// The first row not batched yet.
    start: usize,
    rows: usize,
}

/// The batches of a stream of record batches.
pub struct Batches {
    // Dropped first: the kept chunks (they point into nothing else here),
    // then the types (which point into `schema`), then the source; the
    // schema last (`Drop`).
    held: VecDeque<Pending>,
    table: TableType<'static>,
    outputs: Vec<(String, Kind)>,
    options: BatchOptions,
    /// The options each output is made under (copy as needed).
    export: ExportPolicy,
    source: Option<Box<dyn Source>>,
    schema: Box<ArrowSchema>,
    /// Chunks read so far (for messages).
    chunks: usize,
}

// SAFETY: the batcher owns its source, schema and chunks; the C Data
// Interface lets any thread release them, one at a time (the Python
// iterator holds the batcher under its borrow flag).
unsafe impl Send for Batches {}
// SAFETY: shared access reads only the outputs' names; everything that
// touches the source or the chunks takes `&mut self`.
unsafe impl Sync for Batches {}

impl Drop for Batches {
    fn drop(&mut self) {
        self.close();
        self.table.columns.clear();
        // SAFETY: the source's schema, moved in (`Batches::new`), released
        // after the types that pointed into it.
        unsafe { self.schema.release_once() };
    }
}

impl Batches {
    /// A batcher of `stream`: moved in on success (its `release` becomes
    /// NULL, and the batcher releases it when dropped or closed, whether
    /// or not it was read to the end); on failure (a released stream, a
    /// schema or options refused) left with the caller, who releases it.
    ///
    /// # Safety
    /// `stream` is a live stream, valid for reads and writes.
    pub unsafe fn from_stream(
        source: &mut ArrowArrayStream,
        options: BatchOptions,
    ) -> Result<Batches, Error> {
        // SAFETY: forwarded: the caller's live stream.
        let mut batches = unsafe { Batches::of_schema(source, options) }?;
        // SAFETY: as above.
        unsafe { batches.read_from(source) };
        Ok(batches)
    }

    /// A batcher of `source`'s schema (read once, through the stream's
    /// `get_schema`), with no source yet: the stream is not moved.
    ///
    /// # Safety
    /// `source` is a live stream, valid for reads and writes.
    pub(crate) unsafe fn of_schema(
        source: &mut ArrowArrayStream,
        options: BatchOptions,
    ) -> Result<Batches, Error> {
        // The schema, taken from the reader: chunks are read through the
        // source.
        // SAFETY: a live stream (caller's contract).
        let schema = unsafe { Reader::open(source) }
            .map(|mut r| std::mem::replace(&mut r.schema, ArrowSchema::released()))?;
        // SAFETY: the stream's schema, moved in.
        unsafe { Batches::planned(schema, options) }
    }

    /// Moves `source` in as the batcher's source (`source.release`
    /// becomes NULL; the batcher releases it).
    ///
    /// # Safety
    /// `source` is the live stream this batcher's schema came from.
    pub(crate) unsafe fn read_from(&mut self, source: &mut ArrowArrayStream) {
        // SAFETY: a bitwise move; the caller's disarmed.
        let stream = Stream(Box::new(unsafe { std::ptr::read(source) }));
        source.release = None;
        self.source = Some(Box::new(stream));
    }

    /// The source's columns, as read from its schema.
    pub(crate) fn table(&self) -> &TableType<'static> {
        &self.table
    }

    /// A batcher of `source`'s chunks, of `schema` (moved in: released by
    /// the batcher, as the source is dropped, also on failure).
    ///
    /// # Safety
    /// `schema` is a valid schema; the source's chunks are arrays of it.
    pub unsafe fn new(
        schema: ArrowSchema,
        source: Box<dyn Source>,
        options: BatchOptions,
    ) -> Result<Batches, Error> {
        // SAFETY: the caller's schema, moved in.
        let mut batches = unsafe { Batches::planned(schema, options) }?;
        batches.source = Some(source);
        Ok(batches)
    }

    /// A batcher of `schema` (moved in: released by the batcher, also on
    /// failure) with its outputs decided, and no source yet.
    ///
    /// # Safety
    /// `schema` is a valid schema.
    unsafe fn planned(schema: ArrowSchema, options: BatchOptions) -> Result<Batches, Error> {
        let mut batches = Batches {
            held: VecDeque::new(),
            table: TableType::empty(),
            outputs: Vec::new(),
            export: ExportPolicy::SHARE,
            options,
            source: None,
            schema: Box::new(schema),
            chunks: 0,
        };
        // On failure `batches` drops: the schema released.
        batches.plan()?;
        Ok(batches)
    }

    /// Releases the source and every chunk not handed out (the tensors
    /// made keep theirs): an iterator abandoned half way, or at its end.
    pub fn close(&mut self) {
        self.held.clear();
        self.source = None;
    }

    /// Reads the schema's types and decides each output.
    fn plan(&mut self) -> Result<(), Error> {
        // SAFETY: the schema lives in its box, which outlives `table`
        // (field order; `Drop` releases it only after `held` and `table`
        // are done with it, and nothing moves the box's contents).
        let schema: &'static ArrowSchema = unsafe { &*std::ptr::from_ref(&*self.schema) };
        // SAFETY: a schema the stream gave.
        let table = unsafe { table_of(schema, "batches") }?;
        self.outputs = plan_outputs(&table, &self.options)?;
        self.export = export_policy(&self.options);
        self.table = table;
        Ok(())
    }

    /// The outputs' names, in the order each batch gives them.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.outputs.iter().map(|(n, _)| n.as_str())
    }

    /// Rows read and not batched yet.
    fn pending(&self) -> usize {
        self.held.iter().map(|h| h.rows - h.start).sum()
    }

    /// Reads chunks until `want` rows are pending or the source ends. A
    /// failure closes the batcher (the source is not read again).
    fn fill(&mut self, want: usize) -> Result<(), Error> {
        while self.pending() < want {
            let Some(source) = self.source.as_mut() else {
                break;
            };
            let at = self.chunks;
            let next = source
                .next()
                .map_err(|e| e.context(format_args!("chunk {at}")));
            let (mut chunk, schema) = match next {
                Ok(Some(c)) => c,
                Ok(None) => {
                    self.source = None;
                    break;
                }
                Err(e) => {
                    self.close();
                    return Err(e);
                }
            };
            self.chunks += 1;
            let checked = self
                .check_chunk(&chunk, schema)
                .map_err(|e| e.context(format_args!("chunk {at}")));
            let rows = match checked {
                Ok(rows) => rows,
                Err(e) => {
                    // SAFETY: the chunk the source handed over, not kept.
                    unsafe { chunk.release_once() };
                    self.close();
                    return Err(e);
                }
            };
            // SAFETY: a live array: moved into the keep.
            let kept = unsafe { Kept::new(&mut chunk) };
            if rows > 0 {
                self.held.push_back(Pending {
                    kept,
                    start: 0,
                    rows,
                });
            }
        }
        Ok(())
    }

    /// Checks a chunk, and its own schema if it came with one (released
    /// here): the whole record batch once, as any export checks it (every
    /// column's structure, ranges and bitmaps, every offset). Its rows.
    fn check_chunk(&self, chunk: &ArrowArray, schema: Option<ArrowSchema>) -> Result<usize, Error> {
        if let Some(mut schema) = schema {
            // SAFETY: both are valid schemas.
            let same = unsafe { read::same_type(&self.schema, &schema) };
            // SAFETY: the chunk's schema, handed over with it by the source.
            unsafe { schema.release_once() };
            if !same {
                return Err(err!(
                    ARROW_DLPACK_INVALID_ARGUMENT,
                    "its schema is not the first chunk's (the columns' names and types must stay the same)"
                ));
            }
        }
        // SAFETY: a live struct array of the schema.
        let batch = unsafe { read::read_batch(chunk, &self.table) }?;
        for (j, (piece, column)) in batch.columns.iter().zip(&self.table.columns).enumerate() {
            if !matches!(column.rows, Rows::Dense) {
                // SAFETY: a piece of the live chunk just read.
                unsafe { read::check_rows(column, std::slice::from_ref(piece)) }.map_err(|e| {
                    e.context(format_args!("{}", read::ColumnName(j, column.name())))
                })?;
            }
        }
        Ok(batch.rows)
    }

    /// The next batch: `(rows, outputs)` in the order of [`Batches::names`],
    /// or `None` at the end. On failure nothing of the batch is left (the
    /// rows it would have covered are skipped: the stream is not read
    /// back).
    pub fn next_batch(&mut self) -> Result<Option<(usize, Vec<Output>)>, Error> {
        let size = self.options.batch_size();
        self.fill(size)?;
        let n = self.pending().min(size);
        if n == 0 || (n < size && self.options.drops_last()) {
            self.held.clear();
            return Ok(None);
        }
        // The chunks' parts the batch covers: (held index, start, rows).
        let mut parts = Vec::with_capacity(2);
        let mut left = n;
        for (k, h) in self.held.iter().enumerate() {
            if left == 0 {
                break;
            }
            let take = (h.rows - h.start).min(left);
            parts.push((k, h.start, take));
            left -= take;
        }
        let kept: Vec<Arc<Kept>> = parts
            .iter()
            .map(|&(k, ..)| self.held[k].kept.clone())
            .collect();
        let spans: Vec<(usize, usize)> = parts
            .iter()
            .map(|&(_, start, take)| (start, take))
            .collect();
        let mut outputs = Vec::with_capacity(self.outputs.len());
        let mut made = || -> Result<(), Error> {
            for (name, kind) in &self.outputs {
                let at = |e: Error| e.context(format_args!("{name:?}"));
                // SAFETY: the held chunks were checked when read; the
                // parts lie inside them.
                let made = unsafe {
                    output_of(
                        &self.table,
                        &self.export,
                        &self.options,
                        kind,
                        &spans,
                        &kept,
                        n,
                    )
                };
                outputs.push(made.map_err(at)?);
            }
            Ok(())
        };
        let result = made();
        // Consumed, whether or not the batch was made.
        for &(k, _, take) in &parts {
            self.held[k].start += take;
        }
        while self.held.front().is_some_and(|h| h.start == h.rows) {
            self.held.pop_front();
        }
        match result {
            Ok(()) => Ok(Some((n, outputs))),
            Err(e) => {
                outputs.into_iter().for_each(Output::delete);
                Err(e)
            }
        }
    }
}
