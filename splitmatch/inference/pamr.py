"""PAMR: class scores refined by the image's local colour affinities (Araslanov and Roth, CVPR 2020).

As SCLIP's and NACLIP's ``pamr.py`` compute it (both copies of the original's; docs/training-free.md):
for each pixel, its 8 neighbours at each dilation ``d`` (``d`` pixels away, the image's border
repeated beyond it) get an affinity ``-|I(x) - I(y)| / (1e-8 + 0.1 * sigma(x))`` per colour
channel, with ``sigma(x)`` the standard deviation (Bessel-corrected) of the channel over the
pixel and its neighbours at every dilation; the affinities are averaged over the channels and
turned into weights by a softmax over the neighbours. Each step then replaces every pixel's
scores by the weighted sum of its neighbours' (the pixel itself takes no part).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def neighbours(x: torch.Tensor, dilations: Sequence[int], centre: bool = False) -> Iterator[torch.Tensor]:
    """Each pixel's neighbours at every dilation, the border repeated: ``[B, C, H, W]`` views, 8 per
    dilation (9 with the pixel itself, ``centre``), in a fixed order."""
    height, width = x.shape[-2:]
    for d in dilations:
        padded = F.pad(x, (d, d, d, d), mode="replicate")
        for dy, dx in [(0, 0), *OFFSETS] if centre else OFFSETS:
            yield padded[..., d + dy * d : d + dy * d + height, d + dx * d : d + dx * d + width]


def pamr_weights(image: torch.Tensor, dilations: Sequence[int]) -> torch.Tensor:
    """The neighbour weights of every pixel: ``image [B, K, H, W]`` -> ``[B, 1, P, H, W]``, summing
    to 1 over the ``P = 8 * len(dilations)`` neighbours."""
    spread = torch.stack(list(neighbours(image, dilations, centre=True)), dim=2).std(dim=2, keepdim=True)
    difference = (image.unsqueeze(2) - torch.stack(list(neighbours(image, dilations)), dim=2)).abs()  # [B, K, P, H, W]
    affinity = (-difference / (1e-8 + 0.1 * spread)).mean(dim=1, keepdim=True)
    return affinity.softmax(dim=2)


def pamr(image: torch.Tensor, scores: torch.Tensor, steps: int, dilations: Sequence[int] = (8, 16)) -> torch.Tensor:
    """Refined scores.

    Args:
        image: ``[B, K, H, W]`` the image the scores belong to (the recipes' authors pass it
            normalised by CLIP's mean and standard deviation).
        scores: ``[B, C, H', W']`` class scores (logits); resized to ``H x W`` first
            (bilinear, corners aligned, as the original) when their size differs.
        steps: how many times every pixel takes its neighbours' weighted scores.
        dilations: neighbour distances in pixels.

    Returns:
        ``[B, C, H, W]``.
    """
    if tuple(scores.shape[-2:]) != tuple(image.shape[-2:]):
        scores = F.interpolate(scores, size=image.shape[-2:], mode="bilinear", align_corners=True)
    weights = pamr_weights(image.float(), dilations)
    scores = scores.float()
    for _ in range(steps):  # one neighbour at a time: memory of two score maps, not of P
        refined = torch.zeros_like(scores)
        for index, view in enumerate(neighbours(scores, dilations)):
            refined += view * weights[:, :, index]
        scores = refined
    return scores
