//! `arrow_dlpack.Loader`'s native core: the loader of [`crate::loader`]
//! over a Python source read into memory once. The package's `Loader`
//! (Python) resolves ranks and workers, pickles, and turns the state into
//! a dict; everything it asks is checked here, by the core.

use pyo3::exceptions::{PyBufferError, PyFileNotFoundError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::batches::{Keywords, batch_dict, batch_options, chunks_of};
use super::exporter::type_name;
use super::type_attribute;
use crate::abi::{ArrowArray, ArrowSchema};
use crate::arrow::read;
use crate::arrow::release::Release;
use crate::epoch::State;
use crate::error::{Error, Face, Status};
#[cfg(feature = "files")]
use crate::files::PathError;
use crate::loader::{EpochOptions, Loader, Prefetching, prefetch_depth};
use crate::options::BatchOptions;

/// The exception for a loader's error: `ValueError` for what the caller
/// asked (an option, a state), `BufferError` for what the data is.
fn error(e: Error) -> PyErr {
    let message = e.message_for(Face::Python);
    match e.status() {
        Status::ARROW_DLPACK_INVALID_ARGUMENT => PyValueError::new_err(message),
        _ => PyBufferError::new_err(message),
    }
}

/// The structs of an item not kept: released.
fn release_all(schema: &mut ArrowSchema, arrays: &mut [ArrowArray]) {
    // SAFETY: structs handed over to us by a producer, not moved since.
    unsafe {
        schema.release_once();
        arrays.iter_mut().for_each(|a| a.release_once());
    }
}

/// A source read into memory once: its schema and every chunk, as they
/// come (a stream read to its end; an iterable's items, each of the first
/// one's schema).
fn read_whole(source: &Bound<'_, PyAny>) -> PyResult<(ArrowSchema, Vec<ArrowArray>)> {
    let py = source.py();
    let kind = source.get_type();
    if type_attribute(&kind, intern!(py, "__arrow_c_stream__")).is_some()
        || type_attribute(&kind, intern!(py, "__arrow_c_array__")).is_some()
    {
        return chunks_of(source);
    }
    let Ok(iterator) = source.try_iter() else {
        return Err(PyTypeError::new_err(format!(
            "arrow_dlpack.Loader reads Arrow record batches: an object implementing __arrow_c_stream__ or \
             __arrow_c_array__ (a pyarrow Table or RecordBatchReader, a polars DataFrame, a DuckDB relation, a \
             Hugging Face Dataset), or an iterable of them; got {}",
            type_name(source)?
        )));
    };
    let mut first: Option<ArrowSchema> = None;
    let mut all: Vec<ArrowArray> = Vec::new();
    let fail = |first: &mut Option<ArrowSchema>, all: &mut Vec<ArrowArray>| {
        if let Some(mut s) = first.take() {
            release_all(&mut s, all);
        }
    };
    for (i, item) in iterator.enumerate() {
        let read = item.and_then(|item| chunks_of(&item));
        let (mut schema, mut arrays) = match read {
            Ok(c) => c,
            Err(e) => {
                fail(&mut first, &mut all);
                return Err(e);
            }
        };
        match &first {
            None => first = Some(schema),
            Some(s) => {
                // SAFETY: both are valid schemas (their producers').
                let same = unsafe { read::same_type(s, &schema) };
                if !same {
                    release_all(&mut schema, &mut arrays);
                    fail(&mut first, &mut all);
                    return Err(PyValueError::new_err(format!(
                        "arrow_dlpack.Loader: item {i} of the source has another schema than the first (the \
                         columns' names and types must stay the same)"
                    )));
                }
                release_all(&mut schema, &mut []);
            }
        }
        all.append(&mut arrays);
    }
    match first {
        Some(schema) => Ok((schema, all)),
        None => Err(PyValueError::new_err(
            "arrow_dlpack.Loader: the source is empty (not even a first item to read the schema of)",
        )),
    }
}

/// The row numbers of an indices mapping (a Hugging Face dataset's:
/// row `i` of the dataset is row `indices[i]` of its table): one int64 or
/// uint64 array without nulls, read by the library's reader, copied (8
/// bytes a row; the table's rows are not).
fn mapping_of(indices: &Bound<'_, PyAny>) -> PyResult<Vec<u64>> {
    let (mut schema, mut arrays) = chunks_of(indices)?;
    let read = (|| -> PyResult<Vec<u64>> {
        let [array] = arrays.as_slice() else {
            return Err(PyValueError::new_err(format!(
                "indices must be one array, not {} chunks",
                arrays.len()
            )));
        };
        // SAFETY: the producer's live structs.
        let flat = unsafe { read::read_flat(array, &schema, crate::arrow::read::Location::CPU) }
            .map_err(|e| {
                PyValueError::new_err(format!("indices: {}", e.message_for(Face::Python)))
            })?;
        let flat = match flat {
            Some(f) if f.size.is_none() && matches!(f.dtype.name, "int64" | "uint64") => f,
            _ => {
                return Err(PyValueError::new_err(
                    "indices must be an int64 or uint64 array",
                ));
            }
        };
        let rows = usize::try_from(flat.rows).unwrap_or(0);
        let mut out = Vec::with_capacity(rows);
        for i in 0..rows {
            // SAFETY: `rows` 8-byte values from `data` (the reader checked
            // the buffer's range).
            let v = unsafe { flat.data.cast::<i64>().add(i).read_unaligned() };
            out.push(
                u64::try_from(v)
                    .map_err(|_| PyValueError::new_err(format!("indices[{i}] is {v}")))?,
            );
        }
        Ok(out)
    })();
    release_all(&mut schema, &mut arrays);
    read
}

/// The native loader (`arrow_dlpack._native.Loader`): made by [`loader`].
#[pyclass(module = "arrow_dlpack._native", name = "Loader")]
pub struct NativeLoader {
    loader: Prefetching,
    names: Vec<Py<PyString>>,
}

#[pymethods]
impl NativeLoader {
    /// Begins an iteration as DataLoader worker `worker` of `workers`:
    /// where `set_epoch` or `load_state` put it, else the next epoch.
    fn begin(&mut self, py: Python<'_>, worker: u64, workers: u64) -> PyResult<()> {
        let loader = &mut self.loader;
        // Joining a prefetch thread: without the GIL.
        py.detach(|| loader.begin(worker, workers)).map_err(error)
    }

    /// The next batch's dict, or None at the epoch's end: made ahead on
    /// the library's thread (waited for without the GIL), or here.
    fn next<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let loader = &mut self.loader;
        // A batch made ahead already: taken with the GIL held; else waited
        // for (or made) without it.
        let made = match loader.ready_batch() {
            Some(made) => made,
            None => py.detach(|| loader.next_batch()),
        };
        match made.map_err(error)? {
            None => Ok(None),
            Some(batch) => batch_dict(py, &self.names, batch.take()).map(Some),
        }
    }

    /// Joins the prefetch thread, if one runs (before the process forks:
    /// the child gets the loader, and no thread it does not have).
    fn quiesce(&mut self, py: Python<'_>) {
        let loader = &mut self.loader;
        py.detach(|| loader.quiesce());
    }

    /// The state as JSON text (`arrow_dlpack_loader_state`'s): the batches
    /// handed out, never those made ahead.
    fn state(&self) -> String {
        self.loader.state().to_json()
    }

    /// Continues from a state's JSON text at the next iteration; refused
    /// (`ValueError` naming the key) with the loader as it was.
    fn load_state(&mut self, py: Python<'_>, text: &str) -> PyResult<()> {
        let state = State::from_json(text).map_err(error)?;
        let loader = &mut self.loader;
        py.detach(|| loader.restore(&state)).map_err(error)
    }

    fn set_epoch(&mut self, py: Python<'_>, epoch: u64) {
        let loader = &mut self.loader;
        py.detach(|| loader.set_epoch(epoch));
    }

    fn __len__(&self) -> usize {
        self.loader.len() as usize
    }

    #[getter]
    fn names(&self, py: Python<'_>) -> Vec<Py<PyString>> {
        self.names.iter().map(|n| n.clone_ref(py)).collect()
    }

    #[getter]
    fn num_rows(&self) -> u64 {
        self.loader.num_rows()
    }
}

