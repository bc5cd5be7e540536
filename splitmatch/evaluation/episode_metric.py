"""The episode metric of PASCAL-5i and COCO-20i: foreground IoU per class, mIoU, FB-IoU, mean of folds.

Computed as HSNet's ``common/evaluation.py`` and ``common/logger.py`` compute it:

* Per episode, pixels whose ground truth is ignore (VOC's 255 borders; COCO-20i has none as HSNet
  scores it, crowd regions too with ``prepare coco-20i --crowd ignore``)
  are left out of the prediction and the ground truth alike; the remaining pixels give a
  background and a foreground intersection and union.
* Per class, intersections and unions are summed over the fold's episodes of that class;
  its IoU is ``intersection / max(union, 1)`` (foreground). **mIoU** is the mean over the fold's
  classes.
* **FB-IoU** is the mean of the background IoU and the foreground IoU, each the sum of
  intersections over the sum of unions across all the fold's episodes.
* The benchmark number is the mean of the four folds' mIoU (and FB-IoU).

Where this differs: a fold class without any episode is NaN, named in
``classes_without_episodes`` and left out of the mean (HSNet would count it as 0; the stored
episode lists of ``splitmatch prepare`` give every class episodes on the full val split).
Every value is in percent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EpisodeAreas:
    """Pixel areas of one scored episode.

    Attributes:
        class_name: the class the episode asked for.
        intersection: ``(background, foreground)`` pixels predicted and true.
        union: ``(background, foreground)`` pixels predicted or true.
    """

    class_name: str
    intersection: tuple[int, int]
    union: tuple[int, int]


def episode_areas(
    class_name: str, prediction: np.ndarray, target: np.ndarray, ignore: np.ndarray | None = None
) -> EpisodeAreas:
    """Scores one episode.

    Args:
        class_name: the class asked for.
        prediction: bool ``[H, W]``, the predicted foreground.
        target: bool ``[H, W]``, the class's true pixels.
        ignore: bool ``[H, W]``, pixels left out (or ``None``); they must not be ``target`` pixels.

    Raises:
        ValueError: the masks differ in shape, or ``ignore`` overlaps ``target``.
    """
    prediction, target = np.asarray(prediction, dtype=bool), np.asarray(target, dtype=bool)
    if prediction.shape != target.shape:
        raise ValueError(f"episode '{class_name}': prediction is {prediction.shape} but the target is {target.shape}")
    valid = np.ones_like(target) if ignore is None else ~np.asarray(ignore, dtype=bool)
    if valid.shape != target.shape:
        raise ValueError(f"episode '{class_name}': ignore mask is {valid.shape} but the target is {target.shape}")
    if (target & ~valid).any():
        raise ValueError(f"episode '{class_name}': ignored pixels are also foreground in the target")
    areas = []
    for predicted, true in ((~prediction & valid, ~target & valid), (prediction & valid, target & valid)):
        both = int((predicted & true).sum())
        areas.append((both, int(predicted.sum()) + int(true.sum()) - both))
    (bg_inter, bg_union), (fg_inter, fg_union) = areas
    return EpisodeAreas(class_name, (bg_inter, fg_inter), (bg_union, fg_union))


@dataclass(frozen=True)
class FoldScore:
    """A fold's scores, in percent.

    Attributes:
        per_class_iou: fold class -> foreground IoU over its episodes (NaN without episodes).
        miou: mean of ``per_class_iou`` over the classes with episodes.
        fb_iou: mean of ``background_iou`` and ``foreground_iou``.
        foreground_iou, background_iou: summed over every episode of the fold.
        episodes: how many episodes were scored.
        classes_without_episodes: fold classes no episode asked for.
    """

    per_class_iou: dict[str, float]
    miou: float
    fb_iou: float
    foreground_iou: float
    background_iou: float
    episodes: int
    classes_without_episodes: tuple[str, ...]


def _ratio(intersection: int, union: int) -> float:
    return 100.0 * intersection / union if union > 0 else math.nan


def score_fold(areas: Iterable[EpisodeAreas], classes: Sequence[str]) -> FoldScore:
    """Sums episode areas per class and over the fold (see the module docstring).

    Args:
        areas: one per scored episode.
        classes: the fold's class names.

    Raises:
        ValueError: an episode of a class that is not in ``classes``.
    """
    inter = {name: np.zeros(2, dtype=np.int64) for name in classes}
    union = {name: np.zeros(2, dtype=np.int64) for name in classes}
    asked = set()
    count = 0
    for episode in areas:
        if episode.class_name not in inter:
            raise ValueError(
                f"episode of class '{episode.class_name}', which is not a fold class ({', '.join(classes)})"
            )
        inter[episode.class_name] += episode.intersection
        union[episode.class_name] += episode.union
        asked.add(episode.class_name)
        count += 1
    per_class = {
        name: 100.0 * float(inter[name][1]) / max(int(union[name][1]), 1) if name in asked else math.nan
        for name in classes
    }
    scored = [per_class[name] for name in classes if name in asked]
    total_inter, total_union = sum(inter.values()), sum(union.values())
    background, foreground = (_ratio(int(total_inter[i]), int(total_union[i])) for i in (0, 1))
    return FoldScore(
        per_class_iou=per_class,
        miou=float(np.mean(scored)) if scored else math.nan,
        fb_iou=(background + foreground) / 2,
        foreground_iou=foreground,
        background_iou=background,
        episodes=count,
        classes_without_episodes=tuple(name for name in classes if name not in asked),
    )


def mean_over_folds(scores: Sequence[FoldScore]) -> dict[str, float | int | list[float]]:
    """The benchmark numbers: mean mIoU and mean FB-IoU over the folds given (normally all four).

    Returns:
        ``{"miou", "fb_iou"}`` means, ``"folds"`` their count, ``"per_fold_miou"``, ``"per_fold_fb_iou"``.
    """
    if not scores:
        raise ValueError("no fold scores to average")
    return {
        "miou": float(np.mean([s.miou for s in scores])),
        "fb_iou": float(np.mean([s.fb_iou for s in scores])),
        "folds": len(scores),
        "per_fold_miou": [s.miou for s in scores],
        "per_fold_fb_iou": [s.fb_iou for s in scores],
    }
