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


def sample_target_masks(masks: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """What :func:`point_sample` reads from ``masks.float()``, without converting the masks.

    Bilinear, ``align_corners=False``, zero outside: each point gathers its four neighbours.
    Target masks are large (``[N, 512, 512]``) and points few, so this reads ``4 N P`` values
    where a float copy for ``grid_sample`` writes ``N H W``.

    Args:
        masks: ``[N, H, W]``, any dtype (bool target masks).
        coords: ``[N, P, 2]`` or ``[1, P, 2]`` (the same points for every mask), ``(x, y)`` in ``[0, 1]``.

    Returns:
        ``[N, P]`` float32.
    """
    count, height, width = masks.shape
    coords = coords.float().expand(count, -1, -1)
    x = coords[..., 0] * width - 0.5  # pixel centres at integer positions
    y = coords[..., 1] * height - 0.5
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    # Per axis: the two neighbours' clamped positions and weights, zero for a neighbour outside.
    columns = [(x0 + d).clamp(0, width - 1).long() for d in (0, 1)]
    rows = [(y0 + d).clamp(0, height - 1).long() * width for d in (0, 1)]
    x_weights = [(1 - fx) * (x0 >= 0), fx * (x0 + 1 < width)]
    y_weights = [(1 - fy) * (y0 >= 0), fy * (y0 + 1 < height)]
    flat = masks.reshape(count, height * width)
    values = coords.new_zeros(coords.shape[:2])
    for row, y_weight in zip(rows, y_weights):
        for column, x_weight in zip(columns, x_weights):
            values += torch.gather(flat, 1, row + column) * (y_weight * x_weight)
    return values


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
