"""How good are the cached pseudo masks? Scored against the label files (``pseudo-masks --evaluate``).

Training never sees unseen-class names or pixels: the loader turns them into "unannotated".
The label files themselves hold every class, so the pseudo masks of any prepared dataset (the
world, VOC, COCO-Stuff, Context) can be scored against the truth they stand in for; that score
uses the unseen classes' annotations and is a diagnostic, never a way to choose a setting. The
legal score is a pseudo-unseen proxy's (``--proxy``, :mod:`splitmatch.data.proxy`): the masks of
a proxy's training images scored against its held-out **seen** classes, with the benchmark's
unseen classes void (a vocabulary that leaves them out). Four numbers, in percent, overall, per
unseen (or held-out) class and per K-Means scale:

* ``unseen_coverage``: share of unseen-class pixels inside some pseudo mask;
* ``mask_precision``: share of pseudo-mask pixels that lie on the mask's dominant unseen class;
* ``object_recall``: share of unseen objects (connected components of one unseen class of at
  least ``min_area`` of the image) matched by a pseudo mask with IoU >= 0.5;
* ``region_accuracy``: share of pseudo masks whose region embedding is nearest, among all class
  names' text embeddings, to the mask's dominant class.

Masks are read as training reads them: the patch-grid index map is resized (nearest) to the
label and clipped to unannotated pixels (with ``pseudo.clip_to_unannotated`` false, an ablation,
they are scored whole, seen-class pixels included, and a mask's dominant class may be a seen one).
Void pixels (the dataset's ignore value) have no truth and are left out of every count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage
from tqdm import tqdm

from splitmatch.data.classes import ClassSplit
from splitmatch.data.folder import DatasetFolder, read_label
from splitmatch.data.proxy import ProxySplit
from splitmatch.data.transforms import resize_nearest
from splitmatch.data.vocabulary import Vocabulary
from splitmatch.pseudo.cache import PseudoMaskCache

METRICS = ("unseen_coverage", "mask_precision", "object_recall", "region_accuracy")
MATCH_IOU = 0.5  # an object counts as found when a pseudo mask overlaps it with at least this IoU
UNSEEN_NAMES_NOTE = (
    "These scores use the unseen classes' names and annotations: a diagnostic of the pseudo masks, not a way "
    "to choose settings (choose on a proxy: --proxy, docs/protocols.md). Training never sees them."
)
PROXY_NOTE = (
    "Proxy scores: the held-out seen classes stand in for unseen ones; the benchmark's unseen classes are void "
    "here (their names and pixels unused), so these may choose settings."
)
_EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)


@dataclass
class _Tally:
    """Hits and totals of the four metrics for one group (overall, a class or a scale)."""

    counts: dict[str, list[int]] = field(default_factory=lambda: {m: [0, 0] for m in METRICS})
    masks: int = 0
    objects: int = 0

    def add(self, metric: str, hits: int, total: int) -> None:
        self.counts[metric][0] += int(hits)
        self.counts[metric][1] += int(total)

    def summary(self) -> dict:
        out = {m: (round(100.0 * h / t, 1) if t else None) for m, (h, t) in self.counts.items()}
        return out | {"masks": self.masks, "objects": self.objects}


@dataclass
class ImageScore:
    """One image's misses, for ranking the worst: unseen pixels no mask covers, objects not found."""

    stem: str
    uncovered_share: float  # uncovered unseen pixels / image pixels
    objects_missed: int
    objects: int


