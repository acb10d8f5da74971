#!/usr/bin/env python3
"""Per-call cost of arrow_dlpack.to_dlpack -> numpy.from_dlpack against
pyarrow's native numpy.from_dlpack(array), measured in the same run.

    python benches/python_bench.py      (with the package installed)

Prints a Markdown table for the README: the two paths for n = 1 and
n = 1e6, their ratio, and where the time of ours goes, step by step.
"""

import timeit

import numpy as np
import pyarrow as pa

import arrow_dlpack
from arrow_dlpack import _ffi

NUMBER = 20_000
ROUNDS = 15


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


def main() -> None:
    rows = []
    for n in (1, 1_000_000):
        a = pa.array(np.arange(n, dtype=np.float64))
        g = {"np": np, "a": a, "to_dlpack": arrow_dlpack.to_dlpack}
        native, ours = paired_ns("np.from_dlpack(a)", "np.from_dlpack(to_dlpack(a))", g)
        rows.append((f"n = {n:,}", native, ours))

    a = pa.array([1.0])
    schema_capsule, array_capsule = a.__arrow_c_device_array__()
    g = {
        "a": a,
        "np": np,
        "to_dlpack": arrow_dlpack.to_dlpack,
        "ffi": _ffi,
        "sc": schema_capsule,
        "ac": array_capsule,
        "ptr": _ffi._get_pointer,
        "new": _ffi.capsule_new,
        "version": _ffi.lib.arrow_dlpack_version,
        "at": __import__("ctypes").c_void_p.from_address,
        "address": _ffi._get_pointer(id(array_capsule), b"arrow_device_array") + _ffi.ArrowDeviceArray.sync_event.offset,
    }
    steps = [
        ("pyarrow native, for reference: `np.from_dlpack(a)`", "np.from_dlpack(a)"),
        ("producer: `a.__arrow_c_device_array__()`", "a.__arrow_c_device_array__()"),
        ("(pyarrow's `a.__arrow_c_array__()`, not used: it cannot say where the data is)", "a.__arrow_c_array__()"),
        ("foreign call 1-2: `PyCapsule_GetPointer` (each)", "ptr(id(sc), b'arrow_schema')"),
        ("reading `sync_event` from the struct", "at(address).value"),
        ("foreign call 3: a call into the library (here `arrow_dlpack_version`)", "version()"),
        ("foreign call 4: `PyCapsule_New` (with its destruction)", "new(1, b'dltensor', None)"),
        ("`to_dlpack(a)` in all", "to_dlpack(a)"),
        ("`to_dlpack(a).__dlpack__(max_version=(1, 3))`", "to_dlpack(a).__dlpack__(max_version=(1, 3))"),
    ]
    print("| path | pyarrow native | arrow_dlpack | ratio |")
    print("|---|---|---|---|")
    for label, native, ours in rows:
        print(f"| {label} | {native:.0f} ns | {ours:.0f} ns | {ours / native:.2f}x |")
    print()
    print("| step (n = 1) | cost |")
    print("|---|---|")
    for label, stmt in steps:
        print(f"| {label} | {per_call_ns(stmt, g):.0f} ns |")


def copies() -> None:
    """The one-copy paths against pyarrow's own, 64 MiB out, same run."""
    import pyarrow.compute as pc

    n = 8 << 20
    values = np.arange(n, dtype=np.float64)
    chunked = pa.chunked_array([values[k * (n // 8):(k + 1) * (n // 8)] for k in range(8)])
    with_nulls = pa.array(values, mask=(np.arange(n) % 96 == 0))
    booleans = pa.array(np.arange(n * 8) % 3 == 0)
    to_dlpack = arrow_dlpack.to_dlpack
    cases = [
        ("concatenate 8 float64 chunks", "chunked.to_numpy()", "np.from_dlpack(to_dlpack(chunked))", n * 8),
        ("fill 1 in 96 nulls (float64)", "pc.fill_null(with_nulls, -1.0).to_numpy()",
         "np.from_dlpack(to_dlpack(with_nulls, null_value=-1))", n * 8),
        ("unpack 64M booleans", "booleans.to_numpy(zero_copy_only=False)", "np.from_dlpack(to_dlpack(booleans))", n * 8),
    ]
    g = {"np": np, "pc": pc, "chunked": chunked, "with_nulls": with_nulls, "booleans": booleans, "to_dlpack": to_dlpack}
    print()
    print("| copy (64 MiB out) | pyarrow | arrow_dlpack | speed-up |")
    print("|---|---|---|---|")
    for label, theirs, ours, out_bytes in cases:
        t_theirs = min(timeit.repeat(theirs, globals=g, number=3, repeat=5)) / 3
        t_ours = min(timeit.repeat(ours, globals=g, number=3, repeat=5)) / 3
        rate = (lambda t: f"{out_bytes / t / 1e9:.1f} GB/s") if "booleans" not in label else (lambda t: f"{n * 8 / t / 1e9:.2f} G elements/s")
        print(f"| {label} | {rate(t_theirs)} | {rate(t_ours)} | {t_theirs / t_ours:.2f}x |")


def tables() -> None:
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
        return min(timeit.repeat(stmt, globals=g, number=number, repeat=repeat)) / number

    print()
    print("| table (float64) | layout | pyarrow `to_tensor` | polars `to_numpy` | `np.column_stack` | arrow_dlpack | memcpy of the columns | vs pyarrow | vs memcpy |")
    print("|---|---|---|---|---|---|---|---|---|")
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
            ours = best(f"np.from_dlpack(to_dlpack(b, order={order!r}))", g)
            pol = best(f"df.to_numpy(order={polars_order!r})", g) if df is not None else None
            rate = lambda t: "-" if t is None else f"{mb / t / 1e9:.1f} GB/s"
            print(f"| {cols} x {rows:,} | {layout} | {rate(theirs)} | {rate(pol)} | {rate(stack if row_major else None)} | "
                  f"{rate(ours)} | {rate(memcpy)} | {theirs / ours:.2f}x | {memcpy / ours:.2f}x |")
    # Shared: columns laid end to end (a Fortran matrix's), any size.
    print()
    print("| shared, 8 columns laid end to end | arrow_dlpack (`np.from_dlpack(to_dlpack(b))`) |")
    print("|---|---|")
    for rows in (1_000, 1_000_000):
        m = np.asfortranarray(rng.random((rows, 8)))
        b = pa.record_batch(arrow_dlpack.from_dlpack(m, columns=True))
        g = {"np": np, "b": b, "to_dlpack": to_dlpack}
        t = best("np.from_dlpack(to_dlpack(b, order='F'))", g, number=2000, repeat=5)
        print(f"| {rows:,} rows | {t * 1e6:.1f} us |")


if __name__ == "__main__":
    main()
    copies()
    tables()
