"""Tables as 2-D tensors and back: record batches, tables, readers, polars
DataFrames, DuckDB relations and nanoarrow arrays into NumPy (and JAX,
PyTorch where installed), and matrices back into named columns. NumPy's
``column_stack``/``result_type`` and pyarrow's ``to_tensor`` are the
oracles, on examples and on hypothesis's random tables."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import arrow_dlpack
from conftest import NUMERIC_TYPES, data_address, values_address


def export(obj, copy=None, **kwargs):
    return np.from_dlpack(arrow_dlpack.to_dlpack(obj, **kwargs), copy=copy)


def fortran_batch(rows=4, cols=3, dtype=np.float64, names=None):
    """A record batch whose columns lie end to end: a Fortran-order matrix
    shared as columns (the way frame libraries lay out blocks)."""
    m = np.asfortranarray(np.arange(rows * cols, dtype=dtype).reshape(rows, cols))
    names = names or [f"c{j}" for j in range(cols)]
    return m, pa.record_batch(arrow_dlpack.from_dlpack(m, columns=names))


def oracle(table) -> np.ndarray:
    """NumPy's answer: each column's values, stacked, in result_type."""
    columns = [c.to_numpy() for c in table.columns]
    if not columns:
        return np.empty((table.num_rows, 0))
    return np.column_stack(columns).astype(np.result_type(*columns), copy=False)


def test_a_fortran_matrix_round_trips_through_arrow_without_a_copy():
    m, batch = fortran_batch()
    for j in range(3):
        assert values_address(batch.column(j)) == data_address(m) + j * 4 * 8
    for order in ("any", "F"):
        x = export(batch, copy=False, order=order)
        assert data_address(x) == data_address(m), "shared: the first column's address"
        assert x.flags.f_contiguous and not x.flags.writeable
        np.testing.assert_array_equal(x, m)
    with pytest.raises(BufferError, match="row-major"):
        export(batch, copy=False, order="C")
    x = export(batch, order="C")
    assert x.flags.c_contiguous and x.flags.writeable
    np.testing.assert_array_equal(x, m)
    # pyarrow.table takes the same columns, shared too.
    table = pa.table(arrow_dlpack.from_dlpack(m, columns=["a", "b", "c"]))
    assert table.column_names == ["a", "b", "c"]
    assert data_address(export(table, copy=False)) == data_address(m)


def test_separate_columns_are_copied_row_major_by_default():
    table = pa.table({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0]})
    with pytest.raises(BufferError, match="column 0 'a' and column 1 'b'.*needs a copy"):
        export(table, copy=False)
    x = export(table)
    assert x.flags.c_contiguous and x.flags.writeable
    np.testing.assert_array_equal(x, table.to_batches()[0].to_tensor(row_major=True).to_numpy())
    x = export(table, order="F")
    assert x.flags.f_contiguous
    np.testing.assert_array_equal(x, oracle(table))


def test_every_producer_reaches_numpy():
    expected = np.array([[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]])
    table = pa.table({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0]})
    producers = {
        "Table": table,
        "RecordBatch": table.to_batches()[0],
        "RecordBatchReader": pa.RecordBatchReader.from_batches(table.schema, table.to_batches()),
        "chunked Table": pa.concat_tables([table.slice(0, 1), table.slice(1)]),
    }
    pl = pytest.importorskip("polars")
    producers["polars"] = pl.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0]})
    na = pytest.importorskip("nanoarrow")
    producers["nanoarrow"] = na.c_array(table.to_batches()[0])
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    con.execute("create table t as select * from (values (1.0::double, 4.0::double), (2, 5), (3, 6)) v(a, b)")
    producers["DuckDB relation"] = con.sql("select * from t order by a")
    for name, producer in producers.items():
        np.testing.assert_array_equal(export(producer), expected, err_msg=name)


def test_polars_frames_are_shared_when_their_columns_lie_end_to_end():
    pl = pytest.importorskip("polars")
    m, batch = fortran_batch(5, 2)
    df = pl.from_arrow(batch)
    x = export(df)
    np.testing.assert_array_equal(x, m)


def test_jax_and_torch_take_tables():
    table = pa.table({"a": pa.array([1, 2], pa.int32()), "b": pa.array([0.5, 1.5], pa.float32())})
    want = oracle(table)
    jnp = pytest.importorskip("jax.numpy")
    np.testing.assert_array_equal(np.asarray(jnp.from_dlpack(arrow_dlpack.to_dlpack(table))), want)
    try:
        import torch
    except ImportError:
        return
    np.testing.assert_array_equal(torch.from_dlpack(arrow_dlpack.to_dlpack(table)).numpy(), want)


def test_nulls_name_the_column_fill_per_column_and_mask_in_2d():
    table = pa.table({"x": [1, 2, 3], "y": [4, None, 6]})
    with pytest.raises(BufferError, match="column 1 'y' has 1 nulls"):
        export(table)
    x = export(table, null_value=-1)
    np.testing.assert_array_equal(x, [[1, 4], [2, -1], [3, 6]])
    mask = np.from_dlpack(arrow_dlpack.validity(table))
    np.testing.assert_array_equal(mask, [[True, True], [True, False], [True, True]])


def test_unsupported_columns_are_named():
    table = pa.table({"n": [1], "s": ["a"]})
    with pytest.raises(BufferError, match="column 1 's': unsupported format 'u'"):
        export(table)
    table = pa.table({"v": pa.array([[1, 2]], pa.list_(pa.int32(), 2))})
    with pytest.raises(BufferError, match="column 0 'v': a nested column"):
        export(table)


def test_temporal_columns_share_their_storage_with_temporal_as_int():
    table = pa.table({"t": pa.array([1, 2], pa.timestamp("us")), "v": pa.array([3, 4], pa.int64())})
    with pytest.raises(BufferError, match="column 0 't'"):
        export(table)
    np.testing.assert_array_equal(export(table, temporal_as_int=True), [[1, 3], [2, 4]])


def test_matrices_come_back_as_columns_copied_when_row_major():
    m = np.arange(6, dtype=np.int32).reshape(3, 2)
    with pytest.raises(BufferError, match="not dense"):
        arrow_dlpack.from_dlpack(m, columns=True, copy=False)
    batch = pa.record_batch(arrow_dlpack.from_dlpack(m, columns=["a", "b"]))
    assert batch.column_names == ["a", "b"]
    np.testing.assert_array_equal(batch.column("b").to_numpy(), m[:, 1])
    with pytest.raises(BufferError, match="2-D"):
        arrow_dlpack.from_dlpack(np.arange(3), columns=True)
    with pytest.raises(TypeError, match="columns must be"):
        arrow_dlpack.from_dlpack(m, columns="ab")
    with pytest.raises(ValueError, match="3 names for a tensor of 2 columns"):
        arrow_dlpack.from_dlpack(m, columns=["a", "b", "c"])
    with pytest.raises(ValueError, match="1 names"):
        arrow_dlpack.from_dlpack(m, columns=["a"])
    bools = np.array([[True, False], [False, False], [True, True]])
    batch = pa.record_batch(arrow_dlpack.from_dlpack(bools, columns=True))
    assert batch.column("1").to_pylist() == [False, False, True]


def test_columns_outlive_the_batch_and_each_other(pool_unchanged):
    import gc
    import weakref

    class Owner:
        pass

    m = np.asfortranarray(np.arange(12.0).reshape(4, 3))
    batch = pa.record_batch(arrow_dlpack.from_dlpack(m, columns=True))
    columns = [batch.column(j) for j in range(3)]
    del batch
    gc.collect()
    np.testing.assert_array_equal(columns[2].to_numpy(), m[:, 2])
    del columns[0], columns[0]
    gc.collect()
    np.testing.assert_array_equal(columns[0].to_numpy(), m[:, 2])


# ---- differential: random tables --------------------------------------------------

TYPES = [t for t, _ in NUMERIC_TYPES] + [pa.bool_()]


@st.composite
def tables(draw):
    rows = draw(st.integers(0, 40))
    ncols = draw(st.integers(1, 50))
    columns = {}
    # Half the tables of one type (pyarrow's to_tensor is then an oracle too).
    uniform = draw(st.one_of(st.none(), st.sampled_from(TYPES)))
    for j in range(ncols):
        t = uniform if uniform is not None else draw(st.sampled_from(TYPES))
        if pa.types.is_boolean(t):
            values = draw(st.lists(st.booleans(), min_size=rows, max_size=rows))
        else:
            values = draw(st.lists(st.integers(0, 100), min_size=rows, max_size=rows))
        columns[f"c{j}"] = pa.array(values, t)
    table = pa.table(columns)
    # Random chunks, then a random slice.
    cuts = sorted(draw(st.lists(st.integers(0, rows), max_size=3)))
    bounds = [0, *cuts, rows]
    table = pa.concat_tables([table.slice(a, b - a) for a, b in zip(bounds, bounds[1:])] or [table])
    start = draw(st.integers(0, rows))
    return table.slice(start, draw(st.integers(0, rows - start)))


@settings(max_examples=200, deadline=None)
@given(tables(), st.sampled_from(["any", "C", "F"]))
def test_random_tables_match_numpy_column_stack_and_result_type(table, order):
    x = export(table, order=order)
    want = oracle(table)
    assert x.dtype == want.dtype, (table.schema, x.dtype, want.dtype)
    assert x.shape == want.shape
    np.testing.assert_array_equal(x, want)
    if order == "F" or (order == "any" and x.flags.f_contiguous and not x.flags.c_contiguous):
        assert x.flags.f_contiguous
    else:
        assert x.flags.c_contiguous
    types = {f.type for f in table.schema}
    if len(types) == 1 and table.num_rows > 0 and not pa.types.is_boolean(table.schema[0].type):
        # Same-typed columns: pyarrow's own matrices, batch by batch, agree
        # (its promotion of mixed types is not NumPy's: int64 + uint64 ->
        # int64 there).
        tensors = [b.to_tensor(row_major=order != "F").to_numpy() for b in table.to_batches() if b.num_rows]
        theirs = np.concatenate(tensors)
        assert theirs.dtype == x.dtype
        np.testing.assert_array_equal(theirs, x)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 30),
    st.integers(1, 20),
    st.sampled_from([t for _, t in NUMERIC_TYPES]),
    st.sampled_from(["any", "C", "F"]),
)
def test_sharing_happens_exactly_when_the_contract_says(rows, cols, dtype, order):
    m, batch = fortran_batch(rows, cols, dtype)
    shareable = order != "C" or cols == 1 or rows <= 1
    if shareable:
        x = export(batch, copy=False, order=order)
        if rows:  # NumPy makes its own empty arrays
            assert data_address(x) == data_address(m)
            assert not x.flags.writeable
    else:
        with pytest.raises(BufferError, match="needs a copy"):
            export(batch, copy=False, order=order)
        x = export(batch, order=order)
        assert x.flags.writeable or not rows
    np.testing.assert_array_equal(x, m)
    # A slice breaks adjacency (unless one column remains): copied.
    if rows > 2 and cols > 1:
        with pytest.raises(BufferError, match="end to end"):
            export(batch.slice(1), copy=False, order="F")
        np.testing.assert_array_equal(export(batch.slice(1)), m[1:])
    # Back: shared for the Fortran matrix.
    back = pa.record_batch(arrow_dlpack.from_dlpack(m, columns=True, copy=False))
    if rows:
        assert values_address(back.column(cols - 1)) == data_address(m) + (cols - 1) * rows * m.itemsize
    np.testing.assert_array_equal(oracle(back), m)
