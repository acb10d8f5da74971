"""The loaders users run, each an example in examples/loaders/ that asserts
what it shows (Hugging Face datasets, Ray Data on a local cluster, a
PyTorch DataLoader over Parquet with forked workers, DuckDB), run here as
a user would run it."""

import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "loaders")


@pytest.mark.parametrize(
    "script, needs, says",
    [
        ("hf_datasets.py", "datasets", "as with_format('torch')"),
        ("ray_data.py", "ray", "iter_torch_batches(collate_fn=...)"),
        ("dataloader_parquet.py", "torch", "2 forked workers"),
        ("duckdb_stream.py", "duckdb", "100000 rows"),
        ("resume_after_kill.py", "torch", "rows trained once each"),
        ("ray_train.py", "ray", "every row once an epoch"),
    ],
)
def test_the_loader_example_runs(script, needs, says):
    pytest.importorskip(needs)
    out = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, script)], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert says in out.stdout
