"""SC-CLIP's self-calibrated last block (Bai et al., "Self-Calibrated CLIP for Training-Free
Open-Vocabulary Segmentation"), in its authors' default configuration.

Per image, on the patch tokens (docs/training-free.md follows the authors' ``clip/model.py``):

1. **Anomaly tokens**: the local outlier factor of every patch entering the last block, with
   30 neighbours by squared Euclidean distance; the 5% most outlying patches are replaced by the
   mean of their non-anomalous 3 x 3 neighbours (also in the intermediate block read next).
2. **Calibrated input**: the patches are averaged over the patches whose intermediate features
   (block 8 of 12) are alike (cosine at least 0.4, weights normalised per row).
3. **Last block**: the mean of two attentions, one from the intermediate similarity (centred,
   times 3, negatives forbidden) and one key-key, through the output projection; no residual, no
   feed-forward; 0.3 of the CLS token entering the block is added to every patch.
4. **Smoothing**: the result is averaged over the patches alike in block 3.
5. **Multi-level fusion**: the sum of the outputs of blocks 3 to 9 goes through the same last
   block and smoothing, and is added.

Block numbers are counted from 0 among the 12 of a ViT-B; :func:`scclip_layers` scales them to
other depths (chosen here; the authors publish the ViT-B numbers). The authors' code handles
one image at a time and square patch grids (it reads a patch's row as its index divided by the
grid's row count); here each image of a batch is calibrated alone, and a patch's row is its index
divided by the grid's width, the same on every square grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from splitmatch.clip.attention import attended, attention_heads, self_similarity

# The authors' constants (their VisionTransformer and lof_pytorch defaults).
NEIGHBOURS = 30  # local outlier factor's k
CONTAMINATION = 0.05  # share of patches taken as anomalies
SIMILAR = 0.4  # beta: cosine below which two patches are not averaged together
CLS_SHARE = 0.3  # res_cls: share of the CLS token added to every patch
SIMILARITY_SHARPNESS = 3.0  # the intermediate similarity is centred and multiplied by this
VIT_B_LAYERS = (8, 3, 3, 10)  # pre-adjust block, post-adjust block, fused blocks [start, end)
DISTANCE_ROWS = 64  # rows of the distance matrix computed at once (memory bound, same numbers)


def scclip_layers(depth: int) -> tuple[int, int, int, int]:
    """SC-CLIP's block indices for a ViT of ``depth`` blocks: ``(pre, post, start, end)``.

    The authors' ViT-B values (8, 3, 3, 10) for 12 blocks; for another depth each is scaled by
    ``(depth - 1) / 11`` and rounded (chosen here), so that they stay among the ``depth - 1``
    blocks before the last.
    """
    if depth == 12:
        return VIT_B_LAYERS
    if depth < 3:
        raise ValueError(f"SC-CLIP needs a ViT of at least 3 blocks, this one has {depth}")
    pre, post, start, end = (round(index * (depth - 1) / 11) for index in VIT_B_LAYERS)
    last = depth - 2  # the last block before the last one
    pre, post, start = min(pre, last), min(post, last), min(start, last)
    return pre, post, start, min(max(end, start + 1), depth - 1)


def outlier_patches(patches: torch.Tensor, neighbours: int = NEIGHBOURS) -> torch.Tensor:
    """The authors' local outlier factor: ``[N, W]`` tokens -> ``[N]`` bool, True for anomalies.

    Distances are squared Euclidean; a patch's reachability distance to each of its ``k`` nearest
    neighbours is the larger of their distance and its own ``k``-distance, its density ``k`` over
    their mean, its factor the mean ratio of its neighbours' densities to its own; patches above
    the ``1 - CONTAMINATION`` quantile of the factors are anomalies.
    """
    count = patches.shape[0]
    k = min(neighbours, count - 1)  # the authors' code needs k + 1 patches
    nearest_distances, nearest = [], []
    for start in range(0, count, DISTANCE_ROWS):  # rows of the [N, N] distances, never [N, N, W] at once
        rows = (patches[start : start + DISTANCE_ROWS, None] - patches[None]).norm(dim=2) ** 2
        values, indices = rows.topk(k + 1, dim=1, largest=False)  # sorted, nearest first
        nearest_distances.append(values[:, 1:])  # the first is the patch itself
        nearest.append(indices[:, 1:])
    distances, nearest = torch.cat(nearest_distances), torch.cat(nearest)  # [N, k]
    reach = torch.maximum(distances, distances[:, -1:])
    density = k / torch.nan_to_num(reach.mean(dim=1), nan=1e-6)
    factor = (density[nearest] / density[:, None]).mean(dim=1)
    return factor > torch.quantile(factor.float(), 1 - CONTAMINATION)


def fill_from_neighbours(tokens: torch.Tensor, anomalies: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Anomalous patches replaced by the mean of their non-anomalous 3 x 3 neighbours (kept when
    they have none): ``tokens [N, W]``, ``anomalies [N]`` -> ``[N, W]``."""
    keep = (~anomalies).to(tokens.dtype).view(1, 1, *grid)
    ring = torch.ones(1, 1, 3, 3, dtype=tokens.dtype, device=tokens.device)
    ring[0, 0, 1, 1] = 0
    maps = (tokens.T.reshape(-1, 1, *grid) * keep).contiguous()  # [W, 1, h, w]
    sums = F.conv2d(F.pad(maps, (1, 1, 1, 1)), ring).reshape(tokens.shape[1], -1).T  # [N, W]
    counts = F.conv2d(F.pad(keep, (1, 1, 1, 1)), ring).reshape(-1, 1)  # [N, 1]
    replace = anomalies[:, None] & (counts > 0)
    return torch.where(replace, sums / counts.clamp(min=1), tokens)


