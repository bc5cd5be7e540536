"""A step-indexed batch sampler: which samples and which augmentation seeds make up step t.

Everything about step t is a function of (seed, t), so a run resumed at step t reads exactly
the batches an uninterrupted run would have read, on any number of processes.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Sampler


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields this process's share of each global batch as ``(index, augmentation seed)`` keys.

    Sample n of the run (``n = step * global_batch + slot``) is position ``n % N`` of the
    permutation of epoch ``n // N``; its augmentation seed is derived from (seed, n).

    Args:
        dataset_size: N.
        global_batch: samples per step over all processes.
        rank, world_size: this process and the process count (global_batch must divide evenly).
        seed: run seed.
        start_step, total_steps: steps ``start_step .. total_steps - 1`` are produced.
    """

    def __init__(
        self,
        dataset_size: int,
        global_batch: int,
        rank: int,
        world_size: int,
        seed: int,
        start_step: int,
        total_steps: int,
    ) -> None:
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} does not divide over {world_size} processes")
        if dataset_size == 0:
            raise ValueError("the training split is empty")
        self.dataset_size, self.global_batch = dataset_size, global_batch
        self.local_batch = global_batch // world_size
        self.rank, self.seed = rank, seed
        self.start_step, self.total_steps = start_step, total_steps
        self._epoch, self._order = -1, np.empty(0, dtype=np.int64)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch = epoch
            self._order = np.random.default_rng((self.seed, epoch)).permutation(self.dataset_size)
        return self._order

    def batch(self, step: int) -> list[tuple[int, int]]:
        keys = []
        first = step * self.global_batch + self.rank * self.local_batch
        for n in range(first, first + self.local_batch):
            epoch, position = divmod(n, self.dataset_size)
            aug_seed = int(np.random.default_rng((self.seed, 1_000_003, n)).integers(2**62))
            keys.append((int(self._permutation(epoch)[position]), aug_seed))
        return keys

    def __iter__(self):
        for step in range(self.start_step, self.total_steps):
            yield self.batch(step)

    def __len__(self) -> int:
        return max(self.total_steps - self.start_step, 0)
