"""Class colours tell classes apart (splitmatch.visualize.palette)."""

from __future__ import annotations

import numpy as np
import pytest

from splitmatch.visualize import palette


def cielab(rgb: np.ndarray) -> np.ndarray:
    """sRGB ``uint8 [N, 3]`` -> CIELAB (D65), written out here as an independent reference."""
    linear = rgb / 255.0
    linear = np.where(linear > 0.04045, ((linear + 0.055) / 1.055) ** 2.4, linear / 12.92)
    to_xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = linear @ to_xyz.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def closest_pair(colours: np.ndarray) -> float:
    lab = cielab(colours.astype(np.float64))
    distance = np.linalg.norm(lab[:, None] - lab[None], axis=-1)
    np.fill_diagonal(distance, np.inf)
    return float(distance.min())


@pytest.mark.parametrize("count, least", [(5, 40), (13, 28), (20, 15)])
def test_every_prefix_of_the_palette_keeps_its_colours_apart(count, least):
    assert closest_pair(palette(count)) >= least


def test_colours_are_distinct_beyond_the_named_twenty_and_never_black():
    colours = palette(300)
    assert len({tuple(c) for c in colours}) == 300
    assert not (colours == 0).all(axis=1).any()  # black is the ignore colour
