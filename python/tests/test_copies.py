"""One copy where sharing is impossible: booleans, nulls, dtypes, temporal
storage, chunked streams, under the array API's ``copy`` keyword. pyarrow
and NumPy are the oracles (``to_numpy``, ``fill_null``, ``cast``,
``astype``), on examples and on hypothesis's random arrays."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import arrow_dlpack
from conftest import NUMERIC_TYPES, data_address, values_address


def export(obj, copy=None, **kwargs):
    return np.from_dlpack(arrow_dlpack.to_dlpack(obj, **kwargs), copy=copy)


def test_booleans_are_unpacked_at_any_bit_offset():
    arr = pa.array([True, False, True, True, False, True, True, False, False, True]).slice(3, 6)
    x = export(arr)
    assert x.dtype == np.bool_ and x.flags.writeable
    np.testing.assert_array_equal(x, arr.to_numpy(zero_copy_only=False))
    with pytest.raises(BufferError, match="unpacking boolean bits"):
        export(arr, copy=False)


def test_nulls_become_the_null_value_and_validity_masks_them():
    arr = pa.array([1.5, None, 3.5, None])
    with pytest.raises(BufferError, match="1 nulls|2 nulls"):
        export(arr)
    x = export(arr, null_value=-1)
    np.testing.assert_array_equal(x, pc.fill_null(arr, -1.0).to_numpy())
    np.testing.assert_array_equal(np.from_dlpack(arrow_dlpack.validity(arr)), [True, False, True, False])
    with pytest.raises(BufferError, match="filling nulls"):
        export(arr, copy=False, null_value=0)
    with pytest.raises(BufferError, match="cannot be held exactly"):
        export(pa.array([1, None], pa.int8()), null_value=1000)
    with pytest.raises(BufferError, match="cannot be held exactly"):
        export(pa.array([1, None], pa.int32()), null_value=0.5)


def test_list_level_nulls_fill_whole_rows():
    arr = pa.array([[1, 2], None, [5, None]], pa.list_(pa.int16(), 2))
    x = export(arr, null_value=0)
    np.testing.assert_array_equal(x, [[1, 2], [0, 0], [5, 0]])
    mask = np.from_dlpack(arrow_dlpack.validity(arr))
    np.testing.assert_array_equal(mask, [[True, True], [False, False], [True, False]])


def test_dtypes_convert_as_astype():
    arr = pa.array([-2.7, 2.7, 100.25])
    np.testing.assert_array_equal(export(arr, dtype="int32"), np.array([-2.7, 2.7, 100.25]).astype(np.int32))
    np.testing.assert_array_equal(export(arr, dtype=np.float16), np.array([-2.7, 2.7, 100.25]).astype(np.float16))
    assert export(pa.array([0, 3], pa.int8()), dtype="bool").tolist() == [False, True]
    with pytest.raises(TypeError, match="unsupported dtype"):
        arrow_dlpack.to_dlpack(arr, dtype="complex64")
    # The array's own dtype named: still shared.
    y = export(arr, copy=False, dtype="float64")
    assert data_address(y) == values_address(arr)


def test_temporal_types_share_their_integer_storage():
    for arr in [
        pa.array([1, 2], pa.date32()),
        pa.array([1, 2], pa.timestamp("us", tz="UTC")),
        pa.array([1, 2], pa.duration("ns")),
        pa.array([1, 2], pa.time32("ms")),
    ]:
        x = export(arr, copy=False, temporal_as_int=True)
        assert data_address(x) == values_address(arr) and not x.flags.writeable
        np.testing.assert_array_equal(x, arr.cast(pa.int32() if arr.type.bit_width == 32 else pa.int64()).to_numpy())
    with pytest.raises(BufferError, match="integer storage"):
        export(pa.array([1], pa.date32()))


def test_streams_of_every_producer():
    chunked = pa.chunked_array([[1, 2], [], [3, 4, 5]], pa.float32())
    np.testing.assert_array_equal(export(chunked), chunked.to_numpy())
    one = pa.chunked_array([[1.0, 2.0]])
    y = export(one, copy=False)
    assert data_address(y) == values_address(one.chunk(0))
    empty = export(pa.chunked_array([], pa.int16()))
    assert empty.shape == (0,) and empty.dtype == np.int16
    pl = pytest.importorskip("polars")
    series = pl.concat([pl.Series([1, 2], dtype=pl.Int32), pl.Series([3], dtype=pl.Int32)], rechunk=False)
    assert series.n_chunks() == 2
    np.testing.assert_array_equal(export(series), [1, 2, 3])
    nd = pa.chunked_array([pa.array([[1, 2]], pa.list_(pa.int8(), 2)), pa.array([[3, 4], [5, 6]], pa.list_(pa.int8(), 2))])
    np.testing.assert_array_equal(export(nd), [[1, 2], [3, 4], [5, 6]])


def test_copy_true_is_always_a_private_writable_copy():
    arr = pa.array([1, 2, 3], pa.int64())
    x = export(arr, copy=True)
    assert x.flags.writeable and data_address(x) != values_address(arr)
    assert data_address(x) % 64 == 0


def test_torch_consumes_copies_where_installed():
    torch = pytest.importorskip("torch")
    t = torch.from_dlpack(arrow_dlpack.to_dlpack(pa.array([True, False, True])))
    assert t.dtype == torch.bool and t.tolist() == [True, False, True]


def test_jax_takes_copies_as_legacy_capsules():
    jnp = pytest.importorskip("jax.numpy")
    x = jnp.from_dlpack(arrow_dlpack.to_dlpack(pa.chunked_array([[1.5], [2.5, 3.5]])))
    np.testing.assert_array_equal(np.asarray(x), [1.5, 2.5, 3.5])


# ---- differential, against pyarrow and NumPy --------------------------------

TYPES = [t for t, _ in NUMERIC_TYPES] + [pa.bool_()]


@st.composite
def arrays(draw, nulls=True, arrow_type=None):
    arrow_type = arrow_type or draw(st.sampled_from(TYPES))
    n = draw(st.integers(0, 70))
    np_type = arrow_type.to_pandas_dtype()
    if arrow_type == pa.bool_():
        values = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    elif pa.types.is_floating(arrow_type):
        values = draw(st.lists(st.floats(-1e4, 1e4, width=16), min_size=n, max_size=n))
    else:
        info = np.iinfo(np_type)
        values = draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=n, max_size=n))
    mask = draw(st.lists(st.booleans(), min_size=n, max_size=n)) if nulls else [False] * n
    arr = pa.array(np.array(values, dtype=np_type), type=arrow_type, mask=np.array(mask, dtype=bool))
    start = draw(st.integers(0, n))
    return arr.slice(start, draw(st.integers(0, n - start)))


@settings(max_examples=300, deadline=None)
@given(arrays(nulls=False))
def test_exports_equal_pyarrow_to_numpy(arr):
    x = export(arr)
    expected = arr.to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(x, expected)
    assert x.dtype == expected.dtype
    shared = arr.type != pa.bool_() and len(arr) > 0
    assert (data_address(x) == values_address(arr)) == shared, "zero-copy exactly when sharing is possible"


@settings(max_examples=300, deadline=None)
@given(arrays(), st.integers(-3, 3))
def test_filled_exports_equal_pyarrow_fill_null(arr, value):
    if arr.type == pa.bool_():
        value = value % 2
    elif pa.types.is_unsigned_integer(arr.type):
        value = abs(value)
    expected = pc.fill_null(arr, pa.scalar(value).cast(arr.type)).to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(export(arr, null_value=value), expected)
    mask = np.from_dlpack(arrow_dlpack.validity(arr))
    np.testing.assert_array_equal(mask, arr.is_valid().to_numpy(zero_copy_only=False))


@settings(max_examples=300, deadline=None)
@given(arrays(nulls=False), st.sampled_from(["int8", "uint16", "int32", "int64", "float16", "float32", "float64", "bool"]))
def test_conversions_equal_numpy_astype(arr, dtype):
    source = arr.to_numpy(zero_copy_only=False)
    if source.dtype.kind == "f" and dtype not in ("float16", "float32", "float64", "bool"):
        # Out of range or NaN float -> int is undefined in NumPy: in range only.
        info = np.iinfo(dtype)
        bounds = np.clip(np.nan_to_num(source.astype(np.float64)), info.min / 2, info.max / 2)
        source = bounds.astype(source.dtype)
        arr = pa.array(source, type=arr.type)
    with np.errstate(all="ignore"):
        expected = source.astype(dtype)
    np.testing.assert_array_equal(export(arr, dtype=dtype), expected)


@settings(max_examples=200, deadline=None)
@given(st.data(), st.sampled_from([pa.int32(), pa.float64(), pa.bool_()]))
def test_chunked_exports_equal_pyarrow(data, arrow_type):
    chunks = data.draw(st.lists(arrays(nulls=False, arrow_type=arrow_type), max_size=5))
    chunked = pa.chunked_array(chunks, arrow_type)
    np.testing.assert_array_equal(export(chunked), chunked.to_numpy())
    non_empty = [c for c in chunked.chunks if len(c)]
    shared = len(non_empty) == 1 and arrow_type != pa.bool_()
    x = export(chunked, copy=None)
    assert (not x.flags.writeable) == shared, "read-only exactly when shared"


def test_messages_name_the_python_keywords_not_the_c_fields():
    def message(call) -> str:
        with pytest.raises(BufferError) as e:
            call()
        assert "options." not in str(e.value) and "ARROW_DLPACK_" not in str(e.value), e.value
        return str(e.value)

    nulls = pa.array([1, None, 3])
    assert "pass null_value=" in message(lambda: np.from_dlpack(arrow_dlpack.to_dlpack(nulls)))
    assert "null_value=nan cannot be held exactly by the tensor's dtype int64" in message(
        lambda: np.from_dlpack(arrow_dlpack.to_dlpack(nulls, null_value=float("nan")))
    ).lower()
    assert "which copy=False forbids" in message(
        lambda: arrow_dlpack.to_dlpack(pa.array([True])).__dlpack__(max_version=(1, 0), copy=False)
    )
    assert "dictionary_as_indices=True" in message(
        lambda: np.from_dlpack(arrow_dlpack.to_dlpack(pa.array(["a", "b"]).dictionary_encode()))
    )
    assert "arrow_dlpack.to_jagged" in message(
        lambda: np.from_dlpack(arrow_dlpack.to_dlpack(pa.array([[1], [2, 3]])))
    )
