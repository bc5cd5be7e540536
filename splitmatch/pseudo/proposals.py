"""Candidate regions: multi-scale K-Means clusters of frozen CLIP features in unannotated areas."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from splitmatch.pseudo.kmeans import kmeans, window_seeds


def scale_clusters(dense: torch.Tensor, window_sizes: Sequence[int], iterations: int) -> list[torch.Tensor]:
    """Cosine K-Means partitions of the grid, one per window size.

    Args:
        dense: ``[B, D, h, w]``.

    Returns:
        per scale, ``[B, h*w]`` cluster ids.
    """
    normalised = F.normalize(dense.float(), dim=1)
    points = normalised.flatten(2).transpose(1, 2)  # [B, h*w, D]
    return [kmeans(points, window_seeds(normalised, s), iterations, spherical=True)[0] for s in window_sizes]


def grid_components(assignments: torch.Tensor, height: int, width: int, diagonal: bool = True) -> torch.Tensor:
    """Splits every cluster into its connected pieces on the patch grid.

    K-Means groups patches by feature alone, so one cluster may hold an unseen object and, far
    from it, a few background patches that look alike; as one cluster they fail the rho rule
    together. Label propagation: every patch takes the smallest id among its neighbours of the
    same cluster until nothing changes (as many rounds as the longest path inside a piece).

    Args:
        assignments: ``[B, h*w]`` cluster ids.
        diagonal: 8-neighbour connectivity (else 4).

    Returns:
        ``[B, h*w]`` piece ids: each piece is named by the flat index of one of its patches.
    """
    batch = assignments.shape[0]
    clusters = assignments.view(batch, height, width)
    ids = torch.arange(height * width, device=assignments.device).expand(batch, -1).reshape(batch, height, width)
    ids = ids.clone()
    offsets = [(1, 0), (0, 1)] + ([(1, 1), (1, -1)] if diagonal else [])
    pairs = []  # (target slice, source slice, same-cluster mask) for every neighbour direction, both ways
    for dy, dx in offsets:
        a = (slice(None), slice(dy, None), slice(max(dx, 0), width + min(dx, 0)))
        b = (slice(None), slice(0, height - dy), slice(max(-dx, 0), width + min(-dx, 0)))
        same = clusters[a] == clusters[b]
        pairs += [(a, b, same), (b, a, same)]
    while True:
        previous = ids.clone()
        for target, source, same in pairs:
            ids[target] = torch.where(same, torch.minimum(ids[target], ids[source]), ids[target])
        if torch.equal(ids, previous):
            return ids.reshape(batch, -1)


def keep_unannotated_clusters(
    assignments: torch.Tensor, unannotated: torch.Tensor, rho: float, min_area: float, clip: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The rho rule on one scale's clusters.

    A cluster is kept when at least ``rho`` of its area is unannotated; it is then clipped to
    the unannotated patches (those at least half unannotated) and dropped if smaller than
    ``min_area`` of the grid. With ``clip=False`` (an ablation) the kept cluster stays whole and
    the minimum area holds for the whole cluster.

    Args:
        assignments: ``[B, N]`` cluster ids.
        unannotated: ``[B, N]`` fraction of each patch's pixels that are unannotated (0..1).

    Returns:
        ``masks [B, K, N]`` bool (clipped unless ``clip`` is false) and ``keep [B, K]`` bool.
    """
    num_clusters = int(assignments.max()) + 1 if assignments.numel() else 0
    members = F.one_hot(assignments, num_clusters).transpose(1, 2).float()  # [B, K, N]
    area = members.sum(-1)
    unannotated_area = members @ unannotated.unsqueeze(-1).float()  # [B, K, 1]
    mostly_unannotated = unannotated_area.squeeze(-1) >= rho * area
    masks = members.bool() & (unannotated >= 0.5).unsqueeze(1) if clip else members.bool()
    big_enough = masks.sum(-1) >= max(min_area * assignments.shape[1], 1)
    return masks, mostly_unannotated & big_enough & (area > 0)


def deduplicate(
    masks: torch.Tensor,
    iou_threshold: float,
    max_masks: int,
    containment: float = 1.0,
    priority: torch.Tensor | None = None,
) -> torch.Tensor:
    """Greedy de-duplication, largest first, then a cap.

    A mask is dropped when its IoU with a kept (larger) one exceeds ``iou_threshold``, or when
    more than ``containment`` of its own area lies inside a kept one (1 turns that test off: a
    part of an object then survives beside the whole). Of the masks left, the ``max_masks`` of
    highest ``priority`` are kept (default: the largest).

    Args:
        masks: ``[K, N]`` bool.
        priority: ``[K]`` score of each mask for the cap, higher first (ties: larger first).

    Returns:
        indices of the kept masks, in cap order (largest first by default), at most ``max_masks``.
    """
    if masks.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64)
    area = masks.sum(-1)
    order = torch.argsort(area, descending=True, stable=True)
    as_float = masks.float()
    intersection = as_float @ as_float.t()
    iou = intersection / (area[:, None] + area[None, :] - intersection).clamp(min=1)
    inside = intersection / area[:, None].clamp(min=1)  # [K, K]: share of mask i that lies in mask j
    kept: list[int] = []
    for index in order.tolist():
        if all(iou[index, other] <= iou_threshold and inside[index, other] <= containment for other in kept):
            kept.append(index)
            if priority is None and len(kept) == max_masks:
                break  # largest first is already the cap's order
    if priority is not None and kept:
        ranks = torch.argsort(priority[torch.tensor(kept)], descending=True, stable=True)
        kept = [kept[r] for r in ranks.tolist()[:max_masks]]
    return torch.tensor(kept, dtype=torch.int64)


