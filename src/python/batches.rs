//! `arrow_dlpack.batches`: the Python face of [`crate::batches`], an
//! iterator of dicts of exporters.
//!
//! Sources: an `__arrow_c_stream__` producer (a pyarrow Table or
//! RecordBatchReader, a dataset scanner's reader, polars, DuckDB), an
//! `__arrow_c_array__` one (a record batch), or any Python iterable of
//! those (Ray Data's `iter_batches(batch_format="pyarrow")`, a generator):
//! the iterable is pulled one item at a time, and an exception it raises
//! is raised again, as it was, by the iterator's `__next__`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyBufferError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use super::exporter::{DLPackExporter, dtype_of, type_name};
use super::{ARROW_ARRAY, ARROW_SCHEMA, ARROW_STREAM, capsule_pointer, type_attribute};
use crate::abi::{ArrowArray, ArrowArrayStream, ArrowSchema};
use crate::arrow::release::Release;
use crate::arrow::stream::Reader;
use crate::batches::{BatchOptions, Batches, Output, Source};
use crate::error::Status;
use crate::error::{Error, Face, Term, err};
use crate::options::{Lists, Pad, Side};

/// Moves a producer's structs out of their capsules (their `release`
/// becomes NULL there, so the capsules' destructors do nothing).
///
/// # Safety
/// The capsules hold live structs of their names.
unsafe fn take_array(
    schema: &Bound<'_, PyAny>,
    array: &Bound<'_, PyAny>,
) -> PyResult<(ArrowSchema, ArrowArray)> {
    let s = capsule_pointer(schema, ARROW_SCHEMA)?.cast::<ArrowSchema>();
    let a = capsule_pointer(array, ARROW_ARRAY)?.cast::<ArrowArray>();
    // SAFETY: live structs (caller's contract), moved bitwise, the
    // capsules' copies disarmed.
    unsafe {
        let taken = (std::ptr::read(s), std::ptr::read(a));
        (*s).release = None;
        (*a).release = None;
        Ok(taken)
    }
}

/// An item of an iterable source, as chunks: its schema and arrays.
pub(super) fn chunks_of(item: &Bound<'_, PyAny>) -> PyResult<(ArrowSchema, Vec<ArrowArray>)> {
    let py = item.py();
    let kind = item.get_type();
    if type_attribute(&kind, intern!(py, "__arrow_c_stream__")).is_some() {
        let capsule = item.call_method0(intern!(py, "__arrow_c_stream__"))?;
        let stream = capsule_pointer(&capsule, ARROW_STREAM)?.cast::<ArrowArrayStream>();
        // SAFETY: the producer's live stream, read to its end here (the
        // capsule releases it afterwards).
        let read = unsafe {
            Reader::open(&mut *stream).and_then(|mut reader| {
                let chunks = reader.rest()?;
                let schema = std::mem::replace(&mut reader.schema, ArrowSchema::released());
                let arrays = chunks
                    .into_iter()
                    .map(|mut c| std::mem::replace(&mut c.0, ArrowArray::released()))
                    .collect();
                Ok((schema, arrays))
            })
        };
        return read.map_err(|e| PyBufferError::new_err(e.message_for(Face::Python)));
    }
    if let Some(export) = type_attribute(&kind, intern!(py, "__arrow_c_array__")) {
        let pair = export.call1((item,))?;
        let pair = pair.cast::<PyTuple>()?;
        // SAFETY: the producer's capsules.
        let (schema, array) = unsafe { take_array(&pair.get_item(0)?, &pair.get_item(1)?) }?;
        return Ok((schema, vec![array]));
    }
    Err(PyTypeError::new_err(format!(
        "arrow_dlpack.batches reads Arrow record batches: each item must implement __arrow_c_stream__ or \
         __arrow_c_array__; got {}",
        type_name(item)?
    )))
}

/// A Python iterable's items, one at a time; the exception it raised,
/// kept to be raised again.
struct Items {
    iterator: Py<PyAny>,
    pending: VecDeque<(ArrowArray, Option<ArrowSchema>)>,
    /// Shared with the iterator, which raises it (the batcher drops its
    /// source on an error).
    raised: Raised,
}

