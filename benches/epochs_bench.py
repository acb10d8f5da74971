#!/usr/bin/env python3
"""Training epochs: one shuffled epoch of arrow_dlpack.Loader against the
by-hand ceiling (NumPy gathering whole rows from a prebuilt matrix), this
library by hand before the loader (`table.take` + `batches()`), Hugging
Face `datasets`, and torch's own `DataLoader` over tensors, all measured in
the same run; every system's epoch checked to hold each id once.

    python benches/epochs_bench.py     (with the package, torch and datasets installed)

Writes the section "epochs" of docs/benchmarks.md.
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
from page import SMOKE, publish, rounds  # noqa: E402

BATCH = 1_024
FEATURES = [f"f{j}" for j in range(8)]


def best(fn, n):
    """The fastest of `n` runs of `fn` (seconds), and its last result."""
    times, out = [], None
    for _ in range(n):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def dense(rows):
    rng = np.random.default_rng(0)
    columns = {name: rng.standard_normal(rows).astype(np.float32) for name in FEATURES}
    columns["label"] = rng.integers(0, 10, rows)
    columns["id"] = np.arange(rows, dtype=np.int64)
    # Chunks of 64 Ki rows, as a file or a dataset hands them over.
    return pa.Table.from_pydict(columns).combine_chunks().to_batches(max_chunksize=65_536)


def tokens(rows):
    rng = np.random.default_rng(1)
    lengths = rng.integers(16, 257, rows)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = rng.integers(0, 50_000, offsets[-1]).astype(np.int32)
    ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
    return pa.table({"input_ids": ids, "id": np.arange(rows, dtype=np.int64)})


def once(ids, rows, name):
    got = np.sort(np.concatenate(ids))
    assert np.array_equal(got, np.arange(rows)), f"{name}: every id once"


def dense_epoch(lines):
    rows = 20_000 if SMOKE else 1_000_000
    table = pa.Table.from_batches(dense(rows))
    perm = np.random.default_rng(7).permutation(rows)

    def ours():
        loader = arrow_dlpack.Loader(table, BATCH, stack={"x": FEATURES}, columns=["label", "id"], shuffle=True, seed=1)
        ids = []
        for b in loader:
            np.from_dlpack(b["x"])
            np.from_dlpack(b["label"])
            ids.append(np.from_dlpack(b["id"]))
        return ids

    matrix = np.stack([table.column(n).to_numpy() for n in FEATURES], axis=1)
    labels, id_column = table.column("label").to_numpy(), table.column("id").to_numpy()

    def numpy_rows():
        ids = []
        for i in range(0, rows, BATCH):
            p = perm[i : i + BATCH]
            matrix[p], labels[p]
            ids.append(id_column[p])
        return ids

    def by_hand():
        ids = []
        for i in range(0, rows, BATCH):
            part = table.take(perm[i : i + BATCH])
            for b in arrow_dlpack.batches(part, BATCH, stack={"x": FEATURES}, columns=["label", "id"]):
                np.from_dlpack(b["x"])
                ids.append(np.from_dlpack(b["id"]).copy())
        return ids

    def torch_loader():
        x = torch.from_numpy(matrix)
        y = torch.from_numpy(labels)
        i = torch.from_numpy(id_column)
        dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y, i), batch_size=BATCH, shuffle=True)
        return [b[2].numpy() for b in dl]

    n = rounds(3)
    results = {}
    for name, fn in (("ours", ours), ("numpy", numpy_rows), ("by hand", by_hand), ("torch", torch_loader)):
        t, ids = best(fn, 1 if name == "torch" else n)
        once(ids, rows, name)
        results[name] = rows / t
    hf_rows, hf_rate = hugging_face_dense(table)
    ours_rate = results["ours"]
    lines += [
        f"One shuffled epoch of {rows:,} rows (8 float32 features stacked into one matrix, an int64 label and id; "
        f"chunks of 65,536 rows), batches of {BATCH:,}, default threads and prefetch; rows per second, best of {n} "
        "(torch's DataLoader: one run). Every system's epoch holds each id once.",
        "",
        "| system | rows/s | `Loader` is faster by | target |",
        "|---|---|---|---|",
        f"| `arrow_dlpack.Loader(shuffle=True)` | {ours_rate / 1e6:.2f} M | | |",
        f"| NumPy `X[perm[i:i+B]]` from a prebuilt row-major matrix | {results['numpy'] / 1e6:.2f} M | "
        f"{ours_rate / results['numpy']:.2f}x | 1.0x |",
        f"| this library by hand: `table.take(perm batch)` + `batches()` | {results['by hand'] / 1e6:.2f} M | "
        f"{ours_rate / results['by hand']:.1f}x | 10x |",
        f"| torch `DataLoader(TensorDataset(...), shuffle=True)` | {results['torch'] / 1e6:.2f} M | "
        f"{ours_rate / results['torch']:.1f}x | |",
        f"| Hugging Face `ds.shuffle().with_format(\"torch\").iter(B)` ({hf_rows:,} rows) | {hf_rate / 1e6:.3f} M | "
        f"{ours_rate / hf_rate:.0f}x | 100x |",
    ]


def hugging_face_dense(table):
    import datasets

    rows = 4_000 if SMOKE else 100_000
    ds = datasets.Dataset(table.slice(0, rows).combine_chunks()).shuffle(seed=3).with_format("torch")
    start = time.perf_counter()
    ids = []
    for b in ds.iter(batch_size=BATCH):
        torch.stack([b[n] for n in FEATURES], dim=1)
        ids.append(b["id"].numpy())
    elapsed = time.perf_counter() - start
    got = np.sort(np.concatenate(ids))
    assert np.array_equal(got, np.arange(rows)), "Hugging Face: every id once"
    return rows, rows / elapsed


def padded_epoch(lines):
    rows = 10_000 if SMOKE else 200_000
    table = tokens(rows)
    perm = np.random.default_rng(7).permutation(rows)

    def ours():
        ids = []
        for b in arrow_dlpack.Loader(table, BATCH, shuffle=True, seed=1):
            values, mask = b["input_ids"]
            np.from_dlpack(values), np.from_dlpack(mask)
            ids.append(np.from_dlpack(b["id"]))
        return ids

    def by_hand():
        ids = []
        for i in range(0, rows, BATCH):
            for b in arrow_dlpack.batches(table.take(perm[i : i + BATCH]), BATCH):
                values, mask = b["input_ids"]
                np.from_dlpack(values)
                ids.append(np.from_dlpack(b["id"]).copy())
        return ids

    n = rounds(3)
    t_ours, ids = best(ours, n)
    once(ids, rows, "ours")
    t_hand, ids = best(by_hand, n)
    once(ids, rows, "by hand")
    # What a padded batch writes (values and mask), copied by memcpy.
    longest = 256
    src = np.ones(BATCH * longest * 5, np.uint8)
    dst = np.empty_like(src)
    batches = -(-rows // BATCH)
    t_copy, _ = best(lambda: [np.copyto(dst, src) for _ in range(batches)], n)
    hf_rows, hf_rate = hugging_face_padded(table)
    lines += [
        "",
        f"The same with a `list<int32>` token column (16 to 256 tokens a row), padded to each batch's longest row "
        f"with its mask: {rows:,} rows, batches of {BATCH:,}, best of {n}.",
        "",
        "| system | rows/s | `Loader` is faster by | target |",
        "|---|---|---|---|",
        f"| `arrow_dlpack.Loader(shuffle=True)`, padded | {rows / t_ours / 1e6:.3f} M | | |",
        f"| this library by hand: `table.take` + `batches()` | {rows / t_hand / 1e6:.3f} M | {t_hand / t_ours:.1f}x | 10x |",
        f"| Hugging Face `with_format(\"torch\")` + `pad_sequence` ({hf_rows:,} rows) | {hf_rate / 1e6:.3f} M | "
        f"{rows / t_ours / hf_rate:.0f}x | 15x |",
        f"| memcpy of the bytes the padded batches write (values and mask) | {rows / t_copy / 1e6:.3f} M | "
        f"{t_copy / t_ours:.2f}x | 0.5x |",
    ]


def hugging_face_padded(table):
    import datasets

    rows = 2_000 if SMOKE else 20_000
    ds = datasets.Dataset(table.slice(0, rows).combine_chunks()).shuffle(seed=3).with_format("torch")
    start = time.perf_counter()
    for b in ds.iter(batch_size=BATCH):
        torch.nn.utils.rnn.pad_sequence(list(b["input_ids"]), batch_first=True)
    return rows, rows / (time.perf_counter() - start)


def overheads(lines):
    rows = 20_000 if SMOKE else 1_000_000
    table = pa.Table.from_batches(dense(rows))
    options = dict(stack={"x": FEATURES}, columns=["label", "id"])
    n = rounds(3)

    def loader_epoch(size, **extra):
        def run():
            count = 0
            for b in arrow_dlpack.Loader(table, size, **options, **extra):
                np.from_dlpack(b["x"])
                count += 1
            return count

        return run

    def batches_epoch(size):
        def run():
            count = 0
            for b in arrow_dlpack.batches(table, size, **options):
                np.from_dlpack(b["x"])
                count += 1
            return count

        return run

    t_loader, count = best(loader_epoch(BATCH, prefetch=0), n)
    t_ahead, _ = best(loader_epoch(BATCH, prefetch=2), n)
    t_batches, _ = best(batches_epoch(BATCH), n)
    small = 32
    small_rows = 65_536
    part = table.slice(0, small_rows)
    t_small, small_count = best(
        lambda: sum(1 for _ in arrow_dlpack.Loader(part, small, shuffle=True, seed=1, prefetch=0, columns=["id"])), n
    )
    lines += [
        "",
        f"The loader's own cost: an unshuffled epoch against `batches()` over the same {rows:,} rows (batches of "
        f"{BATCH:,}, shared inside a chunk, one copy across two; both made in the caller's thread, `prefetch=0`), "
        f"the same with `prefetch=2` and a caller that does nothing between batches (each batch then waits on the "
        f"thread's hand-over: prefetching pays where a training step takes longer than making a batch), and the time "
        f"a shuffled batch of {small} rows of one int64 column takes (a gather of 256 bytes: the per-batch overhead, "
        f"the Python dict included); best of {n}.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| unshuffled `Loader(prefetch=0)` per batch, against `batches()` | {t_loader / count * 1e6:.1f} us vs "
        f"{t_batches / count * 1e6:.1f} us ({t_loader / t_batches:.2f}x) | <= 1.2x |",
        f"| unshuffled `Loader(prefetch=2)` per batch, an idle caller | {t_ahead / count * 1e6:.1f} us | |",
        f"| a shuffled batch of {small} rows | {t_small / small_count * 1e6:.1f} us | |",
    ]


def main():
    lines = []
    dense_epoch(lines)
    padded_epoch(lines)
    overheads(lines)
    publish("epochs", "\n".join(lines))


if __name__ == "__main__":
    main()
