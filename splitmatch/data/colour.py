"""Colour-space helpers for photometric augmentation (numpy in and out, float32 planes inside).

Float32 on colour planes: the saturation and hue steps of a uint8 image differ from an exact
(float64) HSV round trip by at most one grey level, at well under one pixel in ten
(tests/data/test_transforms.py), which no augmentation can tell apart, in a fraction of the time. The
planes are torch tensors: its elementwise kernels are vectorised, and a data-loader worker
runs them on its one thread.
"""

from __future__ import annotations

import numpy as np
import torch


def _planes(rgb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[..., 3]`` RGB -> float32 red, green, blue, value (the maximum) and chroma (max - min) planes."""
    red, green, blue = torch.from_numpy(np.require(rgb, requirements=("C", "W"))).movedim(-1, 0).float()
    value = torch.maximum(torch.maximum(red, green), blue)
    chroma = value - torch.minimum(torch.minimum(red, green), blue)
    return red, green, blue, value, chroma


def _hue_sectors(red, green, blue, value, chroma) -> torch.Tensor:
    """Hue in sectors of 60 degrees, ``[-1, 5)`` (0 for grey pixels)."""
    is_red, is_green = value == red, value == green
    hue = torch.where(is_red, green - blue, torch.where(is_green, blue - red, red - green))
    hue /= torch.where(chroma == 0, 1.0, chroma)  # grey: the numerator is 0 too
    return hue.add_(torch.where(is_red, 0.0, torch.where(is_green, 2.0, 4.0)))


def _rgb(hue: torch.Tensor, chroma: torch.Tensor, value: torch.Tensor) -> list[torch.Tensor]:
    """Red, green and blue planes of hue sectors (any real), chroma ``V * S`` and value.

    Each channel is ``V - C clip(min(k, 4 - k), 0, 1)`` with ``k = (n + H) mod 6`` and n = 5, 3,
    1 for red, green and blue: the textbook six-sector table in closed form.
    """
    planes = []
    for n in (5, 3, 1):
        k = torch.remainder(hue + n, 6.0)
        weight = torch.minimum(k, 4.0 - k).clamp_(0, 1)
        planes.append(value - weight.mul_(chroma))
    return planes


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """RGB to HSV: ``[..., 3]`` with RGB in 0..255 -> float32 H in [0, 360), S in [0, 1], V in 0..255."""
    red, green, blue, value, chroma = _planes(rgb)
    hue = torch.remainder(_hue_sectors(red, green, blue, value, chroma) * 60.0, 360.0)
    saturation = chroma / torch.where(value > 0, value, 1.0)
    return torch.stack([hue, saturation, value], dim=-1).numpy()


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_hsv`: ``[..., 3]`` HSV -> float32 RGB in 0..255."""
    hue, saturation, value = torch.from_numpy(np.asarray(hsv, dtype=np.float32)).movedim(-1, 0)
    return torch.stack(_rgb(hue / 60.0, value * saturation, value), dim=-1).numpy()


def adjust_hsv(image: np.ndarray, saturation: float = 1.0, hue_shift_degrees: float = 0.0) -> np.ndarray:
    """Scales saturation and rotates hue of a uint8 ``[H, W, 3]`` RGB image; returns uint8 ``[H, W, 3]``.

    Saturation ``S' = min(S * saturation, 1)`` at the same value V means chroma
    ``C' = min(C * saturation, V)``. Without a hue shift every channel keeps its place between
    V and ``V - C`` and the hue is never computed: ``c' = V - (V - c) * C' / C``. The planes are
    worked in place (a new 512 x 512 float plane costs more to allocate than to compute).
    """
    planes8 = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))  # uint8 [3, H, W]
    red8, green8, blue8 = planes8
    value8 = torch.maximum(torch.maximum(red8, green8), blue8)
    rgb = planes8.float()
    value = value8.float()
    chroma = torch.minimum(torch.minimum(red8, green8), blue8).float().neg_().add_(value)
    if hue_shift_degrees % 360 == 0:
        # c' = c * r + V * (1 - r), r = C'/C = min(saturation, V / C); grey pixels (c = V) stay.
        ratio = torch.div(value, chroma.clamp_(min=1)).clamp_(max=float(saturation))
        rgb.sub_(value).mul_(ratio).add_(value)
    else:
        is_red = value8 == red8
        is_green = (value8 == green8).logical_and_(is_red.logical_not())
        red_max, green_max = is_red.float(), is_green.float()
        # Hue in sectors: (r - g) / C + 4 where blue is the maximum, (b - r) / C + 2 for green, (g - b) / C for red.
        hue = torch.sub(rgb[0], rgb[1])
        scratch = torch.sub(rgb[2], rgb[0]).sub_(hue).mul_(green_max)
        hue.add_(scratch)
        torch.sub(rgb[1], rgb[2], out=scratch).sub_(hue).mul_(red_max)
        hue.add_(scratch).div_(torch.clamp(chroma, min=1, out=scratch))
        hue.add_(4 + (hue_shift_degrees % 360) / 60.0).sub_(green_max, alpha=2).sub_(red_max, alpha=4)
        if saturation != 1.0:
            torch.minimum(chroma.mul_(saturation), value, out=chroma)
        for channel, n in enumerate((5, 3, 1)):
            k = torch.add(hue, n, out=red_max)
            k.sub_(torch.div(k, 6.0, out=green_max).floor_().mul_(6.0))  # (n + H) mod 6, the shift included
            # clip(min(k, 4 - k), 0, 1) on [0, 6) is clip(2 - |k - 2|, 0, 1)
            weight = k.sub_(2.0).abs_().neg_().add_(2.0).clamp_(0, 1).mul_(chroma)
            torch.sub(value, weight, out=rgb[channel])
    # Within 0..255: every channel lies in [V - C', V].
    return np.ascontiguousarray(rgb.round_().to(torch.uint8).numpy().transpose(1, 2, 0))
