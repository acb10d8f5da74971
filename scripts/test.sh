#!/usr/bin/env bash
# Runs every test of arrow-dlpack, installing what it needs first.
# This is the README's test command; .ci/run calls it.
#
#   bash scripts/test.sh                # setup (in a fresh virtualenv), then every stage
#   bash scripts/test.sh rust c python  # setup (keeping the virtualenv), then these stages
#
# Stages, in the order a full run takes them:
#   lint     formatting, clippy, the generated header, cargo doc (no warnings)
#   rust     the Rust tests (with property and stress tests)
#   link     a C program linked by hand against cargo's library, as docs/getting-started.md does
#   miri     the Rust tests under Miri
#   asan     the Rust tests under AddressSanitizer (the threads' stress
#            test among them)
#   tsan     the parallel kernels' tests, a jagged pair's racing
#            deleters and the loader's prefetch thread under
#            ThreadSanitizer (std rebuilt with it: -Zbuild-std)
#   c        the C tests under valgrind (CMake + ctest, ABI check against
#            pyarrow's headers), then under AddressSanitizer
#   fuzz     a bounded run of every fuzz target, two at a time
#            (FUZZ_SECONDS, default 40; FUZZ_SEED, default the date)
#   install  the install command of docs/getting-started.md: soname, stripping, exported
#            symbols, find_package, pkg-config, the examples
#   release  bash scripts/release.sh (the manylinux_2_17 wheel, the sdist,
#            the C tarball), the tarball linked from C, the sdist built
#            and smoke-tested in a fresh virtualenv
#   python   the release's abi3 wheel; the Python tests
#            against it installed in the virtualenv (CPython 3.11), then in
#            fresh ones on CPython 3.9 and 3.13; the GPU check script (every
#            case skips without a GPU)
#   docs     every complete program and command in the README and docs/
#            (scripts/docs.py: benchmarks in smoke mode)
#   demo     the README's demo, bash examples/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CBINDGEN_VERSION=0.29.4
FUZZ_SECONDS=${FUZZ_SECONDS:-40}
VENV="$ROOT/target/test-venv"
# Both CMake builds (valgrind, ASan) share one cargo target directory, for
# the library with the versioned soname.
CMAKE_CARGO_DIR="$ROOT/target/cmake-cargo"
STAGES=(lint rust link miri asan tsan c fuzz install release python docs demo)

# Each step's banner shows the seconds since the run began.
step() { printf '\n==> [%ss] %s\n' "$SECONDS" "$*"; }

# expect NEEDLE COMMAND...: runs the command, shows its output, and fails
# unless the output contains NEEDLE.
expect() {
  local needle=$1 out
  shift
  out=$("$@")
  printf '%s\n' "$out"
  grep -qF -- "$needle" <<<"$out" || { echo "expected output containing: $needle" >&2; exit 1; }
}

# Installs the tools and the virtualenv (created anew when $1 is "fresh").
setup() {
  step "setup: tools and the test virtualenv"
  local missing="" packages
  for tool in valgrind pkg-config node npm; do command -v "$tool" >/dev/null || missing="$missing $tool"; done
  if [ -n "$missing" ]; then
    packages=$(echo "$missing" | sed 's/ node/ nodejs/')
    (apt-get update -qq && apt-get install -y -qq $packages) || sudo apt-get install -y -qq $packages
  fi
  if [[ "$(cbindgen --version 2>/dev/null)" != *"$CBINDGEN_VERSION"* ]]; then
    cargo install cbindgen --version "$CBINDGEN_VERSION" --locked --quiet
  fi
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
  rustup component add miri rust-src --toolchain nightly >/dev/null
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
  if [ "$1" = fresh ]; then rm -rf "$VENV"; fi
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
  fi
  # Every library the Python tests consume (a test that skips for a missing
  # one fails in this environment: ARROW_DLPACK_STRICT_SKIPS below). torch
  # from the package registry: ~45 s and 5.6 GB with its CUDA libraries,
  # kept in the virtualenv between runs where the machine keeps target/.
  # pydantic: Ray's iter_torch_batches(collate_fn=...) imports ray.train.v2,
  # which needs it and which "ray[data]" does not pull in.
  "$VENV/bin/pip" install -q cmake pytest hypothesis numpy pyarrow cffi nanoarrow arro3-core polars duckdb "jax[cpu]" apache-tvm-ffi torch torchdata datasets "ray[data]" pydantic
}