/// What a loader was asked, read from its keywords and checked by the
/// core, in the contract's order: batch_size, world_size, rank, window,
/// prefetch, then the rest (the source's columns when it is read).
struct Asked<'py> {
    batch: BatchOptions,
    epochs: EpochOptions,
    depth: usize,
    indices: Option<Bound<'py, PyAny>>,
}

fn asked<'py>(batch_size: i64, options: Option<&Bound<'py, PyDict>>) -> PyResult<Asked<'py>> {
    let mut keywords = Keywords::new(options, "Loader")?;
    let shuffle: Option<bool> = keywords.take("shuffle")?;
    let seed: Option<u64> = keywords.take("seed")?;
    let window: Option<i64> = keywords.take("window")?;
    let rank: Option<i64> = keywords.take("rank")?;
    let world_size: Option<i64> = keywords.take("world_size")?;
    let drop_last: Option<bool> = keywords.take("drop_last")?;
    let row_ids: Option<bool> = keywords.take("row_ids")?;
    let prefetch: Option<i64> = keywords.take("prefetch")?;
    let indices = keywords.take_any("indices")?;
    let batch = batch_options(batch_size, &mut keywords)?;
    let epochs = EpochOptions::new(
        shuffle.unwrap_or(false),
        seed.unwrap_or(0),
        window,
        rank,
        world_size,
        drop_last.unwrap_or(false),
        row_ids.unwrap_or(false),
    )
    .map_err(error)?;
    let depth = prefetch_depth(prefetch).map_err(error)?;
    keywords.done()?;
    Ok(Asked {
        batch,
        epochs,
        depth,
        indices,
    })
}

