"""Class scores at the inference resolution -> a label map at the image's own size, in bounded memory.

Upsampling every class's scores to the image before the argmax takes ``C x H x W`` floats:
300 classes on a 6000 x 6000 photo would be 43 GB. :func:`upsample_argmax` does that whole only
below :data:`WHOLE_BYTES` (most evaluation images); beyond, it computes the labels a tile at a
time, so that memory grows with the label map alone:

* the bilinear weights are PyTorch's (``F.interpolate(..., mode="bilinear",
  align_corners=False)``: source index ``(dst + 0.5) * in / out - 0.5``, two taps per axis),
  applied as PyTorch's kernel applies them: along the width within each source row, then
  between the two rows;
* for each block of rows only the classes that can win there are upsampled. Every upsampled
  value is a convex combination of the four source scores around it, so a class whose highest
  corner lies below another class's lowest corner (with a margin far above float rounding) can
  win no pixel of that cell; leaving it out changes no label.

The tiled result equals the argmax of the same arithmetic done at full size exactly (the pruning
is sound), and the argmax of ``F.interpolate`` except where two classes' scores are equal up to
float rounding (PyTorch's CPU kernel may fuse multiply-adds, which this arithmetic does not);
``benchmarks/bench_label_upsampling.py`` counts such pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from splitmatch.errors import NonFiniteValuesError

# Bytes of float work per tile (a few such buffers live at once): small enough to be noise next
# to a model, large enough that per-tile overhead stays small.
BLOCK_BYTES = 16 << 20
# Below this many bytes of full-size scores, PyTorch upsamples them whole (faster on small maps).
WHOLE_BYTES = 64 << 20
# Bounds on a tile's side, in source pixels.
MIN_TILE, MAX_TILE = 16, 512
# A class is dropped from a cell only if it trails by more than this fraction of the largest
# |score|: about 80 float32 roundings, against the few that interpolation makes.
PRUNE_MARGIN = 1e-5


def linear_taps(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """PyTorch's bilinear (``align_corners=False``) taps along one axis.

    Returns:
        ``index0, index1`` int64 ``[out_size]`` (source positions) and ``weight0, weight1``
        float32 ``[out_size]``.
    """
    if out_size == in_size:  # PyTorch copies: weight 1 on the same position
        index = torch.arange(out_size)
        return index, index, torch.ones(out_size), torch.zeros(out_size)
    scale = torch.tensor(in_size, dtype=torch.float32) / out_size
    real = (scale * (torch.arange(out_size, dtype=torch.float32) + 0.5) - 0.5).clamp(min=0)
    index0 = real.long()  # truncation, as the kernel's cast
    index1 = torch.where(index0 < in_size - 1, index0 + 1, index0)
    weight1 = real - index0.float()
    return index0, index1, 1 - weight1, weight1


def upsample_argmax(scores: torch.Tensor, size: tuple[int, int], dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """The argmax over classes of ``scores`` bilinearly resized to ``size``, tile by tile.

    Args:
        scores: ``[C, h, w]`` float class scores (any sign).
        size: ``(H, W)`` of the label map.
        dtype: of the labels (an integer type that holds ``C - 1``).

    Returns:
        ``[H, W]`` class indices on ``scores``' device.

    Raises:
        NonFiniteValuesError: the scores hold NaN or infinite values.
    """
    num_classes, height, width = scores.shape
    out_h, out_w = size
    scores = scores.float()
    largest = max(abs(float(scores.max())), abs(float(scores.min())))
    if largest != largest or largest == float("inf"):
        raise NonFiniteValuesError("the model's class scores are not finite (NaN or infinite): are its weights broken?")
    if num_classes * out_h * out_w * 4 <= WHOLE_BYTES:  # small enough to upsample whole, as PyTorch does
        whole = F.interpolate(scores[None], size=size, mode="bilinear", align_corners=False)[0]
        return whole.argmax(0).to(dtype)
    margin = PRUNE_MARGIN * largest + 1e-30
    row0, row1, row_w0, row_w1 = (t.to(scores.device) for t in linear_taps(height, out_h))
    col0, col1, col_w0, col_w1 = (t.to(scores.device) for t in linear_taps(width, out_w))
    labels = torch.empty((out_h, out_w), dtype=dtype, device=scores.device)
    # Tile side in source pixels: small tiles let few classes through the pruning, large ones
    # cost fewer steps; the width pass of a tile for every class stays within the budget.
    magnification = max(1.0, out_h / height) * max(1.0, out_w / width)
    side = (BLOCK_BYTES / (num_classes * 4 * magnification)) ** 0.5
    tile = int(min(MAX_TILE, max(MIN_TILE, side)))
    widest = max(1, BLOCK_BYTES // (num_classes * (tile + 1) * 4))  # output columns a tile may have
    column_tiles = []
    for start, stop in tiles(col0, tile):
        column_tiles += [(a, min(stop, a + widest)) for a in range(start, stop, widest)]
    for y0, y1 in tiles(row0, tile):
        first = int(row0[y0])
        strip = scores[:, first : int(row1[y1 - 1]) + 1]  # [C, R, w], R <= tile + 1
        high, low = cell_bounds(strip)  # [C, w] each
        for x0, x1 in column_tiles:
            left = int(col0[x0])
            cells = slice(left, int(col0[x1 - 1]) + 1)
            classes = possible_winners(high[:, cells], low[:, cells], margin)  # [K]
            source = strip[:, :, left : int(col1[x1 - 1]) + 1].index_select(0, classes)  # [K, R, w']
            across = source.index_select(2, col0[x0:x1] - left).mul_(col_w0[x0:x1])
            across.add_(source.index_select(2, col1[x0:x1] - left).mul_(col_w1[x0:x1]))  # [K, R, X]
            step = max(1, BLOCK_BYTES // (classes.numel() * (x1 - x0) * 4))
            for a in range(y0, y1, step):
                b = min(y1, a + step)
                block = across.index_select(1, row0[a:b] - first).mul_(row_w0[a:b, None])
                block.add_(across.index_select(1, row1[a:b] - first).mul_(row_w1[a:b, None]))  # [K, B, X]
                labels[a:b, x0:x1] = classes[block.argmax(0)].to(dtype)
    return labels


def tiles(index0: torch.Tensor, span: int) -> list[tuple[int, int]]:
    """Consecutive output ranges ``[a, b)`` whose first source taps ``index0`` lie within ``span`` positions."""
    ranges, start = [], 0
    while start < index0.numel():
        end = int(torch.searchsorted(index0, int(index0[start]) + span))
        ranges.append((start, end))
        start = end
    return ranges


def cell_bounds(strip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class and column cell of ``strip`` (``[C, R, w]``): the highest and lowest score, ``[C, w]`` each.

    Cell j holds columns j and j+1 of every row of the strip (the last column alone): every
    value interpolated between its corners lies between these bounds.
    """
    if strip.shape[2] == 1:
        return strip.amax(1), strip.amin(1)
    high = torch.cat([torch.maximum(strip[..., :-1], strip[..., 1:]), strip[..., -1:]], dim=2).amax(1)
    low = torch.cat([torch.minimum(strip[..., :-1], strip[..., 1:]), strip[..., -1:]], dim=2).amin(1)
    return high, low


def possible_winners(high: torch.Tensor, low: torch.Tensor, margin: float) -> torch.Tensor:
    """Classes that may win some cell: their highest value reaches the best lowest value of any class.

    Args:
        high, low: ``[C, n]`` bounds per class and cell (:func:`cell_bounds`).

    Returns:
        ascending class indices, int64 ``[K]``.
    """
    floor = low.amax(0)  # [n]: in each cell some class is at least this high everywhere
    return torch.nonzero((high >= floor - margin).any(1)).flatten()
