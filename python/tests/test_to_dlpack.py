"""arrow_dlpack.to_dlpack with real producers and real consumers."""

import os
import sys

import numpy as np
import pyarrow as pa
import pytest

import arrow_dlpack
from conftest import NUMERIC_TYPES, capsule_is, data_address, values_address


def test_the_installed_package_is_under_test():
    # The wheel in a fresh environment, not the source tree.
    assert "site-packages" in arrow_dlpack.__file__ or os.environ.get("ARROW_DLPACK_LIBRARY")
    assert arrow_dlpack.__version__ == "0.1.0"


@pytest.mark.parametrize("arrow_type, np_type", NUMERIC_TYPES, ids=lambda t: str(t))
@pytest.mark.parametrize("offset, length", [(0, 7), (1, 5), (3, 4), (6, 1), (7, 0), (0, 0)])
def test_every_type_and_slice_is_shared_read_only(arrow_type, np_type, offset, length, pool_unchanged):
    expected = np.arange(7).astype(np_type)
    arr = pa.array(expected, type=arrow_type).slice(offset, length)
    x = np.from_dlpack(arrow_dlpack.to_dlpack(arr))
    assert x.dtype == np_type
    np.testing.assert_array_equal(x, expected[offset : offset + length], strict=True)
    if length:
        assert not x.flags.writeable, "versioned tensors carry the read-only flag"
        assert data_address(x) == values_address(arr)


def test_legacy_and_versioned_capsules():
    arr = pa.array([1, 2, 3], pa.int64())
    assert capsule_is(arrow_dlpack.to_dlpack(arr).__dlpack__(), b"dltensor")
    assert capsule_is(arrow_dlpack.to_dlpack(arr).__dlpack__(max_version=(0, 8)), b"dltensor")
    assert capsule_is(arrow_dlpack.to_dlpack(arr).__dlpack__(max_version=(1, 0)), b"dltensor_versioned")
    assert capsule_is(arrow_dlpack.to_dlpack(arr).__dlpack__(max_version=(2, 1)), b"dltensor_versioned")


def test_a_consumer_of_legacy_capsules_shares_memory():
    arr = pa.array([4.0, 5.0, 6.0])

    class LegacyOnly:
        # A producer written before DLPack 1.0: no max_version keyword.
        def __init__(self, exporter):
            self.exporter = exporter

        def __dlpack__(self, stream=None):
            return self.exporter.__dlpack__(stream=stream)

        def __dlpack_device__(self):
            return self.exporter.__dlpack_device__()

    x = np.from_dlpack(LegacyOnly(arrow_dlpack.to_dlpack(arr)))
    np.testing.assert_array_equal(x, [4.0, 5.0, 6.0])
    assert data_address(x) == values_address(arr)


def test_device_is_cpu():
    assert arrow_dlpack.to_dlpack(pa.array([1])).__dlpack_device__() == (1, 0)


def test_nanoarrow_producer():
    na = pytest.importorskip("nanoarrow")
    arr = na.c_array([1, 2, 3, 4], na.int32())
    x = np.from_dlpack(arrow_dlpack.to_dlpack(arr))
    np.testing.assert_array_equal(x, np.array([1, 2, 3, 4], np.int32), strict=True)
    assert data_address(x) == arr.view().buffer(1)._addr()


def test_arro3_producer():
    arro3 = pytest.importorskip("arro3.core")
    source = pa.array([1.0, 2.0, 3.0], pa.float32())
    arr = arro3.Array.from_arrow(source)
    x = np.from_dlpack(arrow_dlpack.to_dlpack(arr))
    np.testing.assert_array_equal(x, np.array([1, 2, 3], np.float32), strict=True)
    # arro3 imports the pyarrow buffers without copying: the same memory.
    assert data_address(x) == values_address(source)


def test_one_chunk_stream():
    chunked = pa.chunked_array([pa.array([7, 8, 9], pa.int16())])
    x = np.from_dlpack(arrow_dlpack.to_dlpack(chunked))
    np.testing.assert_array_equal(x, np.array([7, 8, 9], np.int16), strict=True)
    assert data_address(x) == values_address(chunked.chunk(0))


def test_several_chunks_are_concatenated_by_one_copy():
    chunked = pa.chunked_array([[1, 2], [3]], pa.int64())
    x = np.from_dlpack(arrow_dlpack.to_dlpack(chunked))
    np.testing.assert_array_equal(x, [1, 2, 3])
    assert x.flags.writeable  # a copy
    with pytest.raises(BufferError, match="concatenating the chunks"):
        np.from_dlpack(arrow_dlpack.to_dlpack(chunked), copy=False)


