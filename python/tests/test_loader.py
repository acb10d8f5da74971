"""arrow_dlpack.Loader: shuffled, sharded, resumable epochs.

Every claim about order, sharding and resume is checked against the row
numbers the data itself carries (column ``x`` holds each row's number), not
against the loader's own arithmetic: every row once an epoch on every rank
together, equal batch counts, the same global sequence for any world size
with the same global batch, resume equal to the uninterrupted run.
"""

from __future__ import annotations

import ctypes
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import arrow_dlpack
from arrow_dlpack import Loader


def table(sizes, seed=0):
    """Chunks of `sizes` rows: `x` float64, `z` int64 and `y` int32 hold
    each row's number (`y` ten times it), `ids` a list of `row % 4` copies
    of it."""
    batches, first = [], 0
    for n in sizes:
        rows = np.arange(first, first + n)
        ids = pa.array([[int(r)] * int(r % 4) for r in rows], pa.list_(pa.int64()))
        batches.append(
            pa.record_batch(
                {"x": rows.astype(np.float64), "y": (rows * 10).astype(np.int32), "z": rows.astype(np.int64), "ids": ids}
            )
        )
        first += n
    schema = pa.schema({"x": pa.float64(), "y": pa.int32(), "z": pa.int64(), "ids": pa.list_(pa.int64())})
    return pa.Table.from_batches(batches, schema=schema)


def rows_of(batch):
    """The batch's row numbers, checked against the data it carries."""
    rows = np.from_dlpack(batch["_row"])
    np.testing.assert_array_equal(np.from_dlpack(batch["x"]), rows.astype(np.float64))
    if "xy" in batch:
        xy = np.from_dlpack(batch["xy"])
        np.testing.assert_array_equal(xy[:, 0], rows)
        np.testing.assert_array_equal(xy[:, 1], rows * 10)
    if "ids" in batch:
        values, mask = batch["ids"]
        values, mask = np.from_dlpack(values), np.from_dlpack(mask)
        for k, r in enumerate(rows):
            assert values[k][mask[k]].tolist() == [int(r)] * int(r % 4)
    return rows.tolist()


def epoch(loader):
    return [rows_of(b) for b in loader]