stage_lint() {
  step "cargo fmt --check"
  cargo fmt --check

  step "cargo clippy --all-targets -- -D warnings (and the Python extension: --features python)"
  cargo clippy --all-targets --quiet -- -D warnings
  cargo clippy --lib --features python --quiet -- -D warnings

  step "the checked-in header is the generated one"
  cbindgen --quiet --config cbindgen.toml --crate arrow-dlpack --output target/arrow_dlpack.h.generated
  if ! diff -u include/arrow_dlpack.h target/arrow_dlpack.h.generated; then
    echo "include/arrow_dlpack.h is stale: regenerate it with" >&2
    echo "  cbindgen --config cbindgen.toml --crate arrow-dlpack --output include/arrow_dlpack.h" >&2
    exit 1
  fi

  step "cargo doc: no warnings, private items included"
  RUSTDOCFLAGS=-Dwarnings cargo doc --quiet --no-deps --document-private-items
}

stage_rust() {
  step "cargo test"
  cargo test --quiet
}

stage_link() {
  step "by hand: a C program linked against cargo's library (docs/getting-started.md's commands)"
  # Before CMake ever runs, as a new user would: the library's soname must be
  # its own file name, found through LD_LIBRARY_PATH from any directory.
  cargo build --release
  cc examples/c/main.c -Iinclude target/release/libarrow_dlpack.so -o target/example-c
  cc examples/c/main.c -Iinclude -Ltarget/release -larrow_dlpack -o target/example-c-l
  expect "Library soname: [libarrow_dlpack.so]" readelf -d target/release/libarrow_dlpack.so
  LD_LIBRARY_PATH=target/release target/example-c
  for program in example-c example-c-l; do
    expect "array released 1 time" env LD_LIBRARY_PATH="$ROOT/target/release" sh -c "cd / && '$ROOT/target/$program'"
  done
  cc examples/c/table.c -Iinclude target/release/libarrow_dlpack.so -o target/example-table
  expect "columns back: +s (3 children), 'second' = 10 11 12 13, shared: yes" \
    env LD_LIBRARY_PATH="$ROOT/target/release" target/example-table
  cc examples/c/loader.c -Iinclude target/release/libarrow_dlpack.so -o target/example-loader
  expect "resumed: yes" env LD_LIBRARY_PATH="$ROOT/target/release" target/example-loader
}

stage_miri() {
  # Miri interprets on one core: the library's own tests and the
  # integration tests run side by side, every test as one `miri test`
  # would run them (the time saved: docs/benchmarks.md, "Measured decisions"). Built
  # without the `files` feature, as the sanitizer runs below: no Rust test
  # reads a file (the Python tests do), and arrow-ipc's compile is spared.
  step "cargo +nightly miri test (the library's tests beside the integration tests)"
  local miri=(cargo +nightly miri test --quiet --no-default-features)
  "${miri[@]}" --no-run
  "${miri[@]}" --lib &
  local lib=$! failed=0
  "${miri[@]}" --test '*' || failed=1
  wait "$lib" || failed=1
  [ "$failed" = 0 ] || exit 1
  "${miri[@]}" --doc
}

stage_asan() {
  step "Rust tests under AddressSanitizer"
  RUSTFLAGS="-Zsanitizer=address" cargo +nightly test --quiet --tests --no-default-features \
    --target "$(rustc -vV | sed -n 's/host: //p')" --target-dir target/asan
}

stage_tsan() {
  step "the parallel kernels, the jagged pair's deleters and the loader's prefetch thread under ThreadSanitizer"
  local target
  target=$(rustc -vV | sed -n 's/host: //p')
  # Fewer property cases than the plain run, and optimized code: each case
  # is a few megabytes copied eight times over, and instrumented code is
  # slow (the races TSan sees do not depend on the optimization level).
  local tsan=(cargo +nightly test --quiet --release --no-default-features -Zbuild-std --target "$target"
    --target-dir target/tsan)
  export PROPTEST_CASES=4 RUSTFLAGS="-Zsanitizer=thread" TSAN_OPTIONS="halt_on_error=1"
  "${tsan[@]}" --lib -- copy::threads
  "${tsan[@]}" --test threads
  # The two deleters of a jagged pair racing on its count.
  "${tsan[@]}" --test stress -- jagged_halves
  # The loader's prefetch thread: batches made ahead, handed over, the
  # thread halted and joined mid-epoch.
  "${tsan[@]}" --test loader
  unset PROPTEST_CASES RUSTFLAGS TSAN_OPTIONS
}

