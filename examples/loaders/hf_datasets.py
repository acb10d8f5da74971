"""Training batches from a Hugging Face dataset.

A `datasets.Dataset` keeps its rows in an Arrow table and, after
`shuffle`, `select`, `filter` or `train_test_split`, their order in an
indices mapping: `arrow_dlpack.torch.batches(ds, ...)` reads the dataset's
own rows in its own order (row `i` is `ds[i]`; `ds.data.table` alone would
be the unshuffled rows), the dense features as one row-major matrix and the
token ids padded with their attention mask, checked here against what
`ds.with_format("torch")` gives.

    python examples/loaders/hf_datasets.py
"""

import datasets
import numpy as np
import torch

from arrow_dlpack.torch import batches

rng = np.random.default_rng(0)
rows = 20_000
lengths = rng.integers(5, 128, rows)
ds = datasets.Dataset.from_dict(
    {
        **{f"f{j}": rng.standard_normal(rows).astype(np.float32) for j in range(8)},
        "input_ids": [rng.integers(0, 50_000, n).tolist() for n in lengths],
    },
    features=datasets.Features(
        {**{f"f{j}": datasets.Value("float32") for j in range(8)}, "input_ids": datasets.Sequence(datasets.Value("int32"))}
    ),
)
ds = ds.shuffle(seed=1)  # an indices mapping over the same table

reference = ds.with_format("torch")
seen = 0
for k, batch in enumerate(batches(ds, 1024, stack={"features": [f"f{j}" for j in range(8)]})):
    features = batch["features"]  # [1024, 8] float32, row-major
    ids, mask = batch["input_ids"]  # [1024, longest] int32 and its bool mask
    if k < 3:  # against Hugging Face's own conversion
        ref = reference[seen : seen + len(features)]
        assert torch.equal(features, torch.stack([ref[f"f{j}"] for j in range(8)], dim=1))
        padded = torch.nn.utils.rnn.pad_sequence(ref["input_ids"], batch_first=True)
        assert torch.equal(ids.to(padded.dtype), padded)
        lengths = torch.tensor([len(r) for r in ref["input_ids"]])
        assert torch.equal(mask, torch.arange(padded.shape[1]) < lengths[:, None])
    seen += len(features)
assert seen == rows
print(f"hf_datasets: {k + 1} batches of features {tuple(features.shape[1:])} and padded ids, as with_format('torch')")
