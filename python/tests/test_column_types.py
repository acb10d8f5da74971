"""More column types: decimals, fixed-size binary, struct columns, run-end
encoded and null columns, each checked against pyarrow as the oracle
(its ``cast``, ``np.frombuffer``, ``pc.run_end_decode``,
``Table.flatten``), in every face: ``to_dlpack``, 2-D tables, ``batches``
and the ``Loader``; real producers (DuckDB, Hugging Face datasets); and
each malformed or unsupported form refused with a message naming it.
"""

from __future__ import annotations

import decimal
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import arrow_dlpack as ad
from arrow_dlpack import Loader

from conftest import values_address


# Exact for every decimal256 (76 digits).
EXACT = decimal.Context(prec=100)


def ulps(a: float, b: float) -> int:
    """Distance in float64 steps between two finite floats of one sign."""
    if a == b:
        return 0
    ia, ib = (np.array([v], np.float64).view(np.int64)[0] for v in (a, b))
    return abs(int(ia) - int(ib))


def numpy_of(obj, **kw):
    return np.from_dlpack(ad.to_dlpack(obj, **kw))


# ---- decimals ---------------------------------------------------------------


@st.composite
def decimals(draw):
    wide = draw(st.booleans())
    precision = draw(st.integers(1, 76 if wide else 38))
    scale = draw(st.integers(-10, precision + 5))
    limit = 10**precision - 1
    edge = st.sampled_from([limit, -limit, 1, -1, 0])
    digits = draw(st.lists(st.one_of(edge, st.integers(-limit, limit)), min_size=1, max_size=30))
    t = pa.decimal256(precision, scale) if wide else pa.decimal128(precision, scale)
    nulls = draw(st.lists(st.booleans(), min_size=len(digits), max_size=len(digits)))
    start = draw(st.integers(0, len(digits) - 1))
    return t, digits, scale, nulls, start


def decimal_array(t, digits, nulls):
    """The decimal array of these unscaled integers, built from its
    buffers (pyarrow's conversion from ``Decimal`` objects refuses a scale
    above the precision)."""
    width = t.bit_width // 8
    data = b"".join(d.to_bytes(width, "little", signed=True) for d in digits)
    valid = np.packbits(~np.array(nulls, bool), bitorder="little").tobytes()
    return pa.Array.from_buffers(t, len(digits), [pa.py_buffer(valid), pa.py_buffer(data)], null_count=sum(nulls))


