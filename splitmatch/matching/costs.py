"""Matching cost terms as pure batched tensor functions.

Every function works on any number of leading batch dimensions ``...`` and returns a cost
matrix between N predictions and M targets, lower is better.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_cost(probs: torch.Tensor, target_labels: torch.Tensor) -> torch.Tensor:
    """Negative probability of each target's class.

    Args:
        probs: ``[..., N, K]`` class probabilities.
        target_labels: ``[..., M]`` int64 in ``0..K-1``.

    Returns:
        ``[..., N, M]``.
    """
    index = target_labels.unsqueeze(-2).expand(*probs.shape[:-1], target_labels.shape[-1])
    return -torch.gather(probs, -1, index)


def sigmoid_bce_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over points of every prediction against every target.

    Args:
        logits: ``[..., N, P]`` mask logits at P points.
        targets: ``[..., M, P]`` in ``[0, 1]``.

    Returns:
        ``[..., N, M]``.
    """
    # Per point, BCE(x, t) = softplus(x) - x * t for t in [0, 1]: one elementwise pass, one matmul.
    num_points = logits.shape[-1]
    cost = F.softplus(logits).sum(-1, keepdim=True) - logits @ targets.transpose(-1, -2)
    return cost / num_points


def dice_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``1 - dice`` (smoothed by 1) of every prediction against every target.

    Args:
        logits: ``[..., N, P]``.
        targets: ``[..., M, P]`` in ``[0, 1]``.

    Returns:
        ``[..., N, M]``.
    """
    probs = logits.sigmoid()
    numerator = 2 * probs @ targets.transpose(-1, -2)
    denominator = probs.sum(-1).unsqueeze(-1) + targets.sum(-1).unsqueeze(-2)
    return 1 - (numerator + 1) / (denominator + 1)


def embedding_cost(embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Negative cosine similarity.

    Args:
        embeddings: ``[..., N, D]``.
        targets: ``[..., M, D]``.

    Returns:
        ``[..., N, M]``.
    """
    return -(F.normalize(embeddings, dim=-1) @ F.normalize(targets, dim=-1).transpose(-1, -2))
