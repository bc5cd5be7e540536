"""Point sampling of mask logits, shared by matching costs and mask losses (PointRend style)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def point_sample(masks: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinearly reads masks at normalised points.

    Args:
        masks: ``[B, C, H, W]`` (any H, W: points are resolution-free).
        coords: ``[B, P, 2]`` as ``(x, y)`` in ``[0, 1]``.

    Returns:
        ``[B, C, P]``.
    """
    grid = (2.0 * coords - 1.0).unsqueeze(2)  # [B, P, 1, 2]
    return F.grid_sample(masks, grid.to(masks.dtype), mode="bilinear", align_corners=False).squeeze(3)


def uncertain_point_coords(
    mask_logits: torch.Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Importance-sampled points: most where the mask is least certain (logit near 0), the rest uniform.

    Args:
        mask_logits: ``[N, 1, H, W]``.
        num_points: P.
        oversample_ratio: candidates drawn per point (>= 1).
        importance_sample_ratio: share of P taken from the most uncertain candidates.

    Returns:
        ``[N, P, 2]`` coordinates in ``[0, 1]``.
    """
    count = mask_logits.shape[0]
    device = mask_logits.device
    num_candidates = int(num_points * oversample_ratio)
    candidates = torch.rand(count, num_candidates, 2, device=device, generator=generator)
    uncertainty = -point_sample(mask_logits, candidates).abs().squeeze(1)  # [N, num_candidates]
    num_uncertain = int(importance_sample_ratio * num_points)
    chosen = torch.topk(uncertainty, k=num_uncertain, dim=1, sorted=False).indices  # [N, num_uncertain]
    coords = torch.gather(candidates, 1, chosen.unsqueeze(-1).expand(-1, -1, 2))
    num_random = num_points - num_uncertain
    if num_random > 0:
        coords = torch.cat([coords, torch.rand(count, num_random, 2, device=device, generator=generator)], dim=1)
    return coords
