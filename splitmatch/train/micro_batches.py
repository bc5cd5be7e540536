"""A step's batch split into micro-batches, and a non-finite-loss watch that needs no sync per step.

With ``train.accumulate_steps = k`` each process's share of the global batch is cut into ``k``
micro-batches that are forwarded and back-propagated one after the other; the gradients add
up to those of the whole share because every loss term is divided by the normalisers of the
whole global batch (:class:`splitmatch.losses.criterion.LossNormalisers`).
"""

from __future__ import annotations

import torch

from splitmatch import distributed as dist


def split_batch(batch: dict, parts: int) -> list[dict]:
    """Cuts a collated batch into ``parts`` equal, consecutive micro-batches.

    Args:
        batch: :func:`splitmatch.data.dataset.collate_segmentation`'s dict (tensors ``[B, ...]``
            and per-image lists).

    Returns:
        ``parts`` dicts of the same keys, ``B / parts`` images each.
    """
    size = len(batch["stem"])
    if parts < 1 or size % parts:
        raise ValueError(f"a batch of {size} images does not split into {parts} equal micro-batches")
    step = size // parts
    return [{key: value[i * step : (i + 1) * step] for key, value in batch.items()} for i in range(parts)]


class DivergenceWatch:
    """Remembers on the device the first step whose loss was not finite.

    :meth:`update` adds no host synchronisation; :meth:`first_bad_step` makes one (and one
    collective under ``torchrun``), so the trainer calls it only where it must know: before it
    logs, writes a checkpoint or evaluates. A loss that turns non-finite between two such
    points therefore still stops the run before anything is written from the diverged weights.
    """

    def __init__(self, device: torch.device) -> None:
        self.never = torch.iinfo(torch.int64).max
        self.first_step = torch.full((), self.never, dtype=torch.int64, device=device)
        self.first_terms: dict[str, torch.Tensor] = {}

    def update(self, step: int, terms: dict[str, torch.Tensor]) -> None:
        """Records ``terms`` (scalar loss tensors, ``loss`` among them) of ``step`` if it is the first bad one."""
        first = ~torch.isfinite(terms["loss"]) & (self.first_step == self.never)
        self.first_step = torch.where(first, step, self.first_step)
        for name, value in terms.items():
            kept = self.first_terms.get(name, torch.zeros_like(value))
            self.first_terms[name] = torch.where(first, value.detach(), kept)

    def first_bad_step(self) -> tuple[int, dict[str, float]] | None:
        """``(step, this process's loss terms there)`` of the first non-finite loss on any process, else ``None``."""
        step = int(dist.all_reduce_min(self.first_step).item())
        if step == self.never:
            return None
        mine = int(self.first_step.item()) == step
        return step, ({k: round(float(v), 4) for k, v in self.first_terms.items()} if mine else {})

    def first_bad_step_here(self) -> tuple[int, dict[str, float]] | None:
        """As :meth:`first_bad_step`, on this process alone: no collective, so it is safe where
        only this rank has stopped (the other ranks may be inside another collective)."""
        step = int(self.first_step.item())
        if step == self.never:
            return None
        return step, {k: round(float(v), 4) for k, v in self.first_terms.items()}
