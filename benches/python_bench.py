#!/usr/bin/env python3
"""Per-call cost of arrow_dlpack.to_dlpack -> numpy.from_dlpack against
pyarrow's native numpy.from_dlpack(array), and of pyarrow.array(
arrow_dlpack.from_dlpack(x)) against pyarrow.array(x), measured in the
same run; the DLPack C exchange API beside __dlpack__; the copies and
tables against pyarrow's own.

    python benches/python_bench.py      (with the package installed)

Writes the sections "calls", "copies" and "tables" of docs/benchmarks.md:
the two paths for n = 1 and n = 1e6, their ratio, where the time of ours
goes, step by step; the copies against pyarrow's; tables against pyarrow,
polars and NumPy at 1, 2 and the default thread count.
"""

import os
import sys
import timeit

# NumPy's OpenBLAS threads spin between calls; on a small machine they take
# the core the other side of a pair would run on. Nothing here uses BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

import arrow_dlpack  # noqa: E402
from arrow_dlpack import from_dlpack, to_dlpack  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from page import SMOKE, publish, rounds  # noqa: E402

NUMBER = 200 if SMOKE else 20_000
ROUNDS = rounds(15)


def per_call_ns(stmt, setup_globals) -> float:
    return min(timeit.repeat(stmt, globals=setup_globals, number=NUMBER, repeat=ROUNDS)) / NUMBER * 1e9


def paired_ns(native_stmt, our_stmt, g):
    """Both statements, alternating round by round (the machine's noise hits
    both alike); the best round of each."""
    native, ours = [], []
    for _ in range(ROUNDS):
        native.append(timeit.timeit(native_stmt, globals=g, number=NUMBER))
        ours.append(timeit.timeit(our_stmt, globals=g, number=NUMBER))
    return min(native) / NUMBER * 1e9, min(ours) / NUMBER * 1e9


def calls() -> list:
    lines = []
    print = lines.append  # noqa: A001 (the section's lines)
    # Both directions against pyarrow's own, paired round by round.
    rows = []
    for n in (1, 1_000_000):
        a = pa.array(np.arange(n, dtype=np.float64))
        x = np.arange(n, dtype=np.float64)
        g = {"np": np, "pa": pa, "a": a, "x": x, "to_dlpack": to_dlpack, "from_dlpack": from_dlpack}
        native, ours = paired_ns("np.from_dlpack(a)", "np.from_dlpack(to_dlpack(a))", g)
        # pyarrow's arrays take its pointer export (into the exporter), not
        # its capsules: that export is inside `to_dlpack(a)` below, and no
        # cost of pyarrow's can be subtracted from ours from here (the
        # C-level figures are the library's own part).
        rows.append((f"`np.from_dlpack(to_dlpack(a))`, n = {n:,}", "`np.from_dlpack(a)`", native, ours, "3x"))
        native, ours = paired_ns("pa.array(x)", "pa.array(from_dlpack(x))", g)
        rows.append((f"`pa.array(from_dlpack(x))`, n = {n:,}", "`pa.array(x)`", native, ours, "2x"))

    a = pa.array([1.0])
    g = {"a": a, "np": np, "to_dlpack": to_dlpack, "from_dlpack": from_dlpack, "x": np.arange(1.0)}
    steps = [
        ("pyarrow native, for reference: `np.from_dlpack(a)`", "np.from_dlpack(a)"),
        ("pyarrow's capsule export (not used for pyarrow's arrays; other producers' path): "
         "`a.__arrow_c_device_array__()`", "a.__arrow_c_device_array__()"),
        ("pyarrow's CPU capsule export: `a.__arrow_c_array__()`", "a.__arrow_c_array__()"),
        ("`to_dlpack(a)`: pyarrow's pointer export into the exporter (and their release)", "to_dlpack(a)"),
        ("`to_dlpack(a).__dlpack__(max_version=(1, 3))`: and the export, the capsule (and its deletion)",
         "to_dlpack(a).__dlpack__(max_version=(1, 3))"),
        ("`np.from_dlpack(to_dlpack(a))`: and NumPy's side", "np.from_dlpack(to_dlpack(a))"),
        ("floor, for reference: NumPy's own C exporter, `x.__dlpack__(...)` as NumPy calls it (capsule and "
         "deleter included)", "x.__dlpack__(dl_device=None, copy=None, max_version=(1, 0))"),
        ("floor, for reference: `np.from_dlpack(x)` (NumPy's exporter and NumPy's side)", "np.from_dlpack(x)"),
        ("reverse: `from_dlpack(x)` (NumPy's `__dlpack__`, the import, the object)", "from_dlpack(x)"),
        ("reverse: `from_dlpack(x).__arrow_c_array__()` (and two capsules)", "from_dlpack(x).__arrow_c_array__()"),
    ]
    print("| path | pyarrow's own | pyarrow | arrow_dlpack | ratio | target |")
    print("|---|---|---|---|---|---|")
    for label, theirs, native, ours, target in rows:
        print(f"| {label} | {theirs} | {native:.0f} ns | {ours:.0f} ns | {ours / native:.2f}x | <= {target} |")
    print("")
    print("| step (n = 1) | cost |")
    print("|---|---|")
    for label, stmt in steps:
        print(f"| {label} | {per_call_ns(stmt, g):.0f} ns |")
    return lines + exchange()


