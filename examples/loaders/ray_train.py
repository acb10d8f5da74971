"""Distributed training on Ray Train: `TorchTrainer` with two workers on a
local Ray cluster, each training a small model from its rank's
`arrow_dlpack.torch.Loader` (rank and world size taken from the process
group Ray Train sets up), and checking with an all-gather that the two
ranks together trained every row of each epoch once, in the same number of
steps.

    python examples/loaders/ray_train.py
"""

import numpy as np
import pyarrow as pa
import ray
import torch
import torch.distributed as dist
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

import arrow_dlpack.torch as adt

ROWS = 4_003  # not a multiple of the world size: the last step pads


def train_loop(config):
    table = pa.table(
        {
            "x": np.random.default_rng(0).standard_normal((ROWS, 4)).astype(np.float32).tolist(),
            "y": (np.arange(ROWS) % 3).astype(np.int64),
        },
        schema=pa.schema({"x": pa.list_(pa.float32(), 4), "y": pa.int64()}),
    )
    # No rank or world size given: the initialised process group's.
    loader = adt.Loader(table, 128, shuffle=True, seed=5, row_ids=True)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(2):
        loader.set_epoch(epoch)
        rows, steps = [], 0
        for batch in loader:
            loss = torch.nn.functional.cross_entropy(model(batch["x"]), batch["y"])
            optimizer.zero_grad()
            loss.backward()  # DDP all-reduces: every rank must take each step
            optimizer.step()
            rows += batch["_row"].tolist()
            steps += 1
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, (steps, rows))
        if dist.get_rank() == 0:
            assert len({s for s, _ in gathered}) == 1, "the same number of steps on every rank"
            everything = sorted(r for _, part in gathered for r in part)
            assert sorted(set(everything)) == list(range(ROWS)), "every row trained"
            assert len(everything) - ROWS == (-ROWS) % dist.get_world_size(), "only the padding repeats"


def main():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        trainer = TorchTrainer(
            train_loop,
            scaling_config=ScalingConfig(num_workers=2, use_gpu=False),
            run_config=RunConfig(storage_path="/tmp/arrow-dlpack-ray-train", name="loader"),
        )
        # Raises if a worker failed (its assertions included).
        result = trainer.fit()
    finally:
        ray.shutdown()
    assert result.error is None
    print("ray_train: 2 workers, the same steps an epoch each, every row once an epoch")


if __name__ == "__main__":
    main()
