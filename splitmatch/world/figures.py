"""The demo's pictures: predictions of both matchings beside the ground truth, and pseudo masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from splitmatch.data.classes import IGNORE_INDEX, ClassSplit
from splitmatch.data.folder import DatasetFolder, read_image, read_label, write_png
from splitmatch.predict.predictor import Predictor
from splitmatch.pseudo.build_cache import inductive_label
from splitmatch.pseudo.cache import PseudoMaskCache
from splitmatch.visualize import caption, colourise, grid, legend, palette, stack_vertical, titled


def _upscale(panel: np.ndarray, factor: int) -> np.ndarray:
    return panel.repeat(factor, axis=0).repeat(factor, axis=1)


def _pad_to(panel: np.ndarray, height: int, width: int) -> np.ndarray:
    out = np.full((height, width, 3), 255, np.uint8)
    out[: panel.shape[0], : panel.shape[1]] = panel
    return out


def _legend(classes: ClassSplit, width: int) -> np.ndarray:
    marks = {name: " (unseen)" for name in classes.unseen}
    return legend(list(classes.names), palette(classes.num_classes), width, marks=marks)


def images_with_unseen(folder: DatasetFolder, split: str, count: int) -> list:
    """The first ``count`` samples of a split whose labels contain an unseen class."""
    chosen = []
    for sample in folder.samples(split):
        label = read_label(sample.label_path, folder.classes.num_classes)
        if np.isin(label, folder.classes.unseen_ids).any():
            chosen.append(sample)
            if len(chosen) == count:
                break
    return chosen


def prediction_figure(folder: DatasetFolder, predictors: dict[str, Predictor], path: Path, count: int = 6) -> None:
    """Rows of validation images: image | ground truth | one column per predictor, plus a legend."""
    classes = folder.classes
    colours = palette(classes.num_classes)
    size, factor = 128, 2
    rows = []
    for sample in images_with_unseen(folder, "val", count):
        image = read_image(sample.image_path)
        label = read_label(sample.label_path, classes.num_classes, image.shape[:2])
        panels = [("image", image), ("ground truth", colourise(label, colours))]
        for name, predictor in predictors.items():
            panels.append((name, colourise(predictor.predict(image, list(classes.names)), colours)))
        rows.append([titled(_upscale(_pad_to(p, size, size), factor), t, 18) for t, p in panels])
    figure = grid(rows)
    note = "Black: pixels the ground truth leaves unlabelled (ignore). Predictions label every pixel."
    _save(
        stack_vertical(stack_vertical(figure, _legend(classes, figure.shape[1])), caption(note, figure.shape[1])), path
    )


def pseudo_mask_figure(
    folder: DatasetFolder, cache: PseudoMaskCache, class_embeddings: torch.Tensor, path: Path, count: int = 6
) -> None:
    """Rows of training images: image | seen-only label (unseen ignored, black) | pseudo masks |
    each pseudo mask coloured by the class its region embedding is closest to (CLIP's reading).

    Args:
        class_embeddings: ``[C, D]`` text embeddings of every class name, unseen included (used
            for this picture only; training never sees unseen names).
    """
    classes = folder.classes
    colours = palette(classes.num_classes)
    mask_colours = palette(40)[::-1]
    size, factor = 128, 2
    rows = []
    for sample in images_with_unseen(folder, "train", count):
        image = read_image(sample.image_path)
        label = read_label(sample.label_path, classes.num_classes, image.shape[:2])
        seen_only = inductive_label(label, classes)
        index_map, embeddings = cache.load(sample.stem)  # [S, h, w], [K, D]
        big = F.interpolate(torch.from_numpy(index_map)[None].float(), size=image.shape[:2], mode="nearest")[0]
        pseudo = np.full(image.shape[:2], IGNORE_INDEX, np.int64)
        for channel in big.long().numpy():  # fine scales first, coarse ones (whole objects) drawn over them
            pseudo[channel > 0] = channel[channel > 0] - 1
        pseudo[seen_only != IGNORE_INDEX] = IGNORE_INDEX
        reading = np.full(image.shape[:2], IGNORE_INDEX, np.int64)
        if embeddings.shape[0]:
            nearest = (torch.from_numpy(embeddings) @ class_embeddings.cpu().t()).argmax(1).numpy()
            inside = pseudo != IGNORE_INDEX
            reading[inside] = nearest[pseudo[inside]]
        panels = [
            ("image", image),
            ("training label", colourise(seen_only, colours)),
            ("pseudo masks", colourise(pseudo, mask_colours)),
            ("CLIP's reading", colourise(reading, colours)),
        ]
        rows.append([titled(_upscale(_pad_to(p, size, size), factor), t, 18) for t, p in panels])
    figure = grid(rows)
    notes = [
        "Training label: the pixels of unseen classes are ignored (black), as training sees them.",
        "Pseudo masks: one arbitrary colour per mask, not a class; black: no pseudo mask there.",
        "CLIP's reading: each mask in the legend colour of the class name its region embedding is closest to",
        "(unseen names are used for this picture only, never in training).",
    ]
    strip = stack_vertical(figure, _legend(classes, figure.shape[1]))
    for note in notes:
        strip = stack_vertical(strip, caption(note, figure.shape[1]))
    _save(strip, path)


def _save(array: np.ndarray, path: Path) -> None:
    """An RGB figure as a PNG, written whole or not at all (a full disk names ``path``)."""
    write_png(path, array)
