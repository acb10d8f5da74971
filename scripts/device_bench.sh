#!/usr/bin/env bash
# The GPU check and the thread-scaling benchmark, in one call, on a machine
# that has Python (with NumPy and pyarrow; torch, CuPy, JAX where a GPU is)
# but no Rust and no network: a GPU machine lent to a session.
#
#   bash scripts/release.sh                # here: builds target/wheels/*.whl
#   bash scripts/device_bench.sh [WHEEL]   # there, with target/wheels carried
#
# Installs the wheel (offline, no dependencies) into a scratch folder put
# first on PYTHONPATH, runs scripts/gpu_check.py and
# benches/scaling_bench.py (a failure of one does not stop the other; the
# exit status is non-zero if either failed), and writes their output (and the
# benchmark page they wrote) to $OUT when it is set, so that it comes back.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEEL=${1:-$(ls target/wheels/arrow_dlpack-*-cp39-abi3-manylinux*.whl 2>/dev/null | head -n 1)}
[ -n "$WHEEL" ] && [ -f "$WHEEL" ] || { echo "no wheel: run bash scripts/release.sh first, or name one" >&2; exit 2; }
PYTHON=${PYTHON:-python3}
SITE=$(mktemp -d)
trap 'rm -rf "$SITE"' EXIT
"$PYTHON" -m pip install -q --no-deps --no-index --target "$SITE" "$WHEEL"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
LOG=${OUT:+$OUT/device_bench.log}
LOG=${LOG:-$SITE/device_bench.log}
status=0
{
  echo "== $(date -u +%FT%TZ) $(nproc) cores; $("$PYTHON" -c 'import arrow_dlpack as a; print("arrow_dlpack", a.__version__, "from", a.__file__)')"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no nvidia-smi"
  echo "== python3 scripts/gpu_check.py"
  "$PYTHON" scripts/gpu_check.py || echo "gpu_check exited $?"
  echo "== python3 benches/scaling_bench.py"
  "$PYTHON" benches/scaling_bench.py || echo "scaling_bench exited $?"
} 2>&1 | tee "$LOG"
grep -q "exited [0-9]" "$LOG" && status=1
if [ -n "${OUT:-}" ]; then
  cp docs/benchmarks.md "$OUT/benchmarks.md"
  if [ -f target/benchmarks.md ]; then cp target/benchmarks.md "$OUT/benchmarks-smoke.md"; fi
fi
exit $status
