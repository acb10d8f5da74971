"""``arrow_dlpack.batches`` and ``arrow_dlpack.torch.batches``: rows in
order, batches inside a chunk shared and spanning ones copied, stack
groups, padded and jagged lists against pyarrow, every refusal, the source
released once whatever happens, memory bounded, pinned memory against the
fake driver."""

import gc
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import arrow_dlpack
from arrow_dlpack import Jagged, Padded

HERE = os.path.dirname(os.path.abspath(__file__))


def chunked_table(sizes, seed=0):
    rng = np.random.default_rng(seed)
    batches = []
    for n in sizes:
        lengths = rng.integers(0, 6, n)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        batches.append(
            pa.record_batch(
                {
                    "a": rng.standard_normal(n).astype(np.float32),
                    "b": rng.integers(0, 100, n).astype(np.int32),
                    "ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(rng.integers(0, 9, offsets[-1]), pa.int64())),
                }
            )
        )
    return pa.Table.from_batches(batches)


def address(x):
    return x.__array_interface__["data"][0]


def test_rows_come_in_order_shared_inside_a_chunk_and_copied_across():
    table = chunked_table([1000, 37, 2000])
    chunks = table.column("a").chunks
    seen = []
    for k, batch in enumerate(arrow_dlpack.batches(table, 512, columns=["a"])):
        a = batch["a"]
        seen.append(np.from_dlpack(a))
        start = k * 512
        # Inside chunk 0 (rows 0-999) or chunk 2 (rows 1037-3036): shared.
        inside = [(0, 1000), (1037, 3037)]
        for c, (lo, hi) in zip((0, 2), inside):
            if lo <= start and start + len(seen[-1]) <= hi:
                expected = chunks[c].buffers()[1].address + (chunks[c].offset + start - lo) * 4
                assert address(seen[-1]) == expected, f"batch {k} shares chunk {c}"
                assert not seen[-1].flags.writeable
                break
        else:
            assert seen[-1].flags.writeable, f"batch {k} spans chunks: a copy"
    assert [len(s) for s in seen] == [512] * 5 + [3037 - 5 * 512]
    np.testing.assert_array_equal(np.concatenate(seen), table.column("a").to_numpy())


def test_drop_last_and_the_last_short_batch():
    table = chunked_table([10])
    assert [len(np.from_dlpack(b["b"])) for b in arrow_dlpack.batches(table, 4, columns=["b"])] == [4, 4, 2]
    assert [len(np.from_dlpack(b["b"])) for b in arrow_dlpack.batches(table, 4, columns=["b"], drop_last=True)] == [4, 4]


def test_a_stack_group_is_one_row_major_matrix_of_the_promoted_dtype():
    table = chunked_table([300, 300])
    got = [np.from_dlpack(b["x"]) for b in arrow_dlpack.batches(table, 256, stack={"x": ["a", "b"]}, columns=[])]
    matrix = np.concatenate(got)
    assert matrix.dtype == np.result_type(np.float32, np.int32)
    assert all(m.flags.c_contiguous for m in got)
    expected = np.stack([table.column("a").to_numpy(), table.column("b").to_numpy()], axis=1)
    np.testing.assert_array_equal(matrix, expected)
    # A dtype asked for converts in the same pass.
    first = next(iter(arrow_dlpack.batches(table, 256, stack={"x": ["a", "b"]}, columns=[], dtype="float32")))
    assert np.from_dlpack(first["x"]).dtype == np.float32