sizes_st = st.lists(st.integers(0, 40), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(
    sizes=sizes_st,
    batch=st.integers(1, 9),
    world=st.integers(1, 4),
    shuffle=st.booleans(),
    window=st.one_of(st.none(), st.integers(1, 30)),
    drop_last=st.booleans(),
    prefetch=st.integers(0, 3),
)
def test_every_row_once_an_epoch_equal_counts_on_every_rank(sizes, batch, world, shuffle, window, drop_last, prefetch):
    t = table(sizes)
    n = t.num_rows
    options = dict(shuffle=shuffle, seed=5, window=window, drop_last=drop_last, row_ids=True, prefetch=prefetch)
    options["stack"] = {"xy": ["z", "y"]}
    options["columns"] = ["x", "ids"]
    ranks = [Loader(t, batch, rank=r, world_size=world, **options) for r in range(world)]
    epochs = [[epoch(loader) for _ in range(2)] for loader in ranks]
    counts = {len(e[0]) for e in epochs} | {len(e[1]) for e in epochs} | {len(loader) for loader in ranks}
    assert len(counts) == 1, "every rank the same number of batches"
    for step in range(len(epochs[0][0])):
        assert len({len(e[0][step]) for e in epochs}) == 1, "the same sizes"
    for i in (0, 1):
        rows = sorted(r for e in epochs for b in e[i] for r in b)
        g = batch * world
        kept = n // g * g if drop_last else n
        assert len(set(rows)) == kept and all(0 <= r < n for r in rows)
        if not drop_last:
            assert len(rows) == -(-n // world) * world, "padded to a multiple of the world size"
    if shuffle and sum(len(b) for b in epochs[0][0]) > 8:
        assert epochs[0][0] != epochs[0][1], "each epoch its own order"


@settings(max_examples=40, deadline=None)
@given(
    sizes=sizes_st,
    batch=st.integers(1, 6),
    world=st.sampled_from([1, 2, 4]),
    shuffle=st.booleans(),
    drop_last=st.booleans(),
    stop=st.integers(0, 30),
)
def test_a_state_resumes_exactly_on_any_world_size_with_the_same_global_batch(sizes, batch, world, shuffle, drop_last, stop):
    """Stop `world` ranks `stop` steps into the second epoch and save rank
    0's state (every rank's is the same); under 1, 2 or 4 ranks with the
    same global batch the global steps from there on are the uninterrupted
    run's (the last step's padding aside, which depends on the world
    size)."""
    t = table(sizes)
    g = batch * 4
    options = dict(shuffle=shuffle, seed=9, drop_last=drop_last, row_ids=True, columns=["x"])

    def global_steps(w, state=None):
        loaders = [Loader(t, g // w, rank=r, world_size=w, **options) for r in range(w)]
        for loader in loaders:
            if state is None:
                epoch(loader)  # the first epoch, read whole
            else:
                loader.load_state_dict(state)
        per_rank = [epoch(loader) for loader in loaders]
        return [sum((per_rank[r][s] for r in range(w)), []) for s in range(len(per_rank[0]))]

    whole = global_steps(1)
    stop = min(stop, len(whole))
    loaders = [Loader(t, g // world, rank=r, world_size=world, **options) for r in range(world)]
    for loader in loaders:
        epoch(loader)
        it = iter(loader)
        for _ in range(stop):
            rows_of(next(it))
    states = [loader.state_dict() for loader in loaders]
    assert all(s == states[0] for s in states), "nothing in a state is the rank's"
    if stop == len(whole) and stop > 0:
        assert (states[0]["epoch"], states[0]["step"]) == (2, 0), "after the last batch: the next epoch"
        return
    assert (states[0]["epoch"], states[0]["step"]) == (1, stop)
    for w in (1, 2, 4):
        rest = global_steps(w, states[0])
        assert len(rest) == len(whole) - stop
        assert rest[:-1] == whole[stop:-1]
        if rest:
            assert rest[-1][: len(whole[-1])] == whole[-1]


def test_state_after_the_last_batch_resumes_at_the_next_epoch():
    t = table([10])
    a = Loader(t, 3, shuffle=True, seed=2, row_ids=True, columns=["x"])
    first = epoch(a)
    state = a.state_dict()
    assert (state["epoch"], state["step"]) == (1, 0)
    b = Loader(t, 3, shuffle=True, seed=2, row_ids=True, columns=["x"])
    b.load_state_dict(state)
    assert epoch(b) == epoch(a) != first


def test_set_epoch_and_iteration_move_epochs():
    t = table([12])
    a = Loader(t, 4, shuffle=True, seed=1, row_ids=True, columns=["x"])
    e0, e1 = epoch(a), epoch(a)
    b = Loader(t, 4, shuffle=True, seed=1, row_ids=True, columns=["x"])
    b.set_epoch(1)
    assert b.state_dict()["epoch"] == 1 and b.state_dict()["step"] == 0
    assert epoch(b) == e1 != e0
    b.set_epoch(0)
    assert epoch(b) == e0


def test_unshuffled_batches_inside_a_chunk_share_its_memory():
    t = table([8, 8])
    loader = Loader(t, 4, columns=["x"])
    address = t.column("x").chunk(0).buffers()[1].address
    first = next(iter(loader))
    view = np.from_dlpack(first["x"])
    assert view.ctypes.data == address
    assert view.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_a_value_can_be_read_by_many_consumers():
    torch = pytest.importorskip("torch")

    batch = next(iter(Loader(table([6]), 3, shuffle=True, columns=["x"])))
    a = np.from_dlpack(batch["x"])
    b = torch.from_dlpack(batch["x"])
    assert a.tolist() == b.tolist()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"batch_size": 0}, ValueError, "batch_size must be positive, not 0"),
        ({"world_size": 0}, ValueError, "world_size must be positive, not 0"),
        ({"rank": 3, "world_size": 2}, ValueError, r"rank 3 is not in \[0, world_size = 2\)"),
        ({"rank": -1}, ValueError, r"rank -1 is not in \[0, world_size = 1\)"),
        ({"window": 0, "shuffle": True}, ValueError, "window must be positive, not 0"),
        ({"prefetch": -1}, ValueError, "prefetch must be 0 or more, not -1"),
        ({"columns": ["nope"]}, ValueError, r'column "nope" is not a column of the source \(its columns: x, y, z, ids\)'),
        ({"columns": ["_row"]}, ValueError, '"_row" is the name of the row numbers'),
        ({"stack": {"_row": ["x"]}}, ValueError, '"_row" is the name of the row numbers'),
        ({"lists": "ragged"}, ValueError, "lists must be 'padded' or 'jagged'"),
    ],
)
def test_refusals_name_the_argument_and_its_value(kwargs, error, match):
    kwargs = {"batch_size": 4, **kwargs}
    with pytest.raises(error, match=match):
        Loader(table([5]), **kwargs)


def test_refusals_come_in_the_contracts_order():
    with pytest.raises(ValueError, match="batch_size"):
        Loader(table([5]), 0, world_size=0, window=0, prefetch=-1)
    with pytest.raises(ValueError, match="world_size"):
        Loader(table([5]), 1, world_size=0, window=0, prefetch=-1)
    with pytest.raises(ValueError, match="window"):
        Loader(table([5]), 1, window=0, prefetch=-1, columns=["nope"])
    with pytest.raises(TypeError, match="reads Arrow record batches"):
        Loader(42, 2)


def test_a_source_column_named_row_is_refused():
    with pytest.raises(ValueError, match='a column named "_row"'):
        Loader(pa.table({"_row": [1, 2]}), 1)


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda s: s.update(seed=s["seed"] + 1), ValueError, 'state key "seed" is 8, this loader\'s is 7'),
        (lambda s: s.update(num_rows=3), ValueError, '"num_rows"'),
        (lambda s: s.update(global_batch_size=99), ValueError, '"global_batch_size"'),
        (lambda s: s.update(shuffle=False), ValueError, '"shuffle"'),
        (lambda s: s.update(schema="0"), ValueError, '"schema"'),
        (lambda s: s.update(window={"w": 3, "groups": 0}), ValueError, '"window"'),
        (lambda s: s.update(version=2), ValueError, "version 2 is newer"),
        (lambda s: s.update(step=-1), ValueError, '"step" is -1'),
        (lambda s: s.update(step=1.5), ValueError, "not an integer"),
        (lambda s: s.pop("epoch"), ValueError, 'key "epoch" is missing'),
        (lambda s: s.update(extra=1), ValueError, 'unknown key "extra"'),
        (lambda s: s.update(epoch=object()), ValueError, "malformed state"),
    ],
)
def test_refused_states_name_the_key_and_leave_the_loader_as_it_was(change, error, match):
    t = table([20])
    loader = Loader(t, 4, shuffle=True, seed=7, row_ids=True, columns=["x"])
    it = iter(loader)
    next(it)
    before = loader.state_dict()
    state = dict(before)
    change(state)
    with pytest.raises(error, match=match):
        loader.load_state_dict(state)
    assert loader.state_dict() == before
    with pytest.raises(TypeError, match="load_state_dict takes the dict"):
        loader.load_state_dict("{}")


