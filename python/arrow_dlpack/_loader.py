"""``arrow_dlpack.Loader``: shuffled, sharded, resumable training epochs.

The order, the split over ranks and workers, the batches and the state are
the library's core (Rust, ``_native.loader``); this module resolves what
only Python knows (the ``torch.distributed`` group, the DataLoader worker,
a Hugging Face dataset's table and indices), pickles the loader for spawned
workers, and hands the state over as a dict.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import weakref
from typing import Any, Iterator, Optional

from . import _native

# Every live loader: before the process forks (DataLoader workers), each
# joins its prefetch thread, so that the child gets a whole loader and no
# thread it does not have.
_LIVE: "weakref.WeakSet[Loader]" = weakref.WeakSet()


def _quiesce_all() -> None:
    for loader in list(_LIVE):
        loader._native.quiesce()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_quiesce_all)

def _ranks(rank: Optional[int], world_size: Optional[int]) -> tuple:
    """Rank and world size: the given ones (only one given: the other is 0
    or 1, never the group's), else an initialised ``torch.distributed``
    group's (when torch is imported), else 0 and 1."""
    if rank is None and world_size is None:
        torch = sys.modules.get("torch")
        distributed = getattr(torch, "distributed", None) if torch is not None else None
        if distributed is not None and distributed.is_available() and distributed.is_initialized():
            return distributed.get_rank(), distributed.get_world_size()
        return 0, 1
    return (0 if rank is None else rank), (1 if world_size is None else world_size)


def _worker() -> tuple:
    """This process's DataLoader worker and the worker count (0 of 1
    outside workers): torch's ``get_worker_info()``, when torch is
    imported."""
    torch = sys.modules.get("torch")
    if torch is None:
        return 0, 1
    info = torch.utils.data.get_worker_info()
    if info is None:
        return 0, 1
    return info.id, info.num_workers


def _arrow_source(source: Any) -> tuple:
    """What the core reads: a Hugging Face ``datasets.Dataset`` as its table
    and its indices mapping (from ``shuffle``, ``select``, ``filter``,
    ``train_test_split``; None without one), row ``i`` of the dataset being
    row ``indices[i]`` of the table (its rows are never copied); any other
    source as it is, without indices."""
    if type(source).__module__.split(".")[0] == "datasets" and hasattr(source, "_indices"):
        indices = source._indices
        if indices is not None:
            indices = indices.column(0).combine_chunks()
        return source.data.table, indices
    return source, None


def _paths(source: Any) -> Optional[list]:
    """The paths of a files source (a path, a list of paths, a local
    ``pyarrow.dataset.Dataset``, read in its ``files`` order), or None for
    any other source."""
    if isinstance(source, (str, os.PathLike)):
        return [os.fspath(source)]
    if (
        isinstance(source, (list, tuple))
        and source
        and all(isinstance(p, (str, os.PathLike)) for p in source)
    ):
        return [os.fspath(p) for p in source]
    if type(source).__module__.split(".")[0] == "pyarrow" and hasattr(source, "files"):
        import pyarrow.fs

        if not isinstance(source.filesystem, pyarrow.fs.LocalFileSystem):
            raise ValueError(
                f"arrow_dlpack.Loader reads a pyarrow dataset's local files; this one's filesystem is "
                f"{type(source.filesystem).__name__}"
            )
        scan = getattr(source, "_scan_options", None) or {}
        if scan.get("filter") is not None:
            raise ValueError(
                f"arrow_dlpack.Loader reads whole files: the dataset's filter {scan['filter']} would be "
                "ignored; filter into a table first (dataset.to_table(filter=...))"
            )
        for fragment in source.get_fragments():
            if str(fragment.partition_expression) != "true":
                raise ValueError(
                    f"arrow_dlpack.Loader reads the files' own columns: the dataset's partition fields "
                    f"({fragment.partition_expression}) would be lost; read it into a table first"
                )
        return list(source.files)
    return None


class Loader:
    """Shuffled, sharded, resumable training epochs over an Arrow source.

    ``Loader(source, batch_size, *, columns=None, stack=None,
    lists="padded", pad_value=0, pad_length=None, pad_side="right",
    null_value=None, dtype=None, pin_memory=False, shuffle=False, seed=0,
    window=None, rank=None, world_size=None, drop_last=False,
    row_ids=False, prefetch=2)``

    Each iteration is one epoch: this rank's batches (dicts as
    ``arrow_dlpack.batches`` makes them, plus ``"_row"`` with
    ``row_ids=True``), in an order that depends only on ``seed``, the
    epoch, the source's rows, ``shuffle`` and ``window``. Every rank yields
    the same number of batches of the same sizes; every row is read once
    an epoch (``drop_last=False`` repeats up to ``world_size - 1`` rows
    from the epoch's start, as ``DistributedSampler`` pads). Iterating
    again moves to the next epoch; ``set_epoch(e)`` chooses one.
    ``state_dict()`` / ``load_state_dict(state)`` resume exactly, on any
    rank, also under another ``world_size`` with the same global batch.

    >>> import pyarrow as pa
    >>> t = pa.table({"x": [0.0, 1.0, 2.0, 3.0, 4.0]})
    >>> loader = Loader(t, 2, shuffle=True, seed=1, row_ids=True)
    >>> sorted(int(i) for b in loader for i in __import__("numpy").from_dlpack(b["_row"]))
    [0, 1, 2, 3, 4]
    """

    def __init__(
        self,
        source: Any,
        batch_size: int,
        *,
        columns: Optional[list] = None,
        stack: Optional[dict] = None,
        lists: str = "padded",
        pad_value: float = 0,
        pad_length: Optional[int] = None,
        pad_side: str = "right",
        null_value: Optional[float] = None,
        dtype: Any = None,
        pin_memory: bool = False,
        shuffle: bool = False,
        seed: int = 0,
        window: Optional[int] = None,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        drop_last: bool = False,
        row_ids: bool = False,
        prefetch: int = 2,
    ) -> None:
        rank, world_size = _ranks(rank, world_size)
        self._options = dict(
            columns=columns,
            stack=stack,
            lists=lists,
            pad_value=pad_value,
            pad_length=pad_length,
            pad_side=pad_side,
            null_value=null_value,
            dtype=dtype,
            pin_memory=pin_memory,
            shuffle=shuffle,
            seed=seed,
            window=window,
            rank=rank,
            world_size=world_size,
            drop_last=drop_last,
            row_ids=row_ids,
            prefetch=prefetch,
        )
        self._source = source
        self._batch_size = batch_size
        paths = _paths(source)
        if paths is not None:
            self._native = _native.loader_files(paths, batch_size, **self._options)
        else:
            table, indices = _arrow_source(source)
            self._native = _native.loader(table, batch_size, indices=indices, **self._options)
        self._prefetch = prefetch
        self._pin_memory = pin_memory
        # The epoch `set_epoch` chose, shared with DataLoader workers'
        # copies (persistent ones included): (generation, epoch).
        self._shared = multiprocessing.Array("q", [0, 0], lock=False)
        self._seen = 0
        _LIVE.add(self)

    # -- what torch's DataLoader and samplers call ------------------------

    def __iter__(self) -> Iterator[dict]:
        worker, workers = _worker()
        if workers > 1 or worker > 0:
            if self._pin_memory:
                raise ValueError(
                    "pin_memory=True is not for a loader inside DataLoader workers: pass "
                    "DataLoader(..., pin_memory=True) instead"
                )
            if not _native.threads_chosen():
                # One thread a worker, as torch sets its own.
                _native.set_threads(1)
        generation, epoch = self._shared[0], self._shared[1]
        if generation != self._seen:
            self._seen = generation
            self._native.set_epoch(epoch)
        self._native.begin(worker, workers)
        return self._batches()

    def _batches(self) -> Iterator[dict]:
        native = self._native
        while True:
            batch = native.next()
            if batch is None:
                return
            yield batch

    def __len__(self) -> int:
        """This rank's batches in a whole epoch."""
        return len(self._native)

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration reads (as
        ``DistributedSampler.set_epoch``), here and in DataLoader workers'
        copies."""
        if epoch < 0:
            raise ValueError(f"set_epoch takes an epoch >= 0, not {epoch}")
        self._native.set_epoch(epoch)
        self._shared[1] = epoch
        self._shared[0] = self._shared[0] + 1
        self._seen = self._shared[0]

    def state_dict(self) -> dict:
        """Where the loader stands: a dict of plain values (``version``,
        ``epoch``, ``step``, ``num_rows``, ``schema``, ``seed``, ``shuffle``,
        ``window``, ``global_batch_size``), the same on every rank."""
        return json.loads(self._native.state())

    def load_state_dict(self, state: dict) -> None:
        """Continues from ``state`` at the next iteration; a state of another
        source or other options is a ``ValueError`` naming the key, and the
        loader is left as it was."""
        if not isinstance(state, dict):
            raise TypeError(f"load_state_dict takes the dict state_dict() returned, not {type(state).__name__}")
        try:
            text = json.dumps(state)
        except (TypeError, ValueError) as e:
            raise ValueError(f"malformed state: {e}") from None
        self._native.load_state(text)

    @property
    def names(self) -> list:
        """The names each batch's dict has, in order."""
        return self._native.names

    @property
    def num_rows(self) -> int:
        return self._native.num_rows

    # -- pickling: DataLoader workers started by spawn or forkserver --------

    def __reduce__(self):
        # The epoch `set_epoch` shares goes to workers being started (it can
        # only be inherited); any other copy gets its own.
        spawning = multiprocessing.context.get_spawning_popen() is not None
        shared = self._shared if spawning else None
        args = (type(self), self._source, self._batch_size, self._options, self._native.state(), shared)
        return (_rebuild, args)


def _rebuild(kind: type, source: Any, batch_size: int, options: dict, state: str, shared: Any) -> Loader:
    loader = kind(source, batch_size, **options)
    loader._native.load_state(state)
    if shared is not None:
        loader._shared = shared
        loader._seen = shared[0]
    return loader