def exchange() -> list:
    """The DLPack C exchange API beside `__dlpack__`, with apache-tvm-ffi
    (whose `from_dlpack` tries the API first, and whose test wrapper type
    offers it)."""
    lines = []
    print = lines.append  # noqa: A001
    try:
        import tvm_ffi
    except ImportError:
        return ["", "(apache-tvm-ffi not installed: no exchange API figures)"]
    a = pa.array([1.0])
    t = tvm_ffi.from_dlpack(np.arange(1.0))
    g = {"np": np, "a": a, "t": t, "w": tvm_ffi.core.DLTensorTestWrapper(t), "to_dlpack": to_dlpack,
         "from_dlpack": from_dlpack, "tvm_from_dlpack": tvm_ffi.from_dlpack}
    dunder, api = paired_ns("from_dlpack(t)", "from_dlpack(w)", g)
    print("")
    print("| exchange API (n = 1) | `__dlpack__` | exchange API | saved |")
    print("|---|---|---|---|")
    print(f"| consumer: `from_dlpack` of a tvm-ffi tensor (its `__dlpack__`) / of the same tensor in tvm-ffi's "
          f"wrapper type that offers the API | {dunder:.0f} ns | {api:.0f} ns | {dunder - api:.0f} ns |")
    dunder, api = paired_ns("np.from_dlpack(to_dlpack(a))", "tvm_from_dlpack(to_dlpack(a))", g)
    print(f"| producer: `np.from_dlpack(to_dlpack(a))` (NumPy calls `__dlpack__`) / `tvm_ffi.from_dlpack(to_dlpack(a))` "
          f"(tvm-ffi calls the API) | {dunder:.0f} ns | {api:.0f} ns | {dunder - api:.0f} ns |")
    return lines


