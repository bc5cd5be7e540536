"""A contact sheet of the built-in world, for a human check of its look and its labels.

Tiles images beside their colourised label maps, with a legend (unseen classes starred)::

    python tests/world_sheet.py /tmp/world_sheet.png                 # a fresh 16-image world
    python tests/world_sheet.py /tmp/sheet.png --root data/world --split val --count 24

Not collected by pytest (the name does not start with ``test_``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from splitmatch.data.folder import DatasetFolder, read_image, read_label
from splitmatch.world.generator import WorldSpec, generate_world


def colourise(label: np.ndarray, num_classes: int) -> np.ndarray:
    """Label ``uint8 [H, W]`` -> RGB ``uint8 [H, W, 3]``: background black, ignore grey."""
    palette = np.full((256, 3), 128, dtype=np.uint8)
    hues = np.linspace(0.0, 1.0, num_classes - 1, endpoint=False)
    # three brightness levels, so that neighbouring ids do not look alike
    levels = np.array([1.0, 0.7, 0.45])[np.arange(num_classes - 1) % 3]
    rgb = np.stack([np.abs(((hues * 6.0 + k) % 6.0) - 3.0) - 1.0 for k in (0.0, 4.0, 2.0)], axis=1)
    palette[0] = 0
    palette[1:num_classes] = (np.clip(rgb, 0.0, 1.0) * levels[:, None] * 255.0).astype(np.uint8)
    return palette[label]


def contact_sheet(root: str | Path, split: str = "train", count: int = 16, columns: int = 4) -> np.ndarray:
    """The first ``count`` images of a split beside their labels -> RGB ``uint8 [H, W, 3]``."""
    folder = DatasetFolder(root)
    num_classes = folder.classes.num_classes
    samples = folder.samples(split)[:count]
    cell = 132  # the largest image plus a margin
    rows = -(-len(samples) // columns)
    legend_rows = -(-num_classes // 7)
    sheet = np.full((rows * cell + 18 * legend_rows + 8, columns * 2 * cell, 3), 255, dtype=np.uint8)
    for k, sample in enumerate(samples):
        image = read_image(sample.image_path)
        label = read_label(sample.label_path, num_classes, image.shape[:2])
        top, left = (k // columns) * cell, (k % columns) * 2 * cell
        h, w = label.shape
        sheet[top : top + h, left : left + w] = image
        sheet[top : top + h, left + cell : left + cell + w] = colourise(label, num_classes)
    canvas = Image.fromarray(sheet)
    draw = ImageDraw.Draw(canvas)
    colours = colourise(np.arange(num_classes, dtype=np.uint8), num_classes)
    for i, name in enumerate(folder.classes.names):
        x, y = 8 + (i % 7) * 145, rows * cell + 4 + (i // 7) * 18
        draw.rectangle((x, y, x + 12, y + 12), fill=tuple(int(c) for c in colours[i]), outline=(0, 0, 0))
        draw.text((x + 16, y), name + (" *" if name in folder.classes.unseen else ""), fill=(0, 0, 0))
    return np.asarray(canvas)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="PNG file to write")
    parser.add_argument("--root", help="an existing world folder; default: a fresh one in a temporary folder")
    parser.add_argument("--split", default="train")
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.root
        if root is None:
            spec = WorldSpec(num_train=args.count, num_val=args.count, num_captions=args.count)
            root = generate_world(Path(scratch) / "world", seed=args.seed, spec=spec, progress=False).root
        Image.fromarray(contact_sheet(root, args.split, args.count)).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
