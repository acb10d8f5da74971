"""The C ABI end to end from Python, without the package's conveniences:
pyarrow exports with _export_to_c, the library makes the tensor, the real
numpy.from_dlpack consumes it."""

import ctypes
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

import arrow_dlpack_ctypes as _ffi
from conftest import EXAMPLES, data_address, values_address


def test_pyarrow_array_reaches_numpy_through_the_c_abi():
    arr = pa.array([1.5, 2.5, 3.5, 4.5], pa.float64()).slice(1)
    c_array, c_schema = _ffi.ArrowArray(), _ffi.ArrowSchema()
    arr._export_to_c(ctypes.addressof(c_array), ctypes.addressof(c_schema))
    error = _ffi.ArrowDlpackError()
    tensor = _ffi.lib.arrow_dlpack_export_versioned(
        ctypes.addressof(c_array), ctypes.addressof(c_schema), ctypes.byref(error)
    )
    assert tensor, error.message
    assert not c_array.release, "the array moved into the tensor"
    managed = _ffi.DLManagedTensorVersioned.from_address(tensor)
    assert (managed.major, managed.minor) == (1, 3)
    assert managed.flags == _ffi.DLPACK_FLAG_BITMASK_READ_ONLY

    x = np.from_dlpack(_ffi.Tensor(tensor))
    np.testing.assert_array_equal(x, [2.5, 3.5, 4.5])
    assert not x.flags.writeable
    assert data_address(x) == values_address(arr)
    del x
    # The schema is only borrowed: still ours to release.
    pa.DataType._import_from_c(ctypes.addressof(c_schema))


def test_failure_leaves_the_c_array_to_the_caller():
    arr = pa.array([1, None, 3], pa.int32())
    c_array, c_schema = _ffi.ArrowArray(), _ffi.ArrowSchema()
    arr._export_to_c(ctypes.addressof(c_array), ctypes.addressof(c_schema))
    before = bytes(c_array)
    error = _ffi.ArrowDlpackError()
    tensor = _ffi.lib.arrow_dlpack_export(ctypes.addressof(c_array), ctypes.addressof(c_schema), ctypes.byref(error))
    assert not tensor
    assert error.status == 3  # ARROW_DLPACK_HAS_NULLS
    assert b"1 nulls" in error.message
    assert bytes(c_array) == before
    # Still intact: pyarrow imports it back.
    back = pa.Array._import_from_c(ctypes.addressof(c_array), ctypes.addressof(c_schema))
    assert back.to_pylist() == [1, None, 3]


@pytest.mark.parametrize("example", ["ctypes_example.py", "cffi_example.py"])
def test_the_bare_library_examples_run(example):
    """examples/python: the C library from ctypes and from cffi, without the
    package (the library is $ARROW_DLPACK_LIBRARY, as the tests' is)."""
    if example == "cffi_example.py":
        pytest.importorskip("cffi")
    result = subprocess.run([sys.executable, str(EXAMPLES / example)], capture_output=True, text=True, timeout=60, cwd=EXAMPLES)
    assert result.returncode == 0, result.stderr
    assert "shared: yes" in result.stdout