def similar_patches(tokens: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every pair of patches: ``[N, W] -> [N, N]``."""
    unit = tokens / tokens.norm(dim=1, keepdim=True)
    return unit @ unit.T


def average_over(tokens: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
    """Each patch replaced by its neighbours' mean, weighted by ``similarity`` below :data:`SIMILAR`
    set to 0 and rows normalised: ``tokens [N, W]``, ``similarity [N, N]`` -> ``[N, W]``."""
    weights = torch.where(similarity < SIMILAR, torch.zeros_like(similarity), similarity)
    return weights / (weights.sum(dim=1, keepdim=True) + 1e-6) @ tokens


def calibrated_attention(block: nn.Module, tokens: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
    """The last block's attention over patches alone: the mean of the similarity's attention and the
    key-key attention, through the output projection: ``[N, W]``, ``similarity [N, N]`` -> ``[N, W]``."""
    _, k, v = attention_heads(block.attn, block.ln_1(tokens)[None])  # [1, h, N, d]
    centred = (similarity - similarity.mean()) * SIMILARITY_SHARPNESS
    guided = centred.masked_fill(centred < 0, float("-inf")).softmax(-1)  # [N, N], the same for every head
    weights = (guided + self_similarity(k)) / 2
    return block.ls_1(attended(block.attn, weights, v))[0]


def scclip_image(block: nn.Module, outputs: list[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
    """One image's SC-CLIP patch tokens: ``outputs`` the ``[1 + N, W]`` outputs of the blocks before
    the last -> ``[N, W]``."""
    pre, post, start, end = scclip_layers(len(outputs) + 1)
    entering = outputs[-1]
    anomalies = outlier_patches(entering[1:])
    guide = similar_patches(fill_from_neighbours(outputs[pre][1:], anomalies, grid))
    tokens = average_over(fill_from_neighbours(entering[1:], anomalies, grid), guide)
    tokens = calibrated_attention(block, tokens, guide) + CLS_SHARE * entering[:1]
    smooth = similar_patches(outputs[post][1:])
    tokens = average_over(tokens, smooth)
    fused = torch.stack(outputs[start:end]).sum(0)  # [1 + N, W]
    extra = calibrated_attention(block, fused[1:], guide) + CLS_SHARE * fused[:1]
    return tokens + average_over(extra, smooth)


def scclip_patch_tokens(block: nn.Module, outputs: list[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
    """SC-CLIP's patch tokens for a batch, image by image.

    Args:
        block: CLIP's last ``ResidualAttentionBlock``.
        outputs: ``[B, 1 + h*w, W]`` outputs of every block before the last, in order.
        grid: ``(h, w)``.

    Returns:
        ``[B, h*w, W]``, before CLIP's final norm and projection.
    """
    return torch.stack([scclip_image(block, [out[b] for out in outputs], grid) for b in range(outputs[0].shape[0])])
