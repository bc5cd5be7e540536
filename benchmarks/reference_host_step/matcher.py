"""Hungarian matching (the baseline) and Split Matching (the method).

Both build one batched cost matrix per query group on points shared by predictions and
targets, in float32 under ``no_grad``, then solve each image with
``scipy.optimize.linear_sum_assignment``. Targets are a list (one dict per image) with
``labels [M] int64`` (index into the class embeddings the model was given), ``masks [M, H, W]``
and, for Split Matching, ``pseudo_masks [K, H, W]`` and ``pseudo_embeddings [K, D]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from splitmatch.matching.costs import class_cost, dice_cost, embedding_cost, sigmoid_bce_cost
from splitmatch.model.query_decoder import CANDIDATE_GROUP, SEEN_GROUP

from .point_sampling import point_sample, sample_target_masks

Pairs = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Matching:
    """Per image ``(query indices, target indices)`` pairs, both int64 on the CPU.

    Attributes:
        seen: pairs of queries and seen ground-truth masks.
        candidate: pairs of candidate queries and pseudo masks; ``None`` for Hungarian matching,
            which has no candidate group.
        class_queries: ``[N]`` indices of the queries that receive the seen classification loss.
    """

    seen: list[Pairs]
    candidate: list[Pairs] | None
    class_queries: torch.Tensor


def empty_pairs(count: int) -> list[Pairs]:
    return [(torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64)) for _ in range(count)]


def pad_stack(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """Stacks ``[M_i, ...]`` tensors into ``[B, max M_i, ...]`` with zero padding; returns the M_i too."""
    counts = [t.shape[0] for t in tensors]
    out = tensors[0].new_zeros((len(tensors), max(counts), *tensors[0].shape[1:]))
    for i, t in enumerate(tensors):
        out[i, : counts[i]] = t
    return out, counts


def pad_targets(targets: list[dict], coords: torch.Tensor) -> dict:
    """Targets read at the matching points and padded into batch tensors, once per step.

    Every decoder read-out of a step is matched on the same points, so the target masks are
    read once (Mask2Former draws new points for every read-out; the costs are alike in
    expectation, and the large target masks are read once, not once per read-out).

    Args:
        coords: ``[B, P, 2]`` points in ``[0, 1]``.

    Returns:
        ``coords``, ``mask_points [B, M, P]`` float, ``labels [B, M]``, ``counts`` (M_b), and when the
        targets have them ``pseudo_points [B, K, P]``, ``pseudo_embeddings [B, K, D]``, ``pseudo_counts``.
    """

    def read(key: str) -> tuple[torch.Tensor, list[int]]:
        return pad_stack([sample_target_masks(t[key], coords[b : b + 1]) for b, t in enumerate(targets)])

    mask_points, counts = read("masks")
    labels = pad_stack([t["labels"] for t in targets])[0]
    padded = {"coords": coords, "mask_points": mask_points, "labels": labels, "counts": counts}
    if all("pseudo_masks" in t for t in targets):
        padded["pseudo_points"], padded["pseudo_counts"] = read("pseudo_masks")
        padded["pseudo_embeddings"] = pad_stack([t["pseudo_embeddings"] for t in targets])[0].float()
    return padded


def mask_costs(
    pred_masks: torch.Tensor, target_points: torch.Tensor, coords: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE and dice costs on shared points.

    Args:
        pred_masks: ``[B, N, h, w]`` logits.
        target_points: ``[B, M, P]`` target masks read at ``coords`` (:func:`pad_targets`).
        coords: ``[B, P, 2]`` points in ``[0, 1]``.

    Returns:
        two ``[B, N, M]`` float32 costs.
    """
    bce, dice = [], []
    # One image at a time: the [N, P] temporaries stay in cache instead of streaming [B, N, P].
    for b in range(pred_masks.shape[0]):
        pred_points = point_sample(pred_masks[b : b + 1].float(), coords[b : b + 1])[0]  # [N, P]
        bce.append(sigmoid_bce_cost(pred_points, target_points[b]))
        dice.append(dice_cost(pred_points, target_points[b]))
    return torch.stack(bce), torch.stack(dice)


def solve(costs: torch.Tensor, counts: list[int], what: str) -> list[Pairs]:
    """Solves ``[B, N, max M]`` costs image by image over the first ``counts[b]`` columns."""
    costs = costs.detach().float().cpu()
    pairs = []
    for b, count in enumerate(counts):
        matrix = costs[b, :, :count]
        if not torch.isfinite(matrix).all():
            bad = (~torch.isfinite(matrix)).sum().item()
            raise FloatingPointError(
                f"{what} cost matrix of image {b} in the batch has {bad} non-finite entries "
                f"(shape {tuple(matrix.shape)}); the model's outputs have diverged"
            )
        rows, cols = linear_sum_assignment(matrix.numpy())
        pairs.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
    return pairs


def _absolute(pairs: list[Pairs], queries: torch.Tensor) -> list[Pairs]:
    queries = queries.cpu()
    return [(queries[rows], cols) for rows, cols in pairs]


