"""N-D tensors from fixed_size_list and arrow.fixed_shape_tensor, shared
with NumPy without a copy."""

import itertools
import random

import numpy as np
import pyarrow as pa
import pytest

import arrow_dlpack
from conftest import data_address


def storage_address(arr) -> int:
    """Address of the first element a (fixed-size-list based) array covers."""
    storage = arr.storage if isinstance(arr, pa.ExtensionArray) else arr
    values = storage.flatten()  # the child sliced by the parent's offset * list size
    return values.buffers()[1].address + values.offset * values.type.bit_width // 8


def test_fixed_size_list_is_2d():
    arr = pa.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], pa.list_(pa.float32(), 3)).slice(1)
    x = np.from_dlpack(arrow_dlpack.to_dlpack(arr))
    np.testing.assert_array_equal(x, np.array([[4, 5, 6], [7, 8, 9]], np.float32), strict=True)
    assert data_address(x) == storage_address(arr)
    assert not x.flags.writeable


def test_nested_fixed_size_lists_are_nd():
    inner = pa.list_(pa.int16(), 2)
    arr = pa.array([[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 10], [11, 12]]], pa.list_(inner, 3))
    x = np.from_dlpack(arrow_dlpack.to_dlpack(arr))
    np.testing.assert_array_equal(x, np.arange(1, 13, dtype=np.int16).reshape(2, 3, 2), strict=True)


def reference(storage: np.ndarray, shape, permutation) -> np.ndarray:
    """The specification's meaning: each row is a row-major tensor of the
    physical `shape`; logical dimension i is physical dimension permutation[i]."""
    rows = storage.reshape((len(storage),) + tuple(shape))
    return rows.transpose((0,) + tuple(p + 1 for p in permutation))


def random_cases(count: int, seed: int = 7):
    rng = random.Random(seed)
    for _ in range(count):
        ndim = rng.randint(1, 4)
        shape = [rng.randint(1, 4) for _ in range(ndim)]
        permutation = list(range(ndim))
        rng.shuffle(permutation)
        length = rng.randint(0, 6)
        offset = rng.randint(0, length)
        yield shape, permutation, length, offset, rng.choice([pa.int8(), pa.uint16(), pa.float32(), pa.float64()])


@pytest.mark.parametrize("shape, permutation, length, offset, value_type", list(random_cases(40)))
def test_fixed_shape_tensors_match_the_specification(shape, permutation, length, offset, value_type):
    size = int(np.prod(shape))
    flat = np.arange(length * size).astype(value_type.to_pandas_dtype())
    storage = pa.FixedSizeListArray.from_arrays(pa.array(flat, value_type), size)
    tensor_type = pa.fixed_shape_tensor(value_type, shape, permutation=permutation)
    arr = pa.ExtensionArray.from_storage(tensor_type, storage).slice(offset)

    x = np.from_dlpack(arrow_dlpack.to_dlpack(arr))
    expected = reference(flat.reshape(length, size), shape, permutation)[offset:]
    np.testing.assert_array_equal(x, expected, strict=True)
    if x.size:
        assert data_address(x) == storage_address(arr), "shared, not copied"
    # pyarrow agrees wherever its own conversion is consistent: it applies
    # the permutation's inverse, which is the same permutation only when
    # the permutation is its own inverse (pyarrow 26 returns overlapping
    # strides for 3-cycles such as [2, 0, 1]).
    is_involution = all(permutation[permutation[i]] == i for i in range(len(permutation)))
    if is_involution and len(arr):
        np.testing.assert_array_equal(x, arr.to_numpy_ndarray(), strict=True)


def test_issue_example_shape_234_permutation_201():
    shape, permutation = [2, 3, 4], [2, 0, 1]
    flat = np.arange(48, dtype=np.int32)
    storage = pa.FixedSizeListArray.from_arrays(pa.array(flat), 24)
    arr = pa.ExtensionArray.from_storage(pa.fixed_shape_tensor(pa.int32(), shape, permutation=permutation), storage)
    x = np.from_dlpack(arrow_dlpack.to_dlpack(arr))
    assert x.shape == (2, 4, 2, 3)
    assert x.strides == (96, 4, 48, 16)
    np.testing.assert_array_equal(x[1], flat[24:].reshape(2, 3, 4).transpose(2, 0, 1))


def test_nulls_at_any_level_are_refused():
    with pytest.raises(BufferError, match="nulls"):
        np.from_dlpack(arrow_dlpack.to_dlpack(pa.array([[1, 2], None], pa.list_(pa.int32(), 2))))
    with pytest.raises(BufferError, match="child 0: array has 1 nulls"):
        np.from_dlpack(arrow_dlpack.to_dlpack(pa.array([[1, 2], [None, 4]], pa.list_(pa.int32(), 2))))


def test_a_null_outside_the_slice_does_not_matter():
    arr = pa.array([[1, None], [3, 4], [5, 6]], pa.list_(pa.int32(), 2)).slice(1)
    np.testing.assert_array_equal(np.from_dlpack(arrow_dlpack.to_dlpack(arr)), [[3, 4], [5, 6]])


def test_variable_size_lists_stay_unsupported():
    with pytest.raises(BufferError, match="list"):
        np.from_dlpack(arrow_dlpack.to_dlpack(pa.array([[1], [2, 3]])))
