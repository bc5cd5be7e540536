"""MaskCLIP's dense features (Zhou, Loy and Dai, ECCV 2022) as its authors' code computes them.

MaskCLIP runs CLIP's image weights through mmseg's ``VisionTransformer``, and its last block
reads the values: they go through the output projection, the block's input is added back and
the feed-forward is applied with its residual, and the result goes through the final norm and
CLIP's projection (docs/training-free.md gives the file and lines).

mmseg's ViT differs from CLIP's in two numbers that act in every block, and MaskCLIP's published
results were computed with them, so this module keeps them: its LayerNorms divide by
``sqrt(var + 1e-6)`` (CLIP's by ``sqrt(var + 1e-5)``), and its feed-forward uses the exact GELU
where OpenAI's CLIP uses QuickGELU. The positional embedding is resized as the image encoder's
``pos_interpolation`` says (``bicubic``, mmseg's, in the MaskCLIP presets).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from splitmatch.clip.attention import multihead_attention, value_projection

MMSEG_NORM_EPS = 1e-6  # the LayerNorm eps of MaskCLIP's backbone config (norm_cfg LN, eps=1e-6)


def mmseg_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """A CLIP LayerNorm's weights applied with mmseg's eps: ``[..., W] -> [..., W]``."""
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, MMSEG_NORM_EPS)


def exact_gelu_mlp(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A CLIP block's feed-forward with the exact GELU (mmcv's FFN, ``act_cfg=GELU``): ``[..., W] -> [..., W]``."""
    return mlp.c_proj(F.gelu(mlp.c_fc(x)))


def mmseg_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One CLIP block with mmseg's numerics: ``[B, T, W] -> [B, T, W]``."""
    x = x + block.ls_1(multihead_attention(block.attn, mmseg_norm(block.ln_1, x), None))
    return x + block.ls_2(exact_gelu_mlp(block.mlp, mmseg_norm(block.ln_2, x)))


def maskclip_value_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """MaskCLIP's reading of the last block: ``v = x + out_proj(values)``, then ``v + FFN(norm(v))``.

    Args:
        x: ``[B, T, W]`` the tokens entering the block.

    Returns:
        ``[B, T, W]``.
    """
    values = value_projection(block.attn, mmseg_norm(block.ln_1, x))
    v = x + block.ls_1(block.attn.out_proj(values))
    return v + block.ls_2(exact_gelu_mlp(block.mlp, mmseg_norm(block.ln_2, v)))


def maskclip_patch_tokens(encoder, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """MaskCLIP's patch tokens after its final norm, before CLIP's projection.

    Args:
        encoder: a :class:`~splitmatch.clip.image_encoder.ClipImageEncoder` (its prompts unused).
        images: ``[B, 3, H, W]`` 0..255, H and W cut to whole patches.

    Returns:
        ``[B, h*w, W]`` and the grid ``(h, w)``.
    """
    visual = encoder.visual
    x, grid = encoder.patch_tokens(images)
    x = mmseg_norm(visual.ln_pre, x)
    blocks = visual.transformer.resblocks
    for block in blocks[:-1]:
        x = mmseg_block(block, x)
    return mmseg_norm(visual.ln_post, maskclip_value_block(blocks[-1], x))[:, 1:], grid
