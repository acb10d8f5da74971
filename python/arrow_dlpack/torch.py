"""PyTorch tensors straight from Arrow: the package's functions, returning
``torch.Tensor`` objects. torch is imported when this module is, never by
``arrow_dlpack`` itself (the package has no dependency on it).

>>> import pyarrow as pa
>>> from arrow_dlpack.torch import jagged_to_torch
>>> jagged_to_torch(pa.array([[1, 2], [3]], pa.list_(pa.int64()))).is_nested
True
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

import torch

from . import Jagged, Padded, to_dlpack, to_jagged
from . import batches as _batches
from ._loader import Loader as _Loader


def to_torch(obj: Any, **options: Any) -> torch.Tensor:
    """``torch.from_dlpack(arrow_dlpack.to_dlpack(obj, **options))``: shared
    where Arrow's memory allows, one copy otherwise (the options of
    ``to_dlpack``: ``order``, ``null_value``, ``dtype`` (a torch dtype too),
    ``temporal_as_int``, ``dictionary_as_indices``)."""
    return torch.from_dlpack(to_dlpack(obj, **options))


def jagged_to_torch(obj: Any, *, null_value: Optional[float] = None, dtype: Any = None) -> torch.Tensor:
    """A list column as a nested tensor of layout ``torch.jagged``
    (``torch.nested.nested_tensor_from_jagged``): its values and offsets,
    shared where ``to_jagged`` shares them (offsets start at 0 and end at
    the values' length, as PyTorch requires, also for a slice)."""
    values, offsets, _ = to_jagged(obj, null_value=null_value, dtype=dtype)
    return torch.nested.nested_tensor_from_jagged(torch.from_dlpack(values), torch.from_dlpack(offsets))


def batches(source: Any, batch_size: int, **options: Any) -> Iterator[dict]:
    """``arrow_dlpack.batches(source, batch_size, **options)`` as dicts of
    ``torch.Tensor``: dense columns and ``stack`` groups as tensors, padded
    lists as ``(values, mask)`` pairs, jagged lists (``lists="jagged"``) as
    nested tensors of layout ``torch.jagged``. With ``pin_memory=True`` the
    tensors are in pinned memory: ``.to("cuda", non_blocking=True)``
    overlaps the copy with the GPU's work."""
    for batch in _batches(source, batch_size, **options):
        yield _to_torch(batch)


def _to_torch(batch: dict) -> dict:
    """A batch's values as torch tensors: dense ones as tensors, padded
    lists as ``(values, mask)`` pairs, jagged ones as nested tensors of
    layout ``torch.jagged``."""
    from_dlpack = torch.from_dlpack
    out = {}
    for name, value in batch.items():
        if type(value) is Padded:
            out[name] = (from_dlpack(value.values), from_dlpack(value.mask))
        elif type(value) is Jagged:
            out[name] = torch.nested.nested_tensor_from_jagged(from_dlpack(value.values), from_dlpack(value.offsets))
        else:
            out[name] = from_dlpack(value)
    return out


class Loader(_Loader, torch.utils.data.IterableDataset):
    """``arrow_dlpack.Loader`` as a ``torch.utils.data.IterableDataset``
    yielding dicts of torch tensors (as ``arrow_dlpack.torch.batches``):
    ``DataLoader(loader, batch_size=None, num_workers=K)`` yields the
    sequence the loader yields in the main process, each worker making its
    share of the steps; ``torchdata.stateful_dataloader.StatefulDataLoader``
    checkpoints and resumes it, with workers too. The arguments are
    ``arrow_dlpack.Loader``'s."""

    def __iter__(self) -> Iterator[dict]:
        batches = _Loader.__iter__(self)
        return (_to_torch(batch) for batch in batches)

