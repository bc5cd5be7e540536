"""The Hungarian solves of a whole criterion call: one copy to the host, one copy back.

The matcher builds every cost matrix of every decoder read-out and image on the device; here
they travel to the host in one copy (the call's only device synchronisation), are checked and
solved with ``scipy.optimize.linear_sum_assignment`` matrix by matrix, and the matched index
pairs of every read-out go back to the device in one copy (pinned, without waiting), ready for
the losses to index with.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.optimize import linear_sum_assignment

from splitmatch.errors import NonFiniteValuesError

Pairs = tuple[torch.Tensor, torch.Tensor]


@dataclass
class CostBlock:
    """The cost matrices of one query group, every read-out and image.

    Attributes:
        costs: ``[L, B, N, max M]`` on the device, or ``None`` when nothing is to be matched
            (no targets or no queries): every image then gets empty pairs.
        counts: ``M_b``, the real columns of image b (the rest is padding).
        queries: ``[N]`` host int64, the absolute query index of each row.
        what: the group's name in error messages (``seen``, ``candidate``).
        readouts: L.
    """

    costs: torch.Tensor | None
    counts: list[int]
    queries: torch.Tensor
    what: str
    readouts: int


@dataclass
class PairIndex:
    """One read-out's matched pairs on the device, image by image: ``image``, ``query`` (absolute) and
    ``target`` (column), each ``[n]`` int64; ``count`` is n, known on the host."""

    image: torch.Tensor
    query: torch.Tensor
    target: torch.Tensor
    count: int


def empty_pairs(count: int) -> list[Pairs]:
    return [(torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64)) for _ in range(count)]


def solve(costs: torch.Tensor, counts: list[int], what: str) -> list[Pairs]:
    """Solves ``[B, N, max M]`` host costs image by image over the first ``counts[b]`` columns."""
    costs = costs.detach().float().cpu()
    pairs = []
    for b, count in enumerate(counts):
        matrix = costs[b, :, :count]
        if not torch.isfinite(matrix).all():
            bad = (~torch.isfinite(matrix)).sum().item()
            raise NonFiniteValuesError(
                f"{what} cost matrix of image {b} in the batch has {bad} non-finite entries "
                f"(shape {tuple(matrix.shape)}); the model's outputs have diverged"
            )
        rows, cols = linear_sum_assignment(matrix.numpy())
        pairs.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
    return pairs


def solve_blocks(blocks: list[CostBlock]) -> list[list[list[Pairs]]]:
    """Every block's matrices copied to the host at once and solved.

    Returns:
        ``[block][read-out][image]`` pairs ``(absolute query indices, target columns)``, host int64.
    """
    filled = [block.costs.detach().float().reshape(-1) for block in blocks if block.costs is not None]
    host = torch.cat(filled).cpu() if filled else None  # the one device-to-host copy
    solved, offset = [], 0
    for block in blocks:
        if block.costs is None:
            solved.append([empty_pairs(len(block.counts)) for _ in range(block.readouts)])
            continue
        costs = host[offset : offset + block.costs.numel()].view(block.costs.shape)
        offset += block.costs.numel()
        solved.append(
            [
                [(block.queries[rows], cols) for rows, cols in solve(costs[layer], block.counts, block.what)]
                for layer in range(block.readouts)
            ]
        )
    return solved


def pair_indices(solved: list[list[list[Pairs]]], device: torch.device) -> list[list[PairIndex]]:
    """The pairs of :func:`solve_blocks` as ``[block][read-out]`` :class:`PairIndex`, in one host-to-device copy."""
    columns = [
        torch.stack(
            [
                torch.cat([torch.full_like(rows, b) for b, (rows, _) in enumerate(pairs)]),
                torch.cat([rows for rows, _ in pairs]),
                torch.cat([cols for _, cols in pairs]),
            ]
        )
        for block in solved
        for pairs in block
    ]  # each [3, n]: image, query, target
    sizes = [column.shape[1] for column in columns]
    packed = torch.cat(columns, dim=1) if columns else torch.empty(3, 0, dtype=torch.int64)
    if device.type == "cuda":
        packed = packed.pin_memory()
    parts = packed.to(device, non_blocking=True).split(sizes, dim=1)
    out, first = [], 0
    for block in solved:
        out.append([PairIndex(*parts[first + layer], count=sizes[first + layer]) for layer in range(len(block))])
        first += len(block)
    return out
