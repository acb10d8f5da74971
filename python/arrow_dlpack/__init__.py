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

``from_dlpack`` goes the other way: any object with ``__dlpack__`` (NumPy,
PyTorch, JAX...) becomes an object implementing ``__arrow_c_array__``, so
``pyarrow.array(arrow_dlpack.from_dlpack(x))`` shares the tensor's memory,
and ``pyarrow.record_batch(arrow_dlpack.from_dlpack(matrix, columns=[...]))``
names a matrix's columns.
"""

from __future__ import annotations

from ._native import ArrowArrayFromDLPack, DLPackExporter, __version__, from_dlpack, to_dlpack, validity

__all__ = ["to_dlpack", "from_dlpack", "validity", "DLPackExporter", "ArrowArrayFromDLPack", "__version__"]
