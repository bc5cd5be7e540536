"""Forward passes through open_clip's ViT blocks with explicit attention biases.

open_clip's ``ResidualAttentionBlock`` wraps ``nn.MultiheadAttention``, which hides the value
path and takes one mask for the whole batch. These functions run the same parameters with
``scaled_dot_product_attention`` so that prompts, masked region tokens and the value path
can share one implementation. For a block without bias they equal open_clip's forward. The
heads' queries, keys and values, and their weighted sum through the output projection, are here
too, for the training-free recipes (:mod:`splitmatch.clip.dense_recipes`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def multihead_attention(attn: nn.MultiheadAttention, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Self-attention with an additive bias.

    Args:
        attn: the block's ``nn.MultiheadAttention`` (packed in-projection).
        x: ``[B, T, W]`` normalised tokens.
        bias: ``[B, 1, T, T]`` or ``[T, T]`` additive bias (``-inf`` forbids), or ``None``.

    Returns:
        ``[B, T, W]`` after the output projection.
    """
    batch, tokens, width = x.shape
    heads = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)  # [B, T, 3W]
    qkv = qkv.view(batch, tokens, 3, heads, width // heads).permute(2, 0, 3, 1, 4)  # [3, B, h, T, W/h]
    if bias is not None:
        bias = bias.to(x.dtype)
    out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=bias)  # [B, h, T, W/h]
    out = out.transpose(1, 2).reshape(batch, tokens, width)
    return attn.out_proj(out)


def block_forward(block: nn.Module, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """One pre-norm ViT block (``ResidualAttentionBlock``): ``[B, T, W] -> [B, T, W]``."""
    x = x + block.ls_1(multihead_attention(block.attn, block.ln_1(x), bias))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def value_path(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The value path of a block: values through the output projection, no q-k attention.

    Each token keeps its own value instead of an attention-weighted mix, which localises far
    better in CLIP's last block. Residual and MLP are left out (chosen here, as in ClearCLIP's
    finding that both blur the dense map); MaskCLIP keeps both
    (:mod:`splitmatch.clip.maskclip_tower`).

    Args:
        x: ``[B, T, W]`` input tokens of the block.

    Returns:
        ``[B, T, W]``.
    """
    return block.ls_1(block.attn.out_proj(value_projection(block.attn, block.ln_1(x))))


def value_projection(attn: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """The values of normalised tokens: the last third of the packed in-projection, ``[B, T, W] -> [B, T, W]``."""
    width = x.shape[-1]
    bias = attn.in_proj_bias[2 * width :] if attn.in_proj_bias is not None else None
    return F.linear(x, attn.in_proj_weight[2 * width :], bias)


def attention_heads(attn: nn.MultiheadAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The block's queries, keys and values per head: ``[B, T, W]`` -> three ``[B, h, T, W/h]``."""
    batch, tokens, width = x.shape
    heads = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(batch, tokens, 3, heads, width // heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    return q, k, v


def attended(attn: nn.MultiheadAttention, weights: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``weights [B, h, T, T]`` applied to ``v [B, h, T, W/h]``, heads joined, through the output
    projection: ``[B, T, W]``."""
    out = weights @ v
    return attn.out_proj(out.transpose(1, 2).reshape(out.shape[0], out.shape[2], -1))


def self_similarity(x: torch.Tensor) -> torch.Tensor:
    """``softmax(x x^T / sqrt(d))`` over the last axis: ``[B, h, T, d] -> [B, h, T, T]``."""
    return (x @ x.transpose(-1, -2) * x.shape[-1] ** -0.5).softmax(-1)