def feature_coherence(dense: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """How alike the features inside each mask are: the length of the mean of their unit vectors.

    Args:
        dense: ``[D, N]`` features of one image.
        masks: ``[K, N]`` bool, none empty.

    Returns:
        ``[K]`` in 0..1: 1 when every patch of the mask points the same way.
    """
    points = F.normalize(dense.float(), dim=0).t()  # [N, D]
    weights = masks.float()
    mean = (weights @ points) / weights.sum(-1, keepdim=True).clamp(min=1)  # [K, D]
    return mean.norm(dim=-1)


MASK_ORDERS = ("area", "coherence")


def propose(
    dense: torch.Tensor,
    unannotated: torch.Tensor,
    window_sizes: Sequence[int],
    iterations: int,
    rho: float,
    min_area: float | Sequence[float],
    dedup_iou: float,
    max_masks: int,
    components: bool = False,
    containment: float = 1.0,
    order: str = "area",
    clip: bool = True,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Candidate masks for a batch.

    Args:
        dense: ``[B, D, h, w]`` frozen CLIP dense features.
        unannotated: ``[B, h, w]`` unannotated fraction per patch.
        min_area: the minimum candidate area as a share of the grid, one for every scale or one
            per window size.
        components: split clusters into connected pieces before the rho rule (rho and the
            minimum area then hold per piece).
        containment: drop a mask when more than this share of it lies inside a kept, larger one
            (1: off).
        order: which masks the ``max_masks`` cap keeps: ``"area"`` the largest, ``"coherence"``
            those whose features are most alike (:func:`feature_coherence`).
        clip: clip kept clusters to the unannotated patches (false: an ablation, whole clusters).

    Returns:
        per image, ``masks [K, h, w]`` bool and ``scales [K]`` (index into ``window_sizes``).
    """
    if order not in MASK_ORDERS:
        raise ValueError(f"order must be one of {list(MASK_ORDERS)}, got {order!r}")
    areas = [float(min_area)] * len(window_sizes) if isinstance(min_area, (int, float)) else list(min_area)
    if len(areas) != len(window_sizes):
        raise ValueError(f"min_area needs one value per window size {list(window_sizes)}, got {areas}")
    batch, _, height, width = dense.shape
    fraction = unannotated.reshape(batch, -1)
    per_scale = []
    for scale, assignments in enumerate(scale_clusters(dense, window_sizes, iterations)):
        if components:
            assignments = grid_components(assignments, height, width)
        masks, keep = keep_unannotated_clusters(assignments, fraction, rho, areas[scale], clip)
        per_scale.append((scale, masks, keep))
    results = []
    for b in range(batch):
        masks = torch.cat([m[b][k[b]] for _, m, k in per_scale])  # [K_all, N]
        scales = torch.cat([torch.full((int(k[b].sum()),), s, dtype=torch.int64) for s, _, k in per_scale])
        priority = (
            feature_coherence(dense[b].reshape(dense.shape[1], -1), masks).cpu() if order == "coherence" else None
        )
        kept = deduplicate(masks.cpu(), dedup_iou, max_masks, containment, priority)
        results.append((masks[kept.to(masks.device)].reshape(-1, height, width), scales[kept.to(scales.device)]))
    return results


def index_map(masks: torch.Tensor, scales: torch.Tensor, num_scales: int) -> torch.Tensor:
    """Packs candidate masks into a per-scale index map.

    Masks of one scale come from one partition, so they never overlap within a channel.

    Args:
        masks: ``[K, h, w]`` bool, ``K <= 254``.
        scales: ``[K]`` scale index of each mask.

    Returns:
        ``[S, h, w]`` uint8: 0 where no candidate, ``k + 1`` inside candidate ``k``.
    """
    if masks.shape[0] > 254:
        raise ValueError(f"at most 254 pseudo masks fit an index map, got {masks.shape[0]}")
    out = torch.zeros(num_scales, *masks.shape[1:], dtype=torch.uint8, device=masks.device)
    for k in range(masks.shape[0]):
        out[int(scales[k])][masks[k]] = k + 1
    return out


def masks_from_index_map(index: torch.Tensor, count: int) -> torch.Tensor:
    """Inverse of :func:`index_map`: ``[S, H, W]`` uint8 -> ``[count, H, W]`` bool."""
    ids = torch.arange(1, count + 1, device=index.device, dtype=index.dtype).view(-1, 1, 1, 1)
    return (index.unsqueeze(0) == ids).any(dim=1)
