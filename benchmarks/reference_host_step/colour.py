"""Colour-space helpers for photometric augmentation (numpy only, no OpenCV)."""

from __future__ import annotations

import numpy as np


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """RGB to HSV in float: ``[..., 3]`` with RGB in 0..255 -> H in [0, 360), S in [0, 1], V in 0..255."""
    rgb = rgb.astype(np.float64)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    value = rgb.max(axis=-1)
    chroma = value - rgb.min(axis=-1)
    safe = np.where(chroma > 0, chroma, 1.0)  # grey pixels have no hue; avoid 0/0
    hue = np.where(
        value == red,
        np.mod((green - blue) / safe, 6.0),
        np.where(value == green, (blue - red) / safe + 2.0, (red - green) / safe + 4.0),
    )
    hue = np.where(chroma > 0, hue * 60.0, 0.0)
    saturation = np.where(value > 0, chroma / np.where(value > 0, value, 1.0), 0.0)
    return np.stack([hue, saturation, value], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_hsv`: ``[..., 3]`` float HSV -> float RGB in 0..255."""
    hue, saturation, value = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    sector = np.mod(hue, 360.0) / 60.0
    index = np.floor(sector).astype(np.int64) % 6
    fraction = sector - np.floor(sector)
    p = value * (1.0 - saturation)
    q = value * (1.0 - saturation * fraction)
    t = value * (1.0 - saturation * (1.0 - fraction))
    # Per sector, which of (v, t, p, q) is red, green and blue.
    choices = [(value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value), (value, p, q)]
    channels = [np.select([index == k for k in range(6)], [c[i] for c in choices]) for i in range(3)]
    return np.stack(channels, axis=-1)


def adjust_hsv(image: np.ndarray, saturation: float = 1.0, hue_shift_degrees: float = 0.0) -> np.ndarray:
    """Scales saturation and rotates hue of a uint8 ``[H, W, 3]`` RGB image; returns uint8 ``[H, W, 3]``."""
    hsv = rgb_to_hsv(image)
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0.0, 1.0)
    hsv[..., 0] = np.mod(hsv[..., 0] + hue_shift_degrees, 360.0)
    return np.clip(np.rint(hsv_to_rgb(hsv)), 0, 255).astype(np.uint8)
