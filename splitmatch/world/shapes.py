"""What the built-in world looks like: its object classes, their colours and the backgrounds.

Every object class has an outline and a fill texture of its own, so that it is recognisable
twice over, as the dense features of a zero-shot segmenter need: from a 4x4 to 8x8 pixel patch
by its texture, and as a whole object by its outline. Fill and pattern colours are drawn per
instance (:func:`colour_pair`), so colour never tells a class. Backgrounds are smooth gradients
and blotches (:func:`background`), using none of the textures.

Shapes are inside-tests in object coordinates: ``u, v`` arrays of any shape, the object's
bounding disk being the unit disk (``v`` points down, as image rows do). Textures are binary
patterns in image pixel units, given the offsets ``x, y`` from the object's centre. They are not
rotated with the object: the orientation of stripes is what tells one striped class from
another, so it must stay fixed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

ShapeFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
TextureFn = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]

_MAX_RADIUS = 0.96  # every polygon is scaled to this radius so no shape leaves the unit disk


def _polygon(vertices: list[tuple[float, float]]) -> np.ndarray:
    """Vertices ``[K, 2]`` as (u, v), scaled so the farthest lies at ``_MAX_RADIUS``."""
    points = np.asarray(vertices, dtype=np.float64)
    return (points * (_MAX_RADIUS / np.hypot(points[:, 0], points[:, 1]).max())).astype(np.float32)


def _regular(sides: int, start_deg: float = -90.0) -> np.ndarray:
    angles = np.deg2rad(start_deg + 360.0 * np.arange(sides) / sides)
    return _polygon(list(zip(np.cos(angles), np.sin(angles))))


def _star(points: int, inner: float) -> np.ndarray:
    angles = np.deg2rad(-90.0 + 180.0 * np.arange(2 * points) / points)
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return _polygon(list(zip(radii * np.cos(angles), radii * np.sin(angles))))


def inside_polygon(u: np.ndarray, v: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd inside test of points ``u, v [...]`` against a polygon ``[K, 2]`` -> bool ``[...]``."""
    inside = np.zeros(u.shape, dtype=bool)
    for (u1, v1), (u2, v2) in zip(vertices, np.roll(vertices, -1, axis=0)):
        if v1 == v2:
            continue  # a horizontal edge is never crossed by a horizontal ray
        crosses = (v1 > v) != (v2 > v)
        inside ^= crosses & (u < u1 + (v - v1) * ((u2 - u1) / (v2 - v1)))
    return inside


_TRIANGLE = _regular(3)
_HEXAGON = _regular(6, start_deg=0.0)
_STAR = _star(5, inner=0.5)
_DIAMOND = _polygon([(0.0, -1.0), (0.55, 0.0), (0.0, 1.0), (-0.55, 0.0)])
_ARROW = _polygon([(-1.0, -0.28), (0.05, -0.28), (0.05, -0.72), (1.0, 0.0), (0.05, 0.72), (0.05, 0.28), (-1.0, 0.28)])
_BOLT = _polygon([(-0.2, -1.0), (0.62, -1.0), (0.3, -0.2), (0.78, -0.2), (-0.36, 1.0), (-0.1, 0.16), (-0.62, 0.16)])


def circle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + v * v <= 0.9**2


def square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= 0.67


def triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return inside_polygon(u, v, _TRIANGLE)


def star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return inside_polygon(u, v, _STAR)


def heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # the classic implicit heart (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, spanning about [-1.14, 1.14] x [-1, 1.25]
    x, y = u * 1.22, -v * 1.22 + 0.12
    q = x * x + y * y - 1.0
    return q * q * q - x * x * y * y * y <= 0.0


def ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r2 = u * u + v * v
    return (r2 <= 0.93**2) & (r2 >= 0.5**2)


def cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.28) & (av <= 0.9)) | ((av <= 0.28) & (au <= 0.9))


