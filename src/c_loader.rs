//! The loader's C face (`ArrowDlpackLoader`): its options struct, checked
//! into the core's options; what it holds (epochs of a source in memory,
//! [`Prefetching`], or a stream read in order as it goes, [`InOrder`]);
//! and the batches it hands out (`ArrowDlpackBatch`). The `extern "C"`
//! entry points are in `capi`, and do nothing else than call this.

use std::ffi::{CStr, CString, c_char, c_void};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use crate::abi::{ArrowArray, ArrowArrayStream, ArrowSchema, DLDataType, DLManagedTensorVersioned};
use crate::arrow::release::Release;
use crate::arrow::stream::Reader;
use crate::batches::{Batches, Output};
use crate::epoch::{self, State, Window};
use crate::error::{Error, Term, err};
#[cfg(feature = "files")]
use crate::files::PathError;
use crate::loader::{self, EpochOptions, Loader, Prefetching, ROW_IDS};
use crate::options::{
    BatchOptions, Lists, Pad, Side, dtype_field, flag, reserved_zero, thread_count,
};

/// Options of `arrow_dlpack_loader_new` and `arrow_dlpack_loader_open`,
/// named as Python's `Loader` keywords. All zero but `batch_size`: every
/// column in order, one rank, nothing made ahead, lists padded to each
/// batch's longest row, nulls refused.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ArrowDlpackLoaderOptions {
    /// Rows a batch holds on this rank (positive).
    pub batch_size: i64,
    /// 1: each epoch in a new order (`seed`, `window`); 0: in order.
    pub shuffle: i32,
    /// 1: the epoch cut to a multiple of the global batch
    /// (`batch_size * world_size`); 0: the last batch shorter, and with
    /// several ranks padded by repeating rows from the epoch's start.
    pub drop_last: i32,
    /// The shuffle's seed.
    pub seed: u64,
    /// With `shuffle`: 0, a global order; `w > 0`, windows of `w` rows.
    pub window: i64,
    /// This rank, in `[0, world_size)`.
    pub rank: i64,
    /// Ranks the epoch is split over (0: 1).
    pub world_size: i64,
    /// Batches made ahead on a library thread (0: each made by
    /// `arrow_dlpack_loader_next` itself).
    pub prefetch: i64,
    /// 1: each batch also has the output `_row` (int64, each row's number
    /// in the source), last.
    pub row_ids: i32,
    /// How list and string columns come: 0 padded (values and mask), 1
    /// jagged (values, offsets and, with null rows, their validity).
    pub lists: i32,
    /// NULL: every column; else `n_columns` names (UTF-8, NUL-terminated),
    /// the outputs in that order (none: only `_row`, with `row_ids`).
    pub columns: *const *const c_char,
    /// How many names `columns` points at.
    pub n_columns: i64,
    /// Padded lists: 0, each batch's longest row; `> 0`, every row cut or
    /// padded to it.
    pub pad_length: i64,
    /// Padded lists: 0 pads (and cuts) at the end, 1 at the start.
    pub pad_side: i32,
    /// 0: nulls are `ARROW_DLPACK_HAS_NULLS` when a batch holds one; 1:
    /// each null becomes `fill_value` (Python's `null_value`).
    pub fill_nulls: i32,
    /// Padded lists: the padding value.
    pub pad_value: f64,
    /// With `fill_nulls`: the value of nulls.
    pub fill_value: f64,
    /// `{0, 0, 0}`: each column's own dtype; otherwise every output's
    /// dtype (a copy where it differs).
    pub dtype: DLDataType,
    /// Threads a batch's copies may run on, as in
    /// `ArrowDlpackExportOptions`.
    pub threads: i32,
    /// Must be zero.
    pub reserved: [i64; 8],
}