// SAFETY: the arrays and schemas are the producers' to release from any
// thread (the C Data Interface); the iterator is a Python object, used
// with the GIL held.
unsafe impl Send for Items {}

/// An exception an iterable source raised, to be raised again.
type Raised = Arc<Mutex<Option<PyErr>>>;

fn stash(raised: &Raised, e: PyErr) {
    *raised.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
}

impl Source for Items {
    fn next(&mut self) -> Result<Option<(ArrowArray, Option<ArrowSchema>)>, Error> {
        if let Some(next) = self.pending.pop_front() {
            return Ok(Some(next));
        }
        Python::attach(|py| {
            let iterator = self.iterator.bind(py);
            loop {
                // SAFETY: a live iterator; `PyIter_Next` returns a new
                // reference, or NULL at the end or with an exception set.
                let item = unsafe { pyo3::ffi::PyIter_Next(iterator.as_ptr()) };
                if item.is_null() {
                    return match PyErr::take(py) {
                        None => Ok(None),
                        Some(e) => {
                            let message = e.to_string();
                            stash(&self.raised, e);
                            Err(err!(
                                ARROW_DLPACK_INVALID_ARGUMENT,
                                "the source raised {message}"
                            ))
                        }
                    };
                }
                // SAFETY: a new reference (checked non-NULL).
                let item = unsafe { Bound::from_owned_ptr(py, item) };
                let (schema, arrays) = match chunks_of(&item) {
                    Ok(c) => c,
                    Err(e) => {
                        let message = e.to_string();
                        stash(&self.raised, e);
                        return Err(err!(ARROW_DLPACK_INVALID_ARGUMENT, "{message}"));
                    }
                };
                // The first array checks the item's schema; the rest are
                // of it.
                let mut schema = Some(schema);
                for array in arrays {
                    self.pending.push_back((array, schema.take()));
                }
                if let Some(mut unused) = schema {
                    // An item without arrays.
                    // SAFETY: the item's schema, handed over to us.
                    unsafe { unused.release_once() };
                }
                if let Some(next) = self.pending.pop_front() {
                    return Ok(Some(next));
                }
            }
        })
    }
}

impl Drop for Items {
    fn drop(&mut self) {
        for (mut array, schema) in self.pending.drain(..) {
            // SAFETY: the items' structs, handed over to us, not read yet.
            unsafe {
                array.release_once();
                if let Some(mut s) = schema {
                    s.release_once();
                }
            }
        }
    }
}

/// The iterator `arrow_dlpack.batches` returns: one dict a batch.
#[pyclass(module = "arrow_dlpack._native", name = "Batches")]
pub struct BatchIterator {
    batches: Option<Batches>,
    names: Vec<Py<PyString>>,
    /// What an iterable source raised.
    raised: Raised,
}

/// The exception for a batcher's error: `ValueError` for what the caller
/// asked (a column, a group, a size), `BufferError` for what the data is.
fn error(e: Error) -> PyErr {
    let message = e.message_for(Face::Python);
    match e.status() {
        Status::ARROW_DLPACK_INVALID_ARGUMENT => PyValueError::new_err(message),
        _ => PyBufferError::new_err(message),
    }
}

#[pymethods]
impl BatchIterator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(batches) = self.batches.as_mut() else {
            return Ok(None);
        };
        let made = batches.next_batch();
        let made = match made {
            Ok(Some((_, outputs))) => outputs,
            Ok(None) => {
                self.close();
                return Ok(None);
            }
            Err(e) => {
                self.close();
                let raised = self.raised.lock().unwrap_or_else(|p| p.into_inner()).take();
                return Err(raised.unwrap_or_else(|| error(e)));
            }
        };
        batch_dict(py, &self.names, made).map(Some)
    }

    /// Releases the source and the chunks read and not batched (the
    /// tensors handed out keep what they share). Iterating further gives
    /// nothing; called at the end, on an error, and when the iterator is
    /// collected.
    fn close(&mut self) {
        self.batches = None;
    }

    /// The names each batch's dict has, in order.
    #[getter]
    fn names(&self, py: Python<'_>) -> Vec<Py<PyString>> {
        self.names.iter().map(|n| n.clone_ref(py)).collect()
    }
}

