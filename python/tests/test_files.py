"""The loader over files it reads itself (Arrow IPC files, memory-mapped):
every row once an epoch against the row numbers the data carries, batches
shared straight out of the file's map, directories, globs, datasets, files
whose columns differ, and every refusal naming the file, the column or the
path; the C face (``arrow_dlpack_loader_open``) against the Python one."""

from __future__ import annotations

import ctypes
import json
import os
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrow_dlpack import Loader


def write_ipc(path, tables, **kwargs):
    """An Arrow IPC file of one record batch per table."""
    with pa.ipc.new_file(str(path), tables[0].schema, **kwargs) as w:
        for t in tables:
            w.write_table(t)
    return str(path)


def numbered(start, n, extra=True):
    """Rows `start .. start + n`: `x` is the row's number, `y` a float of it."""
    x = np.arange(start, start + n, dtype=np.int64)
    cols = {"x": x}
    if extra:
        cols["y"] = (x * 0.5).astype(np.float32)
    return pa.table(cols)


def files_of(tmp_path, sizes):
    """Files whose record batches hold `sizes` (a list of lists of batch
    lengths, one list a file), rows numbered across them in order."""
    paths, start = [], 0
    for k, batches in enumerate(sizes):
        tables = []
        for n in batches:
            tables.append(numbered(start, n))
            start += n
        paths.append(write_ipc(tmp_path / f"part-{k:03d}.arrow", tables))
    return paths, start


def rows_of(batch):
    return np.from_dlpack(batch["_row"]).tolist()


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.lists(st.integers(1, 9), min_size=1, max_size=3), min_size=1, max_size=3),
    batch=st.integers(1, 7),
    shuffle=st.booleans(),
    world=st.integers(1, 3),
    seed=st.integers(0, 3),
)
def test_every_row_once_an_epoch_across_files(tmp_path_factory, sizes, batch, shuffle, world, seed):
    tmp = tmp_path_factory.mktemp("files")
    paths, n = files_of(tmp, sizes)
    seen = []
    counts = set()
    for rank in range(world):
        loader = Loader(paths, batch, shuffle=shuffle, seed=seed, rank=rank, world_size=world,
                        row_ids=True, prefetch=0)
        assert loader.num_rows == n
        got = list(loader)
        counts.add(len(got))
        for b in got:
            x = np.from_dlpack(b["x"]).tolist()
            assert x == rows_of(b)  # each row carries its own number
            assert np.from_dlpack(b["y"]).tolist() == [v * 0.5 for v in x]
            seen.extend(x)
    assert len(counts) == 1  # every rank the same number of batches
    pad = (-n) % world
    assert sorted(set(seen)) == list(range(n)) and len(seen) == n + pad


def _mapping_of(path):
    """The address range the process maps `path` at (/proc/self/maps)."""
    real = os.path.realpath(path)
    ranges = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5] == real:
                lo, hi = (int(v, 16) for v in parts[0].split("-"))
                ranges.append((lo, hi))
    return ranges


def test_a_batch_inside_one_record_batch_is_the_files_memory(tmp_path):
    path = write_ipc(tmp_path / "one.arrow", [numbered(0, 8), numbered(8, 8)])
    loader = Loader(path, 4, prefetch=0)
    first = next(iter(loader))
    x = np.from_dlpack(first["x"])
    assert x.tolist() == [0, 1, 2, 3]
    address = x.__array_interface__["data"][0]
    assert any(lo <= address < hi for lo, hi in _mapping_of(path)), "shared from the map"