@settings(max_examples=150, deadline=None)
@given(decimals())
def test_decimals_are_the_nearest_float_and_no_farther_than_pyarrows_cast(case):
    t, digits, scale, nulls, start = case
    arr = decimal_array(t, digits, nulls).slice(start)
    got = numpy_of(arr, dtype="float64", null_value=math.nan)
    assert got.dtype == np.float64 and len(got) == len(arr)
    theirs = pc.cast(arr, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    for i, d in enumerate(digits[start:]):
        if nulls[start + i]:
            assert math.isnan(got[i])
            continue
        exact = float(decimal.Decimal(d).scaleb(-scale, EXACT))  # correctly rounded
        assert ulps(got[i], exact) <= 1, (d, scale, got[i], exact)
        assert ulps(got[i], exact) <= ulps(theirs[i], exact), (d, scale, got[i], theirs[i], exact)
        if len(str(abs(d)).lstrip("0")) <= 15 and abs(scale) <= 22:
            assert got[i] == exact, "at most 15 significant digits: exact"


def test_decimals_as_float32_round_and_overflow_to_infinity():
    arr = pa.array([decimal.Decimal("1.25"), decimal.Decimal("-0.1"), decimal.Decimal("9" * 40)], pa.decimal256(42, 2))
    got = numpy_of(arr, dtype="float32")
    assert got.dtype == np.float32
    assert got[0] == np.float32(1.25) and got[1] == np.float32(-0.1)
    assert got[2] == np.inf, "beyond float32's range: infinity, as NumPy's astype"
    assert numpy_of(arr, dtype="float64").dtype == np.float64


def test_decimals_without_a_float_dtype_name_the_option():
    arr = pa.array([decimal.Decimal("1.50")], pa.decimal128(5, 2))
    for kw in ({}, {"dtype": "int64"}, {"dtype": "float16"}):
        with pytest.raises(BufferError, match=r"decimal128 \(scale 2\).*pass dtype='float64' or dtype='float32'"):
            numpy_of(arr, **kw)
    t = pa.table({"d": arr, "x": [1]})
    with pytest.raises(BufferError, match="column 0 'd': unsupported type decimal128"):
        numpy_of(t)
    # With a dtype, the decimal column is converted with the others.
    assert numpy_of(t, dtype="float64").tolist() == [[1.5, 1.0]]


def test_decimals_from_duckdb_reach_torch():
    duckdb = pytest.importorskip("duckdb")
    torch = pytest.importorskip("torch")
    con = duckdb.connect()
    t = con.sql(
        "select sum(i) as total, cast(i / 7 as decimal(18, 4)) as d from range(1, 41) r(i) group by i order by i"
    ).arrow()
    t = t.read_all() if hasattr(t, "read_all") else t
    assert pa.types.is_decimal(t.schema.field("total").type) and pa.types.is_decimal(t.schema.field("d").type)
    got = {"total": [], "d": []}
    for b in ad.batches(t, 16, dtype="float64"):
        for k in got:
            got[k] += torch.from_dlpack(b[k]).tolist()
    assert got["total"] == [float(i) for i in range(1, 41)]
    assert got["d"] == [float(decimal.Decimal(i / 7).quantize(decimal.Decimal("0.0001"))) for i in range(1, 41)]


# ---- fixed-size binary ------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 17), st.integers(1, 40), st.data())
def test_fixed_size_binary_is_shared_as_rows_of_bytes(width, rows, data):
    raw = bytes(data.draw(st.binary(min_size=width * rows, max_size=width * rows)))
    arr = pa.array([raw[i * width : (i + 1) * width] for i in range(rows)], pa.binary(width))
    start = data.draw(st.integers(0, rows))
    part = arr.slice(start)
    got = numpy_of(part)
    assert got.dtype == np.uint8 and got.shape == (rows - start, width)
    want = np.frombuffer(raw, np.uint8).reshape(rows, width)[start:]
    np.testing.assert_array_equal(got, want)
    if got.size:
        assert got.ctypes.data == values_address(part), "zero-copy: the slice's first row"


def test_fixed_size_binary_nulls_tables_and_loaders():
    arr = pa.array([b"ab", None, b"ef"], pa.binary(2))
    with pytest.raises(BufferError, match="1 nulls"):
        numpy_of(arr)
    assert numpy_of(arr, null_value=0).tolist() == [[97, 98], [0, 0], [101, 102]]
    t = pa.table({"h": pa.array([bytes([i, i + 1]) for i in range(10)], pa.binary(2)), "x": np.arange(10)})
    rows = [np.from_dlpack(b["h"]) for b in ad.batches(t, 4)]
    assert np.concatenate(rows).tolist() == [[i, i + 1] for i in range(10)]
    seen = {}
    for b in Loader(t, 3, shuffle=True, seed=2):
        for x, h in zip(np.from_dlpack(b["x"]).tolist(), np.from_dlpack(b["h"]).tolist()):
            seen[x] = h
    assert seen == {i: [i, i + 1] for i in range(10)}


# ---- run-end encoded --------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 5), st.one_of(st.none(), st.integers(-100, 100))), min_size=0, max_size=20),
    st.sampled_from([pa.int16(), pa.int32(), pa.int64()]),
    st.data(),
)
def test_run_end_encoded_columns_decode_as_pyarrow_does(runs, ends_type, data):
    ends = np.cumsum([n for n, _ in runs]).astype(np.int64) if runs else np.array([], np.int64)
    values = pa.array([v for _, v in runs], pa.int32())
    arr = pa.RunEndEncodedArray.from_arrays(pa.array(ends, ends_type), values)
    n = len(arr)
    start = data.draw(st.integers(0, n))
    length = data.draw(st.integers(0, n - start))
    part = arr.slice(start, length)
    want = pc.run_end_decode(part).to_numpy(zero_copy_only=False)
    want = [-1 if v is None or (isinstance(v, float) and math.isnan(v)) else int(v) for v in want]
    got = numpy_of(part, null_value=-1)
    assert got.dtype == np.int32 and got.tolist() == want
    if any(v == -1 for v in want) and -1 not in [v for _, v in runs]:
        with pytest.raises(BufferError, match="nulls"):
            numpy_of(part)


def test_run_end_encoded_in_batches_and_loaders():
    arr = pa.RunEndEncodedArray.from_arrays(pa.array([3, 7, 10], pa.int32()), pa.array([1.5, 2.5, 3.5]))
    t = pa.table({"r": arr, "x": np.arange(10)})
    want = pc.run_end_decode(arr).to_numpy()
    got = np.concatenate([np.from_dlpack(b["r"]) for b in ad.batches(t, 4)])
    np.testing.assert_array_equal(got, want)
    pairs = {}
    for b in Loader(t, 3, shuffle=True, seed=5):
        pairs.update(zip(np.from_dlpack(b["x"]).tolist(), np.from_dlpack(b["r"]).tolist()))
    assert pairs == dict(enumerate(want.tolist()))
    # A fixed-size list's rows repeat whole.
    fsl = pa.RunEndEncodedArray.from_arrays(pa.array([2, 3], pa.int16()), pa.array([[1, 2], [3, 4]], pa.list_(pa.int8(), 2)))
    assert numpy_of(fsl).tolist() == [[1, 2], [1, 2], [3, 4]]


