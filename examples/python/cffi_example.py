"""The C library from cffi (ABI mode), without the Python package: the
declarations are the generated header's own, preprocessed.

    ARROW_DLPACK_LIBRARY=target/release/libarrow_dlpack.so python examples/python/cffi_example.py
"""

import os
import pathlib
import subprocess

import cffi
import pyarrow as pa

HEADER = pathlib.Path(__file__).resolve().parents[2] / "include" / "arrow_dlpack.h"

# cffi parses declarations, not the system headers the header includes.
preprocessed = subprocess.run(["cc", "-E", "-P", str(HEADER)], check=True, capture_output=True, text=True).stdout
ffi = cffi.FFI()
ffi.cdef(preprocessed[preprocessed.index("struct ArrowSchema {") :])
lib = ffi.dlopen(os.environ.get("ARROW_DLPACK_LIBRARY", "arrow_dlpack"))

arr = pa.array([10, 20, 30, 40], pa.int32()).slice(1)
c_array, c_schema = ffi.new("struct ArrowArray *"), ffi.new("struct ArrowSchema *")
arr._export_to_c(int(ffi.cast("uintptr_t", c_array)), int(ffi.cast("uintptr_t", c_schema)))
error = ffi.new("ArrowDlpackError *")
tensor = lib.arrow_dlpack_export_versioned(c_array, c_schema, error)
if tensor == ffi.NULL:
    raise SystemExit(f"export failed: {ffi.string(error.message).decode()}")
t = tensor.dl_tensor
values = list(ffi.cast("int32_t *", t.data)[0 : t.shape[0]])
shared = int(ffi.cast("uintptr_t", t.data)) == arr.buffers()[1].address + arr.offset * 4
tensor.deleter(tensor)  # releases the Arrow array
c_schema.release(c_schema)  # the schema is only borrowed
print(f"libarrow_dlpack {ffi.string(lib.arrow_dlpack_version()).decode()} via cffi: {values}, shared: {'yes' if shared else 'no'}")
assert shared and values == [20, 30, 40]