def test_directories_globs_and_datasets_read_in_their_order(tmp_path):
    paths, n = files_of(tmp_path, [[3], [4, 2], [5]])
    (tmp_path / "_SUCCESS").write_bytes(b"")
    (tmp_path / ".hidden.arrow").write_bytes(b"not arrow")
    expected = list(range(n))

    def xs(source):
        return sum((np.from_dlpack(b["x"]).tolist() for b in Loader(source, 4, prefetch=0)), [])

    assert xs(str(tmp_path)) == expected
    assert xs(tmp_path) == expected  # a PathLike
    assert xs(str(tmp_path / "part-*.arrow")) == expected
    assert xs(str(tmp_path / "part-00[02].arrow")) == list(range(3)) + list(range(9, 14))
    assert xs(list(reversed(paths))) == list(range(9, 14)) + list(range(3, 9)) + list(range(3))
    dataset = pads.dataset(paths, format="ipc")
    assert xs(dataset) == expected


def test_files_may_differ_in_column_order_and_columns_not_read(tmp_path):
    a = write_ipc(tmp_path / "a.arrow", [pa.table({"x": np.arange(3), "y": np.ones(3), "z": np.zeros(3)})])
    b = write_ipc(tmp_path / "b.arrow", [pa.table({"y": np.ones(2) * 2, "x": np.arange(3, 5)})])
    batches = list(Loader([a, b], 5, columns=["x", "y"], prefetch=0))
    assert np.from_dlpack(batches[0]["x"]).tolist() == [0, 1, 2, 3, 4]
    assert np.from_dlpack(batches[0]["y"]).tolist() == [1, 1, 1, 2, 2]
    with pytest.raises(ValueError, match=r"b\.arrow.*no column \"z\""):
        Loader([a, b], 5)  # every column of the first file, z among them
    c = write_ipc(tmp_path / "c.arrow", [pa.table({"x": np.arange(2, dtype=np.float64), "y": np.ones(2)})])
    with pytest.raises(ValueError, match=r"c\.arrow.*column \"x\" is Float64, Int64 in the first file"):
        Loader([a, c], 5, columns=["x"])


def test_refusals_name_the_path_or_the_file(tmp_path):
    good = write_ipc(tmp_path / "good.arrow", [numbered(0, 4)])
    with pytest.raises(FileNotFoundError, match="missing.arrow"):
        Loader(str(tmp_path / "missing.arrow"), 2)
    with pytest.raises(FileNotFoundError, match=r"nothing-\*"):
        Loader(str(tmp_path / "nothing-*.arrow"), 2)
    (tmp_path / "text.arrow").write_bytes(b"hello, this is not arrow at all")
    with pytest.raises(ValueError, match=r"text\.arrow.*neither an Arrow IPC file nor a Parquet file"):
        Loader([good, str(tmp_path / "text.arrow")], 2)
    stream = tmp_path / "stream.arrows"
    with pa.ipc.new_stream(str(stream), numbered(0, 2).schema) as w:
        w.write_table(numbered(0, 2))
    with pytest.raises(ValueError, match=r"stream\.arrows.*IPC stream"):
        Loader(str(stream), 2)
    pq.write_table(numbered(0, 4), tmp_path / "p.parquet")
    with pytest.raises(ValueError, match=r"p\.parquet.*Parquet"):
        Loader(str(tmp_path / "p.parquet"), 2)
    write_ipc(tmp_path / "z.arrow", [numbered(0, 4)], options=pa.ipc.IpcWriteOptions(compression="zstd"))
    with pytest.raises(ValueError, match=r"z\.arrow.*zstd"):
        Loader(str(tmp_path / "z.arrow"), 2)
    truncated = tmp_path / "cut.arrow"
    truncated.write_bytes(open(good, "rb").read()[:-40] + b"ARROW1")
    with pytest.raises(ValueError, match=r"cut\.arrow"):
        Loader(str(truncated), 2)
    with pytest.raises(ValueError, match=r"unknown column|not a column|nope"):
        Loader(good, 2, columns=["nope"])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "_SUCCESS").write_bytes(b"")
    with pytest.raises(ValueError, match="holds no file"):
        Loader(str(empty), 2)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.lists(st.integers(1, 9), min_size=1, max_size=4), min_size=1, max_size=3),
    window=st.integers(1, 20),
    seed=st.integers(0, 5),
)
def test_windows_over_files_are_whole_record_batches(tmp_path_factory, sizes, window, seed):
    tmp = tmp_path_factory.mktemp("windows")
    paths, n = files_of(tmp, sizes)
    # The contract's windows: runs of consecutive record batches (across
    # files), each the fewest holding `window` rows, the last the rest.
    ends, held, total = [], 0, 0
    for size in (s for f in sizes for s in f):
        total += size
        held += size
        if held >= window:
            ends.append(total)
            held = 0
    if held:
        ends.append(total)
    loader = Loader(paths, 3, shuffle=True, seed=seed, window=window, row_ids=True, prefetch=0)
    for _ in range(2):
        rows = sum((rows_of(b) for b in loader), [])
        assert sorted(rows) == list(range(n))
        windows = [next(k for k, e in enumerate(ends) if r < e) for r in rows]
        runs = [w for k, w in enumerate(windows) if k == 0 or windows[k - 1] != w]
        assert sorted(runs) == list(range(len(ends)))  # each window's rows together
    state = loader.state_dict()
    assert state["window"]["w"] == window and state["window"]["groups"] != 0


