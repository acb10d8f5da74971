"""A PyTorch DataLoader over a Parquet dataset: an IterableDataset whose
workers (two forked processes) each read their share of the files'
fragments, batch by batch, with arrow_dlpack.torch.batches.

    python examples/loaders/dataloader_parquet.py
"""

import os
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import torch

from arrow_dlpack.torch import batches


class ParquetBatches(torch.utils.data.IterableDataset):
    def __init__(self, path, batch_size):
        self.path, self.batch_size = path, batch_size

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        fragments = list(pads.dataset(self.path, format="parquet").get_fragments())
        mine = fragments if info is None else fragments[info.id :: info.num_workers]
        for fragment in mine:
            yield from batches(fragment.to_batches(), self.batch_size, stack={"x": ["a", "b"]}, columns=["y"])


with tempfile.TemporaryDirectory() as path:
    rng = np.random.default_rng(0)
    for k in range(4):
        n = 10_000
        pq.write_table(
            pa.table({"a": rng.standard_normal(n), "b": rng.standard_normal(n), "y": np.full(n, k, np.int64)}),
            os.path.join(path, f"part-{k}.parquet"),
        )
    loader = torch.utils.data.DataLoader(
        ParquetBatches(path, 1000), batch_size=None, num_workers=2, multiprocessing_context="fork"
    )
    counts = {}
    for batch in loader:
        assert batch["x"].shape[1:] == (2,) and batch["x"].dtype == torch.float64
        k = int(batch["y"][0])
        counts[k] = counts.get(k, 0) + len(batch["y"])
    assert counts == {k: 10_000 for k in range(4)}, counts
print("dataloader_parquet: 4 files over 2 forked workers, 40 batches of 1000 rows")
