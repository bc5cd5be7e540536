"""Multi-scale Feature Enhancement (MFE): residual multi-scale aggregation of pixel features."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from splitmatch.model.resize import resize_bilinear


def conv_norm_act(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """Conv (no bias) + GroupNorm + GELU, the unit every decoder convolution uses."""
    groups = 32 if out_channels % 32 == 0 else 1
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.GroupNorm(groups, out_channels),
        nn.GELU(),
    )


class MultiScaleFeatureEnhancement(nn.Module):
    """``F' = F + sum_r Up_r(phi_r(Pool_r(F)))``.

    Each branch average-pools the map by a factor ``r`` (1 = no pooling), applies its own
    3x3 conv + norm + activation ``phi_r`` and upsamples bilinearly back; the sum is added to
    the input so the module starts close to identity-plus-local-context and can learn coarser
    context where it helps.

    Args:
        channels: d, width of the pixel features.
        pool_factors: the scales r.
    """

    def __init__(self, channels: int, pool_factors: Sequence[int] = (1, 2, 4)) -> None:
        super().__init__()
        if not pool_factors or any(r < 1 for r in pool_factors):
            raise ValueError(f"MFE pool factors must be positive integers, got {list(pool_factors)}")
        self.pool_factors = list(pool_factors)
        self.branches = nn.ModuleList(conv_norm_act(channels, channels, 3) for _ in self.pool_factors)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, d, h, w] -> [B, d, h, w]``."""
        size = features.shape[-2:]
        out = features
        for factor, branch in zip(self.pool_factors, self.branches):
            pooled = F.avg_pool2d(features, factor, ceil_mode=True) if factor > 1 else features
            enhanced = branch(pooled)
            if factor > 1:
                enhanced = resize_bilinear(enhanced, size)
            out = out + enhanced
        return out