def test_a_files_loader_resumes_and_pickles_by_its_paths(tmp_path):
    paths, n = files_of(tmp_path, [[5, 6], [7]])
    options = dict(shuffle=True, seed=5, row_ids=True, prefetch=0)
    whole = [rows_of(b) for b in Loader(paths, 3, **options)]
    first = Loader(paths, 3, **options)
    it = iter(first)
    for _ in range(2):
        next(it)
    state = first.state_dict()
    again = pickle.loads(pickle.dumps(first))
    again.load_state_dict(state)
    assert [rows_of(b) for b in again] == whole[2:]
    # Windows of whole record batches: a state taken over other record
    # batches is refused, naming the key.
    windowed = Loader(paths, 3, shuffle=True, window=4).state_dict()
    (tmp_path / "other").mkdir()
    other_paths, _ = files_of(tmp_path / "other", [[6, 5], [7]])  # 18 rows too
    other = Loader(other_paths, 3, shuffle=True, window=4)
    with pytest.raises(ValueError, match="window"):
        other.load_state_dict(windowed)


def test_the_c_face_opens_the_same_files(tmp_path):
    import arrow_dlpack_ctypes as ad

    lib = ad.lib
    paths, n = files_of(tmp_path, [[5, 6], [7]])
    options = dict(shuffle=True, seed=9, row_ids=True, prefetch=0)
    reference = [rows_of(b) for b in Loader(str(tmp_path), 4, **options)]
    names = (ctypes.c_char_p * 1)(str(tmp_path).encode())
    o = ad.ArrowDlpackLoaderOptions(batch_size=4, shuffle=1, seed=9, row_ids=1)
    error = ad.ArrowDlpackError()
    loader = lib.arrow_dlpack_loader_open(names, 1, ctypes.byref(o), ctypes.byref(error))
    assert loader, error.message
    try:
        got = []
        while True:
            batch = ad.ArrowDlpackBatch()
            assert lib.arrow_dlpack_loader_next(loader, ctypes.byref(batch), ctypes.byref(error)) == 0
            if batch.n_outputs == 0:
                break
            outputs = {batch.outputs[i].name: batch.outputs[i] for i in range(batch.n_outputs)}
            t = ad.DLManagedTensorVersioned.from_address(outputs[b"_row"].tensors[0]).dl_tensor
            got.append(list((ctypes.c_int64 * t.shape[0]).from_address(t.data)))
            lib.arrow_dlpack_batch_release(ctypes.byref(batch))
        assert got == reference
    finally:
        lib.arrow_dlpack_loader_free(loader)
    missing = (ctypes.c_char_p * 1)(str(tmp_path / "nope.arrow").encode())
    assert not lib.arrow_dlpack_loader_open(missing, 1, ctypes.byref(o), ctypes.byref(error))
    assert error.status == 1 and b"nope.arrow" in error.message
