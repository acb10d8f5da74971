"""arrow_dlpack.from_dlpack: DLPack producers (NumPy, JAX) to Arrow
consumers (pyarrow, nanoarrow), sharing memory."""

import gc
import sys

import numpy as np
import pyarrow as pa
import pytest

import arrow_dlpack
from conftest import NUMERIC_TYPES, data_address, values_address


@pytest.mark.parametrize("arrow_type, np_type", NUMERIC_TYPES, ids=lambda t: str(t))
def test_numpy_arrays_of_every_dtype_are_shared(arrow_type, np_type):
    x = np.arange(10).astype(np_type)[2:]
    arr = pa.array(arrow_dlpack.from_dlpack(x))
    assert arr.type == arrow_type
    assert arr.to_pylist() == x.tolist()
    assert values_address(arr) == data_address(x), "zero-copy"


def test_transposed_inner_dimensions_become_a_permutation():
    y = np.arange(24, dtype=np.float32).reshape(2, 4, 3).transpose(0, 2, 1)
    arr = pa.array(arrow_dlpack.from_dlpack(y))
    assert isinstance(arr.type, pa.FixedShapeTensorType)
    assert arr.type.shape == [4, 3] and arr.type.permutation == [1, 0]
    np.testing.assert_array_equal(arr.to_numpy_ndarray(), y, strict=True)
    assert arr.storage.flatten().buffers()[1].address == data_address(y)


def test_c_order_nd_is_row_major():
    y = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    arr = pa.array(arrow_dlpack.from_dlpack(y))
    assert arr.type.shape == [3, 4] and arr.type.permutation is None
    np.testing.assert_array_equal(arr.to_numpy_ndarray(), y, strict=True)


@pytest.mark.parametrize(
    "x, needle",
    [
        (np.ones((3, 2)).T.copy(order="F"), "outermost"),  # Fortran order: rows not outermost
        (np.arange(10)[::2], "strides [2]"),
        (np.arange(24).reshape(4, 6)[:, ::2], "strides [6, 2]"),
        # Rows outermost, but overlapping inside (strides 4, 1 for extents 2, 3).
        (np.lib.stride_tricks.as_strided(np.arange(12), (2, 2, 3), (48, 32, 8)), "not dense"),
        (np.array([True, False]), "bool"),
        (np.array([1 + 2j]), "complex"),
    ],
)
def test_layouts_and_dtypes_arrow_cannot_share_are_refused_with_copy_false(x, needle):
    before = sys.getrefcount(x)
    with pytest.raises(BufferError, match=needle.replace("[", "\\[")):
        arrow_dlpack.from_dlpack(x, copy=False)
    gc.collect()
    assert sys.getrefcount(x) == before, "the producer's capsule released the tensor"


@pytest.mark.parametrize(
    "x",
    [
        np.arange(6.0).reshape(2, 3).T,  # Fortran order
        np.arange(10)[::2],
        np.arange(10)[::-1],
        np.arange(24, dtype=np.int16).reshape(4, 6)[:, ::2],
        np.broadcast_to(np.arange(3, dtype=np.float32), (4, 3)),
        np.array([True, False, True, True, False, False, True, False, True]),
        np.array([[True, False], [False, True]]).T,
    ],
)
def test_what_arrow_cannot_share_is_copied_once_by_default(x):
    got = pa.array(arrow_dlpack.from_dlpack(x))
    if x.ndim > 1:  # a fixed_shape_tensor without permutation: row-major storage
        assert got.type.permutation is None
        got = got.storage.flatten()
    values = got.to_numpy(zero_copy_only=False).reshape(x.shape)
    np.testing.assert_array_equal(values, x)
    assert values.dtype == x.dtype


def test_copy_true_always_copies_and_copy_false_shares():
    x = np.arange(5, dtype=np.int64)
    shared = pa.array(arrow_dlpack.from_dlpack(x, copy=False))
    assert shared.buffers()[1].address == x.ctypes.data
    copied = pa.array(arrow_dlpack.from_dlpack(x, copy=True))
    assert copied.buffers()[1].address != x.ctypes.data
    assert copied.buffers()[1].address % 64 == 0
    assert copied.to_pylist() == [0, 1, 2, 3, 4]
    with pytest.raises(BufferError, match="complex"):
        arrow_dlpack.from_dlpack(np.array([1j]), copy=True)


