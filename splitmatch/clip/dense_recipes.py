"""Training-free dense features: CLIP's last block as each training-free recipe reads it.

CLIP's last block mixes every patch with the whole image; training-free recipes change only
that block (SC-CLIP also the tokens entering it, MaskCLIP the whole tower's numerics) so that
each patch's output stays its own and can be compared with text embeddings. Each function
below computes what the recipe's authors' code computes for the patch tokens, before CLIP's
final norm and projection (docs/training-free.md gives each peer's file and line):

* ``value-path``: the values through the output projection, no residual, no feed-forward
  (this project's reading, called MaskCLIP's in version 0.2: :func:`splitmatch.clip.attention.value_path`);
* ``maskclip``: the values through the output projection, then the residual and the
  feed-forward kept (:mod:`splitmatch.clip.maskclip_tower`, which also runs MaskCLIP's numerics);
* ``clearclip``: query-query attention, no residual, no feed-forward;
* ``sclip``: the sum of query-query and key-key attention, residual and feed-forward kept;
* ``naclip``: key-key attention plus a Gaussian bias over the patch grid, no residual, no
  feed-forward;
* ``scclip``: SC-CLIP's self-calibration (:mod:`splitmatch.clip.scclip`).

Attention here runs the block's own parameters; the layer scales of open_clip blocks (identity
in every CLIP) are applied where a branch is added, as the block applies them.
"""

from __future__ import annotations

import torch
from torch import nn

from splitmatch.clip.attention import attended, attention_heads, self_similarity, value_path
from splitmatch.clip.scclip import scclip_patch_tokens

RECIPES = ("value-path", "maskclip", "clearclip", "sclip", "naclip", "scclip")
# Recipes that read the outputs of the blocks before the last, not only the last block's input.
NEEDS_BLOCK_OUTPUTS = ("scclip",)
# NACLIP's default standard deviation of its Gaussian neighbourhood, in patches.
NACLIP_GAUSSIAN_STD = 5.0


def check_recipe(name: str) -> str:
    """``name`` itself when it is a recipe of :data:`RECIPES`; a one-line ``ValueError`` otherwise."""
    if name not in RECIPES:
        raise ValueError(f"unknown dense-feature recipe {name!r} (known: {', '.join(RECIPES)})")
    return name


def clearclip_tokens(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ClearCLIP: query-query attention through the output projection, nothing added.

    Args:
        x: ``[B, 1 + N, W]`` the tokens entering the last block, CLS first.

    Returns:
        ``[B, N, W]`` patch tokens.
    """
    q, _, v = attention_heads(block.attn, block.ln_1(x))
    return block.ls_1(attended(block.attn, self_similarity(q), v))[:, 1:]


def sclip_tokens(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """SCLIP's correlative self-attention: query-query plus key-key attention (each a softmax, so
    rows sum to 2), then the block's residual and feed-forward as usual.

    Args:
        x: ``[B, 1 + N, W]`` the tokens entering the last block, CLS first.

    Returns:
        ``[B, N, W]`` patch tokens.
    """
    q, k, v = attention_heads(block.attn, block.ln_1(x))
    x = x + block.ls_1(attended(block.attn, self_similarity(q) + self_similarity(k), v))
    x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return x[:, 1:]


def gaussian_neighbourhood(grid: tuple[int, int], std: float, device=None) -> torch.Tensor:
    """NACLIP's attention bias: ``exp(-d^2 / (2 std^2))`` for patches ``d`` patches apart, zero in the
    CLS token's row and column: ``[1 + h*w, 1 + h*w]``."""
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    places = torch.stack([rows.flatten(), cols.flatten()], dim=1).float().to(device)  # [N, 2]
    squared = (places[:, None] - places[None]).pow(2).sum(-1)  # [N, N]
    bias = torch.zeros(1 + places.shape[0], 1 + places.shape[0], device=device)
    bias[1:, 1:] = torch.exp(-squared / (2 * std**2))
    return bias


def naclip_tokens(block: nn.Module, x: torch.Tensor, grid: tuple[int, int], std: float = NACLIP_GAUSSIAN_STD):
    """NACLIP's neighbourhood attention: key-key logits plus a Gaussian over the patch grid, softmax,
    through the output projection, nothing added.

    Args:
        x: ``[B, 1 + h*w, W]`` the tokens entering the last block, CLS first.
        grid: ``(h, w)``.

    Returns:
        ``[B, h*w, W]`` patch tokens.
    """
    _, k, v = attention_heads(block.attn, block.ln_1(x))
    logits = k @ k.transpose(-1, -2) * k.shape[-1] ** -0.5
    weights = (logits + gaussian_neighbourhood(grid, std, x.device).to(logits.dtype)).softmax(-1)
    return block.ls_1(attended(block.attn, weights, v))[:, 1:]


def last_block_tokens(
    recipe: str, block: nn.Module, x: torch.Tensor, outputs: list[torch.Tensor], grid: tuple[int, int]
) -> torch.Tensor:
    """The patch tokens a recipe reads out of CLIP's last block (``maskclip`` is a tower of its own:
    :func:`splitmatch.clip.maskclip_tower.maskclip_patch_tokens`).

    Args:
        recipe: one of :data:`RECIPES` but ``maskclip``.
        block: CLIP's last ``ResidualAttentionBlock``.
        x: ``[B, 1 + h*w, W]`` the tokens entering it, CLS first.
        outputs: for ``scclip``, the ``[B, 1 + h*w, W]`` outputs of every block before it, in order.
        grid: ``(h, w)``.

    Returns:
        ``[B, h*w, W]`` patch tokens, before CLIP's final norm and projection.
    """
    if recipe == "value-path":
        return value_path(block, x)[:, 1:]
    if recipe == "clearclip":
        return clearclip_tokens(block, x)
    if recipe == "sclip":
        return sclip_tokens(block, x)
    if recipe == "naclip":
        return naclip_tokens(block, x, grid)
    if recipe == "scclip":
        return scclip_patch_tokens(block, outputs, grid)
    raise ValueError(f"recipe {recipe!r} has no last-block reading here (known: {', '.join(RECIPES)})")