stage_c() {
  step "C tests (CMake, ctest, valgrind memcheck)"
  PYARROW_INCLUDE=$(python -c "import pyarrow; print(pyarrow.get_include())")
  cmake -S . -B target/cmake -DARROW_DLPACK_PYARROW_INCLUDE="$PYARROW_INCLUDE" \
    -DARROW_DLPACK_CARGO_TARGET_DIR="$CMAKE_CARGO_DIR" >/dev/null
  cmake --build target/cmake -j 2
  ctest --test-dir target/cmake --output-on-failure

  step "C tests under AddressSanitizer"
  cmake -S . -B target/cmake-asan -DARROW_DLPACK_SANITIZE=address \
    -DARROW_DLPACK_PYARROW_INCLUDE="$PYARROW_INCLUDE" -DARROW_DLPACK_CARGO_TARGET_DIR="$CMAKE_CARGO_DIR" >/dev/null
  cmake --build target/cmake-asan -j 2
  ASAN_OPTIONS=detect_leaks=1 ctest --test-dir target/cmake-asan --output-on-failure
}

stage_fuzz() {
  # The seed changes every day (and can be set), so that CI explores more than
  # one path over time; it is printed so that a failure can be replayed. An
  # input running past 10 s is a failure (a hang), not a wait of libFuzzer's
  # default 20 minutes:
  #   cargo +nightly fuzz run -O -a TARGET fuzz/artifacts/TARGET/crash-... 
  FUZZ_SEED=${FUZZ_SEED:-$(date -u +%Y%m%d)}
  step "fuzzing, ${FUZZ_SECONDS} s per target, seed $FUZZ_SEED, overflow checks and debug assertions on"
  if ! cargo +nightly fuzz build -O -a >target/fuzz-build.log 2>&1; then
    tail -n 60 target/fuzz-build.log >&2
    exit 1
  fi
  # Two targets at a time (libFuzzer runs on one core), all built above.
  local failed=0 pids
  for pair in "export import" "table jagged" "state files"; do
    pids=()
    for target in $pair; do
      fuzz_target "$target" &
      pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  done
  [ "$failed" = 0 ] || exit 1
}

# fuzz_target TARGET: one target for FUZZ_SECONDS; on a failure, its log's
# end and where the input is.
fuzz_target() {
  local target=$1
  # New inputs go to a scratch corpus; the checked-in seeds stay as they are.
  mkdir -p "target/fuzz-corpus/$target"
  if ! cargo +nightly fuzz run -O -a "$target" "target/fuzz-corpus/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$FUZZ_SECONDS" -seed="$FUZZ_SEED" -timeout=10 >"target/fuzz-$target.log" 2>&1; then
    tail -n 60 "target/fuzz-$target.log" >&2
    echo "fuzz target $target failed (seed $FUZZ_SEED); the input is in fuzz/artifacts/$target/" >&2
    return 1
  fi
  echo "$target: $(tail -n 1 "target/fuzz-$target.log")"
}

