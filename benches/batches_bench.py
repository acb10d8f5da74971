#!/usr/bin/env python3
"""Training batches: arrow_dlpack.torch.batches against what users run
today (Hugging Face `with_format`, Ray Data `iter_torch_batches`), and the
batcher's own cost per batch, all measured in the same run.

    python benches/batches_bench.py     (with the package, torch, datasets and ray installed)

Writes the section "batches" of docs/benchmarks.md.
"""

import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import torch  # noqa: E402

import arrow_dlpack  # noqa: E402
import arrow_dlpack.torch as adt  # noqa: E402
from page import SMOKE, publish, rounds  # noqa: E402

BATCH = 1_024
FEATURES = [f"f{j}" for j in range(8)]


def best(fn, n):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def dense_table(rows, seed=0):
    rng = np.random.default_rng(seed)
    return pa.table({name: rng.standard_normal(rows).astype(np.float32) for name in FEATURES})


def hugging_face(lines):
    import datasets

    rows = 20_000 if SMOKE else 200_000
    rng = np.random.default_rng(1)
    dense = dense_table(rows)
    lengths = rng.integers(5, 128, rows)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(rng.integers(0, 50_000, offsets[-1], dtype=np.int32)))
    ds = datasets.Dataset(datasets.table.InMemoryTable(dense.append_column("input_ids", ids)))
    table = ds.data.table
    # Each formatted to the columns its loop reads, as a user would.
    as_torch = ds.with_format("torch", columns=FEATURES)
    as_numpy = ds.with_format("numpy", columns=FEATURES)
    ids_torch = ds.with_format("torch", columns=["input_ids"])

    def hf_torch():
        for b in as_torch.iter(batch_size=BATCH):
            torch.stack([b[name] for name in FEATURES], dim=1)

    def hf_numpy():
        for b in as_numpy.iter(batch_size=BATCH):
            np.stack([b[name] for name in FEATURES], axis=1)

    def ours():
        for b in adt.batches(table, BATCH, stack={"x": FEATURES}, columns=[]):
            b["x"]

    def hf_ids():
        pad = torch.nn.utils.rnn.pad_sequence
        for b in ids_torch.iter(batch_size=BATCH):
            pad(b["input_ids"], batch_first=True)

    def ours_ids():
        for b in adt.batches(table, BATCH, columns=["input_ids"]):
            b["input_ids"]

    n = rounds(5)
    t_ours, t_torch, t_numpy = best(ours, n), best(hf_torch, min(n, 3)), best(hf_numpy, min(n, 3))
    t_ids, t_hf_ids = best(ours_ids, n), best(hf_ids, min(n, 3))
    lines += [
        f"Hugging Face `datasets`, {rows:,} rows in batches of {BATCH:,}, to torch tensors; best of {n} "
        "(Hugging Face: of 3).",
        "",
        "| batches of | path | ms | ours is faster by | target |",
        "|---|---|---|---|---|",
        f"| 8 float32 features, one matrix | `adt.batches(ds.data.table, stack=...)` | {t_ours * 1e3:.1f} | | |",
        f"| | `with_format(\"torch\")` + `torch.stack` | {t_torch * 1e3:.1f} | {t_torch / t_ours:.0f}x | 20x |",
        f"| | `with_format(\"numpy\")` + `np.stack` | {t_numpy * 1e3:.1f} | {t_numpy / t_ours:.0f}x | |",
        f"| token ids (5-127 a row), padded + mask | `adt.batches(ds.data.table)` | {t_ids * 1e3:.1f} | | |",
        f"| | `with_format(\"torch\")` + `pad_sequence` | {t_hf_ids * 1e3:.1f} | {t_hf_ids / t_ids:.0f}x | 20x |",
    ]


def ray_data(lines):
    import ray

    rows = 50_000 if SMOKE else 500_000
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        ds = ray.data.from_arrow(dense_table(rows)).materialize()

        def theirs():
            for b in ds.iter_torch_batches(batch_size=BATCH):
                torch.stack([b[name] for name in FEATURES], dim=1)

        def ours():
            source = ds.iter_batches(batch_format="pyarrow", batch_size=8 * BATCH)
            for b in adt.batches(source, BATCH, stack={"x": FEATURES}, columns=[]):
                b["x"]

        n = rounds(3)
        t_theirs, t_ours = best(theirs, n), best(ours, n)
    finally:
        ray.shutdown()
    lines += [
        "",
        f"Ray Data on a local cluster (`ray.init(num_cpus=2)`), {rows:,} rows of 8 float32 columns in batches of "
        f"{BATCH:,}, to one torch matrix a batch; best of {n}.",
        "",
        "| path | ms | ours is faster by | target |",
        "|---|---|---|---|",
        f"| `adt.batches(ds.iter_batches(batch_format=\"pyarrow\"), ...)` | {t_ours * 1e3:.0f} | | |",
        f"| `ds.iter_torch_batches()` + `torch.stack` | {t_theirs * 1e3:.0f} | {t_theirs / t_ours:.1f}x | 5x |",
    ]


def overhead(lines):
    # Per batch, where nothing is copied (8 columns shared inside one chunk)
    # the time is the batcher's own; with a stack group, beside the copy.
    table = dense_table(1 << 20).combine_chunks()
    size = 256
    count = len(table) // size
    per = {}
    for label, kwargs in (
        ("8 columns, each shared (no copy)", {}),
        ("one stack group of 8 (a copy of 8 KiB a batch)", {"stack": {"x": FEATURES}, "columns": []}),
    ):
        def run():
            for b in arrow_dlpack.batches(table, size, **kwargs):
                pass

        per[label] = best(run, rounds(5)) / count
    src, dst = np.ones(size * 8 * 4, np.uint8), np.empty(size * 8 * 4, np.uint8)
    reps = 10_000
    copy = best(lambda: [np.copyto(dst, src) for _ in range(reps)], rounds(5)) / reps
    lines += [
        "",
        f"The batcher's own cost per batch ({size} rows, 8 float32 columns, one chunk; a dict of exporters made "
        "each time), and a memcpy of a stack group's bytes for scale:",
        "",
        "| batch | us a batch | target |",
        "|---|---|---|",
    ]
    for label, t in per.items():
        lines.append(f"| {label} | {t * 1e6:.1f} | < 10 beyond the copies |")
    lines.append(f"| memcpy of 8 KiB (`np.copyto`) | {copy * 1e6:.2f} | |")


def main():
    lines = []
    hugging_face(lines)
    ray_data(lines)
    overhead(lines)
    publish("batches", "\n".join(lines))


if __name__ == "__main__":
    main()
