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


def keep_unannotated_clusters(
    assignments: torch.Tensor, unannotated: torch.Tensor, rho: float, min_area: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The rho rule on one scale's clusters.

    A cluster is kept when at least ``rho`` of its area is unannotated; it is then clipped to
    the unannotated patches (those at least half unannotated) and dropped if smaller than
    ``min_area`` of the grid.

    Args:
        assignments: ``[B, N]`` cluster ids.
        unannotated: ``[B, N]`` fraction of each patch's pixels that are unannotated (0..1).

    Returns:
        ``masks [B, K, N]`` bool (clipped) and ``keep [B, K]`` bool.
    """
    num_clusters = int(assignments.max()) + 1 if assignments.numel() else 0
    members = F.one_hot(assignments, num_clusters).transpose(1, 2).float()  # [B, K, N]
    area = members.sum(-1)
    unannotated_area = members @ unannotated.unsqueeze(-1).float()  # [B, K, 1]
    mostly_unannotated = unannotated_area.squeeze(-1) >= rho * area
    masks = members.bool() & (unannotated >= 0.5).unsqueeze(1)
    big_enough = masks.sum(-1) >= max(min_area * assignments.shape[1], 1)
    return masks, mostly_unannotated & big_enough & (area > 0)


def deduplicate(masks: torch.Tensor, iou_threshold: float, max_masks: int) -> torch.Tensor:
    """Greedy de-duplication, largest first: drop a mask whose IoU with a kept one exceeds the threshold.

    Args:
        masks: ``[K, N]`` bool.

    Returns:
        indices of the kept masks (largest first, at most ``max_masks``).
    """
    if masks.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64)
    area = masks.sum(-1)
    order = torch.argsort(area, descending=True, stable=True)
    as_float = masks.float()
    intersection = as_float @ as_float.t()
    iou = intersection / (area[:, None] + area[None, :] - intersection).clamp(min=1)
    kept: list[int] = []
    for index in order.tolist():
        if all(iou[index, other] <= iou_threshold for other in kept):
            kept.append(index)
            if len(kept) == max_masks:
                break
    return torch.tensor(kept, dtype=torch.int64)


def propose(
    dense: torch.Tensor,
    unannotated: torch.Tensor,
    window_sizes: Sequence[int],
    iterations: int,
    rho: float,
    min_area: float,
    dedup_iou: float,
    max_masks: int,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Candidate masks for a batch.

    Args:
        dense: ``[B, D, h, w]`` frozen CLIP dense features.
        unannotated: ``[B, h, w]`` unannotated fraction per patch.

    Returns:
        per image, ``masks [K, h, w]`` bool and ``scales [K]`` (index into ``window_sizes``).
    """
    batch, _, height, width = dense.shape
    fraction = unannotated.reshape(batch, -1)
    per_scale = []
    for scale, assignments in enumerate(scale_clusters(dense, window_sizes, iterations)):
        masks, keep = keep_unannotated_clusters(assignments, fraction, rho, min_area)
        per_scale.append((scale, masks, keep))
    results = []
    for b in range(batch):
        masks = torch.cat([m[b][k[b]] for _, m, k in per_scale])  # [K_all, N]
        scales = torch.cat([torch.full((int(k[b].sum()),), s, dtype=torch.int64) for s, _, k in per_scale])
        kept = deduplicate(masks.cpu(), dedup_iou, max_masks)
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
