"""Device data without a GPU: host memory relabelled as CUDA/ROCm memory
(never read by the library), JAX's CPU build for the legacy capsule path,
and a fake CUDA driver / HIP runtime (fake_gpu_driver.c, loaded instead of
the real one) recording how the consumer's stream is made to wait on the
producer's sync_event. scripts/gpu_check.py runs the same paths on a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import arrow_dlpack
from arrow_dlpack import _sync
from conftest import capsule_is, values_address
from device_producers import ArrowDeviceProducer, DLPackDeviceProducer, tensor_of

HERE = Path(__file__).resolve().parent
CUDA, CUDA_HOST, ROCM, ROCM_HOST, VULKAN, CUDA_MANAGED = 2, 3, 10, 11, 7, 13


@pytest.mark.parametrize("versioned", [False, True])
def test_device_data_is_served_to_consumers_with_and_without_a_version(versioned, pool_unchanged):
    arr = pa.array([1.5, 2.5, 3.5, 4.5]).slice(1)
    exporter = arrow_dlpack.to_dlpack(ArrowDeviceProducer(arr, CUDA, 3))
    assert exporter.__dlpack_device__() == (CUDA, 3)
    # JAX asks without max_version and takes "dltensor" only.
    capsule = exporter.__dlpack__(max_version=(1, 0) if versioned else None, stream=1)
    assert capsule_is(capsule, b"dltensor_versioned" if versioned else b"dltensor")
    tensor = tensor_of(capsule, versioned)
    assert (tensor.device.device_type, tensor.device.device_id) == (CUDA, 3)
    assert tensor.data == values_address(arr), "shared, never copied"
    assert tensor.shape[0] == 3 and tensor.byte_offset == 0
    assert exporter.__dlpack_device__() == (CUDA, 3), "the device outlives the move"
    with pytest.raises(BufferError, match="device data goes to one consumer"):
        exporter.__dlpack__(stream=1)
    del capsule  # unconsumed: its destructor deletes the tensor, releasing pyarrow's array


def test_jax_consumes_legacy_capsules_from_the_device_protocol():
    jax = pytest.importorskip("jax")
    # From a list: pyarrow's own 64-byte aligned buffer (JAX copies data
    # that is not aligned enough for XLA; NumPy's is not).
    arr = pa.array(list(range(8)), pa.float32())
    # A producer with the device protocol only, on the CPU (device id -1,
    # as Arrow writes it): the path GPU data takes, minus the GPU.
    x = jax.dlpack.from_dlpack(arrow_dlpack.to_dlpack(ArrowDeviceProducer(arr, 1, -1)))
    np.testing.assert_array_equal(np.asarray(x), np.arange(8, dtype=np.float32))
    assert x.unsafe_buffer_pointer() == values_address(arr)


def test_device_arrays_from_dlpack_go_back_through_the_device_protocol():
    data = np.arange(12, dtype=np.int32).reshape(3, 4)
    producer = DLPackDeviceProducer(data, CUDA, 1)
    imported = arrow_dlpack.from_dlpack(producer)
    # The array API's stream for a consumer without one: the legacy default.
    assert producer.calls == [{"max_version": (1, 3), "stream": 1}]
    assert imported.device == (CUDA, 1)
    with pytest.raises(BufferError, match="use __arrow_c_device_array__"):
        imported.__arrow_c_array__()
    exporter = arrow_dlpack.to_dlpack(imported)  # no wasted export, no hidden error
    assert exporter.__dlpack_device__() == (CUDA, 1)
    capsule = exporter.__dlpack__(max_version=(1, 0), stream=1)
    tensor = tensor_of(capsule, True)
    assert tensor.data == data.ctypes.data
    assert [tensor.shape[i] for i in range(2)] == [3, 4]
    assert [tensor.strides[i] for i in range(2)] == [4, 1]


def test_from_dlpack_passes_each_device_its_default_stream():
    for device, expected in [((1, 0), {}), ((ROCM, 0), {"stream": 0}), ((CUDA_MANAGED, 0), {"stream": 1})]:
        producer = DLPackDeviceProducer(np.arange(3.0), *device)
        imported = arrow_dlpack.from_dlpack(producer)
        assert producer.calls == [{"max_version": (1, 3), **expected}], device
        del imported


def test_requests_that_would_copy_device_data_are_refused_and_nothing_moves():
    arr = pa.array([1, 2, 3], pa.int64())
    exporter = arrow_dlpack.to_dlpack(ArrowDeviceProducer(arr, CUDA, 0))
    with pytest.raises(BufferError, match=r"on device \(2, 0\); \(1, 0\) would need a copy"):
        exporter.__dlpack__(max_version=(1, 0), dl_device=(1, 0))
    with pytest.raises(BufferError, match="never copies device data"):
        exporter.__dlpack__(max_version=(1, 0), copy=True)
    with pytest.raises(BufferError, match="stream=0 is ambiguous"):
        exporter.__dlpack__(max_version=(1, 0), stream=0)
    with pytest.raises(BufferError, match="integer"):
        exporter.__dlpack__(max_version=(1, 0), stream=1.5)
    # The same device, copy=False, a valid stream: shared.
    capsule = exporter.__dlpack__(max_version=(1, 0), dl_device=(CUDA, 0), copy=False, stream=2)
    assert tensor_of(capsule, True).data == values_address(arr)


def test_cpu_streams_are_refused_through_either_protocol():
    for producer in (pa.array([1.0]), ArrowDeviceProducer(pa.array([1.0]), 1, -1)):
        with pytest.raises(BufferError, match="stream must be None for CPU data"):
            arrow_dlpack.to_dlpack(producer).__dlpack__(stream=1)


def test_exports_without_an_event_never_load_a_driver():
    for device_type in (CUDA, ROCM, VULKAN):
        capsule = arrow_dlpack.to_dlpack(ArrowDeviceProducer(pa.array([1.0]), device_type)).__dlpack__(
            max_version=(1, 0), stream=None if device_type == VULKAN else 5
        )
        del capsule
    assert _sync._drivers == {}


@pytest.mark.gpu
@pytest.mark.skipif(
    any(os.path.exists(os.path.join(d, "libcuda.so.1")) for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64")),
    reason="a CUDA driver is installed",
)
def test_an_event_without_a_driver_is_refused_and_nothing_moves():
    exporter = arrow_dlpack.to_dlpack(ArrowDeviceProducer(pa.array([1.0]), CUDA, event=0xE7E7))
    with pytest.raises(BufferError, match=r"CUDA library \(libcuda.so.1"):
        exporter.__dlpack__(max_version=(1, 0), stream=1)
    capsule = exporter.__dlpack__(max_version=(1, 0), stream=-1)  # the consumer synchronizes itself
    assert capsule_is(capsule, b"dltensor_versioned")


# ---- the stream rules, against the fake driver -----------------------------

_CASE = """
import json, sys
sys.path.insert(0, {tests!r})
import pyarrow as pa, arrow_dlpack
from device_producers import ArrowDeviceProducer
device_type, device_id, stream, versioned = json.loads(sys.argv[1])
exporter = arrow_dlpack.to_dlpack(ArrowDeviceProducer(pa.array([1.0, 2.0]), device_type, device_id, event=0xE7E7))
try:
    exporter.__dlpack__(stream=stream, **({{"max_version": (1, 0)}} if versioned else {{}}))
    print("ok")
