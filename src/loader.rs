//! Training epochs over a source held in memory: shuffled, sharded,
//! resumable batches (`arrow_dlpack.Loader`).
//!
//! The source's chunks are read and checked once, when the loader is
//! made, and kept. Each batch's rows come from the epoch's order
//! ([`crate::epoch`]): rows that lie together in one chunk are shared as
//! the batcher shares them ([`crate::batches::output_of`]), the same
//! spans across chunks are copied once; rows chosen by index (a shuffled
//! batch) are gathered, one copy written straight from the chunks' buffers
//! into the batch's tensors ([`export::gathered`], the layout's rows by
//! index). What each output is, is decided once ([`plan_outputs`]).
//!
//! The loader counts batches handed out: its [`State`] says which epoch
//! and global step comes next, and resumes any rank (and any world size
//! with the same global batch).

use std::sync::Arc;

use crate::abi::{ArrowArray, ArrowSchema, DLManagedTensorVersioned};
use crate::arrow::read::{self, Batch, Rows, TableType};
use crate::arrow::release::Release;
use crate::batches::{
    BatchOptions, Kind, Output, export_policy, jagged_output, output_of, padded_output,
    plan_outputs, table_of,
};
use crate::copy::layout::Pick;
use crate::dtype;
use crate::epoch::{self, Order, Shuffle, Split, State, Window};
use crate::error::{Error, Term, err};
use crate::export::{self, Input, Made, MadeJagged};
use crate::options::ExportPolicy;
use crate::options::Lists;
use crate::owner::{self, Kept};

/// How a loader orders and splits its epochs.
#[derive(Clone, Copy, Debug)]
pub struct EpochOptions {
    pub shuffle: bool,
    pub seed: u64,
    /// `Some(w)`: windows of `w` rows (shuffled only).
    pub window: Option<u64>,
    pub world_size: u64,
    pub rank: u64,
    /// DataLoader worker `worker` of `workers` (0 of 1 outside workers).
    pub worker: u64,
    pub workers: u64,
    pub drop_last: bool,
    /// Each batch also holds `_row`: its rows' numbers in the source.
    pub row_ids: bool,
    /// A window is whole chunks (a file's record batches), not `window`
    /// rows: runs of consecutive chunks, each the fewest holding at least
    /// `window` rows ([`epoch::group_windows`]).
    pub chunk_windows: bool,
}

impl EpochOptions {
    /// The options as a caller gives them, checked in the contract's order
    /// (after the batch size, which [`BatchOptions::new`] checks):
    /// `world_size` (`None`: 1), `rank` (`None`: 0), `window` (`None`: a
    /// global shuffle; read only with `shuffle`). Outside DataLoader
    /// workers (worker 0 of 1).
    pub fn new(
        shuffle: bool,
        seed: u64,
        window: Option<i64>,
        rank: Option<i64>,
        world_size: Option<i64>,
        drop_last: bool,
        row_ids: bool,
    ) -> Result<EpochOptions, Error> {
        let world_size = world_size.unwrap_or(1);
        if world_size < 1 {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "{}must be positive, not {world_size}",
                Term::WorldSize
            ));
        }
        let rank = rank.unwrap_or(0);
        if rank < 0 || rank >= world_size {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "{}{rank} is not in [0, {}= {world_size})",
                Term::Rank,
                Term::WorldSize
            ));
        }
        if let Some(w) = window.filter(|&w| w < 1) {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "{}must be positive, not {w}",
                Term::Window
            ));
        }
        Ok(EpochOptions {
            shuffle,
            seed,
            window: window.filter(|_| shuffle).map(|w| w as u64),
            world_size: world_size as u64,
            rank: rank as u64,
            worker: 0,
            workers: 1,
            drop_last,
            row_ids,
            chunk_windows: false,
        })
    }
}

/// The batches a loader makes ahead: `prefetch` checked (`None`: 2, the
/// Python default; the C face's 0 is none).
pub fn prefetch_depth(prefetch: Option<i64>) -> Result<usize, Error> {
    match prefetch {
        None => Ok(2),
        Some(p) => usize::try_from(p).map_err(|_| {
            err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "{}must be 0 or more, not {p}",
                Term::Prefetch
            )
        }),
    }
}