def test_objects_without_arrow_interfaces_are_type_errors():
    with pytest.raises(TypeError, match="needs an Arrow array.*got builtins.list"):
        arrow_dlpack.to_dlpack([1, 2, 3])
    with pytest.raises(TypeError):
        arrow_dlpack.to_dlpack(np.arange(3))


@pytest.mark.parametrize(
    "arr, message",
    [
        (pa.array([1, None, 3]), "array has 1 nulls; DLPack cannot represent missing values"),
        (pa.array(["a", "b"]), "unsupported format 'u' \\(utf8\\)"),
        (pa.array([1, 2], pa.timestamp("us")), "cast to its integer storage"),
        (pa.array([[1, 2]], pa.list_(pa.int32())), "unsupported format '\\+l' \\(list\\)"),
        (pa.array([], pa.null()), "null"),
    ],
)
def test_export_failures_are_buffer_errors_with_the_library_message(arr, message, pool_unchanged):
    exporter = arrow_dlpack.to_dlpack(arr)
    with pytest.raises(BufferError, match=message):
        np.from_dlpack(exporter)
    # The array was not moved: the failure is repeatable.
    with pytest.raises(BufferError, match=message):
        exporter.__dlpack__(max_version=(1, 0))
    del exporter


def test_protocol_rules():
    arr = pa.array([1, 2, 3], pa.int32())
    copied = np.from_dlpack(arrow_dlpack.to_dlpack(arr), copy=True)
    assert copied.flags.writeable and data_address(copied) != values_address(arr)
    copied[0] = 7  # a private copy: the Arrow array is untouched
    assert arr.to_pylist() == [1, 2, 3]
    shared = np.from_dlpack(arrow_dlpack.to_dlpack(arr), copy=False)
    assert not shared.flags.writeable and data_address(shared) == values_address(arr)
    with pytest.raises(BufferError, match="device"):
        arrow_dlpack.to_dlpack(arr).__dlpack__(dl_device=(2, 0))
    assert capsule_is(arrow_dlpack.to_dlpack(arr).__dlpack__(dl_device=(1, 0)), b"dltensor")
    with pytest.raises(BufferError, match="stream must be None"):
        arrow_dlpack.to_dlpack(arr).__dlpack__(stream=1)
    exporter = arrow_dlpack.to_dlpack(arr)
    first = np.from_dlpack(exporter)
    # Consumed any number of times, as a pyarrow array can be: each a
    # view of the same memory; copy=True then refused (they share it).
    second = np.from_dlpack(exporter)
    assert data_address(first) == data_address(second) == values_address(arr)
    with pytest.raises(BufferError, match="copy=True: this exporter's data was handed out already"):
        exporter.__dlpack__(max_version=(1, 0), copy=True)


def test_jax_shares_memory():
    jnp = pytest.importorskip("jax.numpy")
    # Built from a list: pyarrow's own 64-byte aligned buffer (JAX copies
    # data that is not aligned enough for XLA).
    arr = pa.array(list(range(16)), pa.float32())
    x = jnp.from_dlpack(arrow_dlpack.to_dlpack(arr))
    np.testing.assert_array_equal(np.asarray(x), np.arange(16, dtype=np.float32))
    assert x.unsafe_buffer_pointer() == values_address(arr)
    sliced = arr.slice(3, 5)
    np.testing.assert_array_equal(np.asarray(jnp.from_dlpack(arrow_dlpack.to_dlpack(sliced))), [3, 4, 5, 6, 7])


def test_torch_shares_memory():
    torch = pytest.importorskip("torch")
    arr = pa.array([1.0, 2.0, 3.0], pa.float64()).slice(1)
    t = torch.from_dlpack(arrow_dlpack.to_dlpack(arr))
    assert t.tolist() == [2.0, 3.0]
    assert t.data_ptr() == values_address(arr)


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="reference counts are CPython's")
def test_numpy_does_not_keep_the_exporter_alive():
    arr = pa.array([1, 2, 3])
    exporter = arrow_dlpack.to_dlpack(arr)
    before = sys.getrefcount(exporter)
    x = np.from_dlpack(exporter)
    assert sys.getrefcount(exporter) == before
    del x
