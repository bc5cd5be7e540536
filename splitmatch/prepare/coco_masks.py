"""COCO instance segmentations to pixel masks: polygons, uncompressed RLE and compressed RLE.

No dependency on ``pycocotools``; ``tests/prepare/test_prepare_coco20i.py`` compares these with it
when it is installed.

* A **polygon** segmentation is a list of polygons ``[x1, y1, x2, y2, ...]`` in pixel
  coordinates, pixel ``(col, row)`` covering ``[col, col + 1) x [row, row + 1)``. A pixel is
  inside when its centre ``(col + 0.5, row + 0.5)`` is (even-odd rule); an object's polygons
  are united. ``pycocotools`` traces the outline at 5x resolution instead, so the two can
  differ on pixels the outline passes through, never inside.
* An **RLE** is ``{"size": [h, w], "counts": ...}``: run lengths over the pixels in column-major
  order, alternating background and foreground, starting with background. ``counts`` is a list
  of integers (uncompressed, used by COCO for crowd regions) or a string (compressed:
  pycocotools' ``rleToString`` format, 5 bits a character with a continuation bit, each run
  after the second stored as the difference to the run two before).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def polygon_mask(polygon: Sequence[float], height: int, width: int) -> np.ndarray:
    """Rasterises one polygon ``[x1, y1, ..., xn, yn]`` (n >= 3): bool ``[height, width]``."""
    points = np.asarray(polygon, dtype=np.float64)
    if points.ndim != 1 or points.size < 6 or points.size % 2 or not np.isfinite(points).all():
        raise ValueError(f"a polygon is a flat list of at least 3 finite (x, y) pairs, got {len(points)} numbers")
    xs, ys = points[0::2], points[1::2]
    x0, y0, x1, y1 = xs, ys, np.roll(xs, -1), np.roll(ys, -1)  # edge i runs from point i to point i+1
    first, last = max(int(np.floor(ys.min())), 0), min(int(np.ceil(ys.max())), height)
    mask = np.zeros((height, width), dtype=bool)
    if first >= last:
        return mask
    centres = np.arange(first, last, dtype=np.float64)[:, None] + 0.5  # [R, 1]
    # An edge crosses a row's centre line when its ends lie on either side (half-open, so a
    # vertex on the line counts once); horizontal edges never cross.
    crosses = (y0 <= centres) != (y1 <= centres)  # [R, E]
    with np.errstate(divide="ignore", invalid="ignore"):
        at = x0 + (centres - y0) * (x1 - x0) / (y1 - y0)  # [R, E]
    at = np.sort(np.where(crosses, at, np.inf), axis=1)  # crossings first, in x order
    rows, pairs = np.nonzero(np.isfinite(at[:, 1::2]))  # crossings come in pairs: inside between each pair
    starts = np.clip(np.ceil(at[rows, 2 * pairs] - 0.5), 0, width).astype(np.int64)
    ends = np.clip(np.ceil(at[rows, 2 * pairs + 1] - 0.5), 0, width).astype(np.int64)
    edges = np.zeros((last - first, width + 1), dtype=np.int64)
    np.add.at(edges, (rows, starts), 1)
    np.add.at(edges, (rows, ends), -1)
    # Even-odd: a pixel is inside when an odd number of [start, end) spans cover it.
    mask[first:last] = (np.cumsum(edges[:, :width], axis=1) % 2).astype(bool)
    return mask


def decode_counts_string(counts: str | bytes) -> list[int]:
    """pycocotools' compressed RLE string -> run lengths."""
    text = counts.decode("ascii") if isinstance(counts, bytes) else counts
    runs: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise ValueError("compressed RLE string ends inside a number")
            chunk = ord(text[position]) - 48
            if not 0 <= chunk < 64:
                raise ValueError(f"compressed RLE string holds {text[position]!r}, which it cannot encode")
            value |= (chunk & 0x1F) << shift
            more = bool(chunk & 0x20)
            position += 1
            shift += 5
            if not more and chunk & 0x10:
                value -= 1 << shift  # sign-extend the last chunk
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def rle_mask(rle: dict, height: int, width: int) -> np.ndarray:
    """Decodes an RLE (uncompressed or compressed) of an image ``height x width``: bool ``[H, W]``."""
    size = rle.get("size")
    if not isinstance(size, (list, tuple)) or list(size) != [height, width]:
        raise ValueError(f"RLE size is {size!r} but the image is [{height}, {width}]")
    counts = rle.get("counts")
    if isinstance(counts, (str, bytes)):
        runs = decode_counts_string(counts)
    elif isinstance(counts, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
        runs = counts
    else:
        raise ValueError("RLE counts must be a list of integers or a compressed string")
    runs_array = np.asarray(runs, dtype=np.int64)
    if (runs_array < 0).any() or int(runs_array.sum()) != height * width:
        raise ValueError(
            f"RLE runs sum to {int(runs_array.sum())} pixels (or hold negative runs), not {height * width}"
        )
    values = np.arange(len(runs_array)) % 2 == 1  # background first, then alternating
    return np.repeat(values, runs_array).reshape(width, height).T


def segmentation_mask(segmentation: object, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` field (polygons or RLE) -> bool ``[height, width]``.

    Raises:
        ValueError: the field is neither, or is malformed (the message says how).
    """
    if isinstance(segmentation, dict):
        return rle_mask(segmentation, height, width)
    if isinstance(segmentation, list) and segmentation and all(isinstance(p, list) for p in segmentation):
        mask = np.zeros((height, width), dtype=bool)
        for polygon in segmentation:
            mask |= polygon_mask(polygon, height, width)
        return mask
    raise ValueError("segmentation must be a list of polygons or an RLE object")
