"""Hungarian matching (the baseline) and Split Matching (the method).

Both build, per query group, the cost matrices of every decoder read-out and every image at
once on points shared by predictions and targets, in float32 under ``no_grad``; all of them go
to the host in one copy and each image's matrix is solved with
``scipy.optimize.linear_sum_assignment`` (:mod:`splitmatch.matching.assignment`). Targets are a
list (one dict per image, :func:`splitmatch.train.targets.build_targets`) with ``labels [M]``
int64 (index into the class embeddings the model was given), the masks as ``label_map [1, H, W]``
and ``label_ids [M]`` and, for Split Matching, ``pseudo_index [S, H, W]``, ``pseudo_ids [K]`` and
``pseudo_embeddings [K, D]`` (:mod:`splitmatch.matching.target_maps`; masks given unpacked,
``masks [M, H, W]`` and ``pseudo_masks [K, H, W]``, are read as well).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from splitmatch.matching.assignment import CostBlock, PairIndex, Pairs, empty_pairs, pair_indices, solve, solve_blocks
from splitmatch.matching.costs import class_cost, dice_cost, embedding_cost, sigmoid_bce_cost
from splitmatch.matching.point_sampling import point_sample
from splitmatch.matching.target_maps import TargetMaps, pad_stack
from splitmatch.model.query_decoder import CANDIDATE_GROUP, SEEN_GROUP

__all__ = ["HungarianMatcher", "Matching", "Pairs", "SplitMatcher", "empty_pairs", "pad_targets", "solve"]


@dataclass
class Matching:
    """One read-out's assignment: per image pairs on the host, and the same pairs on the device.

    Attributes:
        seen: per image ``(query indices, target indices)`` of queries and seen ground-truth
            masks, int64 on the host.
        candidate: the same for candidate queries and pseudo masks; ``None`` for Hungarian
            matching, which has no candidate group.
        class_queries: ``[N]`` host indices of the queries that receive the seen classification loss.
        seen_index, candidate_index: ``seen`` and ``candidate`` as device index tensors (what the
            criterion indexes with; :meth:`HungarianMatcher.match_readouts` fills them).
        class_query_index: ``class_queries`` on the device.
    """

    seen: list[Pairs]
    candidate: list[Pairs] | None
    class_queries: torch.Tensor
    seen_index: PairIndex | None = None
    candidate_index: PairIndex | None = None
    class_query_index: torch.Tensor | None = None


@dataclass
class QueryLayout:
    """Which queries a matcher classifies and which are candidates, on the host and on the device."""

    classified: torch.Tensor
    candidates: torch.Tensor
    classified_device: torch.Tensor
    candidates_device: torch.Tensor


def pad_targets(targets: list[dict], coords: torch.Tensor) -> dict:
    """Targets read at the matching points and padded into batch tensors, once per criterion call.

    Every decoder read-out of a step is matched on the same points, so the target maps are
    read once (Mask2Former draws new points for every read-out; the costs are alike in
    expectation).

    Args:
        coords: ``[B, P, 2]`` points in ``[0, 1]``.

    Returns:
        ``coords``; ``labels [B, M]``, ``counts`` (M_b), ``masks`` (:class:`TargetMaps`) and
        ``mask_points [B, M, P]`` float; when the targets have pseudo masks also ``pseudo``,
        ``pseudo_counts``, ``pseudo_points [B, K, P]`` and ``pseudo_embeddings [B, K, D]`` float.
        Rows past an image's count are padding and never read.
    """
    masks = TargetMaps.of(targets, "seen", coords.shape[1])
    padded = {
        "coords": coords,
        "labels": pad_stack([t["labels"] for t in targets])[0],
        "counts": masks.counts,
        "masks": masks,
        "mask_points": masks.read(coords),
    }
    if all(any(key in t for key in ("pseudo_index", "pseudo_grid", "pseudo_masks")) for t in targets):
        pseudo = TargetMaps.of(targets, "pseudo", coords.shape[1])
        padded.update(pseudo=pseudo, pseudo_counts=pseudo.counts, pseudo_points=pseudo.read(coords))
        padded["pseudo_embeddings"] = pad_stack([t["pseudo_embeddings"] for t in targets])[0].float()
    return padded


def mask_costs(
    pred_masks: torch.Tensor, target_points: torch.Tensor, coords: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE and dice costs of one read-out on shared points, image by image.

    Args:
        pred_masks: ``[B, N, h, w]`` logits.
        target_points: ``[B, M, P]`` target masks read at ``coords`` (:func:`pad_targets`).
        coords: ``[B, P, 2]`` points in ``[0, 1]``.

    Returns:
        two ``[B, N, M]`` float32 costs.
    """
    bce, dice = [], []
    # One image at a time: on the CPU the [N, P] temporaries stay in cache instead of streaming [B, N, P].
    for b in range(pred_masks.shape[0]):
        pred_points = point_sample(pred_masks[b : b + 1].float(), coords[b : b + 1])[0]  # [N, P]
        bce.append(sigmoid_bce_cost(pred_points, target_points[b]))
        dice.append(dice_cost(pred_points, target_points[b]))
    return torch.stack(bce), torch.stack(dice)


