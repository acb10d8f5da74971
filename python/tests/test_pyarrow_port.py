"""The cases of pyarrow's own test_dlpack.py that apply to arrays, run
against arrow_dlpack.to_dlpack (rewritten, not copied). Differences from
pyarrow: failures are BufferError (the array API's choice), and our
default capsule is legacy only when the consumer asks for it."""

import functools

import numpy as np
import pyarrow as pa
import pytest

import arrow_dlpack
from conftest import NUMERIC_TYPES, capsule_is


def pool_back_to_start(test):
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        start = pa.total_allocated_bytes()
        try:
            return test(*args, **kwargs)
        finally:
            assert pa.total_allocated_bytes() == start

    return wrapper


def round_trip(arr, expected):
    assert capsule_is(arrow_dlpack.to_dlpack(arr).__dlpack__(), b"dltensor")
    exporter = arrow_dlpack.to_dlpack(arr)
    assert exporter.__dlpack_device__() == (1, 0)
    np.testing.assert_array_equal(np.from_dlpack(exporter), expected, strict=True)


@pool_back_to_start
@pytest.mark.parametrize("arrow_type, np_type", NUMERIC_TYPES, ids=lambda t: str(t))
def test_numeric_arrays_and_their_slices(arrow_type, np_type):
    full = np.array([1, 2, 3], dtype=np_type)
    arr = pa.array(full, type=arrow_type)
    round_trip(arr, full)
    round_trip(arr.slice(1, 1), full[1:2])
    round_trip(arr.slice(0, 1), full[0:1])
    round_trip(arr.slice(1), full[1:])
    round_trip(pa.array([], type=arrow_type), np.array([], dtype=np_type))


@pytest.mark.parametrize(
    "arr, match",
    [
        (pa.array([1, None, 3]), "nulls"),
        (pa.array([[0, 1], [3, 4]], type=pa.list_(pa.int32())), "list"),
        (pa.array([]), "null"),  # type null
    ],
)
def test_arrays_dlpack_cannot_represent(arr, match):
    with pytest.raises(BufferError, match=match):
        np.from_dlpack(arrow_dlpack.to_dlpack(arr))