/// The name of the row-number output.
pub const ROW_IDS: &str = "_row";

/// A batch made: its global step, its rows, and its outputs in the order
/// of [`Loader::names`] (the rows' numbers last when asked for). Dropped,
/// it deletes the outputs not taken.
pub struct LoadedBatch {
    pub step: u64,
    pub rows: usize,
    outputs: Vec<Output>,
}

// SAFETY: the outputs are tensors owned by this batch alone; DLPack
// deleters may run on any thread.
unsafe impl Send for LoadedBatch {}

impl LoadedBatch {
    /// The outputs, handed over: the caller deletes them.
    pub fn take(mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }
}

impl Drop for LoadedBatch {
    fn drop(&mut self) {
        self.outputs.drain(..).for_each(Output::delete);
    }
}

/// The epochs of a source held in memory.
pub struct Loader {
    // Dropped first: the whole-chunk reads (they point into the kept
    // chunks), then the chunks, then the types (which point into
    // `schema`); the schema last (`Drop`).
    reads: Vec<Batch>,
    chunks: Vec<Arc<Kept>>,
    table: TableType<'static>,
    outputs: Vec<(String, Kind)>,
    names: Vec<String>,
    export: ExportPolicy,
    options: BatchOptions,
    /// Each chunk's first row, then the total.
    starts: Vec<u64>,
    order: Order,
    split: Split,
    epochs: EpochOptions,
    fingerprint: String,
    /// The windows, as a state records them.
    window: Window,
    /// The source's rows as its owner numbers them, when not the chunks'
    /// order: row `i` is chunk row `mapping[i]` (a Hugging Face dataset's
    /// indices after `shuffle`, `select`, `filter`).
    mapping: Option<Vec<u64>>,
    /// Buffers each batch reuses.
    scratch: Scratch,
    /// The next batch: its epoch and global step.
    epoch: u64,
    step: u64,
    /// Whether `epoch`/`step` were set (made, `set_epoch`, `restore`)
    /// since the last iteration began: the next one starts there; else it
    /// moves on to the next epoch.
    fresh: bool,
    schema: Box<ArrowSchema>,
}

// SAFETY: the loader owns its schema and chunks; the C Data Interface
// lets any thread release them. Batches are made by one thread at a time
// (`&mut self`).
unsafe impl Send for Loader {}
// SAFETY: shared access reads only plain values (names, counts, the
// state's fields); everything that touches the schema, the chunks or
// their reads takes `&mut self` or is made of them once, when made.
unsafe impl Sync for Loader {}

impl Drop for Loader {
    fn drop(&mut self) {
        self.reads.clear();
        self.chunks.clear();
        self.table.columns.clear();
        // SAFETY: the source's schema, moved in, released after the types
        // that pointed into it.
        unsafe { self.schema.release_once() };
    }
}

