"""Dataset-level segmentation metrics for zero-shot segmentation: mIoU(S), mIoU(U), hIoU.

Intersections and unions are accumulated over the whole evaluation set in a confusion matrix
(pixels labelled 255 are left out), then turned into per-class IoU. A class absent from both
ground truth and predictions has IoU NaN and is left out of the means. Every value is in
percent.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from splitmatch.data.classes import IGNORE_INDEX, ClassSplit


class ConfusionMatrix:
    """Counts ``matrix[g, p]`` = pixels of ground-truth class g predicted as p.

    Args:
        num_classes: C; ground truth values must lie in ``0..C-1`` or be ``ignore_index``.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, prediction: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> None:
        """Adds one image: ``prediction`` and ``target`` are ``[H, W]`` integer maps of equal size."""
        prediction = torch.as_tensor(prediction).flatten().long().cpu()
        target = torch.as_tensor(target).flatten().long().cpu()
        if prediction.shape != target.shape:
            raise ValueError(f"prediction has {prediction.numel()} pixels but the label has {target.numel()}")
        valid = target != self.ignore_index
        prediction, target = prediction[valid], target[valid]
        for name, values in (("label", target), ("prediction", prediction)):
            if values.numel() and (values.min() < 0 or values.max() >= self.num_classes):
                raise ValueError(f"{name} holds class ids outside 0..{self.num_classes - 1}")
        counts = torch.bincount(target * self.num_classes + prediction, minlength=self.num_classes**2)
        self.matrix += counts.view(self.num_classes, self.num_classes).numpy()

    def merge(self, other: ConfusionMatrix) -> None:
        self.matrix += other.matrix


def per_class_iou(matrix: np.ndarray) -> np.ndarray:
    """``[C, C]`` confusion -> ``[C]`` IoU in 0..1, NaN where the class is in neither GT nor prediction."""
    intersection = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / np.maximum(union, 1), np.nan)


