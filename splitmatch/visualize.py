"""Pictures of segmentations: colour overlays, legends with class names, side-by-side panels."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from splitmatch.data.classes import IGNORE_INDEX, ignore_index_for

# Kelly's 20 colours of maximum contrast (white and black left out: black marks "ignore"), in
# the order that keeps every prefix far apart: grey first (background, usually class 0), then
# each time the colour farthest in CIELAB from those already taken. The first 13 (the world's
# classes) are at least 28.9 apart (CIE76 delta E), Kelly's own order only 15.1 (two purples);
# tests/test_visualize.py checks it.
_KELLY = (
    "848482",
    "DCD300",
    "E25822",
    "B3446C",
    "008856",
    "604E97",
    "F6A600",
    "654522",
    "A1CAF1",
    "F99379",
    "BE0032",
    "C2B280",
    "882D17",
    "2B3D26",
    "8DB600",
    "E68FAC",
    "0067A5",
    "F38400",
    "F3C300",
    "875692",
)


def palette(count: int) -> np.ndarray:
    """``[count, 3]`` uint8 distinct colours: Kelly's 20, then golden-ratio hues."""
    colours = [[int(code[i : i + 2], 16) for i in (0, 2, 4)] for code in _KELLY[:count]]
    for i in range(len(colours), count):
        hue = (i * 0.618033988749895) % 1.0
        lightness = 0.45 if i % 2 == 0 else 0.62
        colours.append([round(255 * c) for c in colorsys.hls_to_rgb(hue, lightness, 0.85)])
    return np.array(colours, dtype=np.uint8).reshape(-1, 3)


def colourise(labels: np.ndarray, colours: np.ndarray, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """``[H, W]`` class ids (``ignore_index`` shown black) -> ``uint8 [H, W, 3]``."""
    out = np.zeros((*labels.shape, 3), dtype=np.uint8)
    valid = labels != ignore_index
    out[valid] = colours[labels[valid]]
    return out


# Rows per block when a picture is built from a large image: float copies of a block stay small.
BLOCK_ROWS = 256


def overlay(
    image: np.ndarray,
    labels: np.ndarray,
    colours: np.ndarray,
    alpha: float = 0.55,
    ignore_index: int = IGNORE_INDEX,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Blends a colourised label map over an RGB image, both ``[H, W(, 3)]``, a block of rows at a time.

    Args:
        out: ``uint8 [H, W, 3]`` to write into (e.g. part of a larger canvas); made when ``None``.
    """
    if out is None:
        out = np.empty(image.shape, dtype=np.uint8)
    for start in range(0, image.shape[0], BLOCK_ROWS):
        rows = slice(start, start + BLOCK_ROWS)
        coloured = colourise(labels[rows], colours, ignore_index).astype(np.float32)
        blended = (1 - alpha) * image[rows].astype(np.float32) + alpha * coloured
        out[rows] = blended.clip(0, 255).astype(np.uint8)
    return out


def class_pixel_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``[num_classes]`` int64 pixel count per class id of ``labels`` (ids beyond are left out), blockwise."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for start in range(0, labels.shape[0], BLOCK_ROWS):
        block = labels[start : start + BLOCK_ROWS].ravel()
        counts += np.bincount(block[block < num_classes], minlength=num_classes)[:num_classes]
    return counts


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


def legend(names: list[str], colours: np.ndarray, width: int, swatch: int = 14, marks: dict[str, str] | None = None):
    """A legend strip ``uint8 [h, width, 3]``: a colour swatch and name per class, wrapped in columns.

    Args:
        marks: optional suffix per name, e.g. ``{"sheep": " (unseen)"}``.
    """
    font = _font(swatch - 2)
    entries = [name + (marks or {}).get(name, "") for name in names]
    column = max(swatch + 8 + int(font.getlength(text)) + 12 for text in entries)
    per_row = max(1, width // column)
    rows = (len(entries) + per_row - 1) // per_row
    canvas = Image.new("RGB", (width, rows * (swatch + 6) + 6), "white")
    draw = ImageDraw.Draw(canvas)
    for i, text in enumerate(entries):
        x, y = (i % per_row) * column + 6, (i // per_row) * (swatch + 6) + 6
        draw.rectangle([x, y, x + swatch, y + swatch], fill=tuple(int(c) for c in colours[i]), outline="black")
        draw.text((x + swatch + 6, y), text, fill="black", font=font)
    return np.asarray(canvas)


def titled(panel: np.ndarray, title: str, height: int = 16) -> np.ndarray:
    """Puts a title line above an image panel."""
    canvas = Image.new("RGB", (panel.shape[1], panel.shape[0] + height), "white")
    canvas.paste(Image.fromarray(panel), (0, height))
    ImageDraw.Draw(canvas).text((3, 2), title, fill="black", font=_font(height - 4))
    return np.asarray(canvas)


def caption(text: str, width: int, height: int = 18) -> np.ndarray:
    """A line of explanation ``uint8 [height, width, 3]``, black on white, for under a figure."""
    canvas = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(canvas).text((6, 2), text, fill="black", font=_font(height - 6))
    return np.asarray(canvas)


def grid(rows: list[list[np.ndarray]], gap: int = 4) -> np.ndarray:
    """Tiles equally sized panels ``[h, w, 3]`` into one image with white gaps."""
    height = max(p.shape[0] for row in rows for p in row)
    width = max(p.shape[1] for row in rows for p in row)
    columns = max(len(row) for row in rows)
    canvas = np.full((len(rows) * (height + gap) + gap, columns * (width + gap) + gap, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            y, x = gap + r * (height + gap), gap + c * (width + gap)
            canvas[y : y + panel.shape[0], x : x + panel.shape[1]] = panel
    return canvas


def stack_vertical(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Stacks two ``[h, w, 3]`` images, padding the narrower with white."""
    canvas = np.full((top.shape[0] + bottom.shape[0], max(top.shape[1], bottom.shape[1]), 3), 255, np.uint8)
    canvas[: top.shape[0], : top.shape[1]] = top
    canvas[top.shape[0] :, : bottom.shape[1]] = bottom
    return canvas


def prediction_figure(image: np.ndarray, labels: np.ndarray, names: list[str], max_legend: int = 40) -> np.ndarray:
    """What ``predict`` writes: the overlay with a legend of the classes present (or all, if few).

    Built in place on one canvas, so a large image costs one picture's memory, not several.
    """
    colours = palette(len(names))
    ignore = ignore_index_for(len(names))  # with more than 255 names, 255 is a class
    present = np.flatnonzero(class_pixel_counts(labels, len(names))).tolist()
    shown = present if len(names) > max_legend else list(range(len(names)))
    strip = legend([names[i] for i in shown], colours[shown], max(image.shape[1], 240))
    height, width = image.shape[:2]
    canvas = np.full((height + strip.shape[0], max(width, strip.shape[1]), 3), 255, np.uint8)
    overlay(image, labels, colours, ignore_index=ignore, out=canvas[:height, :width])
    canvas[height:, : strip.shape[1]] = strip
    return canvas