def hexagon(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return inside_polygon(u, v, _HEXAGON)


def crescent(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (u * u + v * v <= 0.92**2) & ((u - 0.42) ** 2 + (v + 0.12) ** 2 >= 0.7**2)


def diamond(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return inside_polygon(u, v, _DIAMOND)


def arrow(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return inside_polygon(u, v, _ARROW)


def bolt(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return inside_polygon(u, v, _BOLT)


def _bands(t: np.ndarray, period: float, duty: float = 0.5) -> np.ndarray:
    """Stripes across the coordinate ``t``: true on the first ``duty`` of every period."""
    return np.mod(t, period) < duty * period


def _jitter(rng: np.random.Generator) -> tuple[float, float]:
    """A period scale and a phase per instance, so patterns do not lock to the image grid."""
    return float(rng.uniform(0.9, 1.1)), float(rng.uniform(0.0, 64.0))


def horizontal_stripes(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s, phase = _jitter(rng)
    return _bands(y + phase, 6.0 * s)


def vertical_stripes(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s, phase = _jitter(rng)
    return _bands(x + phase, 6.0 * s)


def fine_diagonal(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s, phase = _jitter(rng)
    return _bands((x + y) * np.float32(0.7071) + phase, 4.0 * s)


def wide_diagonal(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s, phase = _jitter(rng)
    return _bands((x - y) * np.float32(0.7071) + phase, 9.0 * s)


def checker(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s, phase = _jitter(rng)
    cell = 4.0 * s
    return (np.floor((x + phase) / cell) + np.floor((y + phase) / cell)) % 2 == 1


def dots(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s, phase = _jitter(rng)
    period = 6.0 * s
    fx, fy = np.mod(x + phase, period) / period - 0.5, np.mod(y + phase, period) / period - 0.5
    return fx * fx + fy * fy < 0.3**2


def grid(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s, phase = _jitter(rng)
    return _bands(x + phase, 6.0 * s, 0.28) | _bands(y + phase, 6.0 * s, 0.28)


def crosshatch(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s, phase = _jitter(rng)
    a, b = (x + y) * np.float32(0.7071), (x - y) * np.float32(0.7071)
    return _bands(a + phase, 6.0 * s, 0.28) | _bands(b + phase, 6.0 * s, 0.28)


def zigzag(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s, phase = _jitter(rng)
    wave = np.abs(2.0 * np.mod(x / (6.0 * s), 1.0) - 1.0)  # triangle wave in [0, 1]
    return _bands(y + 3.5 * s * wave + phase, 6.0 * s, 0.45)


def concentric(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s, phase = _jitter(rng)
    return _bands(np.hypot(x, y) + phase, 5.0 * s)


def speckle(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cell = 2.0  # random two-pixel cells, half of them in the pattern colour
    ix = np.floor((x - x.min()) / cell).astype(np.int64)
    iy = np.floor((y - y.min()) / cell).astype(np.int64)
    bits = rng.random((int(iy.max()) + 1, int(ix.max()) + 1)) < 0.5
    return bits[iy, ix]


def brick(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s, phase = _jitter(rng)
    height = 5.0 * s
    row = np.floor((y + phase) / height)
    # every other course shifts by half a brick: the stagger is what sets brick apart from grid
    return _bands(y + phase, height, 0.26) | _bands(x + phase + row * height, 2.0 * height, 0.13)


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth background: a two-colour linear gradient, low-frequency blotches or both -> ``[h, w, 3]``."""
    kind = int(rng.integers(3))
    ys, xs = np.linspace(0.0, 1.0, h, dtype=np.float32), np.linspace(0.0, 1.0, w, dtype=np.float32)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    ramp = np.cos(angle) * xs[None, :] + np.sin(angle) * ys[:, None]  # [h, w]
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    start, end = rng.uniform(0.0, 255.0, size=(2, 3)).astype(np.float32)
    gradient = start + ramp[..., None] * (end - start)
    cells = rng.integers(2, 6, size=2)
    # blotches vary around one colour: a full-range random grid looks like hard colour bands
    base = rng.uniform(40.0, 215.0, size=3)
    coarse = np.clip(base + rng.normal(0.0, 45.0, size=(cells[0], cells[1], 3)), 0, 255).astype(np.uint8)
    blotches = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
    if kind == 0:
        return gradient
    if kind == 1:
        return blotches
    return 0.5 * (gradient + blotches)


def colour_pair(rng: np.random.Generator, behind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A fill and a pattern colour ``[3]`` each, for an object over the mean colour ``behind [3]``.

    Both stand apart from what lies behind, so the outline shows, and from each other, so the
    texture shows.
    """
    fill = rng.uniform(0.0, 255.0, size=3).astype(np.float32)
    for _ in range(20):
        if np.linalg.norm(fill - behind) >= 90.0:
            break
        fill = rng.uniform(0.0, 255.0, size=3).astype(np.float32)
    for _ in range(30):
        pattern = rng.uniform(0.0, 255.0, size=3).astype(np.float32)
        if np.linalg.norm(pattern - fill) >= 130.0 and np.linalg.norm(pattern - behind) >= 70.0:
            return fill, pattern
    return fill, (255.0 - fill).astype(np.float32)


@dataclass(frozen=True)
class WorldClass:
    """One object class: a name (its text prompt), an outline and a fill texture."""

    name: str
    shape: ShapeFn
    texture_name: str
    texture: TextureFn


WORLD_CLASSES: tuple[WorldClass, ...] = (
    WorldClass("circle", circle, "horizontal stripes", horizontal_stripes),
    WorldClass("square", square, "concentric rings", concentric),
    WorldClass("triangle", triangle, "vertical stripes", vertical_stripes),
    WorldClass("star", star, "fine diagonal stripes", fine_diagonal),
    WorldClass("heart", heart, "dots", dots),
    WorldClass("ring", ring, "checker", checker),
    WorldClass("cross", cross, "grid", grid),
    WorldClass("hexagon", hexagon, "brick", brick),
    WorldClass("crescent", crescent, "speckle", speckle),
    WorldClass("diamond", diamond, "crosshatch", crosshatch),
    WorldClass("arrow", arrow, "wide diagonal stripes", wide_diagonal),
    WorldClass("bolt", bolt, "zigzag", zigzag),
)
"""The object classes in label-id order from 1 (label 0 is background)."""