stage_install() {
  step "install: soname, exported symbols, find_package, pkg-config, examples"
  rm -rf target/install target/downstream
  # docs/getting-started.md's install command, as written (CMake's cache keeps the options
  # set above; a fresh clone needs none of them).
  cmake -S . -B target/cmake && cmake --build target/cmake && cmake --install target/cmake --prefix target/install
  LIB="$ROOT/target/install/lib/libarrow_dlpack.so"
  expect "Library soname: [libarrow_dlpack.so.0]" readelf -d "$LIB"
  # Shipped stripped, with the debug info beside it (found through the link).
  DEBUG_FILE="$ROOT/target/install/lib/.debug/libarrow_dlpack.so.0.1.0.debug"
  if readelf -S "$LIB" | grep -q '\.debug_info'; then echo "$LIB still has debug info" >&2; exit 1; fi
  expect ".debug_info" readelf -S "$DEBUG_FILE"
  expect "libarrow_dlpack.so.0.1.0.debug" readelf --string-dump=.gnu_debuglink "$LIB"
  if readelf -S "$ROOT/target/install/lib/libarrow_dlpack.a" | grep -q '\.debug_info'; then
    echo "libarrow_dlpack.a still has debug info" >&2; exit 1
  fi
  ls -l "$(readlink -f "$LIB")" "$ROOT/target/install/lib/libarrow_dlpack.a" "$DEBUG_FILE" |
    awk '{printf "installed: %-60s %8.2f MB\n", $NF, $5 / 1e6}'
  foreign=$(nm -D --defined-only "$LIB" | awk '{print $3}' | grep -v '^arrow_dlpack_' || true)
  if [ -n "$foreign" ]; then echo "symbols exported besides arrow_dlpack_*: $foreign" >&2; exit 1; fi
  cmake -S examples/downstream -B target/downstream -DCMAKE_PREFIX_PATH="$ROOT/target/install" >/dev/null
  cmake --build target/downstream -j 2 >/dev/null
  expect "shared: yes" target/downstream/downstream_c
  expect "refused: unsupported format 'u' (utf8)" target/downstream/downstream_cpp_static
  export PKG_CONFIG_PATH="$ROOT/target/install/lib/pkgconfig"
  cc examples/c/main.c $(pkg-config --cflags --libs arrow_dlpack) -o target/pkg-config-example
  expect "released 1 time" env LD_LIBRARY_PATH="$(pkg-config --variable=libdir arrow_dlpack)" target/pkg-config-example
  expect "same memory: yes" cargo run --quiet --example roundtrip
  expect "columns shared with the matrix: yes" cargo run --quiet --example table
  expect "matrix [4, 3], strides [1, 4], shared: yes" target/downstream/downstream_table
  npm install --prefix examples/node --no-audit --no-fund --silent
  expect "shared: yes" env ARROW_DLPACK_LIBRARY="$LIB" node examples/node/index.js
}

stage_python() {
  step "the Python package: one abi3 wheel (maturin, PyO3), installed; the tests against it"
  # The ctypes and cffi examples (and the tests that drive the bare library)
  # load the C library cargo builds, not the package.
  cargo build --release --quiet
  export ARROW_DLPACK_LIBRARY="$ROOT/target/release/libarrow_dlpack.so"
  # The release's wheel (stage release), built here if that stage did not run.
  [ -n "$(ls target/wheels/*.whl 2>/dev/null)" ] || bash scripts/release.sh
  WHEEL=$(ls target/wheels/arrow_dlpack-*-cp39-abi3-manylinux*.whl)
  pip install -q --force-reinstall --no-deps "$WHEEL"
  WHEEL_LIB=$(cd target && python -c "import arrow_dlpack._native as n; print(n.__file__)")
  if readelf -S "$WHEEL_LIB" | grep -q '\.debug_info'; then echo "$WHEEL_LIB has debug info" >&2; exit 1; fi
  ls -l "$WHEEL" "$WHEEL_LIB" | awk '{printf "%-90s %8.2f MB\n", $NF, $5 / 1e6}'
  (cd "$ROOT/target" && ARROW_DLPACK_STRICT_SKIPS=1 python -m pytest -q "$ROOT/python/tests")

  step "the ctypes and cffi examples of docs/python.md, as written (the bare C library, no package)"
  pip install -q numpy pyarrow cffi
  expect "via ctypes: array([2.5, 3.5, 4.5]), shared: yes" \
    env ARROW_DLPACK_LIBRARY=target/release/libarrow_dlpack.so python examples/python/ctypes_example.py
  expect "via cffi: [20, 30, 40], shared: yes" \
    env ARROW_DLPACK_LIBRARY=target/release/libarrow_dlpack.so python examples/python/cffi_example.py

  # The same wheel on the oldest and the newest CPython this machine has
  # (pyenv's, or on PATH), each in a fresh virtualenv. 3.13: every test.
  # 3.9: the newest NumPy there (2.0) asks for legacy capsules only, which
  # most tests' NumPy consumers rely on (DLPack 1.x, read-only flags), so
  # the tests that do not: the exchange API from C, lifetimes, refcounts,
  # leaks, the pyarrow port and cffi.
  local ran=""
  for version in 3.9 3.13; do
    local interpreter
    interpreter=$(ls -d /root/.pyenv/versions/"$version".*/bin/python3 2>/dev/null | tail -n 1)
    [ -n "$interpreter" ] || interpreter=$(command -v "python$version" || true)
    if [ -z "$interpreter" ]; then echo "no CPython $version on this machine: skipped"; continue; fi
    step "the wheel on CPython $version ($interpreter)"
    local venv="$ROOT/target/venv-$version"
    rm -rf "$venv"
    "$interpreter" -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q pytest hypothesis numpy pyarrow cffi polars "$WHEEL"
    "$venv/bin/pip" install -q apache-tvm-ffi || echo "apache-tvm-ffi has no build for CPython $version: its tests skip"
    export ARROW_DLPACK_ALLOW_SKIPS=1  # fewer libraries here, by design
    if [ "$version" = 3.9 ]; then
      (cd "$ROOT/target" && "$venv/bin/python" -m pytest -q "$ROOT/python/tests/test_lifetime.py" \
        "$ROOT/python/tests/test_pyarrow_port.py" "$ROOT/python/tests/test_cffi.py" "$ROOT/python/tests/test_native.py" \
        -k "not allocates_and_wraps and not tvm_ffi_takes and not arrow_c_schema and not from_dlpack_columns and not unconsumed and not exchange]")
    else
      (cd "$ROOT/target" && "$venv/bin/python" -m pytest -q "$ROOT/python/tests")
    fi
    ran="$ran $version"
  done
  echo "the wheel was tested on CPython 3.11 (the test virtualenv) and:${ran:- none}"

  step "the GPU check script (scripts/gpu_check.py): every case skips without a GPU, none fails"
  (cd "$ROOT/target" && expect "(0 failed," python3 "$ROOT/scripts/gpu_check.py")
}