impl Loader {
    /// A loader of `chunks` (record batches of `schema`), both moved in
    /// (released by the loader, also on failure): each chunk read and
    /// checked now, and kept.
    ///
    /// # Safety
    /// `schema` is a valid schema and `chunks` live struct arrays of it.
    pub unsafe fn new(
        schema: ArrowSchema,
        chunks: Vec<ArrowArray>,
        options: BatchOptions,
        epochs: EpochOptions,
    ) -> Result<Loader, Error> {
        let mut loader = Loader {
            reads: Vec::new(),
            chunks: Vec::new(),
            table: TableType::empty(),
            outputs: Vec::new(),
            names: Vec::new(),
            export: ExportPolicy::SHARE,
            options,
            starts: vec![0],
            order: Order::new(0, 0, Shuffle::Off)?,
            split: Split::new(1, 1, 0, false)?,
            epochs,
            fingerprint: String::new(),
            window: Window { w: 0, groups: 0 },
            mapping: None,
            scratch: Scratch::default(),
            epoch: 0,
            step: 0,
            fresh: true,
            schema: Box::new(schema),
        };
        // Every chunk kept first: on any failure below, the loader drops
        // and releases them all.
        for mut chunk in chunks {
            // SAFETY: a live array, moved into the keep.
            loader.chunks.push(unsafe { Kept::new(&mut chunk) });
        }
        loader.split = Split::new(
            loader.options.batch_size() as u64,
            epochs.world_size,
            epochs.rank,
            epochs.drop_last,
        )?;
        if epochs.workers == 0 || epochs.worker >= epochs.workers {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "worker {} is not in [0, workers = {})",
                epochs.worker,
                epochs.workers
            ));
        }
        loader.read()?;
        let n = *loader.starts.last().expect("a total");
        let n = match &loader.mapping {
            Some(m) => m.len() as u64,
            None => n,
        };
        if epochs.window == Some(0) {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "window must be positive, not 0"
            ));
        }
        let shuffle = match (epochs.shuffle, epochs.window) {
            (false, _) => Shuffle::Off,
            (true, None) => Shuffle::Global,
            (true, Some(w)) if epochs.chunk_windows => {
                let sizes: Vec<u64> = loader.starts.windows(2).map(|s| s[1] - s[0]).collect();
                loader.window.groups = fingerprint_of(sizes.iter().map(|s| s.to_le_bytes()));
                Shuffle::Groups(epoch::group_windows(&sizes, w))
            }
            (true, Some(w)) => Shuffle::Windows(w),
        };
        loader.window.w = epochs.window.filter(|_| epochs.shuffle).unwrap_or(0);
        loader.order = Order::new(n, epochs.seed, shuffle)?;
        Ok(loader)
    }

    /// A loader of the files `paths` name (files, directories, globs:
    /// `files::resolve`): only the columns the options name are read
    /// (every column when they name none), every file memory-mapped and
    /// its record batches shared from the map. A window is whole record
    /// batches (an IPC record batch is the file's row group). Each face
    /// words a path naming nothing its own way (`PathError::Missing`).
    #[cfg(feature = "files")]
    pub fn from_paths(
        paths: &[String],
        options: BatchOptions,
        epochs: EpochOptions,
    ) -> Result<Loader, crate::files::PathError> {
        let files = crate::files::resolve(paths)?;
        let epochs = EpochOptions {
            chunk_windows: true,
            ..epochs
        };
        let wanted: Option<Vec<String>> = options.column_names().map(|c| {
            c.iter()
                .chain(options.groups().iter().flat_map(|(_, m)| m.iter()))
                .cloned()
                .collect()
        });
        let (schema, chunks) = crate::files::read(&files, wanted.as_deref())?;
        // SAFETY: the files' schema and record batches of it, moved in.
        Ok(unsafe { Loader::new(schema, chunks, options, epochs) }?)
    }

    /// Reads the schema's types, decides each output, reads and checks
    /// every chunk (as the batcher checks each chunk it reads).
    fn read(&mut self) -> Result<(), Error> {
        // SAFETY: the schema lives in its box, which outlives `table` and
        // `reads` (field order; `Drop` releases it last).
        let schema: &'static ArrowSchema = unsafe { &*std::ptr::from_ref(&*self.schema) };
        // SAFETY: a valid schema (caller's contract).
        let table = unsafe { table_of(schema, "a loader") }?;
        if table.columns.iter().any(|c| c.name() == ROW_IDS.as_bytes()) {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "the source has a column named {ROW_IDS:?}, the name of the row numbers (row_ids=True): rename it"
            ));
        }
        let named = |name: &str| {
            self.options
                .column_names()
                .is_some_and(|c| c.iter().any(|n| n == name))
                || self
                    .options
                    .groups()
                    .iter()
                    .any(|(g, m)| g == name || m.iter().any(|n| n == name))
        };
        if named(ROW_IDS) {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "{ROW_IDS:?} is the name of the row numbers (row_ids=True), not a column or a group"
            ));
        }
        self.outputs = plan_outputs(&table, &self.options)?;
        self.export = export_policy(&self.options);
        self.names = self.outputs.iter().map(|(n, _)| n.clone()).collect();
        if self.epochs.row_ids {
            self.names.push(ROW_IDS.to_string());
        }
        self.fingerprint = fingerprint(&table);
        for (i, kept) in self.chunks.iter().enumerate() {
            let at = |e: Error| e.context(format_args!("chunk {i}"));
            // SAFETY: a kept struct array of the schema (caller's contract).
            let batch = unsafe { read::read_batch(kept.array(), &table) }.map_err(at)?;
            for (j, (piece, column)) in batch.columns.iter().zip(&table.columns).enumerate() {
                if !matches!(column.rows, Rows::Dense) {
                    // SAFETY: a piece of the kept chunk just read.
                    unsafe { read::check_rows(column, std::slice::from_ref(piece)) }.map_err(
                        |e| at(e.context(format_args!("{}", read::ColumnName(j, column.name())))),
                    )?;
                }
            }
            let total = self.starts.last().expect("a total") + batch.rows as u64;
            self.starts.push(total);
            self.reads.push(batch);
        }
        self.table = table;
        Ok(())
    }

    /// The source's rows are `mapping`'s: row `i` is the chunks' row
    /// `mapping[i]` (each checked to be one); `_row` numbers them so. Set
    /// before the first batch: the order is made over `mapping`'s rows.
    pub fn set_mapping(&mut self, mapping: Vec<u64>) -> Result<(), Error> {
        let rows = *self.starts.last().expect("a total");
        if let Some((i, &r)) = mapping.iter().enumerate().find(|(_, r)| **r >= rows) {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "indices[{i}] is {r}: the table has {rows} rows"
            ));
        }
        let shuffle = self.order.shuffle().clone();
        self.order = Order::new(mapping.len() as u64, self.epochs.seed, shuffle)?;
        self.mapping = Some(mapping);
        Ok(())
    }

    /// Makes this loader DataLoader worker `worker` of `workers` (0 of 1:
    /// no workers), which takes global steps `worker, worker + workers,
    /// ...` of each epoch.
    pub fn set_worker(&mut self, worker: u64, workers: u64) -> Result<(), Error> {
        if workers == 0 || worker >= workers {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "worker {worker} is not in [0, workers = {workers})"
            ));
        }
        (self.epochs.worker, self.epochs.workers) = (worker, workers);
        Ok(())
    }

    /// The names each batch gives, in order (`_row` last when asked for).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Rows in the source.
    pub fn num_rows(&self) -> u64 {
        self.order.rows()
    }

    /// This rank's batches in a whole epoch (the same in every worker).
    pub fn len(&self) -> u64 {
        self.split.steps(self.order.rows())
    }

    /// Whether an epoch holds no batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The epoch the next iteration reads, from its first step (`step`
    /// kept when it is the epoch a state was loaded at).
    pub fn set_epoch(&mut self, epoch: u64) {
        if !(self.fresh && self.epoch == epoch) {
            self.step = 0;
        }
        self.epoch = epoch;
        self.fresh = true;
    }

    /// Begins an iteration: where the last `set_epoch` or restore put it,
    /// else the next epoch from its start. A position past an epoch's last
    /// batch is the next epoch's start.
    pub fn begin(&mut self) {
        if !self.fresh {
            self.epoch += 1;
            self.step = 0;
        }
        self.normalize();
        self.fresh = false;
    }

    /// Past the epoch's last step: the next epoch's start.
    fn normalize(&mut self) {
        if self.step >= self.len() && self.step > 0 {
            self.epoch += 1;
            self.step = 0;
        }
    }

    /// Where the loader stands, as a state any rank resumes.
    pub fn state(&self) -> State {
        self.state_at(self.epoch, self.step)
    }

    /// The state of position `(epoch, step)` (past an epoch's last batch:
    /// the next epoch's start).
    pub fn state_at(&self, epoch: u64, step: u64) -> State {
        let (mut epoch, mut step) = (epoch, step);
        if step >= self.len() && step > 0 {
            (epoch, step) = (epoch + 1, 0);
        }
        State {
            version: epoch::STATE_VERSION,
            epoch,
            step,
            num_rows: Some(self.order.rows()),
            schema: self.fingerprint.clone(),
            seed: self.epochs.seed,
            shuffle: self.epochs.shuffle,
            window: self.window,
            global_batch_size: self.split.global_batch(),
        }
    }

    /// Continues from `state` at the next iteration: refused (the loader
    /// as it was) unless it was taken by a loader of the same source and
    /// options.
    pub fn restore(&mut self, state: &State) -> Result<(), Error> {
        state.matches(&self.state())?;
        self.epoch = state.epoch;
        self.step = state.step;
        self.fresh = true;
        Ok(())
    }

    /// The next batch of this rank (and worker) in the current epoch, or
    /// `None` at its end. The step counts once the batch is made; a failure
    /// leaves the position on the failed batch.
    pub fn next_batch(&mut self) -> Result<Option<LoadedBatch>, Error> {
        let step = epoch::worker_step(self.step, self.epochs.worker, self.epochs.workers);
        if step >= self.len() {
            self.step = self.step.max(self.len());
            return Ok(None);
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.rows.clear();
        epoch::batch_rows(
            &self.order.epoch(self.epoch),
            &self.split,
            step,
            &mut scratch.rows,
        );
        let made = self.batch(&mut scratch);
        let rows = scratch.rows.len();
        self.scratch = scratch;
        let outputs = made?;
        self.step = step + 1;
        Ok(Some(LoadedBatch {
            step,
            rows,
            outputs,
        }))
    }

    /// The position of the next batch: its epoch and global step.
    pub fn position(&self) -> (u64, u64) {
        (self.epoch, self.step)
    }

    /// Moves the current iteration to `(epoch, step)` (a prefetcher giving
    /// back the batches it made and did not hand out).
    fn seek(&mut self, (epoch, step): (u64, u64)) {
        (self.epoch, self.step) = (epoch, step);
    }

    /// The outputs of a batch of the source rows `scratch.rows`.
    fn batch(&self, scratch: &mut Scratch) -> Result<Vec<Output>, Error> {
        let mut outputs = Vec::with_capacity(self.names.len());
        let rows = std::mem::take(&mut scratch.rows);
        let mut mapped = std::mem::take(&mut scratch.mapped);
        let chunk_rows: &[u64] = match &self.mapping {
            None => &rows,
            Some(m) => {
                mapped.clear();
                mapped.extend(rows.iter().map(|&r| m[r as usize]));
                &mapped
            }
        };
        let result = (|| -> Result<(), Error> {
            let contiguous = chunk_rows.windows(2).all(|w| w[1] == w[0] + 1);
            match contiguous {
                true => self.spanned(chunk_rows, &mut outputs)?,
                false => self.gathered(chunk_rows, scratch, &mut outputs)?,
            }
            if self.epochs.row_ids {
                outputs.push(Output::Tensor(row_numbers(&rows)?));
            }
            Ok(())
        })();
        scratch.rows = rows;
        scratch.mapped = mapped;
        match result {
            Ok(()) => Ok(outputs),
            Err(e) => {
                outputs.into_iter().for_each(Output::delete);
                Err(e)
            }
        }
    }

    /// The chunk row `row` lies in, and its row there.
    fn locate(&self, row: u64) -> (usize, usize) {
        let chunk = self.starts.partition_point(|&s| s <= row) - 1;
        (chunk, (row - self.starts[chunk]) as usize)
    }

    /// A batch of consecutive rows: the chunks' spans it covers, shared
    /// inside one chunk, copied once across several (as `batches()`).
    fn spanned(&self, rows: &[u64], outputs: &mut Vec<Output>) -> Result<(), Error> {
        let mut spans = Vec::with_capacity(2);
        let mut kept = Vec::with_capacity(2);
        if let (Some(&first), Some(&last)) = (rows.first(), rows.last()) {
            let (mut chunk, mut start) = self.locate(first);
            let mut left = (last - first + 1) as usize;
            while left > 0 {
                let have = (self.starts[chunk + 1] - self.starts[chunk]) as usize - start;
                let take = have.min(left);
                if take > 0 {
                    spans.push((start, take));
                    kept.push(self.chunks[chunk].clone());
                }
                left -= take;
                (chunk, start) = (chunk + 1, 0);
            }
        }
        for (name, kind) in &self.outputs {
            // SAFETY: kept chunks of the schema, checked when read; the
            // spans lie inside them.
            let made = unsafe {
                output_of(
                    &self.table,
                    &self.export,
                    &self.options,
                    kind,
                    &spans,
                    &kept,
                    rows.len(),
                )
            };
            outputs.push(made.map_err(|e| e.context(format_args!("{name:?}")))?);
        }
        Ok(())
    }

    /// A batch of rows chosen by index: each output gathered from the
    /// chunks the rows lie in, one copy.
    fn gathered(
        &self,
        rows: &[u64],
        scratch: &mut Scratch,
        outputs: &mut Vec<Output>,
    ) -> Result<(), Error> {
        // The chunks touched, each once (`slot[chunk]`: its place among
        // them), and the picks into that list.
        let Scratch {
            picks,
            slot,
            touched,
            per_chunk,
            ..
        } = scratch;
        slot.resize(self.chunks.len(), usize::MAX);
        picks.clear();
        touched.clear();
        for &row in rows {
            let (chunk, local) = self.locate(row);
            let k = match slot[chunk] {
                usize::MAX => {
                    slot[chunk] = touched.len();
                    if per_chunk.len() == touched.len() {
                        per_chunk.push(Vec::new());
                    }
                    per_chunk[touched.len()].clear();
                    touched.push(chunk);
                    touched.len() - 1
                }
                k => k,
            };
            per_chunk[k].push(local);
            picks.push(Pick {
                chunk: k,
                row: local,
            });
        }
        for &c in touched.iter() {
            slot[c] = usize::MAX;
        }
        let (picks, touched, per_chunk) = (&*picks, &*touched, &*per_chunk);
        // Each touched chunk's read, its null counts those of its picks.
        // SAFETY: whole-chunk reads of kept chunks; the picked rows are
        // theirs.
        let counted: Vec<Batch> = touched
            .iter()
            .zip(per_chunk)
            .map(|(&c, local)| unsafe { self.reads[c].counted_at(local) })
            .collect();
        for (name, kind) in &self.outputs {
            let at = |e: Error| e.context(format_args!("{name:?}"));
            let made: Made<DLManagedTensorVersioned> = match kind {
                Kind::Dense(j) => {
                    let pieces = counted.iter().map(|b| b.columns[*j].clone()).collect();
                    let input = Input::Column(&self.table.columns[*j], pieces, rows.len());
                    // SAFETY: pieces of kept chunks; each pick a row of its
                    // chunk.
                    unsafe { export::gathered(&input, picks, &self.export) }.map_err(at)?
                }
                Kind::Stack(js, dtype) => {
                    let group = self.table.group(js);
                    let batches = counted
                        .iter()
                        .map(|b| Batch {
                            rows: b.rows,
                            columns: js.iter().map(|&j| b.columns[j].clone()).collect(),
                            null_rows: b.null_rows,
                            row_map: b.row_map,
                        })
                        .collect();
                    let input = Input::Table(&group, batches, rows.len());
                    let options = ExportPolicy {
                        dtype: Some(dtype),
                        ..self.export
                    };
                    // SAFETY: as above.
                    unsafe { export::gathered(&input, picks, &options) }.map_err(at)?
                }
                Kind::Variable(j) => {
                    let column = &self.table.columns[*j];
                    let (pieces, facts): (Vec<_>, Vec<_>) = counted
                        .iter()
                        .zip(per_chunk)
                        // SAFETY: the chunks' rows were checked when read;
                        // the picked rows are theirs.
                        .map(|(b, local)| unsafe {
                            read::picked_rows(column, &b.columns[*j], local)
                        })
                        .unzip();
                    let output = match self.options.list_mode() {
                        Lists::Jagged => {
                            let options = ExportPolicy {
                                mask: self.options.fill_value().is_some(),
                                ..self.export
                            };
                            // SAFETY: checked rows of kept chunks.
                            let made: MadeJagged<DLManagedTensorVersioned> = unsafe {
                                export::jagged_picked(column, &pieces, &facts, picks, &options)
                            }
                            .map_err(at)?;
                            jagged_output(made)
                        }
                        Lists::Padded => {
                            let options = ExportPolicy {
                                mask: true,
                                ..self.export
                            };
                            // SAFETY: as above.
                            let made: Made<DLManagedTensorVersioned> = unsafe {
                                export::padded_picked(
                                    column,
                                    &pieces,
                                    &facts,
                                    picks,
                                    &options,
                                    self.options.padding(),
                                )
                            }
                            .map_err(at)?;
                            padded_output(made)
                        }
                    };
                    outputs.push(output);
                    continue;
                }
            };
            outputs.push(Output::Tensor(made.tensor));
        }
        Ok(())
    }
}

