"""Resizes deferred to the crop: the training transform resizes a sample to up to twice its
size and then keeps a 512 x 512 window of it, so most resized pixels were never used.

* :class:`NearestView` (the cached pseudo-index map, on CLIP's patch grid, ``[S, 32, 32]``
  for ViT-B/16 at 512): nearest-neighbour resizing, cropping, flipping and padding only choose
  which source pixel each output pixel shows, so the view keeps the source and, per axis, the
  source index of every output row and column; each step composes those index vectors (a few
  thousand integers), and :meth:`NearestView.array` reads the map once, at the final size. The
  result equals doing every step on the array itself, pixel for pixel.
* :class:`ResizedImage` (the image): a bilinear resize not yet done; :meth:`ResizedImage.crop`
  resizes only the source region a window covers (Pillow's ``box``). Pixels then differ from
  resizing the whole image and cropping by at most one grey level, at under one pixel in a
  hundred (rounding of the sampling positions; tests/data/test_transforms.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


def nearest_indices(size_in: int, size_out: int) -> np.ndarray:
    """Source index of every output position for nearest-neighbour resizing: int [size_out].

    Pixel centres are matched (``(i + 0.5) * in / out``), as PIL's NEAREST does.
    """
    positions = (np.arange(size_out, dtype=np.float64) + 0.5) * (size_in / size_out)
    return np.minimum(positions.astype(np.int64), size_in - 1)


@dataclass(frozen=True)
class NearestView:
    """``source [..., h, w]`` seen through row and column index vectors.

    Attributes:
        source: the map as stored.
        rows: ``[H]`` int64 source row of every output row, -1 for padding.
        cols: ``[W]`` int64 source column of every output column, -1 for padding.
        fill: the value padding shows.
    """

    source: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    fill: int = 0

    @classmethod
    def of(cls, source: np.ndarray, size: tuple[int, int] | None = None, fill: int = 0) -> NearestView:
        """The view of ``source`` resized (nearest) to ``size = (H, W)``, or as it is."""
        height, width = source.shape[-2:]
        view = cls(source, np.arange(height, dtype=np.int64), np.arange(width, dtype=np.int64), fill)
        return view if size is None else view.resize(size)

    @property
    def dtype(self) -> np.dtype:
        return self.source.dtype

    @property
    def ndim(self) -> int:
        return self.source.ndim

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.source.shape[:-2], len(self.rows), len(self.cols))

    def resize(self, size: tuple[int, int]) -> NearestView:
        """Nearest-neighbour resize to ``size = (H, W)``, as :func:`splitmatch.data.transforms.resize_nearest`."""
        rows = self.rows[nearest_indices(len(self.rows), size[0])]
        cols = self.cols[nearest_indices(len(self.cols), size[1])]
        return NearestView(self.source, rows, cols, self.fill)

    def crop(self, top: int, left: int, height: int, width: int) -> NearestView:
        """``[top:top+height, left:left+width]``, clipped at the border like array slicing."""
        rows, cols = self.rows[top : top + height], self.cols[left : left + width]
        return NearestView(self.source, rows, cols, self.fill)

    def hflip(self) -> NearestView:
        return NearestView(self.source, self.rows, self.cols[::-1].copy(), self.fill)

    def pad(self, extra_h: int, extra_w: int) -> NearestView:
        """``extra_h`` rows below and ``extra_w`` columns to the right showing ``fill``."""
        rows = np.concatenate([self.rows, np.full(extra_h, -1, dtype=np.int64)])
        cols = np.concatenate([self.cols, np.full(extra_w, -1, dtype=np.int64)])
        return NearestView(self.source, rows, cols, self.fill)

    def array(self) -> np.ndarray:
        """The map the view shows, ``[..., H, W]``, contiguous."""
        rows, cols = self.rows, self.cols
        out = np.take(np.take(self.source, np.maximum(rows, 0), axis=-2), np.maximum(cols, 0), axis=-1)
        if (rows < 0).any():
            out[..., rows < 0, :] = self.fill
        if (cols < 0).any():
            out[..., :, cols < 0] = self.fill
        return np.ascontiguousarray(out)


@dataclass(frozen=True)
class ResizedImage:
    """``source`` uint8 ``[h, w, 3]`` to be resized (bilinear) to ``size = (H, W)``."""

    source: np.ndarray
    size: tuple[int, int]

    dtype = np.dtype(np.uint8)
    ndim = 3

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.size[0], self.size[1], self.source.shape[2])

    def crop(self, top: int, left: int, height: int, width: int) -> np.ndarray:
        """``resized[top:top+height, left:left+width]`` (clipped at the border), resizing only that region."""
        height, width = min(height, self.size[0] - top), min(width, self.size[1] - left)
        if height <= 0 or width <= 0:
            return np.zeros((max(height, 0), max(width, 0), self.source.shape[2]), dtype=np.uint8)
        if (top, left, height, width) == (0, 0, *self.size):
            return self.array()
        scale_y, scale_x = self.source.shape[0] / self.size[0], self.source.shape[1] / self.size[1]
        box = (left * scale_x, top * scale_y, (left + width) * scale_x, (top + height) * scale_y)
        image = Image.fromarray(self.source).resize((width, height), Image.Resampling.BILINEAR, box=box)
        return np.asarray(image, dtype=np.uint8)

    def array(self) -> np.ndarray:
        """The whole resized image, ``[H, W, 3]``: Pillow's plain resize, as an eager resize gives it."""
        image = Image.fromarray(self.source).resize(self.size[::-1], Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)
