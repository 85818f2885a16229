"""Shuffling that a resumed run repeats exactly.

A DataLoader's own shuffle draws from the global random stream, whose position after a restart differs from
where an uninterrupted run would be, so a resumed run would see other batches. Here each epoch's order is a
function of the seed and the epoch alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Sampler


class EpochShuffle(Sampler[int]):
    def __init__(self, size: int, seed: int, epoch: Callable[[], int]) -> None:
        """
        Args:
            size: items in the data set.
            seed: the run's seed.
            epoch: reads the current epoch when an epoch's iteration starts (the trainer's, restored on resume).
        """
        self.size = size
        self.seed = seed
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch())
        yield from torch.randperm(self.size, generator=generator).tolist()
