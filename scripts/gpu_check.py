#!/usr/bin/env python3
"""The device paths on a real GPU: round trips through arrow_dlpack between
PyTorch, CuPy and JAX, legacy and versioned consumers, 1-D, 2-D and permuted
N-D tensors, integer and float dtypes, and a producer whose data comes with
a real CUDA event as its sync_event. Prints one line per case and exits
non-zero if any case failed.

    python3 scripts/gpu_check.py

Needs a CUDA GPU, the arrow_dlpack package (installed, or its directory on
PYTHONPATH with ARROW_DLPACK_LIBRARY naming the library), pyarrow, and any
of torch, cupy and jax (a missing one's cases are skipped). No network.
"""

from __future__ import annotations

import ctypes
import gc
import pathlib
import sys
import traceback
from typing import Any, Callable, List, Tuple

import arrow_dlpack

# The ctypes struct layouts of the C ABI (examples/python).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples" / "python"))
import arrow_dlpack_ctypes as _ffi  # noqa: E402

RESULTS: List[Tuple[str, str]] = []


def _gpus() -> int:
    """CUDA devices the driver sees (0 without a driver or a GPU)."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


GPUS = _gpus()


def case(name: str) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    def run(fn: Callable[[], Any]) -> Callable[[], Any]:
        if GPUS == 0:
            RESULTS.append(("SKIP", f"{name}: no CUDA GPU on this machine"))
            print(*RESULTS[-1], flush=True)
            return fn
        try:
            detail = fn()
            RESULTS.append(("PASS", f"{name}{': ' + detail if detail else ''}"))
        except ModuleNotFoundError as e:
            RESULTS.append(("SKIP", f"{name}: {e}"))
        except Exception as e:  # report and go on with the next case
            RESULTS.append(("FAIL", f"{name}: {type(e).__name__}: {e}"))
            traceback.print_exc(file=sys.stderr)
        print(*RESULTS[-1], flush=True)
        return fn

    return run


def device_array_struct(imported: Any) -> Tuple[Any, Any, Any]:
    """(schema capsule, device array capsule, struct) of an imported array."""
    schema, array = imported.__arrow_c_device_array__()
    pointer = _ffi.capsule_pointer(array, b"arrow_device_array")
    return schema, array, _ffi.ArrowDeviceArray.from_address(pointer)


class Relay:
    """Hands on an Arrow device array's capsules (once), as a GPU producer would."""

    def __init__(self, schema: Any, array: Any) -> None:
        self.capsules = (schema, array)

    def __arrow_c_device_array__(self, requested_schema: Any = None, **kwargs: Any) -> Tuple[Any, Any]:
        return self.capsules


def torch_tensors():
    import torch

    base = torch.arange(2 * 3 * 4, device="cuda")
    return [
        ("1-D int32", base.to(torch.int32)),
        ("1-D float64", base.to(torch.float64)),
        ("2-D float32", base.to(torch.float32).reshape(6, 4)),
        ("permuted 3-D int64", base.reshape(2, 3, 4).permute(0, 2, 1)),
    ]


@case("torch -> from_dlpack keeps device and pointer")
def _():
    import torch

    out = []
    for label, t in torch_tensors():
        imported = arrow_dlpack.from_dlpack(t)
        assert imported.device == (2, t.device.index), imported.device
        _, _, struct = device_array_struct(imported)
        assert struct.device_type == 2 and struct.sync_event is None
        out.append(label)
        del imported
    torch.cuda.synchronize()
    return ", ".join(out)


def round_trip(consumer: Callable[[Any], Any], as_numpy: Callable[[Any], Any], pointer: Callable[[Any], int]) -> str:
    import numpy as np

    labels = []
    for label, t in torch_tensors():
        expected = t.cpu().numpy()
        y = consumer(arrow_dlpack.to_dlpack(arrow_dlpack.from_dlpack(t)))
        assert pointer(y) == t.data_ptr(), f"{label}: copied"
        np.testing.assert_array_equal(as_numpy(y), expected, err_msg=label)
        labels.append(label)
        del y
    return ", ".join(labels)


@case("torch -> arrow -> torch.from_dlpack (versioned, stream=1)")
def _():
    import torch

    before = torch.cuda.memory_allocated()
    detail = round_trip(torch.from_dlpack, lambda y: y.cpu().numpy(), lambda y: y.data_ptr())
    gc.collect()
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before, "a tensor was not deleted (or deleted twice)"
    return detail


@case("torch -> arrow -> cupy.from_dlpack")
def _():
    import cupy

    return round_trip(cupy.from_dlpack, cupy.asnumpy, lambda y: y.data.ptr)