def test_nulls_without_null_value_raise_when_the_batch_is_made():
    t = pa.table({"x": pa.array([1.0, None, 3.0, 4.0])})
    loader = Loader(t, 2)
    it = iter(loader)
    with pytest.raises(BufferError, match="null"):
        next(it)
    filled = Loader(t, 2, null_value=-1.0)
    assert [np.from_dlpack(b["x"]).tolist() for b in filled] == [[1.0, -1.0], [3.0, 4.0]]


def test_a_source_that_fails_mid_read_raises_as_batches_does():
    class Boom(Exception):
        pass

    def items():
        yield table([3])
        raise Boom("the disk went away")

    with pytest.raises(Boom, match="the disk went away"):
        Loader(items(), 2)


def test_sources_polars_duckdb_readers_and_iterables():
    duckdb = pytest.importorskip("duckdb")
    pl = pytest.importorskip("polars")

    t = table([10, 5])
    con = duckdb.connect()
    con.register("t", t.select(["x", "y"]))
    sources = {
        "reader": pa.RecordBatchReader.from_batches(t.schema, t.to_batches()),
        "polars": pl.from_arrow(t.select(["x", "y"])),
        "duckdb": con.sql("select x, y from t order by x"),
        "list of tables": [t.slice(0, 7), t.slice(7)],
        "record batch": t.combine_chunks().to_batches()[0],
    }
    for name, source in sources.items():
        loader = Loader(source, 4, shuffle=True, seed=3, row_ids=True, columns=["x"])
        rows = sorted(r for b in loader for r in rows_of(b))
        assert rows == list(range(15)), name


def test_hugging_face_datasets_keep_their_indices_mapping():
    datasets = pytest.importorskip("datasets")

    ds = datasets.Dataset.from_dict({"x": [float(i) for i in range(30)], "y": list(range(30))})
    shuffled = ds.shuffle(seed=4).select(range(10))
    expect = [row["x"] for row in shuffled]
    loader = Loader(shuffled, 4, row_ids=True, columns=["x"])
    got = [x for b in loader for x in np.from_dlpack(b["x"]).tolist()]
    assert got == expect, "row i is ds[i]"
    ids = [i for b in Loader(shuffled, 4, row_ids=True, columns=["x"]) for i in np.from_dlpack(b["_row"]).tolist()]
    assert ids == list(range(10))


