#!/usr/bin/env bash
# Builds what a release publishes into target/wheels/, installing the tools
# it needs (maturin, ziglang, cargo-zigbuild, auditwheel from PyPI) into
# target/release-venv:
#
#   - the abi3 wheel, cp39-abi3-manylinux_2_17 (manylinux2014): linked by
#     zig against glibc 2.17's symbols, so it installs on every Linux since
#     (RHEL/Rocky 8, Ubuntu 20.04, Amazon Linux 2...), checked by auditwheel;
#   - the sdist (maturin sdist), for every other platform;
#   - arrow-dlpack-VERSION-linux-x86_64.tar.gz: the C library for the same
#     glibc floor (lib/libarrow_dlpack.so.VERSION with its soname links, the
#     static library, the header, the CMake package and the pkg-config file),
#     installed by CMake from a zigbuild of the library.
#
#   bash scripts/release.sh
#
# Then it checks what it built: the wheel's tag (auditwheel show), one
# version everywhere (Cargo.toml, the wheel and sdist names, the C
# library's arrow_dlpack_version(), the CMake package's version file, the
# pkg-config file), and that a C program links the tarball's library.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT="$ROOT/target/wheels"
TOOLS="$ROOT/target/release-venv"
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
TRIPLE=x86_64-unknown-linux-gnu
GLIBC=2.17

step() { printf '\n==> %s\n' "$*"; }

step "tools: maturin, ziglang, cargo-zigbuild, auditwheel, cmake"
[ -x "$TOOLS/bin/python" ] || python3 -m venv "$TOOLS"
"$TOOLS/bin/pip" install -q "maturin>=1.9,<2" ziglang cargo-zigbuild auditwheel cmake
export PATH="$TOOLS/bin:$PATH"
rustup target add "$TRIPLE" >/dev/null 2>&1 || true
rm -rf "$OUT" && mkdir -p "$OUT"

step "the wheel: cp39-abi3, manylinux_2_17 (zig)"
(cd python && maturin build --release --zig --compatibility manylinux2014 --out "$OUT")

step "the sdist"
(cd python && maturin sdist --out "$OUT")

step "the C library for glibc $GLIBC (cargo zigbuild, installed by CMake)"
STAGE="$ROOT/target/release-c"
NAME="arrow-dlpack-$VERSION-linux-x86_64"
rm -rf "$STAGE" && mkdir -p "$STAGE"
cmake -S . -B "$STAGE/build" -DARROW_DLPACK_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=Release \
  -DARROW_DLPACK_CARGO_BUILD=zigbuild -DARROW_DLPACK_CARGO_TARGET="$TRIPLE.$GLIBC" \
  -DARROW_DLPACK_CARGO_TARGET_DIR="$ROOT/target/release-cargo" >/dev/null
cmake --build "$STAGE/build"
cmake --install "$STAGE/build" --prefix "$STAGE/$NAME" >/dev/null
# The separate debug info stays out of the tarball (it is 16 MB).
rm -rf "$STAGE/$NAME/lib/.debug"
cp README.md CHANGELOG.md "$STAGE/$NAME/"
tar -C "$STAGE" -czf "$OUT/$NAME.tar.gz" "$NAME"

step "checks"
WHEEL=$(ls "$OUT"/*.whl)
auditwheel show "$WHEEL" | tee "$STAGE/auditwheel.txt"
grep -q 'consistent with the following platform tag:' "$STAGE/auditwheel.txt"
grep -q '"manylinux_2_17_x86_64"' "$STAGE/auditwheel.txt" || { echo "the wheel is not manylinux_2_17" >&2; exit 1; }
case "$(basename "$WHEEL")" in
  "arrow_dlpack-$VERSION-cp39-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl") ;;
  *) echo "unexpected wheel name $(basename "$WHEEL") for version $VERSION" >&2; exit 1 ;;
esac
[ -f "$OUT/arrow_dlpack-$VERSION.tar.gz" ] || { echo "no sdist of version $VERSION" >&2; exit 1; }
LIB="$STAGE/$NAME/lib"
# Only GLIBC_2.17 and older symbols.
if objdump -T "$LIB/libarrow_dlpack.so.$VERSION" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1 |
  awk -F_ -v floor="$GLIBC" '{ split($2, a, "."); split(floor, b, "."); exit !(a[1] > b[1] || (a[1] == b[1] && a[2] > b[2])) }'; then
  echo "the C library needs a glibc newer than $GLIBC" >&2
  exit 1
fi
grep -q "PACKAGE_VERSION \"$VERSION\"" "$LIB/cmake/arrow_dlpack/arrow_dlpackConfigVersion.cmake"
grep -q "^Version: $VERSION$" "$LIB/pkgconfig/arrow_dlpack.pc"
# A C program linked against the tarball's library, printing its version.
cat >"$STAGE/version.c" <<'EOF'
#include <stdio.h>
#include "arrow_dlpack.h"
int main(void) { printf("%s\n", arrow_dlpack_version()); return 0; }
EOF
cc "$STAGE/version.c" -I"$STAGE/$NAME/include" -L"$LIB" -larrow_dlpack -Wl,-rpath,"$LIB" -o "$STAGE/version"
[ "$("$STAGE/version")" = "$VERSION" ] || { echo "arrow_dlpack_version() is not $VERSION" >&2; exit 1; }
printf '\nrelease %s:\n' "$VERSION"
ls -l "$OUT"