/// A loader with up to `depth` batches made ahead on a thread of its own
/// (`prefetch=depth`; 0: each batch made by the caller). The thread owns
/// the loader while it runs and hands batches through a bounded queue;
/// the state counts the batches handed out, never those made ahead.
/// Halting (a new iteration, `set_epoch`, a restore, a fork, a drop) joins
/// the thread and takes the loader back at the position handed out.
pub struct Prefetching {
    /// Present while no thread runs.
    loader: Option<Loader>,
    running: Option<Running>,
    depth: usize,
    /// The next batch handed out: its epoch and global step.
    handed: (u64, u64),
    /// The loader's state at position (0, 0), and its epoch's length: the
    /// state of any position, also while the thread holds the loader.
    template: State,
    len: u64,
    names: Vec<String>,
}

// SAFETY: shared access (`names`, `len`, `state`, `num_rows`) reads only
// plain fields; the queue's receiver and the thread are used through
// `&mut self` alone.
unsafe impl Sync for Prefetching {}

/// A running prefetch thread.
struct Running {
    rx: std::sync::mpsc::Receiver<Result<Option<LoadedBatch>, Error>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<Loader>,
}

impl Prefetching {
    pub fn new(loader: Loader, depth: usize) -> Prefetching {
        Prefetching {
            handed: loader.position(),
            template: loader.state_at(0, 0),
            len: loader.len(),
            names: loader.names().to_vec(),
            loader: Some(loader),
            running: None,
            depth,
        }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn num_rows(&self) -> u64 {
        self.template.num_rows.unwrap_or(0)
    }

    /// The epoch of the next batch handed out.
    pub fn epoch(&self) -> u64 {
        self.handed.0
    }

    /// The loader, the thread (if any) joined and the loader back at the
    /// position handed out.
    fn halt(&mut self) -> &mut Loader {
        if let Some(running) = self.running.take() {
            running
                .stop
                .store(true, std::sync::atomic::Ordering::Release);
            // Unblocks a send waiting for room; the batches queued are
            // deleted with the queue.
            drop(running.rx);
            let loader = running
                .handle
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            self.loader = Some(loader);
        }
        let handed = self.handed;
        let loader = self.loader.as_mut().expect("the loader, back");
        loader.seek(handed);
        loader
    }

    /// Joins the thread (before a fork: the child then has the loader, and
    /// no thread that does not exist there).
    pub fn quiesce(&mut self) {
        self.halt();
    }

    /// Begins an iteration as worker `worker` of `workers` (see
    /// [`Loader::begin`]).
    pub fn begin(&mut self, worker: u64, workers: u64) -> Result<(), Error> {
        let loader = self.halt();
        loader.set_worker(worker, workers)?;
        loader.begin();
        self.handed = loader.position();
        Ok(())
    }

    /// The next batch if it can be had without waiting (made ahead
    /// already; `None`: it would wait, or nothing runs ahead: call
    /// [`Prefetching::next_batch`]).
    pub fn ready_batch(&mut self) -> Option<Result<Option<LoadedBatch>, Error>> {
        let got = self.running.as_ref()?.rx.try_recv().ok()?;
        Some(self.received(got))
    }

    /// The next batch handed out, or `None` at the epoch's end.
    pub fn next_batch(&mut self) -> Result<Option<LoadedBatch>, Error> {
        if self.depth == 0 {
            let loader = self.halt();
            let made = loader.next_batch();
            self.handed = loader.position();
            return made;
        }
        if self.running.is_none() {
            self.start();
        }
        let running = self.running.as_ref().expect("running");
        let got = running.rx.recv().unwrap_or(Ok(None));
        self.received(got)
    }

    /// Accounts for a batch received from the thread (or its end, or its
    /// failure).
    fn received(
        &mut self,
        got: Result<Option<LoadedBatch>, Error>,
    ) -> Result<Option<LoadedBatch>, Error> {
        match &got {
            Ok(Some(batch)) => self.handed = (self.handed.0, batch.step + 1),
            Ok(None) => {
                // The epoch's end: past its last step, as the loader itself
                // marks it.
                self.handed.1 = self.handed.1.max(self.len);
                self.halt();
            }
            Err(_) => {
                // The thread stopped at the failed batch: the loader is back
                // where it failed (the position handed out).
                self.halt();
            }
        }
        got
    }

    /// Starts the thread from the position handed out.
    fn start(&mut self) {
        let mut loader = self.loader.take().expect("no thread yet");
        loader.seek(self.handed);
        let (tx, rx) = std::sync::mpsc::sync_channel(self.depth);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("arrow-dlpack-prefetch".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Acquire) {
                    let made = loader.next_batch();
                    let last = !matches!(made, Ok(Some(_)));
                    if tx.send(made).is_err() || last {
                        break;
                    }
                }
                loader
            })
            .expect("a prefetch thread");
        self.running = Some(Running { rx, stop, handle });
    }

    /// The state of the position handed out.
    pub fn state(&self) -> State {
        let (mut epoch, mut step) = self.handed;
        if step >= self.len && step > 0 {
            (epoch, step) = (epoch + 1, 0);
        }
        State {
            epoch,
            step,
            ..self.template.clone()
        }
    }

    pub fn set_epoch(&mut self, epoch: u64) {
        let loader = self.halt();
        loader.set_epoch(epoch);
        self.handed = loader.position();
    }

    pub fn restore(&mut self, state: &State) -> Result<(), Error> {
        let loader = self.halt();
        loader.restore(state)?;
        self.handed = loader.position();
        Ok(())
    }
}