def unseen_objects(label: np.ndarray, unseen_ids: Sequence[int], min_pixels: float) -> tuple[np.ndarray, list[int]]:
    """Connected components (8-neighbour) of each unseen class with at least ``min_pixels`` pixels.

    Args:
        label: ``[H, W]`` full label (unseen classes present).

    Returns:
        ``objects [H, W]`` int64, 0 outside, ``o + 1`` inside object ``o``, and each object's class id.
    """
    objects = np.zeros(label.shape, dtype=np.int64)
    classes: list[int] = []
    for class_id in unseen_ids:
        where = label == class_id
        if not where.any():
            continue
        components, count = ndimage.label(where, structure=_EIGHT_NEIGHBOURS)
        areas = np.bincount(components.ravel(), minlength=count + 1)
        for component in range(1, count + 1):
            if areas[component] >= min_pixels:
                classes.append(class_id)
                objects[components == component] = len(classes)
    return objects, classes


def score_image(
    label: np.ndarray,
    index_map: np.ndarray,
    embeddings: np.ndarray,
    class_embeddings: np.ndarray,
    classes: ClassSplit,
    min_area: float,
    tallies: dict[str, _Tally],
    stem: str = "",
    clip_to_unannotated: bool = True,
) -> ImageScore:
    """Adds one image's counts to ``tallies`` (keys ``overall``, ``class <name>``, ``scale <s>``).

    Args:
        label: ``[H, W]`` full label (uint8, or uint16 above 255 classes).
        index_map: ``[S, h, w]`` uint8 cached index map (0 none, ``k + 1`` mask k).
        embeddings: ``[K, D]`` region embeddings.
        class_embeddings: ``[C, D]`` normalised text embeddings of every class name.
        clip_to_unannotated: clip masks to the unseen pixels (false: score them whole).
    """
    index = resize_nearest(index_map, label.shape).astype(np.int64)  # [S, H, W]
    unseen = np.isin(label, classes.unseen_ids)
    # Unannotated and not void: exactly the unseen-class pixels; unclipped, every pixel that is not void.
    region = unseen if clip_to_unannotated else label != classes.ignore_index
    objects, object_classes = unseen_objects(label, classes.unseen_ids, min_area * label.size)
    overlaps = _MaskOverlaps.count(
        label, index_map, index, region, objects, len(object_classes), classes.num_classes, embeddings.shape[0]
    )
    _tally_coverage(label, overlaps, classes, tallies)
    _tally_masks(overlaps, embeddings, class_embeddings, classes, tallies)
    missed = _tally_objects(overlaps, objects, object_classes, classes, tallies)
    return ImageScore(stem, float((unseen & ~overlaps.covered).sum()) / label.size, missed, len(object_classes))


@dataclass
class _MaskOverlaps:
    """One image's pseudo masks counted against its labels, clipped as training clips them.

    ``scale_of``: ``[K]`` the scale each mask was found at; ``histogram``: ``[K+1, C]`` pixels per
    mask (row 0: none) and class; ``overlap``: ``[O+1, K+1]`` pixels per unseen object and mask;
    ``covered`` / ``covered_by_scale``: ``[H, W]`` pixels in some mask, overall and per scale.
    """

    scale_of: np.ndarray
    histogram: np.ndarray
    overlap: np.ndarray
    covered: np.ndarray
    covered_by_scale: list[np.ndarray]

    @classmethod
    def count(
        cls, label, index_map, index, region, objects, num_objects: int, num_classes: int, num_masks: int
    ) -> _MaskOverlaps:
        scale_of = np.full(num_masks, -1, dtype=np.int64)
        histogram = np.zeros((num_masks + 1, num_classes), dtype=np.int64)
        overlap = np.zeros((num_objects + 1, num_masks + 1), dtype=np.int64)
        covered_by_scale = []
        clipped_label = np.where(region, label, 0).astype(np.int64)
        for scale, channel in enumerate(index):
            present = np.unique(index_map[scale])  # on the grid: the same ids, far fewer cells
            scale_of[present[present > 0] - 1] = scale
            clipped = np.where(region, channel, 0)  # [H, W] as training sees it
            pairs = (clipped * num_classes + clipped_label).ravel()
            histogram += np.bincount(pairs, minlength=histogram.size).reshape(histogram.shape)
            pairs = (objects * (num_masks + 1) + clipped).ravel()
            overlap += np.bincount(pairs, minlength=overlap.size).reshape(overlap.shape)
            covered_by_scale.append(clipped > 0)
        covered = np.logical_or.reduce(covered_by_scale) if covered_by_scale else np.zeros(label.shape, bool)
        return cls(scale_of, histogram, overlap, covered, covered_by_scale)


