#!/usr/bin/env python3
"""Writes the criterion table of docs/benchmarks.md from criterion's
results (section "criterion").

    cargo bench --bench export && python benches/report.py

Each row is a ratio against the baseline measured in the same run, so that
figures from a shared, noisy machine stay comparable.
"""
import json
import os
import pathlib
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from page import publish  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"


def ns(group, name):
    path = ROOT / group / name / "new" / "estimates.json"
    return json.loads(path.read_text())["median"]["point_estimate"]


def main():
    rows = []
    for shape in ("1d", "2d"):
        ours, base = ns("export_cycle", f"{shape}_arrow_dlpack"), ns("export_cycle", f"{shape}_baseline")
        rows.append((f"export + delete, {shape.upper()}", f"{ours:.1f} ns",
                     f"alloc + release + free: {base:.1f} ns", f"{ours / base:.2f}x the baseline"))
        if shape == "1d":
            minimal = ns("export_cycle", "1d_minimal_export")
            rows.append(("export + delete, 1D, against a minimal hand-written C export", f"{ours:.1f} ns",
                         f"minimal export + delete: {minimal:.1f} ns", f"{ours / minimal:.2f}x the minimal export"))
    for shape in ("1d", "2d"):
        ours, base = ns("import_cycle", f"{shape}_arrow_dlpack"), ns("import_cycle", f"{shape}_baseline")
        rows.append((f"import + release, {shape.upper()}", f"{ours:.1f} ns",
                     f"alloc + release + free: {base:.1f} ns", f"{ours / base:.2f}x the baseline"))
    for size in sorted(p.name for p in (ROOT / "null_scan" / "count_set_bits").iterdir() if p.name.isdigit()):
        count, read = ns("null_scan", f"count_set_bits/{size}"), ns("null_scan", f"plain_read/{size}")
        n = int(size)
        rows.append((f"unknown null count, {n >> 10} KiB bitmap", f"{n / count:.1f} GB/s",
                     f"plain read: {n / read:.1f} GB/s", f"{read / count:.2f}x memory speed"))
    if (ROOT / "copies").exists():
        memcpy = ns("copies", "memcpy_64MiB")
        fresh = ns("copies", "malloc_memcpy_free_64MiB")
        mib = 64 * 2**20
        for name, label in [("concatenate_8_chunks_64MiB", "concatenate 8 chunks of float64"),
                            ("fill_nulls_64MiB", "fill nulls (1 in 96) of float64"),
                            ("unpack_booleans_64M", "unpack 64M booleans to bytes")]:
            t = ns("copies", name)
            what = f"{mib / t:.1f} GB/s" + (f" ({mib / t:.2f} G elements/s)" if "booleans" in name else "")
            rows.append((f"{label}, 64 MiB out", what,
                         f"memcpy into warm memory: {mib / memcpy:.1f} GB/s; malloc + memcpy + free: {mib / fresh:.1f} GB/s",
                         f"{memcpy / t:.2f}x memcpy, {fresh / t:.2f}x malloc + memcpy"))
    if (ROOT / "tables").exists():
        memcpy = ns("tables", "memcpy_64MiB")
        fresh = ns("tables", "malloc_memcpy_free_64MiB")
        parallel = sorted(p.name for p in (ROOT / "tables").iterdir() if p.name.startswith("memcpy_64MiB_t"))
        mib = 64 * 2**20
        base = f"memcpy into warm memory, 1 thread: {mib / memcpy:.1f} GB/s" + "".join(
            f"; {p.split('_t')[1]} threads: {mib / ns('tables', p):.1f} GB/s" for p in parallel)
        for cols, n_rows in ((8, 1048576), (100, 83886), (1000, 8388)):
            for layout, name in (("row-major", "row_major_copy"), ("column-major", "column_major_copy")):
                for t, label in (("1", "1 thread"), ("2", "2 threads"), ("0", "the default threads")):
                    took = ns("tables", f"{name}_t{t}_{cols}x{n_rows}")
                    rows.append((f"table {cols} x {n_rows:,} float64 -> {layout} copy, {label}", f"{mib / took:.1f} GB/s",
                                 base, f"{memcpy / took:.2f}x 1-thread memcpy"))
        for cols, n_rows in ((2, 4194304),):
            for layout, name in (("row-major", "row_major_copy"), ("column-major", "column_major_copy")):
                took = ns("tables", f"{name}_t0_{cols}x{n_rows}")
                rows.append((f"table {cols} x {n_rows:,} float64 -> {layout} copy, the default threads",
                             f"{mib / took:.1f} GB/s", base, f"{memcpy / took:.2f}x 1-thread memcpy"))
        rows.append(("malloc + memcpy + free of 64 MiB (fresh pages, for scale)", f"{mib / fresh:.1f} GB/s", "-", "-"))
        one = ns("tables", "row_major_copy_t0_1x8388608")
        rows.append(("table 1 x 8,388,608 (one column: shared in any order)", f"{one:.0f} ns", "-", "O(1)"))
        for r in (1024, 1048576):
            t = ns("tables", f"shared_8x{r}")
            rows.append((f"table 8 x {r:,}, columns end to end: shared", f"{t:.0f} ns", "-", "O(1)"))
    if (ROOT / "jagged").exists():
        for n in (1000, 1000000):
            ours, base = ns("jagged", f"export_jagged/{n}"), ns("jagged", f"export_values/{n}")
            rows.append((f"jagged export + delete of both, unsliced `list<int32>` of {n:,} rows (shared)",
                         f"{ours:.1f} ns", f"plain export + delete of its values: {base:.1f} ns",
                         f"{ours / base:.2f}x (target: within 2x; O(1) in rows)"))
        memcpy, padded = ns("jagged", "memcpy_padded_bytes"), ns("jagged", "padded_50000")
        rows.append(("padded copy of 50,000 token rows (values + mask)", f"{memcpy / padded:.2f}x memcpy",
                     "memcpy of the bytes it writes", f"{memcpy / padded:.2f}x (target: 0.8x)"))
    lines = ["| measurement | arrow-dlpack | baseline (same run) | ratio |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    publish("criterion", "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