def test_zero_d_and_empty_arrays():
    assert pa.array(arrow_dlpack.from_dlpack(np.array(3.5))).to_pylist() == [3.5]
    assert len(pa.array(arrow_dlpack.from_dlpack(np.zeros(0, np.int32)))) == 0
    arr = pa.array(arrow_dlpack.from_dlpack(np.zeros((0, 3), np.float64)))
    assert len(arr) == 0 and arr.type.shape == [3]


def test_other_arrow_consumers():
    x = np.arange(5, dtype=np.int64)
    assert pa.record_batch({"x": arrow_dlpack.from_dlpack(x)}).num_rows == 5
    na = pytest.importorskip("nanoarrow")
    assert na.Array(arrow_dlpack.from_dlpack(x)).to_pylist() == [0, 1, 2, 3, 4]


def test_polars_consumer():
    pl = pytest.importorskip("polars")
    s = pl.Series(arrow_dlpack.from_dlpack(np.arange(4, dtype=np.float64)))
    assert s.to_list() == [0.0, 1.0, 2.0, 3.0]


def test_jax_arrays():
    jnp = pytest.importorskip("jax.numpy")
    x = jnp.arange(8, dtype=jnp.float32)
    arr = pa.array(arrow_dlpack.from_dlpack(x))
    assert arr.to_pylist() == list(range(8))
    assert values_address(arr) == x.unsafe_buffer_pointer()


def test_round_trip_arrow_dlpack_arrow_keeps_the_pointer():
    a = pa.array([1.0, 2.0, 3.0, 4.0]).slice(1)
    b = pa.array(arrow_dlpack.from_dlpack(arrow_dlpack.to_dlpack(a)))
    assert values_address(b) == values_address(a)
    assert b.to_pylist() == [2.0, 3.0, 4.0]


def test_round_trip_dlpack_arrow_dlpack_keeps_the_pointer():
    x = np.arange(12, dtype=np.int32).reshape(3, 4)
    y = np.from_dlpack(arrow_dlpack.to_dlpack(pa.array(arrow_dlpack.from_dlpack(x))))
    assert data_address(y) == data_address(x)
    np.testing.assert_array_equal(y, x, strict=True)


def test_references_and_pool_return_to_their_start():
    x = np.arange(1000, dtype=np.float64)
    gc.collect()
    refs, pool = sys.getrefcount(x), pa.total_allocated_bytes()
    arr = pa.array(arrow_dlpack.from_dlpack(x))
    assert sys.getrefcount(x) == refs + 1, "the Arrow array holds the NumPy array"
    del arr
    gc.collect()
    assert (sys.getrefcount(x), pa.total_allocated_bytes()) == (refs, pool)
    unconsumed = arrow_dlpack.from_dlpack(x)
    del unconsumed
    gc.collect()
    assert sys.getrefcount(x) == refs, "an array nobody took releases the tensor"


def test_protocol_errors():
    with pytest.raises(TypeError, match="needs an object with __dlpack__"):
        arrow_dlpack.from_dlpack([1, 2, 3])
    imported = arrow_dlpack.from_dlpack(np.arange(3))
    assert len(imported) == 3
    pa.array(imported)
    with pytest.raises(BufferError, match="already consumed"):
        pa.array(imported)


def test_legacy_producers_are_imported():
    class Legacy:
        def __init__(self, x):
            self.x = x

        def __dlpack__(self, stream=None):  # no max_version: pre-1.0
            return self.x.__dlpack__()

        def __dlpack_device__(self):
            return self.x.__dlpack_device__()

    x = np.arange(4, dtype=np.uint8)
    arr = pa.array(arrow_dlpack.from_dlpack(Legacy(x)))
    assert values_address(arr) == data_address(x)
