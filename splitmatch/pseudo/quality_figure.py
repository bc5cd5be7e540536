"""A picture of the pseudo masks' worst misses: where unseen objects got no pseudo mask."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from splitmatch.data.folder import DatasetFolder, read_image, read_label
from splitmatch.data.transforms import resize_nearest
from splitmatch.pseudo.cache import PseudoMaskCache
from splitmatch.storage.files import atomic_write_bytes
from splitmatch.visualize import colourise, grid, legend, palette, stack_vertical, titled

PANEL = 192  # longest side of each panel, pixels


def _fit(panel: np.ndarray, nearest: bool) -> np.ndarray:
    """Scales a ``[H, W, 3]`` panel so its longest side is :data:`PANEL`, on a white square."""
    height, width = panel.shape[:2]
    scale = PANEL / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    scaled = np.asarray(Image.fromarray(panel).resize(size, resample))
    out = np.full((PANEL, PANEL, 3), 255, np.uint8)
    out[: scaled.shape[0], : scaled.shape[1]] = scaled
    return out


def _paint(ids: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """``[H, W]`` ids (-1: nothing there, light grey) -> ``uint8 [H, W, 3]``."""
    out = np.full((*ids.shape, 3), 235, np.uint8)
    out[ids >= 0] = colours[ids[ids >= 0]]
    return out


def worst_misses_figure(
    folder: DatasetFolder, cache: PseudoMaskCache, report: dict, path: str | Path, count: int = 6
) -> int:
    """Rows for the images with the most unseen pixels outside every pseudo mask.

    Each row: image | full label (unseen classes included) | pseudo masks as training sees them
    (clipped to unannotated pixels) | unseen pixels no pseudo mask covers, in their class colour.
    Light grey: no pseudo mask / nothing missed there; black: void (no label).

    Args:
        report: :func:`splitmatch.pseudo.quality.evaluate_pseudo_masks`'s result (its ``worst_misses``).

    Returns:
        the number of rows drawn (0: nothing missed, no file written).
    """
    classes = folder.classes
    colours = palette(classes.num_classes)
    mask_colours = palette(40)[::-1]
    stems = [entry["stem"] for entry in report["worst_misses"][:count]]
    samples = {s.stem: s for s in folder.samples(report["split"])}
    rows, shown = [], set()
    for stem in stems:
        sample = samples[stem]
        image = read_image(sample.image_path)
        label = read_label(sample.label_path, classes.num_classes, image.shape[:2])
        unseen = np.isin(label, classes.unseen_ids)
        index_map, _ = cache.load(stem)
        index = resize_nearest(index_map, label.shape)  # [S, H, W]
        masks = np.full(label.shape, -1, np.int64)
        for channel in index:  # fine scales first, coarse ones drawn over them
            masks[channel > 0] = (channel[channel > 0].astype(np.int64) - 1) % len(mask_colours)
        masks[~unseen] = -1
        missed = np.where(unseen & (masks < 0), label.astype(np.int64), -1)
        shown.update(np.unique(label[label != classes.ignore_index]).tolist())
        share = next(e["uncovered_unseen_share"] for e in report["worst_misses"] if e["stem"] == stem)
        panels = [
            (stem, _fit(image, nearest=False)),
            ("label (unseen included)", _fit(colourise(label, colours, classes.ignore_index), nearest=True)),
            ("pseudo masks", _fit(_paint(masks, mask_colours), nearest=True)),
            (f"missed: {share:.0f}% of image", _fit(_paint(missed, colours), nearest=True)),
        ]
        rows.append([titled(panel, title, 18) for title, panel in panels])
    if not rows:
        return 0
    figure = grid(rows)
    present = sorted(shown)
    names = [classes.names[i] for i in present]
    marks = {name: " (unseen)" for name in classes.unseen}
    figure = stack_vertical(figure, legend(names, colours[present], figure.shape[1], marks=marks))
    buffer = io.BytesIO()
    Image.fromarray(figure).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return len(rows)
