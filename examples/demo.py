"""The main job in five lines: a pyarrow array handed to NumPy through
arrow-dlpack, sharing memory (no copy)."""

import numpy as np
import pyarrow as pa

import arrow_dlpack

arr = pa.array([1.5, 2.5, 3.5, 4.5], pa.float64()).slice(1)
x = np.from_dlpack(arrow_dlpack.to_dlpack(arr))

arrow_address = arr.buffers()[1].address + arr.offset * 8
numpy_address = x.__array_interface__["data"][0]
print(f"arrow-dlpack {arrow_dlpack.__version__}")
print(f"NumPy sees   {x!r} (writeable: {x.flags.writeable})")
print(f"Arrow buffer 0x{arrow_address:x}")
print(f"NumPy data   0x{numpy_address:x}  -> {'shared, zero-copy' if arrow_address == numpy_address else 'COPIED'}")
assert arrow_address == numpy_address