/// What one output of an `ArrowDlpackBatch` holds.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum ArrowDlpackOutputKind {
    /// `tensors[0]`: a column (`[rows]`, `[rows, ...]`), or the rows'
    /// numbers (`_row`).
    ARROW_DLPACK_OUTPUT_TENSOR = 0,
    /// A list or string column padded: `tensors[0]` the values
    /// `[rows, length, ...]`, `tensors[1]` the kDLBool mask `[rows,
    /// length]`.
    ARROW_DLPACK_OUTPUT_PADDED = 1,
    /// A list or string column jagged: `tensors[0]` the values,
    /// `tensors[1]` the offsets `[rows + 1]`, `tensors[2]` the rows'
    /// validity (kDLBool `[rows]`) or NULL when no row is null.
    ARROW_DLPACK_OUTPUT_JAGGED = 2,
}

/// One output of a batch: its name and its tensors (unused slots NULL).
#[repr(C)]
#[derive(Debug)]
pub struct ArrowDlpackOutput {
    /// The column's name (or `_row`), NUL-terminated, owned by the batch.
    pub name: *const c_char,
    /// An `ArrowDlpackOutputKind`.
    pub kind: i32,
    /// Zero.
    pub reserved0: i32,
    /// The output's tensors, owned by the caller: take one by copying
    /// the pointer and setting the slot to NULL; `arrow_dlpack_batch_release`
    /// deletes those left.
    pub tensors: [*mut DLManagedTensorVersioned; 3],
}

/// A batch `arrow_dlpack_loader_next` made: `n_outputs` outputs (0 at an
/// epoch's end), in the order of the options' `columns` (`_row` last).
/// Zeroed (or released) it holds nothing; release it with
/// `arrow_dlpack_batch_release`, which may be called on it again.
#[repr(C)]
#[derive(Debug)]
pub struct ArrowDlpackBatch {
    /// `n_outputs` outputs, the library's memory (their tensors the
    /// caller's until released); NULL when there are none.
    pub outputs: *mut ArrowDlpackOutput,
    /// The number of outputs; 0 at an epoch's end.
    pub n_outputs: i64,
    /// Rows in this rank's batch.
    pub rows: i64,
    /// The epoch of this batch.
    pub epoch: u64,
    /// The global step of this batch (its place in the epoch, counted
    /// over every rank).
    pub step: u64,
    /// The library's (the names and the outputs' memory).
    pub private_data: *mut c_void,
    /// Zero.
    pub reserved: [i64; 2],
}

impl ArrowDlpackBatch {
    /// A batch holding nothing (an epoch's end).
    fn empty(epoch: u64, step: u64) -> ArrowDlpackBatch {
        ArrowDlpackBatch {
            outputs: ptr::null_mut(),
            n_outputs: 0,
            rows: 0,
            epoch,
            step,
            private_data: ptr::null_mut(),
            reserved: [0; 2],
        }
    }
}

/// What a handed-out batch's `private_data` owns: the outputs array and
/// the names its outputs point at.
struct Held {
    outputs: Vec<ArrowDlpackOutput>,
    _names: Arc<[CString]>,
}

/// Releases a batch: deletes every tensor left in its slots, frees its
/// memory, and leaves it zeroed (a second release does nothing).
///
/// # Safety
/// `batch` is a batch `arrow_dlpack_loader_next` wrote (or zeroed), its
/// slots NULL or the tensors it handed out, not deleted by the caller.
pub unsafe fn release_batch(batch: &mut ArrowDlpackBatch) {
    let held = std::mem::replace(&mut batch.private_data, ptr::null_mut());
    *batch = ArrowDlpackBatch::empty(0, 0);
    if held.is_null() {
        return;
    }
    // SAFETY: `private_data` is the `Box<Held>` `hand_out` leaked into
    // this batch (the caller's promise: a batch the library wrote), taken
    // back once (the field is NULL now).
    let held = unsafe { Box::from_raw(held.cast::<Held>()) };
    for output in &held.outputs {
        for &t in &output.tensors {
            if let Some(t) = NonNull::new(t) {
                // SAFETY: a tensor the batch handed out and the caller did
                // not take (its slot would be NULL): live, ours to delete.
                unsafe { crate::managed::delete(t) };
            }
        }
    }
}

