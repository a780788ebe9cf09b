"""The one DataLoader of the toolkit: samplers whose order is a pure function of ``(seed, epoch)`` and clips
seeded from ``(seed, epoch, index)``, so a run can stop anywhere and resume exactly.

* :class:`EpochSampler` — the epoch's permutation comes from ``(seed, epoch)``, is padded to a multiple of
  the world size and sharded by rank; ``start`` skips the batches an interrupted epoch already consumed.
  It yields ``(epoch, index)`` keys.
* :class:`SeededClips` — wraps a :class:`~adafuse.data.dataset.VideoDataset`; for key ``(epoch, index)`` it
  reseeds the dataset's sampling/augmentation generator from ``(seed, epoch, index)`` before loading, so a
  clip's frames and crop depend on neither the worker, the number of workers or processes, nor on where a
  run was resumed.
* :func:`build_loader` — a DataLoader over :class:`SeededClips` keys with :func:`collate_videos`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from adafuse.data.dataset import collate_videos


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for clip ``index`` of ``epoch`` (independent streams per triple)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class SeededClips(Dataset):
    """``dataset[(epoch, index)]`` = ``dataset.dataset[index]`` with augmentation seeded from
    ``(seed, epoch, index)``; plain integer keys use ``epoch = 0``."""

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        if hasattr(self.dataset, "reseed"):
            self.dataset.reseed(sample_seed(self.seed, epoch, index))
        return self.dataset[index]


class EpochSampler(Sampler):
    """Indices of one process for one epoch, as ``(epoch, index)`` keys.

    ``shuffle``: permutation of ``range(size)`` from ``(seed, epoch)``; else ``0..size-1``. The list is
    padded (by wrapping around) to a multiple of ``world_size`` (and, with ``drop_last``, cut to whole
    global batches); rank ``r`` takes every ``world_size``-th element from ``r``. ``set_epoch(epoch, start)``
    starts the epoch at this process's ``start``-th element (resume in the middle of an epoch).
    """

    def __init__(self, size: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1,
                 batch_size: int = 1, drop_last: bool = False) -> None:
        if size < 1:
            raise ValueError("cannot sample from an empty dataset")
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.batch_size, self.drop_last = batch_size, drop_last
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def epoch_indices(self) -> np.ndarray:
        """This rank's whole list for the current epoch (before ``start`` is applied)."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        else:
            order = np.arange(self.size)
        per_rank = math.ceil(self.size / self.world_size)
        if self.drop_last:
            per_rank = max(1, self.size // (self.world_size * self.batch_size)) * self.batch_size
        total = per_rank * self.world_size
        if total > len(order):
            order = np.resize(order, total)  # wrap around
        order = order[:total]
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        return max(0, len(self.epoch_indices()) - self.start)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in self.epoch_indices()[self.start :]:
            yield (self.epoch, int(i))




def build_loader(dataset: Any, sampler: EpochSampler, batch_size: int, num_workers: int, seed: int) -> DataLoader:
    """DataLoader over :class:`SeededClips` keys with the collate function of the data package."""
    generator = torch.Generator()
    generator.manual_seed(seed)  # the loader never draws from the global RNG (exact resume)
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs["persistent_workers"] = True
    return DataLoader(SeededClips(dataset, seed), batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      collate_fn=collate_videos, pin_memory=torch.cuda.is_available(), generator=generator,
                      **kwargs)
