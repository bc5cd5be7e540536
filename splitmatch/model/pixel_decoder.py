"""Pixel decoder: CLIP patch features -> decoder-width pixel features, refined by MFE."""

from __future__ import annotations

import torch
from torch import nn

from splitmatch.model.mfe import MultiScaleFeatureEnhancement, conv_norm_act


class PixelDecoder(nn.Module):
    """Projects the prompted CLIP's dense output to width d and enhances it.

    ``F = Conv1x1(dense_tokens) [+ sum_l Conv1x1(LN(layer_l))]``, then ``F' = MFE(F)``. The
    query decoder cross-attends to ``F'``; masks are read out from ``F'`` or from a learned
    upsampling of it (``mask_upsample`` > 1) when the patch grid is coarse.

    Args:
        embed_dim: D, CLIP's joint-space width (of ``dense_tokens``).
        clip_width: W, width of the ViT's intermediate tokens.
        hidden_dim: d.
        num_feature_layers: how many intermediate ViT layers arrive (0 disables fusion).
        mfe: the enhancement module, or ``None`` to switch MFE off.
        mask_upsample: 1, 2 or 4.
    """

    def __init__(
        self,
        embed_dim: int,
        clip_width: int,
        hidden_dim: int,
        num_feature_layers: int,
        mfe: MultiScaleFeatureEnhancement | None,
        mask_upsample: int = 1,
    ) -> None:
        super().__init__()
        self.input_proj = nn.Conv2d(embed_dim, hidden_dim, 1)
        self.layer_norms = nn.ModuleList(nn.LayerNorm(clip_width) for _ in range(num_feature_layers))
        self.layer_projs = nn.ModuleList(nn.Conv2d(clip_width, hidden_dim, 1) for _ in range(num_feature_layers))
        self.mfe = mfe
        upsample: list[nn.Module] = []
        for _ in range({1: 0, 2: 1, 4: 2}[mask_upsample]):
            upsample += [
                nn.ConvTranspose2d(hidden_dim, hidden_dim, 2, stride=2),
                conv_norm_act(hidden_dim, hidden_dim, 3),
            ]
        self.mask_upsample = nn.Sequential(*upsample)
        self.mask_proj = nn.Conv2d(hidden_dim, hidden_dim, 1)

    def forward(self, dense_tokens: torch.Tensor, layer_features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Builds decoder inputs.

        Args:
            dense_tokens: ``[B, D, h, w]`` prompted CLIP output in the joint space.
            layer_features: list of ``[B, W, h, w]`` intermediate ViT tokens.

        Returns:
            ``memory [B, d, h, w]`` (what queries attend to) and
            ``mask_features [B, d, h*u, w*u]`` (what masks are read from).
        """
        if len(layer_features) != len(self.layer_projs):
            raise ValueError(f"expected {len(self.layer_projs)} intermediate layers, got {len(layer_features)}")
        features = self.input_proj(dense_tokens)
        for norm, proj, layer in zip(self.layer_norms, self.layer_projs, layer_features):
            features = features + proj(norm(layer.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        if self.mfe is not None:
            features = self.mfe(features)
        return {"memory": features, "mask_features": self.mask_proj(self.mask_upsample(features))}