def _tally_coverage(label: np.ndarray, overlaps: _MaskOverlaps, classes: ClassSplit, tallies: dict) -> None:
    """Unseen coverage: the share of each unseen class's pixels some mask covers, overall and per scale."""
    for class_id in classes.unseen_ids:
        pixels = label == class_id
        total = int(pixels.sum())
        name = classes.names[class_id]
        for key in ("overall", f"class {name}"):
            tallies.setdefault(key, _Tally()).add("unseen_coverage", (overlaps.covered & pixels).sum(), total)
        for scale, by_scale in enumerate(overlaps.covered_by_scale):
            tallies.setdefault(f"scale {scale}", _Tally()).add("unseen_coverage", (by_scale & pixels).sum(), total)


def _tally_masks(overlaps: _MaskOverlaps, embeddings, class_embeddings, classes: ClassSplit, tallies: dict) -> None:
    """Mask precision (its dominant class's share) and region accuracy (its embedding names that class)."""
    num_masks = embeddings.shape[0]
    mask_area = overlaps.histogram[1:].sum(1)  # [K]
    nearest = (embeddings @ class_embeddings.T).argmax(1) if num_masks else np.zeros(0, np.int64)  # [K]
    for k in range(num_masks):
        keys = ["overall", f"scale {overlaps.scale_of[k]}"]
        for key in keys:
            tallies.setdefault(key, _Tally()).masks += 1
        if mask_area[k] == 0:
            continue  # nothing of it survives clipping: no dominant class
        dominant = int(overlaps.histogram[k + 1].argmax())
        keys.append(f"class {classes.names[dominant]}")
        tallies.setdefault(keys[-1], _Tally()).masks += 1
        for key in keys:
            tallies[key].add("mask_precision", overlaps.histogram[k + 1, dominant], mask_area[k])
            tallies[key].add("region_accuracy", int(nearest[k]) == dominant, 1)


def _tally_objects(overlaps: _MaskOverlaps, objects, object_classes, classes: ClassSplit, tallies: dict) -> int:
    """Object recall (an unseen object some mask matches at IoU >= MATCH_IOU), overall, per class and
    per scale; returns how many objects no mask matched."""
    num_objects = len(object_classes)
    mask_area = overlaps.histogram[1:].sum(1)  # [K]
    object_area = np.bincount(objects.ravel(), minlength=num_objects + 1)[1:]  # [O] (a pixel may lie in no mask)
    intersection = overlaps.overlap[1:, 1:]  # [O, K]
    iou = intersection / np.maximum(object_area[:, None] + mask_area[None, :] - intersection, 1)
    matched = iou >= MATCH_IOU  # [O, K]
    missed = 0
    for o, class_id in enumerate(object_classes):
        found = bool(matched[o].any())
        missed += not found
        for key in ("overall", f"class {classes.names[class_id]}"):
            tallies.setdefault(key, _Tally()).add("object_recall", found, 1)
            tallies[key].objects += 1
        for scale in range(len(overlaps.covered_by_scale)):
            tallies.setdefault(f"scale {scale}", _Tally()).add(
                "object_recall", bool(matched[o, overlaps.scale_of == scale].any()), 1
            )
            tallies[f"scale {scale}"].objects += 1
    return missed