# ---- null columns -----------------------------------------------------------


def test_null_columns_are_their_fill_value():
    with pytest.raises(BufferError, match=r"a null column \(Arrow's type null\) holds only nulls.*null_value="):
        numpy_of(pa.nulls(3))
    got = numpy_of(pa.nulls(3), null_value=7)
    assert got.dtype == np.float32 and got.tolist() == [7, 7, 7]
    assert numpy_of(pa.nulls(2), null_value=1, dtype="int64").tolist() == [1, 1]
    with pytest.raises(BufferError, match="null column"):
        numpy_of(pa.nulls(0))  # its type says every row is null
    assert numpy_of(pa.nulls(0), null_value=0).shape == (0,)
    t = pa.table({"n": pa.nulls(5), "x": np.arange(5, dtype=np.float32)})
    assert numpy_of(t, null_value=0).tolist() == [[0, i] for i in range(5)]
    for b in ad.batches(t, 5, null_value=-2):
        assert np.from_dlpack(b["n"]).tolist() == [-2.0] * 5


# ---- struct columns ---------------------------------------------------------


def flattened(t: pa.Table) -> pa.Table:
    while any(pa.types.is_struct(f.type) for f in t.schema):
        t = t.flatten()
    return t


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.integers(1, 7), st.data())
def test_struct_fields_are_outputs_as_table_flatten_has_them(rows, batch_size, data):
    mask = lambda: np.array(data.draw(st.lists(st.booleans(), min_size=rows, max_size=rows)))  # noqa: E731
    inner = pa.StructArray.from_arrays([pa.array(np.arange(rows) * 10)], names=["z"], mask=pa.array(mask()))
    s = pa.StructArray.from_arrays(
        [pa.array(np.arange(rows, dtype=np.float64), mask=mask()), inner], names=["x", "in"], mask=pa.array(mask())
    )
    t = pa.table({"s": s, "id": np.arange(rows)})
    start = data.draw(st.integers(0, rows - 1))
    t = t.slice(start)
    flat = flattened(t)
    assert flat.column_names == ["s.x", "s.in.z", "id"]
    got = {k: [] for k in flat.column_names}
    for b in ad.batches(t, batch_size, null_value=-1):
        assert list(b) == flat.column_names
        for k in got:
            got[k] += np.from_dlpack(b[k]).tolist()
    for k in got:
        want = [-1 if v is None else v for v in flat.column(k).to_pylist()]
        assert got[k] == want, k
    stacked = [np.from_dlpack(b["both"]) for b in ad.batches(t, batch_size, null_value=-1, stack={"both": ["s.x", "id"]})]
    assert np.concatenate(stacked).tolist() == [[float(a), float(b)] for a, b in zip(got["s.x"], got["id"])]


def test_hugging_face_nested_features_reach_torch():
    datasets = pytest.importorskip("datasets")
    torch = pytest.importorskip("torch")
    ds = datasets.Dataset.from_dict({"point": [{"x": float(i), "y": [i, i + 1]} for i in range(12)], "label": list(range(12))})
    seen = {}
    for b in Loader(ds, 5, shuffle=True, seed=1):
        labels = np.from_dlpack(b["label"]).tolist()
        xs = np.from_dlpack(b["point.x"]).tolist()
        ys = np.from_dlpack(b["point.y"].values).tolist()
        for label, x, y in zip(labels, xs, ys):
            seen[label] = (x, y)
    assert seen == {i: (float(i), [i, i + 1]) for i in range(12)}
    # In order through batches(), padded lists.
    got = []
    for b in ad.batches(ds, 5, columns=["point.x", "point.y"]):
        values, mask = b["point.y"]
        got += zip(torch.from_dlpack(b["point.x"]).tolist(), torch.from_dlpack(values).tolist())
    assert got == [(float(i), [i, i + 1]) for i in range(12)]


def test_struct_columns_malformed_or_unknown_are_named():
    s = pa.StructArray.from_arrays([pa.array(["a", "b"])], names=["name"])
    t = pa.table({"s": s})
    with pytest.raises(ValueError, match="nope"):
        ad.batches(t, 2, columns=["nope"])
    for b in ad.batches(t, 2, lists="jagged"):
        assert set(b) == {"s.name"}