fn native(py: Python<'_>, loader: Loader, depth: usize) -> NativeLoader {
    let loader = Prefetching::new(loader, depth);
    let names = loader
        .names()
        .iter()
        .map(|n| PyString::new(py, n).unbind())
        .collect();
    NativeLoader { loader, names }
}

/// ``Loader(source, batch_size, *, shuffle, seed, window, rank,
/// world_size, drop_last, row_ids, **batch options)``: the source read
/// into memory once (chunks kept as they come), every option checked by
/// the core.
#[pyfunction]
#[pyo3(signature = (source, batch_size, **options))]
pub fn loader(
    py: Python<'_>,
    source: &Bound<'_, PyAny>,
    batch_size: i64,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<NativeLoader> {
    let asked = asked(batch_size, options)?;
    let (schema, chunks) = read_whole(source)?;
    // SAFETY: the producer's schema and arrays of it, moved in (released
    // by the loader, also on failure).
    let mut loader =
        unsafe { Loader::new(schema, chunks, asked.batch, asked.epochs) }.map_err(error)?;
    if let Some(indices) = asked.indices {
        loader.set_mapping(mapping_of(&indices)?).map_err(error)?;
    }
    Ok(native(py, loader, asked.depth))
}

/// ``Loader`` over files: ``paths`` (files, directories, globs) resolved
/// and read by the core. A path naming nothing: ``FileNotFoundError``;
/// any other refusal (a file unreadable or unlike the first, an option):
/// ``ValueError`` naming it.
#[cfg(feature = "files")]
#[pyfunction]
#[pyo3(signature = (paths, batch_size, **options))]
pub fn loader_files(
    py: Python<'_>,
    paths: Vec<String>,
    batch_size: i64,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<NativeLoader> {
    let asked = asked(batch_size, options)?;
    if asked.indices.is_some() {
        return Err(PyValueError::new_err("indices is not for files"));
    }
    let (batch, epochs) = (asked.batch, asked.epochs);
    let loader = py
        .detach(|| Loader::from_paths(&paths, batch, epochs))
        .map_err(|e| match e {
            PathError::Missing(p) => {
                PyFileNotFoundError::new_err(format!("no such file or directory: {p:?}"))
            }
            PathError::Refused(e) => PyValueError::new_err(e.message_for(Face::Python)),
        })?;
    Ok(native(py, loader, asked.depth))
}