stage_release() {
  step "the release: bash scripts/release.sh (wheel, sdist, C tarball; tags, versions, linking checked)"
  bash scripts/release.sh

  step "the C tarball, unpacked elsewhere: a program links it through pkg-config and CMake"
  local unpacked="$ROOT/target/release-unpacked"
  rm -rf "$unpacked" && mkdir -p "$unpacked"
  tar -C "$unpacked" -xzf target/wheels/arrow-dlpack-*-linux-x86_64.tar.gz
  local prefix
  prefix=$(ls -d "$unpacked"/arrow-dlpack-*)
  cc examples/c/main.c $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs arrow_dlpack) \
    -Wl,-rpath,"$prefix/lib" -o "$unpacked/example"
  expect "shared: yes" "$unpacked/example"
  cmake -S examples/downstream -B "$unpacked/downstream" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
  cmake --build "$unpacked/downstream" -j 2 >/dev/null
  expect "shared: yes" "$unpacked/downstream/downstream_c"
  expect "refused: unsupported format 'u' (utf8)" "$unpacked/downstream/downstream_cpp_static"
  expect "resumed: yes" "$unpacked/downstream/downstream_loader_cpp"

  step "the sdist, built from source and installed in a fresh virtualenv: a smoke test"
  local venv="$ROOT/target/venv-sdist"
  rm -rf "$venv" && python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  # Built in the repository's target directory: the sdist's own crate is
  # compiled from its own sources, its dependencies once for this and for
  # the docs stage's `pip install ./python` (the same profile and features).
  CARGO_TARGET_DIR="$ROOT/target" "$venv/bin/pip" install -q numpy pyarrow target/wheels/arrow_dlpack-*.tar.gz
  expect "sdist: [[1.0, 3.0], [2.0, 4.0]] 0.1" "$venv/bin/python" -c \
    "import numpy as np, pyarrow as pa, arrow_dlpack as a; t = pa.table({'x': [1.0, 2.0], 'y': [3.0, 4.0]}); print('sdist:', np.from_dlpack(a.to_dlpack(t, order='C')).tolist(), a.__version__[:3])"
}

stage_docs() {
  step "every complete program and command the README and docs/ show (scripts/docs.py)"
  cargo build --release --quiet
  # scripts/device_bench.sh (docs/benchmarks.md) installs the release's
  # wheel: built here if stage release did not run.
  [ -n "$(ls target/wheels/*.whl 2>/dev/null)" ] || bash scripts/release.sh
  python scripts/docs.py
}

stage_demo() {
  step "the README's demo: bash examples/demo.sh"
  expect "shared, zero-copy" bash examples/demo.sh
}

if [ $# -eq 0 ]; then
  setup fresh
  set -- "${STAGES[@]}"
else
  for stage in "$@"; do
    [[ " ${STAGES[*]} " == *" $stage "* ]] || { echo "unknown stage '$stage'; stages: ${STAGES[*]}" >&2; exit 2; }
  done
  setup keep
fi
export PATH="$VENV/bin:$PATH"
for stage in "$@"; do "stage_$stage"; done
step "passed: $*"
