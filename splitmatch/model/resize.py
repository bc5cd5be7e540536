"""Bilinear resizing of feature maps that stays deterministic on CUDA when it must.

``F.interpolate(mode="bilinear")`` has no deterministic CUDA backward: under
``torch.use_deterministic_algorithms`` PyTorch refuses it. The same resize is a product with
two interpolation matrices, ``out = R_h @ x @ R_w^T``, whose backward is matrix products too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def interpolation_matrix(size_in: int, size_out: int, device, dtype: torch.dtype) -> torch.Tensor:
    """``[size_out, size_in]`` weights of 1-D linear interpolation, ``align_corners=False`` (PyTorch's).

    Output position ``i`` reads source position ``max((i + 0.5) * size_in / size_out - 0.5, 0)``.
    """
    source = ((torch.arange(size_out, dtype=torch.float64) + 0.5) * (size_in / size_out) - 0.5).clamp(min=0)
    lower = source.floor().long().clamp(max=size_in - 1)
    upper = (lower + 1).clamp(max=size_in - 1)
    fraction = source - lower
    weights = torch.zeros(size_out, size_in, dtype=torch.float64)
    rows = torch.arange(size_out)
    weights.index_put_((rows, lower), 1 - fraction, accumulate=True)
    weights.index_put_((rows, upper), fraction, accumulate=True)
    return weights.to(device=device, dtype=dtype)


def resize_bilinear(features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[B, C, h, w] -> [B, C, H, W]``, as ``F.interpolate(mode="bilinear", align_corners=False)``.

    Under ``torch.use_deterministic_algorithms``, and when gradients flow, it runs as two matrix
    products (the same values up to float rounding).
    """
    if not (features.requires_grad and torch.are_deterministic_algorithms_enabled()):
        return F.interpolate(features, size=size, mode="bilinear", align_corners=False)
    rows = interpolation_matrix(features.shape[-2], size[0], features.device, torch.float32)  # [H, h]
    cols = interpolation_matrix(features.shape[-1], size[1], features.device, torch.float32)  # [W, w]
    # In float32 even under autocast, as interpolate computes: bf16 weights would round 1/3 and the like.
    with torch.autocast(features.device.type, enabled=False):
        resized = torch.einsum("Hh,bchw,Ww->bcHW", rows, features.float(), cols)
    return resized.to(features.dtype)