@case("torch -> arrow -> jax.dlpack.from_dlpack (legacy capsule)")
def _():
    import jax
    import numpy as np

    # Without x64, JAX turns every float64/int64 tensor it imports into a
    # 32-bit copy (its choice, not ours): the first GPU run of this script
    # failed there on "1-D float64: copied".
    jax.config.update("jax_enable_x64", True)
    return round_trip(jax.dlpack.from_dlpack, np.asarray, lambda y: y.unsafe_buffer_pointer())


@case("cupy 2-D matrix -> arrow -> torch keeps shape and strides")
def _():
    import cupy
    import torch

    m = cupy.arange(12, dtype=cupy.float32).reshape(3, 4)
    y = torch.from_dlpack(arrow_dlpack.to_dlpack(arrow_dlpack.from_dlpack(m)))
    assert (tuple(y.shape), y.stride(), y.data_ptr()) == ((3, 4), (4, 1), m.data.ptr)
    assert torch.equal(y.cpu(), torch.arange(12, dtype=torch.float32).reshape(3, 4))


@case("a producer's real CUDA event: the consumer's stream waits on it")
def _():
    import cupy
    import torch

    side = cupy.cuda.Stream(non_blocking=True)
    with side:
        data = cupy.zeros(1 << 24, dtype=cupy.float32)
        data += 7  # pending work on the side stream, not ordered before the consumer's
        event = cupy.cuda.Event()
        event.record(side)
    imported = arrow_dlpack.from_dlpack(data)
    schema, array, struct = device_array_struct(imported)
    handle = ctypes.c_void_p(event.ptr)  # sync_event points at the CUevent
    struct.sync_event = ctypes.addressof(handle)
    y = torch.from_dlpack(arrow_dlpack.to_dlpack(Relay(schema, array)))  # stream=1: legacy default
    assert y.data_ptr() == data.data.ptr
    assert float(y.sum()) == 7.0 * (1 << 24)
    del handle


@case("device validity bitmap with an unknown null count is refused, never read")
def _():
    import torch

    imported = arrow_dlpack.from_dlpack(torch.arange(8, device="cuda", dtype=torch.int32))
    schema, array, struct = device_array_struct(imported)
    validity = torch.full((1,), 0xFF, dtype=torch.uint8, device="cuda")
    struct.array.buffers[0] = validity.data_ptr()
    struct.array.null_count = -1
    try:
        torch.from_dlpack(arrow_dlpack.to_dlpack(Relay(schema, array)))
    except BufferError as e:
        assert "never read" in str(e), e
        return str(e)[:80]
    raise AssertionError("accepted")


@case("copy=True and another dl_device are refused for device data")
def _():
    import torch

    t = torch.arange(4, device="cuda")
    exporter = arrow_dlpack.to_dlpack(arrow_dlpack.from_dlpack(t))
    for kwargs in ({"copy": True}, {"dl_device": (1, 0)}):
        try:
            exporter.__dlpack__(max_version=(1, 0), stream=1, **kwargs)
        except BufferError:
            continue
        raise AssertionError(f"{kwargs} accepted")
    assert torch.equal(torch.from_dlpack(exporter).cpu(), torch.arange(4))


@case("a pinned batch goes to CUDA with non_blocking=True")
def _():
    import numpy as np
    import pyarrow as pa
    import torch

    import arrow_dlpack.torch as adt

    n = 1 << 16
    table = pa.table({"a": np.arange(n, dtype=np.float32), "b": np.ones(n, np.float32)})
    on_gpu = []
    for batch in adt.batches(table, 1 << 14, stack={"x": ["a", "b"]}, pin_memory=True):
        x = batch["x"]
        assert x.is_pinned(), "not in pinned memory"
        on_gpu.append(x.to("cuda", non_blocking=True))
    torch.cuda.synchronize()
    got = torch.cat(on_gpu).cpu()
    assert torch.equal(got, torch.stack([torch.arange(n, dtype=torch.float32), torch.ones(n)], dim=1))
    return f"{len(on_gpu)} batches, pinned, copied asynchronously, equal"


def main() -> int:
    count = {status: sum(s == status for s, _ in RESULTS) for status in ("PASS", "FAIL", "SKIP")}
    # Not the "N passed, N failed" of a test runner: CI's summary is pytest's.
    print(f"gpu_check: {count['PASS']} of {len(RESULTS)} cases passed ({count['FAIL']} failed, {count['SKIP']} skipped)")
    return 1 if count["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