/// The loader's options from the C struct: the batches', the epochs',
/// and the batches made ahead. Checked in the contract's order:
/// `batch_size`, `world_size`, `rank`, `window`, `prefetch`, then the
/// rest; the source's columns are checked when its schema is read.
fn options_from_c(
    o: &ArrowDlpackLoaderOptions,
) -> Result<(BatchOptions, EpochOptions, usize), Error> {
    let batch = BatchOptions::new(o.batch_size)?;
    let shuffle = flag(o.shuffle, "shuffle")?;
    let epochs = EpochOptions::new(
        shuffle,
        o.seed,
        (o.window != 0).then_some(o.window),
        Some(o.rank),
        (o.world_size != 0).then_some(o.world_size),
        flag(o.drop_last, "drop_last")?,
        flag(o.row_ids, "row_ids")?,
    )?;
    let depth = loader::prefetch_depth(Some(o.prefetch))?;
    reserved_zero(&o.reserved, "options.")?;
    let columns = match (o.columns.is_null(), o.n_columns) {
        (true, 0) => None,
        (true, n) => {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "options.columns is NULL but options.n_columns is {n}: set both, or neither"
            ));
        }
        (false, n) => {
            // SAFETY: the caller's promise: `columns` points at
            // `n_columns` NUL-terminated names.
            Some(unsafe { c_strings(o.columns, n, "options.columns", "options.n_columns") }?)
        }
    };
    if columns.as_ref().is_some_and(Vec::is_empty) && !epochs.row_ids {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "options.columns names no column and {} is 0: every batch would have no output, which is how an \
             epoch's end reads",
            Term::RowIds
        ));
    }
    let lists = Lists::numbered(o.lists)?;
    let side = Side::numbered(o.pad_side, Term::BatchPadSide)?;
    if o.pad_length < 0 {
        return Err(err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "{}{} is negative: 0 pads to each batch's longest row",
            Term::BatchPadLength,
            o.pad_length
        ));
    }
    let padding = Pad::new(
        (o.pad_length > 0).then_some(o.pad_length),
        side,
        o.pad_value,
        Term::BatchPadLength,
    )?;
    let fill = flag(o.fill_nulls, "fill_nulls")?.then_some(o.fill_value);
    let batch = batch
        .columns(columns)?
        .lists(lists, padding)
        .fill(fill)
        .dtype(dtype_field(o.dtype)?)
        .threads(thread_count(o.threads)?);
    Ok((batch, epochs, depth))
}

/// `n` NUL-terminated UTF-8 strings at `strings` (an array named `what`,
/// its length `count`), copied.
///
/// # Safety
/// `strings` is valid for reads of `n` pointers, each NULL or
/// NUL-terminated.
pub(crate) unsafe fn c_strings(
    strings: *const *const c_char,
    n: i64,
    what: &str,
    count: &str,
) -> Result<Vec<String>, Error> {
    let n = usize::try_from(n).map_err(|_| {
        err!(
            ARROW_DLPACK_INVALID_ARGUMENT,
            "{count} is {n}; it must be 0 or more"
        )
    })?;
    if n == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: the caller's promise: `n` pointers at `strings`.
    let all = unsafe { std::slice::from_raw_parts(strings, n) };
    let mut out = Vec::with_capacity(n);
    for (i, &s) in all.iter().enumerate() {
        if s.is_null() {
            return Err(err!(ARROW_DLPACK_INVALID_ARGUMENT, "{what}[{i}] is NULL"));
        }
        // SAFETY: the caller's promise: each one NUL-terminated.
        let s = unsafe { CStr::from_ptr(s) }
            .to_str()
            .map_err(|_| err!(ARROW_DLPACK_INVALID_ARGUMENT, "{what}[{i}] is not UTF-8"))?;
        out.push(s.to_string());
    }
    Ok(out)
}

/// A stream's batches in order, read as it goes, once (a loader over a C
/// stream without shuffle on one rank): one epoch, of a length not known
/// until its end.
pub struct InOrder {
    batches: Batches,
    /// The global step of the next batch handed out, and of the next one
    /// read (below `step` after a restore: those are skipped).
    step: u64,
    read: u64,
    /// Rows read so far (the next `_row`).
    rows: u64,
    row_ids: bool,
    ended: bool,
    /// The state at (0, 0).
    template: State,
}

