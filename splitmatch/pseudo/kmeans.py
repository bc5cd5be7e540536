"""Batched K-Means in torch, started from given seeds (no random restarts)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kmeans(
    features: torch.Tensor, seeds: torch.Tensor, iterations: int, spherical: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd iterations for a batch of point sets at once.

    With ``spherical=True`` (cosine K-Means) points and centroids live on the unit sphere:
    a point joins the centroid of highest cosine and a centroid is the normalised sum of its
    points. With ``spherical=False`` it is Euclidean K-Means, step for step what scikit-learn's
    Lloyd ``KMeans(init=seeds, n_init=1, max_iter=iterations, tol=0)`` does, except that an
    empty cluster keeps its previous centroid instead of being relocated. Iteration stops early
    once no assignment changes; the returned assignment is always recomputed against the
    returned centroids.

    Args:
        features: ``[B, N, D]`` points (normalised when spherical).
        seeds: ``[B, K, D]`` initial centroids.
        iterations: T, the maximum number of centroid updates.

    Returns:
        ``assignments [B, N]`` int64 in ``0..K-1`` and ``centroids [B, K, D]``.
    """
    features = features.float().contiguous()  # a transposed view would send every matmul down a slow path
    centroids = F.normalize(seeds.float(), dim=-1) if spherical else seeds.float().clone()
    batch, num_clusters, dim = centroids.shape
    flat_features = features.reshape(-1, dim)  # [B*N, D]
    offsets = (torch.arange(batch, device=features.device) * num_clusters).unsqueeze(1)  # [B, 1]
    assignments = _assign(features, centroids, spherical)
    for _ in range(iterations):
        slots = (assignments + offsets).reshape(-1)  # cluster index over the whole batch
        sums = _cluster_sums(slots, flat_features, batch * num_clusters).view(batch, num_clusters, dim)  # [B, K, D]
        counts = torch.bincount(slots, minlength=batch * num_clusters).view(batch, num_clusters, 1).to(sums.dtype)
        updated = F.normalize(sums, dim=-1) if spherical else sums / counts.clamp(min=1)
        centroids = torch.where(counts > 0, updated, centroids)
        reassigned = _assign(features, centroids, spherical)
        converged = torch.equal(reassigned, assignments)  # a fixed point: another update changes nothing
        assignments = reassigned
        if converged:
            break
    return assignments, centroids


def _cluster_sums(slots: torch.Tensor, points: torch.Tensor, num_slots: int) -> torch.Tensor:
    """Sum of the points in each slot: ``[M] int64, [M, D] -> [num_slots, D]``.

    A sparse one-hot matrix times the points: on the CPU this is several times faster than
    ``index_add_``, whose multi-threaded path costs more than the additions here.
    """
    count = slots.shape[0]
    indices = torch.stack([slots, torch.arange(count, device=slots.device)])
    one_hot = torch.sparse_coo_tensor(
        indices, points.new_ones(count), (num_slots, count), is_coalesced=False, check_invariants=False
    )
    return torch.sparse.mm(one_hot, points)


def _assign(features: torch.Tensor, centroids: torch.Tensor, spherical: bool) -> torch.Tensor:
    """Nearest centroid: ``[B, N, D], [B, K, D] -> [B, N]``."""
    similarity = features @ centroids.transpose(1, 2)  # [B, N, K]
    if not spherical:
        # argmin ||x - c||^2 = argmax (2 x.c - ||c||^2); ||x||^2 is the same for every c.
        similarity = 2 * similarity - centroids.square().sum(-1).unsqueeze(1)
    return similarity.argmax(-1)


def window_seeds(dense: torch.Tensor, window: int) -> torch.Tensor:
    """Seeds from window averages ``avg_pool2d(O, s, stride=max(s // 2, 1))``.

    Args:
        dense: ``[B, D, h, w]`` dense features.
        window: s; clamped to the grid so that a small grid still gets one seed.

    Returns:
        ``[B, K_s, D]``.
    """
    size = min(window, dense.shape[2], dense.shape[3])
    pooled = F.avg_pool2d(dense, size, stride=max(size // 2, 1))  # [B, D, h', w']
    return pooled.flatten(2).transpose(1, 2)
