"""Who frees what, and when: pyarrow's memory pool is the witness."""

import gc
import resource

import numpy as np
import pyarrow as pa

import arrow_dlpack


def _pool() -> int:
    gc.collect()
    return pa.total_allocated_bytes()


def test_the_consumer_array_keeps_the_arrow_buffer_alive_until_deleted():
    start = _pool()
    arr = pa.array(list(range(1000)), pa.int64())
    allocated = _pool()
    assert allocated > start
    x = np.from_dlpack(arrow_dlpack.to_dlpack(arr))
    del arr
    # The buffer (and pyarrow's export bookkeeping) lives on in the tensor.
    assert _pool() >= allocated, "the NumPy array owns the Arrow buffer now"
    assert x[999] == 999
    del x
    assert _pool() == start


def test_an_exporter_that_is_never_consumed_frees_everything():
    start = _pool()
    exporter = arrow_dlpack.to_dlpack(pa.array(list(range(1000)), pa.float64()))
    assert _pool() > start
    del exporter
    assert _pool() == start


def test_a_capsule_that_is_never_consumed_frees_everything():
    start = _pool()
    for max_version in (None, (1, 3)):
        capsule = arrow_dlpack.to_dlpack(pa.array(list(range(1000)), pa.int32())).__dlpack__(max_version=max_version)
        assert _pool() > start
        del capsule
        assert _pool() == start


def test_a_stream_exporter_that_is_never_consumed_frees_everything():
    start = _pool()
    exporter = arrow_dlpack.to_dlpack(pa.chunked_array([pa.array(list(range(1000)), pa.int16())]))
    del exporter
    assert _pool() == start


def test_failed_exports_free_everything():
    start = _pool()
    exporter = arrow_dlpack.to_dlpack(pa.array([1.0, None] * 500))
    try:
        np.from_dlpack(exporter)
    except BufferError:
        pass
    del exporter
    assert _pool() == start


def _max_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def test_100k_cycles_leave_memory_flat():
    arr = pa.array(list(range(100)), pa.int32())
    start = _pool()
    for _ in range(10_000):
        np.from_dlpack(arrow_dlpack.to_dlpack(arr))
    warm_rss = _max_rss_kib()
    for _ in range(100_000):
        x = np.from_dlpack(arrow_dlpack.to_dlpack(arr))
        arrow_dlpack.to_dlpack(arr).__dlpack__(max_version=(1, 0))  # dropped unconsumed
    del x
    assert _pool() == start
    # A leak of even 16 bytes per cycle would show as 3 MiB here.
    assert _max_rss_kib() - warm_rss < 1024
