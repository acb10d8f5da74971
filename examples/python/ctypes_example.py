"""The C library from ctypes, without the Python package: a pyarrow array
exported through the C Data Interface, made a DLPack tensor by
``libarrow_dlpack.so``, and consumed by the real ``numpy.from_dlpack``.

    ARROW_DLPACK_LIBRARY=target/release/libarrow_dlpack.so python examples/python/ctypes_example.py
"""

import ctypes

import numpy as np
import pyarrow as pa

import arrow_dlpack_ctypes as c


arr = pa.array([1.5, 2.5, 3.5, 4.5], pa.float64()).slice(1)
c_array, c_schema = c.ArrowArray(), c.ArrowSchema()
arr._export_to_c(ctypes.addressof(c_array), ctypes.addressof(c_schema))
error = c.ArrowDlpackError()
tensor = c.lib.arrow_dlpack_export_versioned(ctypes.addressof(c_array), ctypes.addressof(c_schema), ctypes.byref(error))
if not tensor:
    raise SystemExit(f"export failed: {c.last_error(error)}")
x = np.from_dlpack(c.Tensor(tensor))
pa.DataType._import_from_c(ctypes.addressof(c_schema))  # the schema is only borrowed: released here

shared = x.__array_interface__["data"][0] == arr.buffers()[1].address + arr.offset * 8
print(f"libarrow_dlpack {c.lib.arrow_dlpack_version().decode()} via ctypes: {x!r}, shared: {'yes' if shared else 'no'}")
assert shared