def test_the_dict_names_columns_then_groups():
    table = chunked_table([5])
    batch = next(iter(arrow_dlpack.batches(table, 5, stack={"g": ["a", "b"]})))
    assert list(batch) == ["ids", "g"]
    batch = next(iter(arrow_dlpack.batches(table, 5)))
    assert list(batch) == ["a", "b", "ids"]


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=5),
    batch_size=st.integers(1, 50),
    side=st.sampled_from(["right", "left"]),
    length=st.one_of(st.none(), st.integers(1, 7)),
    seed=st.integers(0, 1000),
)
def test_lists_padded_and_jagged_match_pyarrow(sizes, batch_size, side, length, seed):
    table = chunked_table(sizes, seed)
    column = table.column("ids").combine_chunks()
    start = 0
    for batch in arrow_dlpack.batches(table, batch_size, columns=["ids"], pad_side=side, pad_length=length, pad_value=-1):
        padded = batch["ids"]
        assert type(padded) is Padded
        values, mask = np.from_dlpack(padded.values), np.from_dlpack(padded.mask)
        rows = column.slice(start, len(values)).to_pylist()
        width = length if length is not None else max([len(r) for r in rows] + [0])
        assert values.shape == (len(rows), width)
        for i, row in enumerate(rows):
            kept = row[:width] if side == "right" else row[max(0, len(row) - width):]
            pad = [-1] * (width - len(kept))
            expected = kept + pad if side == "right" else pad + kept
            assert values[i].tolist() == expected
            assert mask[i].tolist() == ([True] * len(kept) + [False] * len(pad) if side == "right" else [False] * len(pad) + [True] * len(kept))
        start += len(values)
    assert start == len(column)
    start = 0
    for batch in arrow_dlpack.batches(table, batch_size, columns=["ids"], lists="jagged"):
        jagged = batch["ids"]
        assert type(jagged) is Jagged and jagged.validity is None
        values, offsets = np.from_dlpack(jagged.values), np.from_dlpack(jagged.offsets)
        part = column.slice(start, len(offsets) - 1)
        assert offsets[0] == 0
        np.testing.assert_array_equal(values, part.flatten().to_numpy())
        np.testing.assert_array_equal(np.diff(offsets), pa.compute.list_value_length(part).to_numpy())
        start += len(offsets) - 1
    assert start == len(column)


def test_null_values_fill_and_null_rows_become_empty():
    table = pa.table({"x": pa.array([1.0, None, 3.0]), "ids": pa.array([[1, None], None, [3]])})
    with pytest.raises(BufferError, match="null"):
        next(iter(arrow_dlpack.batches(table, 3)))
    batch = next(iter(arrow_dlpack.batches(table, 3, null_value=-1, lists="jagged")))
    assert np.from_dlpack(batch["x"]).tolist() == [1.0, -1.0, 3.0]
    values, offsets, validity = batch["ids"]
    assert np.from_dlpack(values).tolist() == [1, -1, 3]
    assert np.from_dlpack(offsets).tolist() == [0, 2, 2, 3]
    assert np.from_dlpack(validity).tolist() == [True, False, True]


def test_sources_the_users_have():
    table = chunked_table([100, 50])
    expected = table.column("a").to_numpy()
    duckdb = pytest.importorskip("duckdb")
    pl = pytest.importorskip("polars")

    sources = {
        "Table": table,
        "RecordBatchReader": pa.RecordBatchReader.from_batches(table.schema, table.to_batches()),
        "RecordBatch": table.combine_chunks().to_batches()[0],
        "polars": pl.from_arrow(table.select(["a", "b"])),
        "iterator of batches": iter(table.to_batches()),
        "list of tables": [table.slice(0, 70), table.slice(70)],
    }
    con = duckdb.connect()
    con.register("t", table.select(["a", "b"]))
    sources["DuckDB relation"] = con.sql("select a, b from t")
    for name, source in sources.items():
        got = np.concatenate([np.from_dlpack(b["a"]) for b in arrow_dlpack.batches(source, 32, columns=["a"])])
        np.testing.assert_array_equal(got, expected, err_msg=name)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"batch_size": 0}, ValueError, "batch_size must be positive"),
        ({"batch_size": -3}, ValueError, "batch_size must be positive"),
        ({"columns": ["nope"]}, ValueError, r'column "nope" is not a column of the source \(its columns: a, b, ids\)'),
        ({"columns": ["a"], "stack": {"g": ["a", "b"]}}, ValueError, 'column "a" is in two places'),
        ({"stack": {"g": ["a", "ids"]}}, ValueError, 'column "ids" of stack group "g" is a list or string column'),
        ({"stack": {"g": []}}, ValueError, 'stack group "g" has no columns'),
        ({"lists": "ragged"}, ValueError, "lists must be 'padded' or 'jagged'"),
        ({"pad_side": "up"}, ValueError, "pad_side must be 'right' or 'left'"),
        ({"pad_length": 0}, ValueError, "pad_length must be a positive"),
        ({"pad_length": -2}, ValueError, "pad_length must be a positive .*; got -2"),
        ({"columns": ["a", "b", "a"]}, ValueError, 'columns names "a" twice'),
        ({"stack": {"g": ["a"]}, "columns": ["b", "b"]}, ValueError, 'columns names "b" twice'),
    ],
)
def test_bad_arguments_are_clear_errors_and_release_the_source(kwargs, error, match, pool_unchanged):
    table = chunked_table([20])
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches())
    kwargs = {"batch_size": 8, **kwargs}
    with pytest.raises(error, match=match):
        next(iter(arrow_dlpack.batches(reader, **kwargs)))
    del reader, table