impl InOrder {
    fn next(&mut self) -> Result<Option<(u64, usize, Vec<Output>)>, Error> {
        if self.ended {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "a loader over a C stream read in order has one epoch, which has ended (shuffle, or a \
                 loader over files, reads epochs again)"
            ));
        }
        loop {
            let Some((n, mut outputs)) = self.batches.next_batch()? else {
                self.ended = true;
                return Ok(None);
            };
            let first = self.rows;
            self.rows += n as u64;
            self.read += 1;
            if self.read <= self.step {
                // Skipped: before the step a restore resumes at.
                outputs.into_iter().for_each(Output::delete);
                continue;
            }
            if self.row_ids {
                let numbers: Vec<u64> = (first..self.rows).collect();
                match loader::row_numbers(&numbers) {
                    Ok(t) => outputs.push(Output::Tensor(t)),
                    Err(e) => {
                        outputs.into_iter().for_each(Output::delete);
                        return Err(e);
                    }
                }
            }
            let step = self.step;
            self.step += 1;
            return Ok(Some((step, n, outputs)));
        }
    }

    fn state(&self) -> State {
        let (epoch, step) = match self.ended {
            true => (1, 0),
            false => (0, self.step),
        };
        State {
            epoch,
            step,
            ..self.template.clone()
        }
    }

    fn restore(&mut self, state: &State) -> Result<(), Error> {
        state.matches(&self.state())?;
        if state.epoch != 0 {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "state key \"epoch\" is {}: a loader over a C stream read in order has only epoch 0",
                state.epoch
            ));
        }
        if state.step < self.read {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "state key \"step\" is {}: this stream, read once, is already past it ({} batches read)",
                state.step,
                self.read
            ));
        }
        self.step = state.step;
        Ok(())
    }
}

// One per loader, which C holds boxed: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Inner {
    /// Epochs of a source in memory; `begun`: the current epoch's
    /// iteration has begun (its end, `set_epoch` and `restore` end it).
    Epochs {
        loader: Prefetching,
        begun: bool,
    },
    InOrder(InOrder),
}

/// A loader as the C face holds it (opaque to C; one thread at a time).
pub struct ArrowDlpackLoader {
    inner: Inner,
    names: Arc<[CString]>,
}

impl ArrowDlpackLoader {
    /// A loader of `stream`: moved in on success; on failure left with
    /// the caller (read up to where it failed), released by them.
    ///
    /// # Safety
    /// `stream` is a live stream, valid for reads and writes.
    pub unsafe fn from_stream(
        stream: &mut ArrowArrayStream,
        options: &ArrowDlpackLoaderOptions,
    ) -> Result<ArrowDlpackLoader, Error> {
        let (batch, epochs, depth) = options_from_c(options)?;
        if !epochs.shuffle && epochs.world_size == 1 {
            // SAFETY: forwarded: `from_stream`'s caller promises a live
            // stream, valid for reads and writes.
            return unsafe { ArrowDlpackLoader::in_order(stream, batch, epochs) };
        }
        // Read into memory once: every chunk; the stream released once the
        // loader is made.
        // SAFETY: a live stream (caller's contract), read, not moved.
        let mut reader = unsafe { Reader::open(stream) }?;
        // SAFETY: as above: the reader's stream is the caller's live one.
        let chunks = unsafe { reader.rest() }?;
        let schema = std::mem::replace(&mut reader.schema, ArrowSchema::released());
        drop(reader);
        let chunks = chunks
            .into_iter()
            .map(|mut c| std::mem::replace(&mut c.0, ArrowArray::released()))
            .collect();
        // SAFETY: the stream's schema and its chunks, moved in (released
        // by the loader, also on failure).
        let loader = unsafe { Loader::new(schema, chunks, batch, epochs) }?;
        let made = ArrowDlpackLoader::epochs(Prefetching::new(loader, depth))?;
        // Made: the stream, read to its end, is ours to release.
        // SAFETY: the caller's live stream, moved in now.
        unsafe { stream.release_once() };
        Ok(made)
    }

