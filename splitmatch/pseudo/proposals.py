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
    components: bool = False,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Candidate masks for a batch.

    Args:
        dense: ``[B, D, h, w]`` frozen CLIP dense features.
        unannotated: ``[B, h, w]`` unannotated fraction per patch.
        components: split clusters into connected pieces before the rho rule (rho and the
            minimum area then hold per piece).

    Returns:
        per image, ``masks [K, h, w]`` bool and ``scales [K]`` (index into ``window_sizes``).
    """
    batch, _, height, width = dense.shape
    fraction = unannotated.reshape(batch, -1)
    per_scale = []
    for scale, assignments in enumerate(scale_clusters(dense, window_sizes, iterations)):
        if components:
            assignments = grid_components(assignments, height, width)
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