def test_not_arrow_and_single_columns_are_refused():
    with pytest.raises(TypeError, match="reads Arrow record batches"):
        arrow_dlpack.batches(42, 8)
    with pytest.raises(ValueError, match="not a single column"):
        next(iter(arrow_dlpack.batches(pa.chunked_array([[1, 2]]), 8)))
    with pytest.raises(TypeError, match="each item must implement"):
        for _ in arrow_dlpack.batches([chunked_table([3]), 5], 2):
            pass


def test_chunks_that_change_schema_are_named(pool_unchanged):
    first = chunked_table([10])
    other = first.rename_columns(["a", "B", "ids"])
    with pytest.raises(ValueError, match="chunk 1: its schema is not the first chunk's"):
        for _ in arrow_dlpack.batches([first, other], 4):
            pass
    del first, other


def test_a_source_that_raises_propagates_and_releases_what_it_read(pool_unchanged):
    table = chunked_table([10, 10, 10])

    class Boom(Exception):
        pass

    def generator():
        yield from table.to_batches()[:2]
        raise Boom("the disk went away")

    got = []
    with pytest.raises(Boom, match="the disk went away"):
        for batch in arrow_dlpack.batches(generator(), 7, columns=["a"]):
            got.append(np.from_dlpack(batch["a"]).copy())
    assert sum(len(g) for g in got) == 14  # two batches of 7 before the third needed chunk 2
    # Through a C stream (pyarrow's reader over the generator): BufferError
    # with the exception's text; the batches made before stay valid.
    reader = pa.RecordBatchReader.from_batches(table.schema, generator())
    it = arrow_dlpack.batches(reader, 7, columns=["a"])
    kept = next(it)
    with pytest.raises(BufferError, match="the disk went away"):
        for _ in it:
            pass
    np.testing.assert_array_equal(np.from_dlpack(kept["a"]), table.column("a").to_numpy()[:7])
    del kept, it, reader, got, table
    gc.collect()


def test_an_abandoned_iterator_releases_the_source(pool_unchanged):
    table = chunked_table([100, 100])
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches())
    it = arrow_dlpack.batches(reader, 10)
    batch = next(it)
    del it  # abandoned after one batch: the generator closes, the batcher goes
    gc.collect()
    assert len(np.from_dlpack(batch["a"])) == 10  # what was handed out stays valid
    del batch, reader, table
    gc.collect()