def test_loaders_pickle_and_resume_where_they_stood():
    t = table([9])
    loader = Loader(t, 2, shuffle=True, seed=1, row_ids=True, columns=["x"])
    it = iter(loader)
    first = rows_of(next(it))
    copy = pickle.loads(pickle.dumps(loader))
    assert copy.state_dict() == loader.state_dict()
    rest_copy = [rows_of(b) for b in copy]
    rest = [rows_of(b) for b in it]
    assert rest_copy == rest and first not in rest


def test_torch_dataloader_workers_yield_the_in_process_sequence():
    torch = pytest.importorskip("torch")
    import arrow_dlpack.torch as adt

    t = table([50, 30])
    options = dict(shuffle=True, seed=3, row_ids=True, columns=["x"], stack={"xy": ["z", "y"]})
    expect = [b["_row"].tolist() for b in adt.Loader(t, 8, **options)]
    for workers in (1, 2):
        loader = adt.Loader(t, 8, **options)
        got = [b["_row"].tolist() for b in torch.utils.data.DataLoader(loader, batch_size=None, num_workers=workers)]
        assert got == expect, workers
    try:
        pinned = adt.Loader(t, 8, pin_memory=True, columns=["x"])
    except BufferError as e:
        # No CUDA driver here: refused when made, naming it.
        assert "pinned memory needs the CUDA driver" in str(e)
    else:
        with pytest.raises(Exception, match="pin_memory=True is not for a loader inside DataLoader workers"):
            list(torch.utils.data.DataLoader(pinned, batch_size=None, num_workers=1))


def test_persistent_workers_follow_set_epoch():
    torch = pytest.importorskip("torch")
    import arrow_dlpack.torch as adt

    t = table([40])
    options = dict(shuffle=True, seed=3, row_ids=True, columns=["x"])
    reference = adt.Loader(t, 8, **options)
    expect = {}
    for e in (0, 3):
        reference.set_epoch(e)
        expect[e] = [b["_row"].tolist() for b in reference]
    loader = adt.Loader(t, 8, **options)
    dl = torch.utils.data.DataLoader(loader, batch_size=None, num_workers=2, persistent_workers=True)
    for e in (0, 3):
        loader.set_epoch(e)
        assert [b["_row"].tolist() for b in dl] == expect[e], e


def test_stateful_dataloader_resumes_exactly_with_workers():
    torch = pytest.importorskip("torch")
    StatefulDataLoader = pytest.importorskip("torchdata.stateful_dataloader").StatefulDataLoader
    import arrow_dlpack.torch as adt

    t = table([60, 20])
    options = dict(shuffle=True, seed=8, row_ids=True, columns=["x"])
    for workers in (0, 2):
        dl = StatefulDataLoader(adt.Loader(t, 8, **options), batch_size=None, num_workers=workers)
        whole = [b["_row"].tolist() for b in dl]
        dl = StatefulDataLoader(adt.Loader(t, 8, **options), batch_size=None, num_workers=workers)
        it = iter(dl)
        head = [next(it)["_row"].tolist() for _ in range(4)]
        state = dl.state_dict()
        del it, dl
        resumed = StatefulDataLoader(adt.Loader(t, 8, **options), batch_size=None, num_workers=workers)
        resumed.load_state_dict(state)
        tail = [b["_row"].tolist() for b in resumed]
        assert head + tail == whole, workers
        assert torch.tensor(sorted(r for b in whole for r in b)).tolist() == list(range(80))


def test_torch_distributed_two_processes_on_localhost():
    """Two gloo ranks on 127.0.0.1, each resolving its rank from the group:
    equal step counts, every row once."""
    pytest.importorskip("torch")
    script = textwrap.dedent(
        """
        import os, sys, json
        import numpy as np, pyarrow as pa, torch, torch.distributed as dist
        import arrow_dlpack.torch as adt
        rank = int(sys.argv[1])
        dist.init_process_group("gloo", init_method="tcp://127.0.0.1:" + sys.argv[2], rank=rank, world_size=2)
        t = pa.table({"x": np.arange(101, dtype=np.float64)})
        loader = adt.Loader(t, 8, shuffle=True, seed=4, row_ids=True)
        rows = [b["_row"].tolist() for b in loader]
        counts = [None, None]
        dist.all_gather_object(counts, rows)
        if rank == 0:
            print(json.dumps(counts))
        dist.destroy_process_group()
        """
    )
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(r), port], stdout=subprocess.PIPE, text=True)
        for r in range(2)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    import json

    ranks = json.loads(outs[0].strip().splitlines()[-1])
    assert len(ranks[0]) == len(ranks[1]) == len(range(0, 102, 16))
    rows = sorted(r for rank in ranks for b in rank for r in b)
    assert sorted(set(rows)) == list(range(101)) and len(rows) == 102