/// A batch's outputs as the dict Python sees: each name to an exporter, a
/// `Padded` or a `Jagged` (the batcher's and the loader's).
pub(super) fn batch_dict<'py>(
    py: Python<'py>,
    names: &[Py<PyString>],
    made: Vec<Output>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    let exporter = |t| Py::new(py, DLPackExporter::ready(t)).map(|e| e.into_bound(py).into_any());
    let mut made = made.into_iter();
    for name in names {
        let Some(output) = made.next() else { break };
        let value = (|| -> PyResult<Bound<'py, PyAny>> {
            Ok(match output {
                Output::Tensor(t) => exporter(t)?,
                Output::Padded { values, mask } => {
                    super::named::padded(py, [exporter(values)?, exporter(mask)?])?
                }
                Output::Jagged {
                    values,
                    offsets,
                    validity,
                } => {
                    let validity = match validity {
                        Some(v) => exporter(v)?,
                        None => py.None().into_bound(py),
                    };
                    super::named::jagged(py, [exporter(values)?, exporter(offsets)?, validity])?
                }
            })
        })();
        match value {
            Ok(value) => dict.set_item(name.bind(py), value)?,
            Err(e) => {
                // The outputs not handed to an exporter yet.
                made.for_each(Output::delete);
                return Err(e);
            }
        }
    }
    Ok(dict)
}

/// The keywords of a dict (a call's `**options`), each taken once by
/// name; what is left at the end is a `TypeError`, as Python's own calls
/// refuse an unexpected keyword.
pub(super) struct Keywords<'py> {
    left: Option<Bound<'py, PyDict>>,
    function: &'static str,
}

impl<'py> Keywords<'py> {
    /// The keywords of `function`'s call (a copy: the caller's dict is
    /// left as it is).
    pub(super) fn new(
        options: Option<&Bound<'py, PyDict>>,
        function: &'static str,
    ) -> PyResult<Self> {
        Ok(Keywords {
            left: options.map(|d| d.copy()).transpose()?,
            function,
        })
    }

    /// The value of keyword `name` (`None`: not given, or given as None).
    pub(super) fn take<T: for<'a> FromPyObject<'a, 'py>>(
        &mut self,
        name: &str,
    ) -> PyResult<Option<T>> {
        let Some(left) = &self.left else {
            return Ok(None);
        };
        let Some(value) = left.get_item(name)? else {
            return Ok(None);
        };
        left.del_item(name)?;
        if value.is_none() {
            return Ok(None);
        }
        value.extract::<T>().map(Some).map_err(|_| {
            let given = value
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default();
            PyTypeError::new_err(format!(
                "{}() argument {name}={} has the wrong type ({given})",
                self.function,
                value.repr().map(|r| r.to_string()).unwrap_or_default()
            ))
        })
    }

    /// The raw value of keyword `name`, unconverted.
    pub(super) fn take_any(&mut self, name: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.take::<Bound<'py, PyAny>>(name)
    }

    /// Every keyword was taken: else a `TypeError` naming the first left.
    pub(super) fn done(self) -> PyResult<()> {
        match self.left.as_ref().and_then(|d| d.keys().iter().next()) {
            None => Ok(()),
            Some(key) => Err(PyTypeError::new_err(format!(
                "{}() got an unexpected keyword argument {}",
                self.function,
                key.repr()?
            ))),
        }
    }
}