    /// A loader of files (`paths`: files, directories, globs), read by
    /// the library (`files`).
    pub fn open(
        paths: &[String],
        options: &ArrowDlpackLoaderOptions,
    ) -> Result<ArrowDlpackLoader, Error> {
        let (batch, epochs, depth) = options_from_c(options)?;
        #[cfg(not(feature = "files"))]
        {
            let _ = (paths, batch, epochs, depth);
            Err(err!(
                ARROW_DLPACK_UNSUPPORTED_TYPE,
                "this build of arrow-dlpack reads no files (built without its `files` feature)"
            ))
        }
        #[cfg(feature = "files")]
        {
            let loader = Loader::from_paths(paths, batch, epochs).map_err(|e| match e {
                PathError::Missing(p) => err!(
                    ARROW_DLPACK_INVALID_ARGUMENT,
                    "paths: no such file or directory: {p:?}"
                ),
                PathError::Refused(e) => e,
            })?;
            ArrowDlpackLoader::epochs(Prefetching::new(loader, depth))
        }
    }

    /// A loader of epochs (shuffled or sharded, in memory), named as its
    /// outputs are.
    fn epochs(loader: Prefetching) -> Result<ArrowDlpackLoader, Error> {
        let names = loader.names().to_vec();
        ArrowDlpackLoader::with_names(
            Inner::Epochs {
                loader,
                begun: false,
            },
            &names,
        )
    }

    /// # Safety
    /// As [`ArrowDlpackLoader::from_stream`].
    unsafe fn in_order(
        stream: &mut ArrowArrayStream,
        batch: BatchOptions,
        epochs: EpochOptions,
    ) -> Result<ArrowDlpackLoader, Error> {
        let batch = batch.drop_last(epochs.drop_last);
        let global_batch_size = batch.batch_size() as u64;
        // SAFETY: a live stream (caller's contract), its schema read; not
        // moved until the loader is made.
        let batches = unsafe { Batches::of_schema(stream, batch) }?;
        let template = State {
            version: epoch::STATE_VERSION,
            epoch: 0,
            step: 0,
            num_rows: None,
            schema: loader::fingerprint(batches.table()),
            seed: epochs.seed,
            shuffle: false,
            window: Window { w: 0, groups: 0 },
            global_batch_size,
        };
        let mut names: Vec<String> = batches.names().map(str::to_string).collect();
        if epochs.row_ids {
            names.push(ROW_IDS.to_string());
        }
        let order = InOrder {
            batches,
            step: 0,
            read: 0,
            rows: 0,
            row_ids: epochs.row_ids,
            ended: false,
            template,
        };
        let mut made = ArrowDlpackLoader::with_names(Inner::InOrder(order), &names)?;
        if let Inner::InOrder(order) = &mut made.inner {
            // SAFETY: the caller's live stream, moved in now.
            unsafe { order.batches.read_from(stream) };
        }
        Ok(made)
    }