def evaluate_pseudo_masks(
    folder: DatasetFolder,
    cache: PseudoMaskCache,
    split: str,
    class_embeddings: torch.Tensor,
    window_sizes: Sequence[int],
    min_area: float,
    progress: bool = True,
    worst: int = 20,
    proxy: ProxySplit | None = None,
    clip_to_unannotated: bool = True,
) -> dict:
    """Scores the cached pseudo masks of a split against its label files.

    Args:
        class_embeddings: ``[C, D]`` normalised text embeddings of every class name of the folder,
            unseen ones included (this diagnostic is their only use); with ``proxy``, of the names of
            its vocabulary (:meth:`splitmatch.data.proxy.ProxySplit.vocabulary`).
        window_sizes: the K-Means seed windows, naming the scales (index-map channels).
        min_area: smallest object scored by ``object_recall``, as a fraction of the image.
        proxy: score a pseudo-unseen proxy instead: its held-out seen classes are what the masks
            should find, and the benchmark's unseen classes are void (left out of its vocabulary).
        clip_to_unannotated: ``pseudo.clip_to_unannotated``: false scores the masks whole.

    Returns:
        ``{"split", "images", "note", "overall", "per_class", "per_scale", "worst_misses"}``; metrics
        in percent (``None`` where nothing was there to count).
    """
    vocabulary = proxy.vocabulary() if proxy is not None else Vocabulary.of_dataset(folder.classes)
    classes = vocabulary.classes
    text = class_embeddings.detach().float().cpu().numpy()
    if text.shape[0] != classes.num_classes:
        raise ValueError(f"class_embeddings has {text.shape[0]} rows for the {classes.num_classes} classes scored")
    tallies: dict[str, _Tally] = {"overall": _Tally()}
    for class_id in classes.unseen_ids:
        tallies[f"class {classes.names[class_id]}"] = _Tally()
    for scale in range(len(window_sizes)):
        tallies[f"scale {scale}"] = _Tally()
    scores = []
    samples = folder.samples(split)
    for sample in tqdm(samples, desc="score pseudo masks", disable=not progress, leave=False):
        label = vocabulary.relabel(read_label(sample.label_path, folder.classes.num_classes))
        index_map, embeddings = cache.load(sample.stem)
        score = score_image(
            label, index_map, embeddings, text, classes, min_area, tallies, sample.stem, clip_to_unannotated
        )
        scores.append(score)
    scores.sort(key=lambda s: (-s.uncovered_share, -s.objects_missed, s.stem))
    images = max(len(samples), 1)
    overall = tallies["overall"].summary() | {"masks_per_image": round(tallies["overall"].masks / images, 2)}
    return {
        "split": split,
        "images": len(samples),
        "note": UNSEEN_NAMES_NOTE if proxy is None else PROXY_NOTE,
        "scored_classes": list(classes.names),
        "overall": overall,
        "per_class": {classes.names[c]: tallies[f"class {classes.names[c]}"].summary() for c in classes.unseen_ids},
        "per_scale": {f"window {s}": tallies[f"scale {i}"].summary() for i, s in enumerate(window_sizes)},
        "worst_misses": [
            {
                "stem": s.stem,
                "uncovered_unseen_share": round(100 * s.uncovered_share, 1),
                "objects_missed": s.objects_missed,
                "objects": s.objects,
            }
            for s in scores[:worst]
            if s.uncovered_share > 0 or s.objects_missed
        ],
    }


def format_quality(report: dict) -> str:
    """A plain-text table of :func:`evaluate_pseudo_masks`'s result."""
    header = ["", *METRICS, "masks", "objects"]
    rows = [
        ["overall", *(report["overall"][m] for m in METRICS), report["overall"]["masks"], report["overall"]["objects"]]
    ]
    for group in ("per_class", "per_scale"):
        for name, values in report[group].items():
            rows.append([name, *(values[m] for m in METRICS), values["masks"], values["objects"]])
    cells = [[str(c) if not isinstance(c, float) else f"{c:.1f}" for c in row] for row in rows]
    cells = [["n/a" if c == "None" else c for c in row] for row in cells]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(str(h).rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)
