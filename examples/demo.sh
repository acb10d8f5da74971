#!/usr/bin/env bash
# Builds the library (as the Python package's bundled library) and hands a
# pyarrow array to NumPy through it. Installs what it needs into
# target/demo-venv.
#
#   bash examples/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/demo-venv
mkdir -p target
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q numpy pyarrow ./python
(cd target && "demo-venv/bin/python" ../examples/demo.py)
