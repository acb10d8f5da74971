"""Copies on several threads: the same bytes on any thread count, the
count's switches, and fork safety (``os.fork``, ``multiprocessing`` with
fork, PyTorch ``DataLoader`` workers) after a parallel copy."""

import multiprocessing
import os
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import arrow_dlpack

# 8 float64 columns of 200,000 rows: a 12.8 MB row-major copy, well above
# the split's threshold (1 MiB), so that the pool's threads run.
ROWS, COLUMNS = 200_000, 8


def big_table(seed=0):
    rng = np.random.default_rng(seed)
    return pa.table({f"c{j}": rng.standard_normal(ROWS) for j in range(COLUMNS)})


def row_major(table):
    return np.from_dlpack(arrow_dlpack.to_dlpack(table, order="C"))


@pytest.fixture
def threads_restored():
    before = arrow_dlpack.threads()
    yield
    arrow_dlpack.set_threads(before)


def test_the_count_is_set_and_read(threads_restored):
    assert 1 <= arrow_dlpack.threads() <= 8 or "ARROW_DLPACK_THREADS" in os.environ
    arrow_dlpack.set_threads(3)
    assert arrow_dlpack.threads() == 3
    for bad in (0, -2):
        with pytest.raises(ValueError, match="positive"):
            arrow_dlpack.set_threads(bad)
    assert arrow_dlpack.threads() == 3


def test_the_environment_variable_sets_the_default():
    code = "import arrow_dlpack; print(arrow_dlpack.threads())"
    for value, expected in (("5", "5"), ("1", "1")):
        env = {**os.environ, "ARROW_DLPACK_THREADS": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected
    # Not a positive number: the machine's cores, at most 8.
    env = {**os.environ, "ARROW_DLPACK_THREADS": "lots"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(min(os.cpu_count(), 8))


@settings(max_examples=15, deadline=None)
@given(
    columns=st.integers(1, 40),
    dtype=st.sampled_from(["float64", "float32", "int32", "int16"]),
    nulls=st.booleans(),
    order=st.sampled_from(["C", "F"]),
    offset=st.integers(0, 100),
    threads=st.integers(2, 8),
    seed=st.integers(0, 2**32),
)
def test_copies_are_the_same_bytes_on_any_thread_count(columns, dtype, nulls, order, offset, threads, seed):
    rng = np.random.default_rng(seed)
    rows = (3 << 20) // (columns * 8) + offset
    data = {}
    for j in range(columns):
        values = (rng.standard_normal(rows) * 1000).astype(dtype)
        mask = rng.random(rows) < 0.1 if nulls else None
        data[f"c{j}"] = pa.array(values, mask=mask)
    table = pa.table(data).slice(offset)
    before = arrow_dlpack.threads()
    try:
        arrow_dlpack.set_threads(1)
        one = np.from_dlpack(arrow_dlpack.to_dlpack(table, order=order, null_value=-1, dtype="float64"))
        arrow_dlpack.set_threads(threads)
        many = np.from_dlpack(arrow_dlpack.to_dlpack(table, order=order, null_value=-1, dtype="float64"))
    finally:
        arrow_dlpack.set_threads(before)
    assert one.tobytes(order="A") == many.tobytes(order="A")
    assert one.flags.c_contiguous == many.flags.c_contiguous
    # And against NumPy: the same values.
    expected = np.stack([table.column(j).fill_null(-1).to_numpy().astype("float64") for j in range(columns)], axis=1)
    np.testing.assert_array_equal(many, expected)


def test_padded_batches_are_the_same_on_any_thread_count(threads_restored):
    rng = np.random.default_rng(3)
    lengths = rng.integers(0, 100, 60_000)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    column = pa.ListArray.from_arrays(pa.array(offsets), pa.array(rng.integers(0, 50_000, offsets[-1], dtype=np.int32)))
    arrow_dlpack.set_threads(1)
    values, mask = (np.from_dlpack(t) for t in arrow_dlpack.to_padded(column, side="left"))
    arrow_dlpack.set_threads(4)
    values4, mask4 = (np.from_dlpack(t) for t in arrow_dlpack.to_padded(column, side="left"))
    assert values.tobytes() == values4.tobytes() and mask.tobytes() == mask4.tobytes()


def _copy_in_child(seed):
    """A parallel copy in a forked worker: its values, summed."""
    out = row_major(big_table(seed))
    return float(out.sum())


def test_a_forked_child_copies_again_without_hanging(threads_restored):
    arrow_dlpack.set_threads(4)
    expected = float(row_major(big_table(1)).sum())  # the parent's pool runs
    pid = os.fork()
    if pid == 0:  # the child: a parallel copy of its own, then out
        try:
            ok = float(row_major(big_table(1)).sum()) == expected
        finally:
            os._exit(0 if ok else 3)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung in its first parallel copy")


def test_multiprocessing_fork_workers_copy(threads_restored):
    arrow_dlpack.set_threads(4)
    expected = [_copy_in_child(s) for s in range(4)]  # the parent's pool runs
    with multiprocessing.get_context("fork").Pool(2) as pool:
        got = pool.map_async(_copy_in_child, range(4)).get(timeout=120)
    assert got == expected


def test_torch_dataloader_fork_workers_copy(threads_restored):
    torch = pytest.importorskip("torch")
    arrow_dlpack.set_threads(4)
    table = big_table(2)
    parts = [table.slice(k * 50_000, 50_000) for k in range(4)]
    expected = [torch.from_dlpack(arrow_dlpack.to_dlpack(p, order="C")).clone() for p in parts]

    class Parts(torch.utils.data.Dataset):
        def __len__(self):
            return len(parts)

        def __getitem__(self, k):
            # A copy of 3.2 MB in the worker: several threads there too.
            return torch.from_dlpack(arrow_dlpack.to_dlpack(parts[k], order="C"))

    loader = torch.utils.data.DataLoader(
        Parts(), batch_size=None, num_workers=2, multiprocessing_context="fork", timeout=120
    )
    got = list(loader)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
