"""arrow_dlpack: hand any Arrow array to NumPy, PyTorch or JAX without copying.

>>> import numpy as np, pyarrow as pa, arrow_dlpack
>>> np.from_dlpack(arrow_dlpack.to_dlpack(pa.array([1.0, 2.0, 3.0])))
array([1., 2., 3.])

``to_dlpack`` accepts any object implementing the Arrow PyCapsule interface
(``__arrow_c_device_array__``, ``__arrow_c_array__``, or
``__arrow_c_stream__``): pyarrow, nanoarrow, arro3, polars, DuckDB results...
Memory is shared where it can be, and copied once where it cannot (booleans,
chunked arrays, nulls given a ``null_value``, tables as one matrix), as the
array API's ``copy`` keyword allows. Tables, record batches, readers, polars
DataFrames and DuckDB results become 2-D tensors ``[rows, columns]``.
The returned exporter follows the Python DLPack protocol and the array API
rules; see :class:`DLPackExporter`.

Variable-length columns (token ids as ``list<int32>``, strings) become the
tensors ML code takes: ``to_jagged`` gives the values end to end and their
offsets (shared where Arrow's memory allows), ``to_padded`` one padded
tensor and its attention mask; ``from_jagged`` goes back.

``from_dlpack`` goes the other way: any object with ``__dlpack__`` (NumPy,
PyTorch, JAX...) becomes an object implementing ``__arrow_c_array__``, so
``pyarrow.array(arrow_dlpack.from_dlpack(x))`` shares the tensor's memory,
and ``pyarrow.record_batch(arrow_dlpack.from_dlpack(matrix, columns=[...]))``
names a matrix's columns.

``arrow_dlpack.torch`` has the same as PyTorch tensors (nested jagged
tensors included); it imports torch when it is used.
"""

from __future__ import annotations

from typing import Any, Iterator, NamedTuple, Optional

from . import _native
from ._native import (
    ArrowArrayFromDLPack,
    DLPackExporter,
    __version__,
    from_dlpack,
    from_jagged,
    set_threads,
    threads,
    to_dlpack,
    validity,
)


from ._loader import Loader, _arrow_source  # noqa: E402


def _dataset_rows(source: Any) -> Any:
    # A Hugging Face dataset's rows in its own order: its table, or, with
    # an indices mapping, the rows it maps taken in that order (batches()
    # reads once, in order: one copy of the mapped rows, as the dataset's
    # own iteration makes).
    table, indices = _arrow_source(source)
    return table if indices is None else table.take(indices)


class Jagged(NamedTuple):
    """A variable-length column as two tensors (``to_jagged``): ``values``,
    every row's elements end to end; ``offsets``, where each row starts
    (``length + 1`` entries from 0); ``validity``, the rows' mask (True =
    valid), or None when no row is null. Each is a DLPack exporter."""

    values: DLPackExporter
    offsets: DLPackExporter
    validity: Optional[DLPackExporter]


class Padded(NamedTuple):
    """A variable-length column padded to one length (``to_padded``):
    ``values`` ``[rows, length, ...]`` and ``mask`` ``[rows, length]``, True
    at each real element (the attention mask). Each is a DLPack exporter."""

    values: DLPackExporter
    mask: DLPackExporter


def to_jagged(obj: Any, *, null_value: Optional[float] = None, dtype: Any = None, copy: Optional[bool] = None) -> Jagged:
    """A list, string or binary column (an array, or a stream of them: a
    pyarrow ChunkedArray, a polars Series...) as ``Jagged(values, offsets,
    validity)``: row ``i`` is ``values[offsets[i]:offsets[i + 1]]``, as
    ``torch.nested.nested_tensor_from_jagged`` and
    ``torch.nn.EmbeddingBag(include_last_offset=True)`` take them.

    Shared where Arrow's memory allows (one chunk whose first offset is 0,
    nothing to convert or fill); otherwise the part that must be is copied
    once, unless ``copy=False`` (``BufferError``); ``copy=True`` always
    copies. Strings and binaries give their bytes (uint8). ``null_value``:
    None, nulls raise ``BufferError``; a number, null elements become it
    and null rows become empty rows, ``validity`` their mask. ``dtype``
    converts the values (a name, a NumPy or PyTorch dtype, ``"bfloat16"``).

    >>> import pyarrow as pa, numpy as np
    >>> values, offsets, _ = to_jagged(pa.array([[1, 2], [3]], pa.list_(pa.int32())))
    >>> np.from_dlpack(values), np.from_dlpack(offsets)
    (array([1, 2, 3], dtype=int32), array([0, 2, 3], dtype=int32))
    """
    return _native.to_jagged(obj, null_value, dtype, copy)