def nan_mean(values: np.ndarray) -> float:
    """Mean over finite entries; NaN when there are none."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def harmonic_iou(seen: float, unseen: float) -> float:
    """``hIoU = 2 S U / (S + U)``; NaN if either is NaN, 0 if both are 0."""
    if math.isnan(seen) or math.isnan(unseen):
        return float("nan")
    return 0.0 if seen + unseen == 0 else 2 * seen * unseen / (seen + unseen)


SUMMARY_KEYS = ("miou_seen", "miou_unseen", "hiou", "miou", "pixel_acc")


def summarize(matrix: np.ndarray, classes: ClassSplit) -> dict:
    """Zero-shot metrics from an accumulated confusion matrix.

    Returns:
        ``miou``, ``miou_seen``, ``miou_unseen``, ``hiou``, ``pixel_acc`` (percent),
        ``per_class_iou`` (class name -> percent or NaN), ``mistaken_for`` and, for datasets
        with a class named ``background``, ``taken_for_background`` (per other class present,
        the percent of its pixels labelled background: how often a model says "nothing there").
    """
    if matrix.shape != (classes.num_classes, classes.num_classes):
        raise ValueError(f"confusion matrix is {matrix.shape}, expected {classes.num_classes} classes")
    iou = per_class_iou(matrix) * 100
    seen, unseen = nan_mean(iou[classes.seen_ids]), nan_mean(iou[classes.unseen_ids])
    total = matrix.sum()
    return {
        "miou": nan_mean(iou),
        "miou_seen": seen,
        "miou_unseen": unseen,
        "hiou": harmonic_iou(seen, unseen),
        "pixel_acc": float(np.trace(matrix) / total * 100) if total else float("nan"),
        "per_class_iou": {name: float(value) for name, value in zip(classes.names, iou)},
        "mistaken_for": mistaken_for(matrix, classes.names),
    } | ({"taken_for_background": taken_for_background(matrix, classes.names)} if "background" in classes.names else {})


def taken_for_background(matrix: np.ndarray, names: list[str]) -> dict[str, float]:
    """Per ground-truth class other than ``background`` (those present), the percent of its pixels
    predicted as ``background``."""
    background = list(names).index("background")
    totals = matrix.sum(axis=1)
    return {
        name: float(matrix[index, background] / totals[index] * 100)
        for index, name in enumerate(names)
        if index != background and totals[index] > 0
    }


NAME_SPLIT_KEYS = ("miou_trained", "miou_other", "hiou_trained_other")


def summarize_name_split(matrix: np.ndarray, trained: np.ndarray) -> dict:
    """mIoU over the classes a model was trained on, over the others, and their harmonic mean.

    When a checkpoint is scored on its own dataset this equals the seen/unseen split; on another
    dataset (or vocabulary) it says how the model does on names it knows and on new names.

    Args:
        matrix: ``[C, C]`` accumulated confusion.
        trained: ``[C]`` bool, True for classes whose name the model was trained on.

    Returns:
        ``miou_trained``, ``miou_other``, ``hiou_trained_other`` (percent; NaN when a side is empty).
    """
    trained = np.asarray(trained, dtype=bool)
    iou = per_class_iou(matrix) * 100
    on, off = nan_mean(iou[trained]), nan_mean(iou[~trained])
    return {"miou_trained": on, "miou_other": off, "hiou_trained_other": harmonic_iou(on, off)}


def mistaken_for(matrix: np.ndarray, names: list[str], top: int = 3) -> dict[str, dict[str, float]]:
    """Per ground-truth class, the classes its pixels are most often predicted as, in percent of
    its pixels (its own class left out; classes absent from the ground truth left out)."""
    result = {}
    for index, name in enumerate(names):
        total = matrix[index].sum()
        if total == 0:
            continue
        others = [(float(matrix[index, j] / total * 100), j) for j in range(len(names)) if j != index]
        others.sort(key=lambda pair: -pair[0])
        result[name] = {names[j]: share for share, j in others[:top] if share > 0}
    return result


def format_name_split_table(results: dict[str, dict], digits: int = 1) -> str:
    """A Markdown table of :func:`summarize_name_split`'s metrics, one row per named result."""
    header = "| run | mIoU(trained names) | mIoU(other names) | hIoU |\n|---|---|---|---|\n"
    rows = []
    for name, m in results.items():
        cells = [m["miou_trained"], m["miou_other"], m["hiou_trained_other"]]
        rows.append(
            f"| {name} | " + " | ".join("n/a" if v is None or v != v else f"{v:.{digits}f}" for v in cells) + " |"
        )
    return header + "\n".join(rows) + "\n"


def format_table(results: dict[str, dict], digits: int = 1) -> str:
    """A Markdown table of summary metrics, one row per named result."""
    header = "| run | mIoU(S) | mIoU(U) | hIoU | mIoU | pixel acc |\n|---|---|---|---|---|---|\n"
    rows = []
    for name, m in results.items():
        cells = [m["miou_seen"], m["miou_unseen"], m["hiou"], m["miou"], m["pixel_acc"]]
        rows.append(
            f"| {name} | " + " | ".join("n/a" if v is None or v != v else f"{v:.{digits}f}" for v in cells) + " |"
        )
    return header + "\n".join(rows) + "\n"


def format_class_table(metrics: dict, unseen: set[str] | frozenset[str] = frozenset()) -> str:
    """Per class, one line: IoU and what its pixels are most often predicted as instead.

    ``metrics`` is :func:`summarize`'s dict (a JSON-read one, with ``None`` for NaN, too);
    classes named in ``unseen`` are marked.
    """
    mistaken = metrics.get("mistaken_for", {})
    names = list(metrics["per_class_iou"])
    width = max([len(name) for name in names] + [5])
    lines = [f"  {'class':<{width}}  {'':6}    IoU  its pixels predicted as another class (% of its pixels)"]
    for name, iou in metrics["per_class_iou"].items():
        shown = "n/a" if iou is None or iou != iou else f"{iou:.1f}"
        others = ", ".join(f"{other} {share:.0f}%" for other, share in mistaken.get(name, {}).items())
        kind = "unseen" if name in unseen else "seen"
        lines.append(f"  {name:<{width}}  {kind:6}  {shown:>5}  {others or '-'}".rstrip())
    return "\n".join(lines) + "\n"