class HungarianMatcher(nn.Module):
    """Mask2Former matching of all (or the given) queries to the seen ground truth.

    ``C[i, j] = -w_cls * p_i(c_j) + w_bce * BCE(m_i, y_j) + w_dice * Dice(m_i, y_j)`` with ``p_i``
    the softmax over the given classes plus no-object.
    """

    def __init__(self, cost_class: float, cost_bce: float, cost_dice: float, num_points: int) -> None:
        super().__init__()
        self.cost_class, self.cost_bce, self.cost_dice = cost_class, cost_bce, cost_dice
        self.num_points = num_points

    def random_points(self, batch: int, device: torch.device) -> torch.Tensor:
        return torch.rand(batch, self.num_points, 2, device=device)

    def query_counts(self, query_group: torch.Tensor) -> tuple[int, int]:
        """How many queries are classified (matched to seen masks) and how many are candidates."""
        return int(query_group.numel()), 0

    @torch.no_grad()
    def match_queries(self, outputs: dict, padded: dict, queries: torch.Tensor) -> list[Pairs]:
        """Matches ``queries`` (``[N]`` indices) to each image's seen masks; indices returned are absolute.

        Args:
            padded: from :func:`pad_targets`.
        """
        counts = padded["counts"]
        if max(counts) == 0 or queries.numel() == 0:
            return empty_pairs(len(counts))
        probs = outputs["pred_logits"][:, queries].float().softmax(-1)  # [B, N, C+1]
        bce, dice = mask_costs(outputs["pred_masks"][:, queries], padded["mask_points"], padded["coords"])
        costs = self.cost_class * class_cost(probs, padded["labels"]) + self.cost_bce * bce + self.cost_dice * dice
        return _absolute(solve(costs, counts, "seen"), queries)

    def forward(
        self, outputs: dict, targets: list[dict], coords: torch.Tensor | None = None, padded: dict | None = None
    ) -> Matching:
        """Matches every query to the seen ground truth.

        Args:
            outputs: ``pred_logits [B, Q, C+1]``, ``pred_masks [B, Q, h, w]``, ``query_group [Q]``.
            targets: per image ``labels [M]`` and ``masks [M, H, W]``.
            coords: ``[B, P, 2]`` shared points; random when ``None``.
            padded: ``pad_targets(targets, coords)`` when the caller already has it (its points win).
        """
        batch, num_queries = outputs["pred_logits"].shape[:2]
        device = outputs["pred_logits"].device
        if padded is None:
            padded = pad_targets(targets, self.random_points(batch, device) if coords is None else coords)
        queries = torch.arange(num_queries, device=device)
        return Matching(self.match_queries(outputs, padded, queries), None, queries)


class SplitMatcher(HungarianMatcher):
    """Split Matching: seen queries to seen masks, candidate queries to pseudo masks, solved apart.

    Candidate cost: ``C[i, k] = -w_sim * cos(z_i, e_k) + w_bce * BCE(m_i, Y_k) + w_dice * Dice(m_i, Y_k)``.
    With more pseudo masks than candidate queries the assignment keeps the lowest-cost ones.
    """

    def __init__(self, cost_class: float, cost_bce: float, cost_dice: float, cost_embed: float, num_points: int):
        super().__init__(cost_class, cost_bce, cost_dice, num_points)
        self.cost_embed = cost_embed

    def query_counts(self, query_group: torch.Tensor) -> tuple[int, int]:
        return int((query_group == SEEN_GROUP).sum()), int((query_group == CANDIDATE_GROUP).sum())

    @torch.no_grad()
    def match_candidates(self, outputs: dict, padded: dict, queries: torch.Tensor):
        """Matches candidate ``queries`` (``[N]`` indices) to each image's pseudo masks."""
        counts = padded["pseudo_counts"]
        if max(counts) == 0 or queries.numel() == 0:
            return empty_pairs(len(counts))
        embeds = outputs["pred_embeds"][:, queries].float()  # [B, N, D]
        bce, dice = mask_costs(outputs["pred_masks"][:, queries], padded["pseudo_points"], padded["coords"])
        costs = (
            self.cost_embed * embedding_cost(embeds, padded["pseudo_embeddings"])
            + self.cost_bce * bce
            + self.cost_dice * dice
        )
        return _absolute(solve(costs, counts, "candidate"), queries)

    def forward(
        self, outputs: dict, targets: list[dict], coords: torch.Tensor | None = None, padded: dict | None = None
    ) -> Matching:
        """As :meth:`HungarianMatcher.forward`, plus ``pred_embeds [B, Q, D]`` and pseudo targets."""
        batch = outputs["pred_logits"].shape[0]
        device = outputs["pred_logits"].device
        if padded is None:
            padded = pad_targets(targets, self.random_points(batch, device) if coords is None else coords)
        if "pseudo_points" not in padded:
            raise ValueError("split matching needs pseudo_masks and pseudo_embeddings in every target")
        group = outputs["query_group"]
        seen_queries = torch.nonzero(group == SEEN_GROUP).flatten()
        candidate_queries = torch.nonzero(group == CANDIDATE_GROUP).flatten()
        return Matching(
            self.match_queries(outputs, padded, seen_queries),
            self.match_candidates(outputs, padded, candidate_queries),
            seen_queries,
        )