def to_padded(
    obj: Any,
    *,
    length: Optional[int] = None,
    value: float = 0,
    side: str = "right",
    null_value: Optional[float] = None,
    dtype: Any = None,
) -> Padded:
    """A list, string or binary column as ``Padded(values, mask)``:
    ``values`` ``[rows, length, ...]`` (always one copy) and its
    ``[rows, length]`` mask, True at each real element.

    ``length``: None pads to the longest row, a number cuts or pads every
    row to it. ``side``: ``"right"`` pads and cuts at the end, ``"left"`` at
    the start (each row's last element in the last column). ``value``: the
    padding, exact in the dtype. ``null_value`` and ``dtype``: as in
    ``to_jagged`` (a null row, filled, is all padding).

    >>> import pyarrow as pa, numpy as np
    >>> values, mask = to_padded(pa.array([[1, 2], [3]]), side="left")
    >>> np.from_dlpack(values)
    array([[1, 2],
           [0, 3]])
    """
    return _native.to_padded(obj, length, float(value), side, null_value, dtype)


def batches(
    source: Any,
    batch_size: int,
    *,
    columns: Optional[list] = None,
    stack: Optional[dict] = None,
    lists: str = "padded",
    pad_value: float = 0,
    pad_length: Optional[int] = None,
    pad_side: str = "right",
    null_value: Optional[float] = None,
    dtype: Any = None,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> Iterator[dict]:
    """Training batches of ``batch_size`` rows from ``source``, in order:
    one dict a batch (the last may be shorter, unless ``drop_last``).

    ``source``: anything with ``__arrow_c_stream__`` or ``__arrow_c_array__``
    (a pyarrow Table, RecordBatchReader or RecordBatch, a dataset scanner's
    reader, a polars DataFrame, a DuckDB relation, a Hugging Face
    ``datasets.Dataset``, its indices mapping honoured: row ``i`` is
    ``ds[i]``), or an iterable of them (Ray Data's
    ``iter_batches(batch_format="pyarrow")``, a generator), read chunk by
    chunk and never held whole.

    Each batch maps each name of ``columns`` (None: every column not in a
    ``stack`` group) to a dense column's exporter (shared when the batch
    lies inside one chunk, one copy when it spans two), or a list or string
    column's ``Padded(values, mask)`` (``lists="padded"``: to ``pad_length``
    or the batch's longest row, ``pad_side``, ``pad_value``) or
    ``Jagged(values, offsets, validity)`` (``lists="jagged"``); and each
    ``stack={"name": [columns]}`` group to one row-major matrix of the
    columns' promoted dtype (or ``dtype``). ``null_value``: None, nulls
    raise; a number fills them. ``pin_memory=True`` writes every tensor into
    page-locked memory (kDLCUDAHost) so that ``.to("cuda",
    non_blocking=True)`` overlaps the transfer; it needs the CUDA driver.

    >>> import pyarrow as pa, numpy as np
    >>> t = pa.table({"x": [1.0, 2.0, 3.0], "y": [4.0, 5.0, 6.0], "ids": [[1], [2, 3], []]})
    >>> [np.from_dlpack(b["xy"]).tolist() for b in batches(t, 2, stack={"xy": ["x", "y"]}, columns=[])]
    [[[1.0, 4.0], [2.0, 5.0]], [[3.0, 6.0]]]
    """
    native = _native.batches(
        _dataset_rows(source),
        batch_size,
        columns=columns,
        stack=stack,
        lists=lists,
        pad_value=pad_value,
        pad_length=pad_length,
        pad_side=pad_side,
        null_value=null_value,
        dtype=dtype,
        drop_last=drop_last,
        pin_memory=pin_memory,
    )
    return _closing(native)


def _closing(native: Any) -> Iterator[dict]:
    # The batches (list columns come as `Jagged` and `Padded`, made by the
    # native code), the source released when the iteration ends, fails or
    # is abandoned (the generator's close, on collection too).
    try:
        yield from native
    finally:
        native.close()


__all__ = [
    "to_dlpack",
    "from_dlpack",
    "validity",
    "to_jagged",
    "to_padded",
    "from_jagged",
    "batches",
    "Loader",
    "set_threads",
    "threads",
    "Jagged",
    "Padded",
    "DLPackExporter",
    "ArrowArrayFromDLPack",
    "__version__",
]