def test_memory_stays_bounded_by_a_few_chunks():
    # 500 chunks of 4 MB, made on the fly: 2 GB read in batches.
    script = textwrap.dedent(
        """
        import resource, numpy as np, pyarrow as pa, arrow_dlpack
        rows = (4 << 20) // 8 // 2
        schema = pa.schema([("x", pa.float64()), ("y", pa.float64())])
        def chunks():
            for k in range(500):
                yield pa.record_batch([pa.array(np.full(rows, float(k))), pa.array(np.ones(rows))], schema=schema)
        start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        total = 0.0
        for b in arrow_dlpack.batches(pa.RecordBatchReader.from_batches(schema, chunks()), 100_000, stack={"xy": ["x", "y"]}):
            total += float(np.from_dlpack(b["xy"])[0, 0])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((peak - start) // 1024, total)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=600)
    grown_mb = int(out.stdout.split()[0])
    assert grown_mb <= 64, f"peak RSS grew by {grown_mb} MB"


def test_torch_batches_give_tensors_pairs_and_nested_tensors():
    torch = pytest.importorskip("torch")
    import arrow_dlpack.torch as adt

    table = chunked_table([30, 30])
    for batch in adt.batches(table, 16, stack={"x": ["a", "b"]}):
        assert isinstance(batch["x"], torch.Tensor) and batch["x"].dtype == torch.float64
        values, mask = batch["ids"]
        assert values.dtype == torch.int64 and mask.dtype == torch.bool
    for batch in adt.batches(table, 16, lists="jagged", columns=["ids"]):
        nested = batch["ids"]
        assert nested.is_nested and nested.layout == torch.jagged


@pytest.mark.gpu
@pytest.mark.skipif(
    any(os.path.exists(os.path.join(d, "libcuda.so.1")) for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64")),
    reason="a CUDA driver is installed",
)
def test_pin_memory_without_a_driver_is_a_clear_error():
    with pytest.raises(BufferError, match=r"pinned memory needs the CUDA driver: libcuda.so.1 was not found"):
        arrow_dlpack.batches(chunked_table([4]), 2, pin_memory=True)


def test_pin_memory_writes_into_the_drivers_pinned_memory(tmp_path):
    libdir = tmp_path / "driver"
    libdir.mkdir()
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(libdir / "libcuda.so.1"), os.path.join(HERE, "fake_gpu_driver.c")], check=True)
    log = tmp_path / "calls.log"
    script = textwrap.dedent(
        """
        import numpy as np, pyarrow as pa, arrow_dlpack
        t = pa.table({"a": np.arange(6.0), "b": np.arange(6.0) * 2, "c": np.arange(6.0) * 3})
        for b in arrow_dlpack.batches(t, 4, stack={"x": ["b", "c"]}, columns=["a"], pin_memory=True):
            for name in ("a", "x"):
                assert b[name].__dlpack_device__() == (3, 0), b[name].__dlpack_device__()  # kDLCUDAHost
            print(np.from_dlpack(b["a"]).tolist(), np.from_dlpack(b["x"]).tolist())
        """
    )
    env = {**os.environ, "LD_LIBRARY_PATH": str(libdir), "FAKE_GPU_LOG": str(log)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "[0.0, 1.0, 2.0, 3.0] [[0.0, 0.0], [2.0, 3.0], [4.0, 6.0], [6.0, 9.0]]"
    calls = log.read_text().splitlines()
    allocs = [c for c in calls if c.startswith("cuMemHostAlloc")]
    frees = [c for c in calls if c.startswith("cuMemFreeHost")]
    # Two batches of two tensors, each a copy into pinned memory (the
    # column "a" too: shared memory is copied, the point is the transfer),
    # each freed once, each call with the primary context current.
    assert len(allocs) == 4 and len(frees) == 4, calls
    assert all("context=1" in c for c in allocs + frees), calls
    assert "cuMemHostAlloc size=32 flags=1 context=1" in allocs


def test_keywords_are_read_once_by_name_and_a_wrong_one_is_a_type_error():
    table = chunked_table([4])
    with pytest.raises(TypeError, match="batches\\(\\) got an unexpected keyword argument 'shuffle'"):
        arrow_dlpack._native.batches(table, 2, shuffle=True)
    with pytest.raises(TypeError, match="batches\\(\\) argument lists=3 has the wrong type \\(int\\)"):
        arrow_dlpack.batches(table, 2, lists=3)
    options = {"columns": ["a"]}
    got = [np.from_dlpack(b["a"]).tolist() for b in arrow_dlpack._native.batches(table, 3, **options)]
    assert got == [table.column("a").to_pylist()[:3], table.column("a").to_pylist()[3:]]
    assert options == {"columns": ["a"]}