/// The batch keywords (`columns`, `stack`, `lists`, `pad_value`,
/// `pad_length`, `pad_side`, `null_value`, `dtype`, `drop_last`,
/// `pin_memory`) taken from `keywords`, each value checked by the core's
/// constructors (refusals in Python's words): the one reading of them,
/// for `batches()` and the loader.
pub(super) fn batch_options(
    batch_size: i64,
    keywords: &mut Keywords<'_>,
) -> PyResult<BatchOptions> {
    let columns: Option<Vec<String>> = keywords.take("columns")?;
    let mut groups = Vec::new();
    if let Some(stack) = keywords.take::<Bound<'_, PyDict>>("stack")? {
        for (name, members) in stack.iter() {
            let name: String = name
                .extract()
                .map_err(|_| PyTypeError::new_err("stack's keys are names (str)"))?;
            let members: Vec<String> = members.extract().map_err(|_| {
                PyTypeError::new_err(format!("stack[{name:?}] must be a list of column names"))
            })?;
            groups.push((name, members));
        }
    }
    let lists: Option<String> = keywords.take("lists")?;
    let pad_value: Option<f64> = keywords.take("pad_value")?;
    let pad_length: Option<i64> = keywords.take("pad_length")?;
    let pad_side: Option<String> = keywords.take("pad_side")?;
    let null_value: Option<f64> = keywords.take("null_value")?;
    let dtype = keywords
        .take_any("dtype")?
        .map(|d| dtype_of(&d))
        .transpose()?;
    let drop_last: Option<bool> = keywords.take("drop_last")?;
    let pin_memory: Option<bool> = keywords.take("pin_memory")?;
    (|| -> Result<BatchOptions, Error> {
        let options = BatchOptions::new(batch_size)?;
        let lists = Lists::named(lists.as_deref().unwrap_or("padded"))?;
        let side = Side::named(pad_side.as_deref().unwrap_or("right"), Term::BatchPadSide)?;
        let padding = Pad::new(
            pad_length,
            side,
            pad_value.unwrap_or(0.0),
            Term::BatchPadLength,
        )?;
        options
            .columns(columns)?
            .stack(groups)?
            .lists(lists, padding)
            .fill(null_value)
            .dtype(dtype)
            .drop_last(drop_last.unwrap_or(false))
            .pinned(pin_memory.unwrap_or(false))
    })()
    .map_err(error)
}

/// ``batches(source, batch_size, **options)``: see
/// ``arrow_dlpack.batches`` for the keywords.
#[pyfunction]
#[pyo3(signature = (source, batch_size, **options))]
pub fn batches(
    py: Python<'_>,
    source: &Bound<'_, PyAny>,
    batch_size: i64,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<BatchIterator> {
    let mut keywords = Keywords::new(options, "batches")?;
    let options = batch_options(batch_size, &mut keywords)?;
    keywords.done()?;
    let kind = source.get_type();
    let raised = Raised::default();
    let made = if type_attribute(&kind, intern!(py, "__arrow_c_stream__")).is_some() {
        let capsule = source.call_method0(intern!(py, "__arrow_c_stream__"))?;
        let stream = capsule_pointer(&capsule, ARROW_STREAM)?.cast::<ArrowArrayStream>();
        // SAFETY: the producer's live stream, moved into the batcher (the
        // capsule's copy disarmed).
        unsafe { Batches::from_stream(&mut *stream, options) }
    } else if type_attribute(&kind, intern!(py, "__arrow_c_array__")).is_some() {
        let (schema, arrays) = chunks_of(source)?;
        let items = Box::new(Items {
            iterator: PyTuple::empty(py).try_iter()?.into_any().unbind(),
            pending: arrays.into_iter().map(|a| (a, None)).collect(),
            raised: raised.clone(),
        });
        // SAFETY: the arrays are of the schema.
        unsafe { Batches::new(schema, items, options) }
    } else if let Ok(iterator) = source.try_iter() {
        // The first item gives the schema; the rest are checked against it.
        let first = match iterator.clone().next() {
            Some(item) => item?,
            None => {
                return Err(PyValueError::new_err(
                    "arrow_dlpack.batches: the source is empty (not even a first item to read the schema of)",
                ));
            }
        };
        let (schema, arrays) = chunks_of(&first)?;
        let items = Box::new(Items {
            iterator: iterator.into_any().unbind(),
            pending: arrays.into_iter().map(|a| (a, None)).collect(),
            raised: raised.clone(),
        });
        // SAFETY: the arrays are of the schema.
        unsafe { Batches::new(schema, items, options) }
    } else {
        return Err(PyTypeError::new_err(format!(
            "arrow_dlpack.batches reads Arrow record batches: an object implementing __arrow_c_stream__ or \
             __arrow_c_array__ (a pyarrow Table, RecordBatchReader or RecordBatch, a polars DataFrame, a DuckDB \
             relation), or an iterable of them; got {}",
            type_name(source)?
        )));
    };
    let batches = made.map_err(error)?;
    let names = batches
        .names()
        .map(|n| PyString::new(py, n).unbind())
        .collect();
    Ok(BatchIterator {
        batches: Some(batches),
        names,
        raised,
    })
}
