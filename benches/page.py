"""Writes one section of docs/benchmarks.md: the page the bench scripts
own. Each section sits between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->`` and is replaced whole, with the command that
produced it, the date and the machine, so that no figure is copied by hand.

With ``ARROW_DLPACK_BENCH_SMOKE=1`` (CI, which runs every command the docs
show) the scripts run a few rounds only and write ``target/benchmarks.md``
instead, leaving the published figures alone.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import platform
import re
import shlex
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "benchmarks.md"
SMOKE = os.environ.get("ARROW_DLPACK_BENCH_SMOKE") == "1"


def machine() -> str:
    cores = os.cpu_count()
    model = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {cores} cores, {platform.system()}"


def publish(section: str, body: str) -> None:
    """Prints ``body`` and writes it as the section ``section``."""
    command = " ".join(["python", *[shlex.quote(a) for a in sys.argv]])
    command = command.replace(str(ROOT) + "/", "")
    stamp = datetime.date.today().isoformat()
    text = f"Produced by `{command}` on {stamp} ({machine()}).\n\n{body.strip()}\n"
    print(text)
    target = ROOT / "target" / "benchmarks.md" if SMOKE else PAGE
    page = target.read_text() if target.exists() else PAGE.read_text()
    begin, end = f"<!-- bench:{section} -->", f"<!-- /bench:{section} -->"
    if begin not in page:
        raise SystemExit(f"{PAGE} has no section {begin} ... {end}")
    page = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: f"{begin}\n{text}{end}", page, flags=re.S)
    target.parent.mkdir(exist_ok=True)
    target.write_text(page)


def rounds(full: int) -> int:
    """How many rounds a measure takes: ``full``, or 2 in a smoke run."""
    return 2 if SMOKE else full