impl Drop for Prefetching {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Buffers a loader's batches reuse: the rows, the picks, and the chunks
/// a gather touches.
#[derive(Default)]
struct Scratch {
    rows: Vec<u64>,
    /// The rows through the loader's mapping.
    mapped: Vec<u64>,
    picks: Vec<Pick>,
    /// Each chunk's place among those touched (`usize::MAX`: none).
    slot: Vec<usize>,
    touched: Vec<usize>,
    per_chunk: Vec<Vec<usize>>,
}

/// The `_row` tensor: the rows' numbers, int64.
pub(crate) fn row_numbers(
    rows: &[u64],
) -> Result<std::ptr::NonNull<DLManagedTensorVersioned>, Error> {
    let mut dims = crate::dims::Dims::new();
    dims.push_strided(rows.len() as i64, 1)?;
    let (tensor, dst) =
        owner::own::<DLManagedTensorVersioned>(dtype::INT64.dl, &dims, rows.len() * 8, false)?;
    for (i, &r) in rows.iter().enumerate() {
        // SAFETY: the tensor's own bytes: room for `rows.len()` int64s.
        unsafe { dst.cast::<i64>().add(i).write_unaligned(r as i64) };
    }
    Ok(tensor)
}

/// A fingerprint of the columns a loader reads: their names and formats,
/// hashed into 16 hex digits.
pub(crate) fn fingerprint(table: &TableType<'_>) -> String {
    let parts = table.columns.iter().flat_map(|c| [c.name(), c.format]);
    format!("{:016x}", fingerprint_of(parts))
}

/// FNV-1a over `parts`, each closed by a byte no UTF-8 text holds.
fn fingerprint_of<P: AsRef<[u8]>>(parts: impl IntoIterator<Item = P>) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for part in parts {
        for &b in part.as_ref().iter().chain([0xFF].iter()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    #[test]
    fn located_rows() {
        let starts = [0u64, 3, 3, 10];
        let locate = |row: u64| {
            let chunk = starts.partition_point(|&s| s <= row) - 1;
            (chunk, row - starts[chunk])
        };
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(2), (0, 2));
        assert_eq!(locate(3), (2, 0));
        assert_eq!(locate(9), (2, 6));
    }
}