    fn with_names(inner: Inner, names: &[String]) -> Result<ArrowDlpackLoader, Error> {
        if names.is_empty() {
            return Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "the source has no column: every batch would have no output, which is how an epoch's end \
                 reads (set {})",
                Term::RowIds
            ));
        }
        let names = names
            .iter()
            .map(|n| {
                CString::new(n.as_bytes()).map_err(|_| {
                    err!(
                        ARROW_DLPACK_INVALID_ARGUMENT,
                        "column name {n:?} holds a NUL byte, which a C name cannot"
                    )
                })
            })
            .collect::<Result<Arc<[CString]>, Error>>()?;
        Ok(ArrowDlpackLoader { inner, names })
    }

    /// The next batch, written to `out` only when made (an epoch's end: a
    /// batch of no outputs; the next call begins the next epoch).
    pub fn next(&mut self, out: &mut ArrowDlpackBatch) -> Result<(), Error> {
        let made = match &mut self.inner {
            Inner::Epochs { loader, begun } => {
                if !*begun {
                    loader.begin(0, 1)?;
                    *begun = true;
                }
                let epoch = loader.epoch();
                match loader.next_batch()? {
                    Some(b) => Some((epoch, b.step, b.rows, b.take())),
                    None => {
                        *begun = false;
                        *out = ArrowDlpackBatch::empty(epoch, loader.len());
                        None
                    }
                }
            }
            Inner::InOrder(order) => match order.next()? {
                Some((step, rows, outputs)) => Some((0, step, rows, outputs)),
                None => {
                    *out = ArrowDlpackBatch::empty(0, order.step);
                    None
                }
            },
        };
        if let Some((epoch, step, rows, outputs)) = made {
            *out = self.hand_out(epoch, step, rows, outputs);
        }
        Ok(())
    }

    /// A batch's outputs as the C struct, its memory leaked into
    /// `private_data` (taken back by [`release_batch`]).
    fn hand_out(
        &self,
        epoch: u64,
        step: u64,
        rows: usize,
        outputs: Vec<Output>,
    ) -> ArrowDlpackBatch {
        let outputs: Vec<ArrowDlpackOutput> = outputs
            .into_iter()
            .zip(self.names.iter())
            .map(|(o, name)| {
                let (kind, tensors) = match o {
                    Output::Tensor(t) => (
                        ArrowDlpackOutputKind::ARROW_DLPACK_OUTPUT_TENSOR,
                        [t.as_ptr(), ptr::null_mut(), ptr::null_mut()],
                    ),
                    Output::Padded { values, mask } => (
                        ArrowDlpackOutputKind::ARROW_DLPACK_OUTPUT_PADDED,
                        [values.as_ptr(), mask.as_ptr(), ptr::null_mut()],
                    ),
                    Output::Jagged {
                        values,
                        offsets,
                        validity,
                    } => (
                        ArrowDlpackOutputKind::ARROW_DLPACK_OUTPUT_JAGGED,
                        [
                            values.as_ptr(),
                            offsets.as_ptr(),
                            validity.map_or(ptr::null_mut(), NonNull::as_ptr),
                        ],
                    ),
                };
                ArrowDlpackOutput {
                    name: name.as_ptr(),
                    kind: kind as i32,
                    reserved0: 0,
                    tensors,
                }
            })
            .collect();
        let mut held = Box::new(Held {
            outputs,
            _names: self.names.clone(),
        });
        let n_outputs = held.outputs.len() as i64;
        let outputs_ptr = held.outputs.as_mut_ptr();
        ArrowDlpackBatch {
            outputs: outputs_ptr,
            n_outputs,
            rows: rows as i64,
            epoch,
            step,
            private_data: Box::into_raw(held).cast(),
            reserved: [0; 2],
        }
    }

    /// The epoch the next batch begins (dropping the rest of the current
    /// one).
    pub fn set_epoch(&mut self, epoch: u64) -> Result<(), Error> {
        match &mut self.inner {
            Inner::Epochs { loader, begun } => {
                loader.set_epoch(epoch);
                *begun = false;
                Ok(())
            }
            Inner::InOrder(order) if epoch == 0 && order.read == 0 => Ok(()),
            Inner::InOrder(_) => Err(err!(
                ARROW_DLPACK_INVALID_ARGUMENT,
                "epoch {epoch}: a loader over a C stream read in order has one epoch, 0, read once"
            )),
        }
    }

    /// This rank's batches an epoch (`None`: unknown, a stream in order).
    pub fn epoch_len(&self) -> Option<u64> {
        match &self.inner {
            Inner::Epochs { loader, .. } => Some(loader.len()),
            Inner::InOrder(_) => None,
        }
    }

    /// The state of the batches handed out.
    pub fn state(&self) -> State {
        match &self.inner {
            Inner::Epochs { loader, .. } => loader.state(),
            Inner::InOrder(order) => order.state(),
        }
    }

    /// Continues from `state` at the next call (dropping the rest of the
    /// current epoch); refused with the loader as it was.
    pub fn restore(&mut self, state: &State) -> Result<(), Error> {
        match &mut self.inner {
            Inner::Epochs { loader, begun } => {
                loader.restore(state)?;
                *begun = false;
                Ok(())
            }
            Inner::InOrder(order) => order.restore(state),
        }
    }
}