def readout_mask_costs(
    pred_masks: list[torch.Tensor], target_points: torch.Tensor, coords: torch.Tensor, per_image: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE and dice costs of every read-out: ``pred_masks`` L x ``[B, N, h, w]`` -> two ``[L, B, N, M]``.

    ``per_image``: image by image (:func:`mask_costs`, the CPU's faster way) or all read-outs and
    images in one batched product (a GPU's); ``None`` chooses by the device. Same arithmetic.
    """
    if per_image is None:
        per_image = pred_masks[0].device.type == "cpu"
    if per_image:
        costs = [mask_costs(masks, target_points, coords) for masks in pred_masks]
        return torch.stack([bce for bce, _ in costs]), torch.stack([dice for _, dice in costs])
    points = torch.stack([point_sample(masks.float(), coords) for masks in pred_masks])  # [L, B, N, P]
    return sigmoid_bce_cost(points, target_points), dice_cost(points, target_points)


class HungarianMatcher(nn.Module):
    """Mask2Former matching of all (or the given) queries to the seen ground truth.

    ``C[i, j] = -w_cls * p_i(c_j) + w_bce * BCE(m_i, y_j) + w_dice * Dice(m_i, y_j)`` with ``p_i``
    the softmax over the given classes plus no-object.
    """

    def __init__(self, cost_class: float, cost_bce: float, cost_dice: float, num_points: int) -> None:
        super().__init__()
        self.cost_class, self.cost_bce, self.cost_dice = cost_class, cost_bce, cost_dice
        self.num_points = num_points
        self._device_layout: tuple[torch.Tensor, QueryLayout] | None = None

    def random_points(self, batch: int, device: torch.device) -> torch.Tensor:
        return torch.rand(batch, self.num_points, 2, device=device)

    def split_queries(self, query_group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Host ``[Q]`` groups -> the classified and the candidate queries (host int64)."""
        return torch.arange(query_group.numel()), torch.empty(0, dtype=torch.int64)

    def query_layout(self, query_group: torch.Tensor) -> QueryLayout:
        """The classified and candidate queries of ``query_group [Q]`` (0 seen, 1 candidate).

        The groups are a constant of the model, so a device ``query_group`` is copied to the host
        once, the first time that tensor is seen, not once per step.
        """
        cached = self._device_layout
        if cached is not None and cached[0] is query_group:
            return cached[1]
        device = query_group.device
        classified, candidates = self.split_queries(query_group.cpu())
        layout = QueryLayout(classified, candidates, classified.to(device), candidates.to(device))
        if device.type != "cpu":
            self._device_layout = (query_group, layout)
        return layout

    def query_counts(self, query_group: torch.Tensor) -> tuple[int, int]:
        """How many queries are classified (matched to seen masks) and how many are candidates."""
        layout = self.query_layout(query_group)
        return layout.classified.numel(), layout.candidates.numel()

    @torch.no_grad()
    def seen_costs(self, readouts: list[dict], padded: dict, layout: QueryLayout) -> CostBlock:
        """Costs of the classified queries against each image's seen masks, every read-out at once."""
        counts, queries = padded["counts"], layout.classified_device
        if max(counts) == 0 or queries.numel() == 0:
            return CostBlock(None, counts, layout.classified, "seen", len(readouts))
        probs = torch.stack([r["pred_logits"][:, queries] for r in readouts]).float().softmax(-1)  # [L, B, N, C+1]
        masks = [r["pred_masks"][:, queries] for r in readouts]
        bce, dice = readout_mask_costs(masks, padded["mask_points"], padded["coords"])
        costs = self.cost_class * class_cost(probs, padded["labels"]) + self.cost_bce * bce + self.cost_dice * dice
        return CostBlock(costs, counts, layout.classified, "seen", len(readouts))

    def cost_blocks(self, readouts: list[dict], padded: dict, layout: QueryLayout) -> list[CostBlock]:
        return [self.seen_costs(readouts, padded, layout)]

    def match_readouts(self, readouts: list[dict], padded: dict) -> list[Matching]:
        """Matches every read-out: one device-to-host copy, one host-to-device copy.

        Args:
            readouts: model outputs (``pred_logits [B, Q, C+1]``, ``pred_masks [B, Q, h, w]``,
                ``query_group [Q]``, and for Split Matching ``pred_embeds [B, Q, D]``).
            padded: :func:`pad_targets` of the images.

        Returns:
            one :class:`Matching` per read-out.
        """
        layout = self.query_layout(readouts[0]["query_group"])
        blocks = self.cost_blocks(readouts, padded, layout)
        solved = solve_blocks(blocks)
        indices = pair_indices(solved, layout.classified_device.device)
        candidate = len(blocks) > 1
        return [
            Matching(
                seen=solved[0][layer],
                candidate=solved[1][layer] if candidate else None,
                class_queries=layout.classified,
                seen_index=indices[0][layer],
                candidate_index=indices[1][layer] if candidate else None,
                class_query_index=layout.classified_device,
            )
            for layer in range(len(readouts))
        ]

    def forward(
        self, outputs: dict, targets: list[dict], coords: torch.Tensor | None = None, padded: dict | None = None
    ) -> Matching:
        """Matches one read-out.

        Args:
            outputs: ``pred_logits [B, Q, C+1]``, ``pred_masks [B, Q, h, w]``, ``query_group [Q]``
                (and ``pred_embeds [B, Q, D]`` for Split Matching).
            targets: per image, see the module docstring.
            coords: ``[B, P, 2]`` shared points; random when ``None``.
            padded: ``pad_targets(targets, coords)`` when the caller already has it (its points win).
        """
        if padded is None:
            batch, device = outputs["pred_logits"].shape[0], outputs["pred_logits"].device
            padded = pad_targets(targets, self.random_points(batch, device) if coords is None else coords)
        return self.match_readouts([outputs], padded)[0]


class SplitMatcher(HungarianMatcher):
    """Split Matching: seen queries to seen masks, candidate queries to pseudo masks, solved apart.

    Candidate cost: ``C[i, k] = -w_sim * cos(z_i, e_k) + w_bce * BCE(m_i, Y_k) + w_dice * Dice(m_i, Y_k)``.
    With more pseudo masks than candidate queries the assignment keeps the lowest-cost ones.
    """

    def __init__(self, cost_class: float, cost_bce: float, cost_dice: float, cost_embed: float, num_points: int):
        super().__init__(cost_class, cost_bce, cost_dice, num_points)
        self.cost_embed = cost_embed

    def split_queries(self, query_group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.nonzero(query_group == SEEN_GROUP).flatten(),
            torch.nonzero(query_group == CANDIDATE_GROUP).flatten(),
        )

    @torch.no_grad()
    def candidate_costs(self, readouts: list[dict], padded: dict, layout: QueryLayout) -> CostBlock:
        """Costs of the candidate queries against each image's pseudo masks, every read-out at once."""
        counts, queries = padded["pseudo_counts"], layout.candidates_device
        if max(counts) == 0 or queries.numel() == 0:
            return CostBlock(None, counts, layout.candidates, "candidate", len(readouts))
        embeds = torch.stack([r["pred_embeds"][:, queries] for r in readouts]).float()  # [L, B, N, D]
        masks = [r["pred_masks"][:, queries] for r in readouts]
        bce, dice = readout_mask_costs(masks, padded["pseudo_points"], padded["coords"])
        costs = (
            self.cost_embed * embedding_cost(embeds, padded["pseudo_embeddings"])
            + self.cost_bce * bce
            + self.cost_dice * dice
        )
        return CostBlock(costs, counts, layout.candidates, "candidate", len(readouts))

    def cost_blocks(self, readouts: list[dict], padded: dict, layout: QueryLayout) -> list[CostBlock]:
        if "pseudo_points" not in padded:
            raise ValueError(
                "split matching needs pseudo masks (pseudo_index and pseudo_ids) and pseudo_embeddings in every target"
            )
        return [self.seen_costs(readouts, padded, layout), self.candidate_costs(readouts, padded, layout)]
