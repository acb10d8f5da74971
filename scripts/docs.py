#!/usr/bin/env python3
"""Runs every complete program and command the README and docs/ show, as
written (scripts/test.sh, stage docs):

- ```python blocks: each run as a script, in a fresh temporary directory;
- ```c blocks with a main(): compiled against include/ and cargo's
  target/release library, and run;
- ```sh blocks: run with bash from the repository root, with
  ARROW_DLPACK_BENCH_SMOKE=1 (the benchmark commands run a few rounds and
  write target/benchmarks.md, leaving the published figures alone);
- ```sh stage:NAME blocks: commands a stage of scripts/test.sh runs as
  written (the test command itself, the demo, the install, the release):
  checked to appear in that stage, not run twice.

Other blocks (C declarations, CMake and Rust fragments, text) are not
programs. Indented blocks (inside list items) count too.

    python scripts/docs.py [FILE...]
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import tempfile
import textwrap
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)


def blocks(path: pathlib.Path):
    text = path.read_text()
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        info = m.group("info").strip().split()
        body = textwrap.dedent(m.group("body"))
        yield line, (info[0] if info else ""), info[1:], body


def stage_body(name: str) -> str:
    script = (ROOT / "scripts" / "test.sh").read_text()
    m = re.search(rf"^stage_{name}\(\) \{{\n(.*?)^\}}", script, re.M | re.S)
    if name == "all":
        return script
    if m is None:
        raise SystemExit(f"scripts/test.sh has no stage {name!r}")
    return m.group(1)


def run(path: pathlib.Path, line: int, lang: str, attrs: list, body: str) -> str | None:
    """Runs one block; the reason it is not run, or None when it ran."""
    # `python` in a command is this interpreter (the test virtualenv's).
    path_var = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    env = {**os.environ, "PATH": path_var, "ARROW_DLPACK_BENCH_SMOKE": "1", "PYTHONUNBUFFERED": "1"}
    env.setdefault("ARROW_DLPACK_LIBRARY", str(ROOT / "target" / "release" / "libarrow_dlpack.so"))
    stage = next((a.split(":", 1)[1] for a in attrs if a.startswith("stage:")), None)
    where = f"{path.relative_to(ROOT)}:{line}"
    if stage is not None:
        text = stage_body(stage)
        for command in body.strip().splitlines():
            command = command.split("  #")[0].strip()
            if command and command not in text:
                raise SystemExit(f"{where}: {command!r} is not run by stage {stage} of scripts/test.sh")
        return f"run by stage {stage}"
    with tempfile.TemporaryDirectory() as tmp:
        if lang == "python":
            script = pathlib.Path(tmp) / "block.py"
            script.write_text(body)
            argv, cwd = [sys.executable, str(script)], tmp
        elif lang == "c":
            if not re.search(r"\bint\s+main\s*\(", body):
                return "a fragment (no main)"
            source, exe = pathlib.Path(tmp) / "block.c", pathlib.Path(tmp) / "block"
            source.write_text(body)
            lib = ROOT / "target" / "release"
            subprocess.run(
                ["cc", "-std=c11", "-Wall", "-Werror", str(source), f"-I{ROOT / 'include'}", str(lib / "libarrow_dlpack.so"),
                 f"-Wl,-rpath,{lib}", "-o", str(exe)],
                check=True,
            )
            argv, cwd = [str(exe)], tmp
        elif lang == "sh":
            argv, cwd = ["bash", "-euo", "pipefail", "-c", body], str(ROOT)
        else:
            return f"{lang or 'text'}: not a program"
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:
            sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
            raise SystemExit(f"{where}: the {lang} block failed (exit {done.returncode})")
        return None


def main() -> int:
    files = [pathlib.Path(a).resolve() for a in sys.argv[1:]] or [
        ROOT / "README.md",
        ROOT / "python" / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
    ]
    ran = skipped = 0
    for path in files:
        for line, lang, attrs, body in blocks(path):
            start = time.monotonic()
            why = run(path, line, lang, attrs, body)
            where = f"{path.relative_to(ROOT)}:{line}"
            if why is None:
                ran += 1
                print(f"ran   {where} ({lang}, {time.monotonic() - start:.1f} s)", flush=True)
            else:
                skipped += 1
                print(f"--    {where} ({why})", flush=True)
    print(f"docs: {ran} blocks ran, {skipped} are not programs or run by a stage")
    return 0


if __name__ == "__main__":
    sys.exit(main())
