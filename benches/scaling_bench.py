#!/usr/bin/env python3
"""Thread scaling of the copy kernels: each one-copy conversion at 1, 2,
4, ... threads (up to the machine's cores, at most 16), beside a memcpy of
as many bytes split over as many threads, measured in the same run.

    python benches/scaling_bench.py      (with the package installed)

Writes the section "scaling" of docs/benchmarks.md. Needs only the
package, NumPy and pyarrow, so that it runs where the wheel is carried to
a machine without Rust (scripts/device_bench.sh).
"""

import concurrent.futures
import os
import sys
import timeit

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

import arrow_dlpack  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from page import SMOKE, publish, rounds  # noqa: E402

OUT_BYTES = (8 << 20) if SMOKE else (64 << 20)
MOST = 16


def counts() -> list:
    cores = os.cpu_count() or 1
    out, n = [], 1
    while n <= min(cores, MOST):
        out.append(n)
        n *= 2
    if out[-1] != min(cores, MOST):
        out.append(min(cores, MOST))
    return out


def best(f, number=3, repeat=7) -> float:
    """Seconds of one call of `f`, the best round."""
    return min(timeit.repeat(f, number=number, repeat=rounds(repeat))) / number


class Memcpy:
    """`OUT_BYTES` copied into warm memory on `threads` threads (NumPy's
    copyto releases the GIL), the pool made once."""

    def __init__(self, threads: int):
        n = OUT_BYTES // 8
        self.src, self.dst = np.random.default_rng(0).random(n), np.empty(n)
        self.parts = [slice(i * n // threads, (i + 1) * n // threads) for i in range(threads)]
        self.pool = concurrent.futures.ThreadPoolExecutor(threads)

    def __call__(self):
        list(self.pool.map(lambda s: np.copyto(self.dst[s], self.src[s]), self.parts))


def kernels():
    """(name, a call that makes and consumes one copy) for each kernel."""
    rng = np.random.default_rng(1)
    to = arrow_dlpack.to_dlpack
    n = OUT_BYTES // 8
    out = []
    for cols in (8, 100, 1000):
        rows = n // cols
        b = pa.record_batch({f"c{j}": rng.random(rows) for j in range(cols)})
        for order in ("C", "F"):
            out.append((f"table {cols} x {rows:,} float64, {'row' if order == 'C' else 'column'}-major",
                        lambda b=b, order=order: np.from_dlpack(to(b, order=order))))
    chunked = pa.chunked_array(np.array_split(rng.random(n), 8))
    out.append(("concatenate 8 float64 chunks", lambda: np.from_dlpack(to(chunked))))
    nulls = pa.array(rng.random(n), mask=np.arange(n) % 96 == 0)
    out.append(("fill 1 in 96 nulls (float64)", lambda: np.from_dlpack(to(nulls, null_value=0.0))))
    bools = pa.array(rng.random(OUT_BYTES) < 0.5)
    out.append(("unpack booleans to bytes", lambda: np.from_dlpack(to(bools))))
    return out


def scaling() -> list:
    threads = counts()
    before = arrow_dlpack.threads()
    lines = []
    print = lines.append  # noqa: A001 (the section's lines)
    print(f"{OUT_BYTES >> 20} MiB written by each copy; GB/s, and in brackets the ratio to a memcpy of as many "
          f"bytes on as many threads (NumPy `copyto` over a thread pool), measured in the same run. "
          f"{os.cpu_count()} cores.")
    print("")
    print("| copy | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}" for t in threads) + " |")
    print("|---|" + "---|" * len(threads))
    memcpy = {}
    for t in threads:
        m = Memcpy(t)
        memcpy[t] = best(m)
        m.pool.shutdown()
    rate = lambda s: OUT_BYTES / s / 1e9  # noqa: E731
    print("| memcpy | " + " | ".join(f"{rate(memcpy[t]):.1f}" for t in threads) + " |")
    for name, call in kernels():
        cells = []
        for t in threads:
            arrow_dlpack.set_threads(t)
            s = best(call)
            cells.append(f"{rate(s):.1f} ({memcpy[t] / s:.2f}x)")
        print(f"| {name} | " + " | ".join(cells) + " |")
    arrow_dlpack.set_threads(before)
    return lines


if __name__ == "__main__":
    publish("scaling", "\n".join(scaling()))
