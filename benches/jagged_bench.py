#!/usr/bin/env python3
"""Variable-length columns: padded token batches against what users do
today, the padded copy against a memcpy, and the jagged export against the
plain export of its values, all measured in the same run.

    python benches/jagged_bench.py      (with the package, torch and datasets installed)

Writes the section "jagged" of docs/benchmarks.md.
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
from page import publish, rounds  # noqa: E402

ROWS, BATCH = 200_000, 1_024


def best(fn, n):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def token_column(rows, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 128, rows)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = rng.integers(0, 50_000, int(offsets[-1]), dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


def hugging_face(column):
    import datasets
    from datasets.table import InMemoryTable

    ds = datasets.Dataset(InMemoryTable(pa.table({"ids": column}))).with_format("torch")
    pad = torch.nn.utils.rnn.pad_sequence

    def run():
        for batch in ds.iter(batch_size=BATCH):
            ids = batch["ids"]
            pad(ids, batch_first=True)

    return run


def numpy_by_hand(column):
    # What a careful user writes over pyarrow: the slice's offsets (which
    # do not start at 0), the values, a mask of real positions, a scatter.
    def run():
        for start in range(0, len(column), BATCH):
            part = column.slice(start, BATCH)
            offsets = part.offsets.to_numpy()
            values = part.values.to_numpy()[offsets[0] : offsets[-1]]
            lengths = np.diff(offsets)
            out = np.zeros((len(part), lengths.max()), dtype=values.dtype)
            mask = np.arange(lengths.max()) < lengths[:, None]
            out[mask] = values
            torch.from_numpy(out), torch.from_numpy(mask)

    return run


def ours(column):
    def run():
        for start in range(0, len(column), BATCH):
            values, mask = arrow_dlpack.to_padded(column.slice(start, BATCH))
            torch.from_dlpack(values), torch.from_dlpack(mask)

    return run


def main():
    column = token_column(ROWS)
    n = rounds(7)
    lines = [
        f"Padded batches of {BATCH:,} token-id rows (int32, 5-127 ids a row), {ROWS:,} rows, "
        "to a torch tensor and its attention mask; best of "
        f"{n} (HF: of {min(n, 3)}).",
        "",
        "| path | ms for all batches | ours is faster by | target |",
        "|---|---|---|---|",
    ]
    t_ours = best(ours(column), n)
    t_numpy = best(numpy_by_hand(column), n)
    t_hf = best(hugging_face(column), min(n, 3))
    lines.append(f"| `arrow_dlpack.to_padded(column.slice(...))` | {t_ours * 1e3:.1f} | | |")
    lines.append(f"| NumPy by hand over pyarrow's `offsets`/`values` | {t_numpy * 1e3:.1f} | {t_numpy / t_ours:.1f}x | 2x |")
    lines.append(
        f"| Hugging Face `with_format(\"torch\")` + `pad_sequence` | {t_hf * 1e3:.1f} | {t_hf / t_ours:.1f}x | 20x |"
    )

    # The padded copy against a memcpy of the bytes it writes (values and
    # mask), both into warm memory: one large batch, so per-call costs vanish.
    big = column.slice(0, 50_000)
    values, mask = arrow_dlpack.to_padded(big)
    written = np.from_dlpack(values).nbytes + np.from_dlpack(mask).nbytes
    src = np.ones(written, np.uint8)
    dst = np.empty_like(src)
    t_copy = best(lambda: np.copyto(dst, src), rounds(15))
    t_pad = best(lambda: arrow_dlpack.to_padded(big), rounds(15))
    lines += [
        "",
        f"The padded copy of {len(big):,} rows ({written / 2**20:.0f} MiB written, values and mask) "
        "against a warm memcpy of as many bytes:",
        "",
        "| copy | GB/s | vs memcpy | target |",
        "|---|---|---|---|",
        f"| memcpy (`np.copyto`) | {written / t_copy / 1e9:.1f} | 1.00x | |",
        f"| `to_padded` | {written / t_pad / 1e9:.1f} | {t_copy / t_pad:.2f}x | 0.8x |",
    ]

    # The jagged export is O(1) in rows: against the plain export of the
    # values, for a short and a long column.
    lines += [
        "",
        "The jagged export of an unsliced column (shared: no pass over the offsets; both tensors made) "
        "against the plain export of its values array (`to_dlpack` makes its tensor when "
        "`__dlpack__` is called), per call from Python; the C-level figures are in the criterion table. "
        "From Python both include pyarrow's export of what they read: for the column a list schema and two "
        "levels of arrays, which alone costs about twice its values' (the last two columns, pyarrow's "
        "`__arrow_c_array__`, same run):",
        "",
        "| rows | `to_jagged(column)` us | `to_dlpack(column.values).__dlpack__()` us | ratio | target "
        "| pyarrow's export of the column us | of its values us |",
        "|---|---|---|---|---|---|---|",
    ]
    for rows in (1_000, 1_000_000):
        col = token_column(rows, seed=1)
        flat = col.values
        reps = 2_000

        def jag():
            for _ in range(reps):
                arrow_dlpack.to_jagged(col)

        def plain():
            for _ in range(reps):
                arrow_dlpack.to_dlpack(flat).__dlpack__()

        def pyarrow_column():
            for _ in range(reps):
                col.__arrow_c_array__()

        def pyarrow_values():
            for _ in range(reps):
                flat.__arrow_c_array__()

        t_j = best(jag, rounds(9)) / reps
        t_p = best(plain, rounds(9)) / reps
        t_pc = best(pyarrow_column, rounds(9)) / reps
        t_pv = best(pyarrow_values, rounds(9)) / reps
        lines.append(
            f"| {rows:,} | {t_j * 1e6:.2f} | {t_p * 1e6:.2f} | {t_j / t_p:.2f}x | within 2x "
            f"| {t_pc * 1e6:.2f} | {t_pv * 1e6:.2f} |"
        )
    publish("jagged", "\n".join(lines))


if __name__ == "__main__":
    main()