except BufferError as e:
    print("BufferError:", e)
    exporter.__dlpack__(stream=-1)  # nothing moved: still exportable
"""


@pytest.fixture(scope="module")
def fake_driver(tmp_path_factory):
    libdir = tmp_path_factory.mktemp("fake-driver")
    for name in ("libcuda.so.1", "libamdhip64.so"):
        subprocess.run(
            ["cc", "-shared", "-fPIC", "-o", str(libdir / name), str(HERE / "fake_gpu_driver.c")], check=True
        )
    return libdir


def run_case(fake_driver, tmp_path, device_type, stream, versioned=True, device_id=0, **env):
    log = tmp_path / "calls.log"
    result = subprocess.run(
        [sys.executable, "-c", _CASE.format(tests=str(HERE)), json.dumps([device_type, device_id, stream, versioned])],
        env={**os.environ, "LD_LIBRARY_PATH": str(fake_driver), "FAKE_GPU_LOG": str(log), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines() if log.exists() else []
    return result.stdout.strip().splitlines()[0], [c for c in calls if not c.startswith("cuInit")]


WAIT = "cuStreamWaitEvent stream={} event=0xe7e7 flags=0"


@pytest.mark.parametrize(
    "device_type, stream, outcome, calls",
    [
        # CUDA: None and 1 are the legacy default stream, 2 the per-thread one.
        (CUDA, None, "ok", [WAIT.format("0x1")]),
        (CUDA, 1, "ok", [WAIT.format("0x1")]),
        (CUDA, 2, "ok", [WAIT.format("0x2")]),
        (CUDA, 0x7F00, "ok", [WAIT.format("0x7f00")]),
        (CUDA_MANAGED, None, "ok", [WAIT.format("0x1")]),
        (CUDA, -1, "ok", []),
        (CUDA, 0, "BufferError: stream=0 is ambiguous", []),
        # Pinned host memory read by the host: the host waits.
        (CUDA_HOST, None, "ok", ["cuEventSynchronize event=0xe7e7"]),
        (CUDA_HOST, 0x7F00, "ok", [WAIT.format("0x7f00")]),
        # ROCm: None and 0 are the default stream; 1 and 2 are disallowed.
        (ROCM, None, "ok", ["hipStreamWaitEvent stream=0 event=0xe7e7 flags=0"]),
        (ROCM, 0x7F00, "ok", ["hipStreamWaitEvent stream=0x7f00 event=0xe7e7 flags=0"]),
        (ROCM, 1, "BufferError: stream=1 is disallowed for ROCm", []),
        (ROCM_HOST, None, "ok", ["hipEventSynchronize event=0xe7e7"]),
        # Other devices' events cannot be waited on here.
        (VULKAN, None, "BufferError: the producer set a sync_event for device type 7", []),
        (VULKAN, -1, "ok", []),
    ],
)
def test_the_consumer_stream_waits_on_the_producer_event(fake_driver, tmp_path, device_type, stream, outcome, calls):
    for versioned in (True, False):
        got, recorded = run_case(fake_driver, tmp_path, device_type, stream, versioned)
        assert got.startswith(outcome), got
        assert recorded == calls
        (tmp_path / "calls.log").unlink(missing_ok=True)


def test_a_thread_without_a_context_waits_in_the_device_primary_context(fake_driver, tmp_path):
    got, recorded = run_case(fake_driver, tmp_path, CUDA, None, device_id=3, FAKE_GPU_NO_CONTEXT="1")
    assert got == "ok"
    assert recorded == [
        WAIT.format("0x1") + " -> 201",
        "cuDeviceGet ordinal=3",
        "cuDevicePrimaryCtxRetain device=3",
        "cuCtxPushCurrent context=0xc3",
        WAIT.format("0x1"),
        "cuCtxPopCurrent",
        "cuDevicePrimaryCtxRelease device=3",
    ]