def copies() -> list:
    """The one-copy paths against pyarrow's own, 64 MiB out, same run."""
    import pyarrow.compute as pc

    n = 8 << 20
    values = np.arange(n, dtype=np.float64)
    chunked = pa.chunked_array([values[k * (n // 8):(k + 1) * (n // 8)] for k in range(8)])
    with_nulls = pa.array(values, mask=(np.arange(n) % 96 == 0))
    booleans = pa.array(np.arange(n * 8) % 3 == 0)
    # Decimals as SQL engines hand them out: prices (at most 16 digits:
    # the one-rounding path) and full-width values (the double-double one).
    rng = np.random.default_rng(0)
    ints = rng.integers(-(10**12), 10**12, n)
    words = np.stack([ints, -(ints < 0).astype(np.int64)], 1).astype(np.int64).tobytes()
    prices = pa.Array.from_buffers(pa.decimal128(18, 4), n, [None, pa.py_buffer(words)])
    wide = pa.Array.from_buffers(
        pa.decimal128(38, 10), n, [None, pa.py_buffer(np.stack([ints, ints], 1).astype(np.int64).tobytes())]
    )
    # Run-end encoded float64, runs of 8 rows.
    runs = pa.RunEndEncodedArray.from_arrays(
        pa.array(np.arange(8, n + 1, 8, dtype=np.int32)), pa.array(rng.random(n // 8))
    )
    to_dlpack = arrow_dlpack.to_dlpack
    cases = [
        ("concatenate 8 float64 chunks", "chunked.to_numpy()", "np.from_dlpack(to_dlpack(chunked))", n * 8),
        ("fill 1 in 96 nulls (float64)", "pc.fill_null(with_nulls, -1.0).to_numpy()",
         "np.from_dlpack(to_dlpack(with_nulls, null_value=-1))", n * 8),
        ("unpack 64M booleans", "booleans.to_numpy(zero_copy_only=False)", "np.from_dlpack(to_dlpack(booleans))", n * 8),
        ("decimal128(18, 4) -> float64 (against `cast`)", "pc.cast(prices, pa.float64()).to_numpy()",
         "np.from_dlpack(to_dlpack(prices, dtype='float64'))", n * 8),
        ("decimal128(38, 10), full width -> float64", "pc.cast(wide, pa.float64(), safe=False).to_numpy()",
         "np.from_dlpack(to_dlpack(wide, dtype='float64'))", n * 8),
        ("decode run-end encoded float64, runs of 8 (against `run_end_decode`)",
         "pc.run_end_decode(runs).to_numpy()", "np.from_dlpack(to_dlpack(runs))", n * 8),
    ]
    g = {"np": np, "pa": pa, "pc": pc, "chunked": chunked, "with_nulls": with_nulls, "booleans": booleans,
         "prices": prices, "wide": wide, "runs": runs, "to_dlpack": to_dlpack}
    lines = []
    print = lines.append  # noqa: A001
    print(f"On the default thread count ({arrow_dlpack.threads()}).")
    print("")
    print("| copy (64 MiB out) | pyarrow | arrow_dlpack | speed-up |")
    print("|---|---|---|---|")
    for label, theirs, ours, out_bytes in cases:
        t_theirs = min(timeit.repeat(theirs, globals=g, number=3, repeat=rounds(5))) / 3
        t_ours = min(timeit.repeat(ours, globals=g, number=3, repeat=rounds(5))) / 3
        rate = (lambda t: f"{out_bytes / t / 1e9:.1f} GB/s") if "booleans" not in label else (lambda t: f"{n * 8 / t / 1e9:.2f} G elements/s")
        print(f"| {label} | {rate(t_theirs)} | {rate(t_ours)} | {t_theirs / t_ours:.2f}x |")
    return lines


def tables() -> list:
    """Record batches as matrices against pyarrow's to_tensor, polars'
    to_numpy and NumPy's column_stack, same run; memcpy of the same bytes
    (the columns' own, into warm memory) as the floor."""
    try:
        import polars as pl
    except ImportError:
        pl = None
    to_dlpack = arrow_dlpack.to_dlpack
    rng = np.random.default_rng(0)

    def best(stmt, g, number=3, repeat=7):
        return min(timeit.repeat(stmt, globals=g, number=number, repeat=rounds(repeat))) / number

    lines = []
    print = lines.append  # noqa: A001
    default = arrow_dlpack.threads()
    counts = sorted({1, 2, default})
    heads = " | ".join(f"arrow_dlpack, {t} thread{'s' if t > 1 else ''}" for t in counts)
    print(f"polars copies on all {os.cpu_count()} cores; arrow_dlpack's default here is {default} threads. "
          "memcpy: the columns' bytes copied into warm memory on one thread (NumPy). arrow_dlpack reads "
          "the pyarrow batch, and in the column \"from the polars frame\" the polars DataFrame itself "
          "(its `__arrow_c_stream__`, at the default threads): \"vs polars\" compares that with polars' "
          "own `to_numpy` of the same frame (a pyarrow batch's export alone costs about 0.5 ms at 1,000 "
          "columns, polars' about 0.1 ms).")
    print("")
    print(f"| table (float64) | layout | pyarrow `to_tensor` | polars `to_numpy` | `np.column_stack` | {heads} | "
          "arrow_dlpack from the polars frame | memcpy, 1 thread | vs polars | default vs memcpy |")
    print("|---|---|---|---|---|" + "---|" * len(counts) + "---|---|---|---|")
    before = arrow_dlpack.threads()
    for cols, rows in ((8, 1 << 20), (2, 1 << 22), (100, 83_886), (1000, 8_388)):
        batch = pa.record_batch({f"c{j}": rng.random(rows) for j in range(cols)})
        df = pl.from_arrow(batch) if pl is not None else None
        out = np.empty(rows * cols)
        columns = [c.to_numpy() for c in batch.columns]
        g = {"np": np, "b": batch, "df": df, "to_dlpack": to_dlpack, "out": out, "columns": columns, "rows": rows}
        memcpy = best("for j, c in enumerate(columns): out[j * rows:(j + 1) * rows] = c", g)
        stack = best("np.column_stack(columns)", g) if cols <= 100 else None
        mb = rows * cols * 8
        for layout, row_major, order, polars_order in (("row-major (C)", True, "C", "c"), ("column-major (F)", False, "F", "fortran")):
            theirs = best(f"b.to_tensor(row_major={row_major})", g)
            ours = {}
            for t in counts:
                arrow_dlpack.set_threads(t)
                ours[t] = best(f"np.from_dlpack(to_dlpack(b, order={order!r}))", g)
            arrow_dlpack.set_threads(before)
            pol = best(f"df.to_numpy(order={polars_order!r})", g) if df is not None else None
            frame = best(f"np.from_dlpack(to_dlpack(df, order={order!r}))", g) if df is not None else None
            rate = lambda t: "-" if t is None else f"{mb / t / 1e9:.1f} GB/s"
            mine = " | ".join(rate(ours[t]) for t in counts)
            vs_polars = "-" if pol is None else f"{pol / frame:.2f}x"
            print(f"| {cols} x {rows:,} | {layout} | {rate(theirs)} | {rate(pol)} | {rate(stack if row_major else None)} | "
                  f"{mine} | {rate(frame)} | {rate(memcpy)} | {vs_polars} | {memcpy / ours[default]:.2f}x |")
    # Shared: columns laid end to end (a Fortran matrix's), any size.
    print("")
    print("| shared, 8 columns laid end to end | arrow_dlpack (`np.from_dlpack(to_dlpack(b))`) |")
    print("|---|---|")
    for rows in (1_000, 1_000_000):
        m = np.asfortranarray(rng.random((rows, 8)))
        b = pa.record_batch(arrow_dlpack.from_dlpack(m, columns=True))
        g = {"np": np, "b": b, "to_dlpack": to_dlpack}
        t = best("np.from_dlpack(to_dlpack(b, order='F'))", g, number=2000 if not SMOKE else 20, repeat=5)
        print(f"| {rows:,} rows | {t * 1e6:.1f} us |")
    return lines


if __name__ == "__main__":
    publish("calls", "\n".join(calls()))
    publish("copies", "\n".join(copies()))
    publish("tables", "\n".join(tables()))
