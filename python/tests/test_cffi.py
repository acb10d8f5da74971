"""The generated header serves cffi users: ABI mode, declarations taken from
the preprocessed header itself."""

import ctypes
import pathlib
import shutil
import subprocess

import pyarrow as pa
import pytest

import arrow_dlpack_ctypes as _ffi
from conftest import values_address

cffi = pytest.importorskip("cffi")
HEADER = pathlib.Path(__file__).resolve().parents[2] / "include" / "arrow_dlpack.h"


def declarations() -> str:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C preprocessor")
    out = subprocess.run([compiler, "-E", "-P", str(HEADER)], check=True, capture_output=True, text=True).stdout
    # cffi parses declarations, not the system headers pulled in above them.
    start = out.index("struct ArrowSchema {")
    return out[start:]


def test_cffi_reads_a_tensor_through_the_header():
    ffi = cffi.FFI()
    ffi.cdef(declarations())
    lib = ffi.dlopen(_ffi.library_path())
    assert ffi.string(lib.arrow_dlpack_version()) == b"0.1.0"

    arr = pa.array([10, 20, 30, 40], pa.int32()).slice(1)
    c_array = ffi.new("struct ArrowArray *")
    c_schema = ffi.new("struct ArrowSchema *")
    arr._export_to_c(int(ffi.cast("uintptr_t", c_array)), int(ffi.cast("uintptr_t", c_schema)))
    error = ffi.new("ArrowDlpackError *")
    tensor = lib.arrow_dlpack_export_versioned(c_array, c_schema, error)
    assert tensor != ffi.NULL, ffi.string(error.message)
    assert error.status == lib.ARROW_DLPACK_OK
    assert c_array.release == ffi.NULL
    t = tensor.dl_tensor
    assert (tensor.version.major, tensor.version.minor) == (1, 3)
    assert tensor.flags == 1  # DLPACK_FLAG_BITMASK_READ_ONLY
    assert (t.dtype.code, t.dtype.bits, t.dtype.lanes) == (lib.kDLInt, 32, 1)
    assert (t.ndim, t.shape[0], t.strides[0]) == (1, 3, 1)
    assert t.device.device_type == lib.kDLCPU
    assert int(ffi.cast("uintptr_t", t.data)) == values_address(arr)
    assert list(ffi.cast("int32_t *", t.data)[0:3]) == [20, 30, 40]
    tensor.deleter(tensor)
    c_schema.release(c_schema)

    # Failure path through cffi: the status and message arrive.
    bad = pa.array(["x"])
    bad._export_to_c(int(ffi.cast("uintptr_t", c_array)), int(ffi.cast("uintptr_t", c_schema)))
    assert lib.arrow_dlpack_export(c_array, c_schema, error) == ffi.NULL
    assert error.status == lib.ARROW_DLPACK_UNSUPPORTED_TYPE
    assert b"utf8" in ffi.string(error.message)
    c_array.release(c_array)
    c_schema.release(c_schema)