def _c_rows(lib, ad, loader, batches=None):
    """The `_row` numbers of the next `batches` batches (None: to the
    epoch's end) of a C loader, one list a batch."""
    out = []
    error = ad.ArrowDlpackError()
    while batches is None or len(out) < batches:
        batch = ad.ArrowDlpackBatch()
        status = lib.arrow_dlpack_loader_next(loader, ctypes.byref(batch), ctypes.byref(error))
        assert status == 0, error.message
        if batch.n_outputs == 0:
            break
        outputs = {batch.outputs[i].name: batch.outputs[i] for i in range(batch.n_outputs)}
        tensor = ad.DLManagedTensorVersioned.from_address(outputs[b"_row"].tensors[0]).dl_tensor
        rows = (ctypes.c_int64 * tensor.shape[0]).from_address(tensor.data)
        x = ad.DLManagedTensorVersioned.from_address(outputs[b"x"].tensors[0]).dl_tensor
        values = (ctypes.c_int64 * x.shape[0]).from_address(x.data)
        assert list(values) == [1000 + r for r in rows]  # the row the data carries
        out.append(list(rows))
        lib.arrow_dlpack_batch_release(ctypes.byref(batch))
    return out


def _c_state(lib, ad, loader):
    error = ad.ArrowDlpackError()
    need = ctypes.c_size_t()
    buf = ctypes.create_string_buffer(1024)
    assert lib.arrow_dlpack_loader_state(loader, buf, 1024, ctypes.byref(need), ctypes.byref(error)) == 0
    return buf.raw[: need.value].decode()


def test_a_state_saved_by_either_face_resumes_the_other():
    # The C face (the bare library through ctypes, as a C++ trainer would
    # call it) and the Python face share one state: each resumes the other.
    import json

    import arrow_dlpack_ctypes as ad

    lib = ad.lib
    table = pa.table({"x": pa.array(np.arange(1000, 1050, dtype=np.int64))})
    batches = table.to_batches(max_chunksize=7)
    options = dict(shuffle=True, seed=11, row_ids=True, prefetch=0)
    reference = [np.from_dlpack(b["_row"]).tolist() for b in Loader(table, 4, **options)]
    assert sorted(sum(reference, [])) == list(range(50))

    def c_loader():
        reader = pa.RecordBatchReader.from_batches(table.schema, batches)
        capsule = reader.__arrow_c_stream__()
        stream = ad.capsule_pointer(capsule, b"arrow_array_stream")
        o = ad.ArrowDlpackLoaderOptions(batch_size=4, shuffle=1, seed=11, row_ids=1)
        error = ad.ArrowDlpackError()
        loader = lib.arrow_dlpack_loader_new(stream, ctypes.byref(o), ctypes.byref(error))
        assert loader, error.message
        return loader

    # C, three batches in; Python resumes.
    c = c_loader()
    try:
        assert lib.arrow_dlpack_loader_len(c) == len(reference)
        assert _c_rows(lib, ad, c, 3) == reference[:3]
        state = json.loads(_c_state(lib, ad, c))
        assert (state["epoch"], state["step"], state["num_rows"]) == (0, 3, 50)
    finally:
        lib.arrow_dlpack_loader_free(c)
    resumed = Loader(table, 4, **options)
    resumed.load_state_dict(state)
    assert [np.from_dlpack(b["_row"]).tolist() for b in resumed] == reference[3:]

    # Python, five batches in; C resumes.
    first = Loader(table, 4, **options)
    it = iter(first)
    for _ in range(5):
        next(it)
    text = json.dumps(first.state_dict()).encode()
    c = c_loader()
    try:
        error = ad.ArrowDlpackError()
        assert lib.arrow_dlpack_loader_restore(c, text, len(text), ctypes.byref(error)) == 0, error.message
        assert _c_rows(lib, ad, c) == reference[5:]
        # A state of other options: refused, naming the key.
        other = json.dumps(Loader(table, 4, shuffle=True, seed=12).state_dict()).encode()
        assert lib.arrow_dlpack_loader_restore(c, other, len(other), ctypes.byref(error)) != 0
        assert b'"seed"' in error.message
    finally:
        lib.arrow_dlpack_loader_free(c)
