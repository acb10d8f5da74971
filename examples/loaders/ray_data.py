"""Ray Data on a local cluster: arrow_dlpack in the workers, in the driver,
and as the collate function of `iter_torch_batches`.

    python examples/loaders/ray_data.py
"""

import numpy as np
import pyarrow as pa
import ray
import torch
from ray.data.collate_fn import ArrowBatchCollateFn

import arrow_dlpack
import arrow_dlpack.torch as adt

ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
ctx = ray.data.DataContext.get_current()
ctx.enable_progress_bars = False
rows = 50_000
table = pa.table({f"f{j}": np.arange(rows, dtype=np.float32) * (j + 1) for j in range(8)})
ds = ray.data.from_arrow(table)
names = [f"f{j}" for j in range(8)]


# 1. In the workers: each batch (a pyarrow Table) to one matrix, there.
def to_matrix(batch: pa.Table) -> dict:
    matrix = np.from_dlpack(arrow_dlpack.to_dlpack(batch.select(names), order="C"))
    return {"row_sum": matrix.sum(axis=1)}


sums = ds.map_batches(to_matrix, batch_format="pyarrow", batch_size=4096).take_all()
assert np.allclose(sorted(r["row_sum"] for r in sums), np.arange(rows, dtype=np.float32) * 36)

# 2. In the driver: Ray's pyarrow batches, rebatched and converted by us.
total = 0
for batch in adt.batches(ds.iter_batches(batch_format="pyarrow", batch_size=4096), 1024, stack={"x": names}, columns=[]):
    total += batch["x"].shape[0]
assert total == rows


# 3. As iter_torch_batches' collate function.
class Collate(ArrowBatchCollateFn):
    def __call__(self, batch: pa.Table) -> torch.Tensor:
        return adt.to_torch(batch.select(names), order="C")


seen = 0
for x in ds.iter_torch_batches(batch_size=1024, collate_fn=Collate()):
    assert x.shape[1:] == (8,) and x.dtype == torch.float32
    seen += x.shape[0]
assert seen == rows
ray.shutdown()
print(f"ray_data: map_batches, iter_batches and iter_torch_batches(collate_fn=...) over {rows} rows")
