"""A model scored on the binary test episodes of a fold (PASCAL-5i, COCO-20i, the world's folds).

An episode is a val image known to hold class c: the model is given two names, a background
name and c, labels every pixel with one of them through the same inference path as
``splitmatch eval`` and ``predict`` (:func:`splitmatch.inference.images.predict_scores`), and
the pixels labelled c are its prediction. Every other class of the image is background for
that episode; ignore pixels are left out. The metric is HSNet's
(:mod:`splitmatch.evaluation.episode_metric`): mIoU over the fold's classes, FB-IoU.

**The background name** is ``"background"`` by default: the PASCAL-5i, COCO-20i and world
folders all have a class of that name, seen in every fold, so it is a name the model was
trained on for exactly those pixels. LSeg's zero-shot episodes give ``"others"`` instead
(``modules/models/lseg_net_zs.py``); any name may be given (``--background-name``).

**The scoring size** is the label's by default (HSNet's ``--use_original_imgsize``). HSNet's
default scores at 400 x 400 (``test.py``: the query image resized to 400 x 400, its mask with
``F.interpolate(mode="nearest")``); ``score_size=400`` resizes the label and the predicted mask,
nearest as torch does it, before the areas are counted, so every episode weighs 160,000 pixels.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm

from splitmatch.config import InferenceConfig
from splitmatch.data.classes import validate_class_names
from splitmatch.data.episode_lists import EPISODE_SPLIT, MAX_SCORE_SIDE, Episode, episode_target
from splitmatch.data.fold_schemes import BACKGROUND
from splitmatch.data.folder import DatasetFolder, DatasetFormatError, read_image, read_label
from splitmatch.errors import ArgumentValueError
from splitmatch.evaluation.episode_metric import EpisodeAreas, FoldScore, episode_areas, score_fold
from splitmatch.inference.images import predict_scores, scores_to_labels
from splitmatch.inference.segmentation import CandidateScoring, SegmentationInference, calibrate_seen
from splitmatch.model.segmentor import SplitMatchSegmentor

DEFAULT_BACKGROUND_NAME = "background"


@dataclass(frozen=True)
class EpisodeEvaluation:
    """A fold's episode scores, and where its false positives lie.

    Attributes:
        score: HSNet's metric (:class:`~splitmatch.evaluation.episode_metric.FoldScore`).
        false_positives: predicted-foreground pixels that are not the episode's class, summed over
            the episodes: ``"other_classes"`` on pixels of any other class but ``background``,
            ``"background_class"`` on the folder's ``background`` class (0 without one).
    """

    score: FoldScore
    false_positives: dict[str, int]


@torch.no_grad()
def evaluate_episodes(
    model: SplitMatchSegmentor,
    folder: DatasetFolder,
    episodes: Sequence[Episode],
    fold_classes: Sequence[str],
    config: InferenceConfig,
    background_name: str = DEFAULT_BACKGROUND_NAME,
    trained_names: Collection[str] = (),
    candidates: CandidateScoring | None = None,
    progress: bool = True,
    score_size: int | None = None,
) -> EpisodeEvaluation:
    """Scores one fold's episodes.

    Args:
        folder: the dataset folder the episodes name (its ``val`` split).
        episodes: :func:`splitmatch.data.episode_lists.read_episodes`'s list.
        fold_classes: the fold's class names (the classes of the mean).
        config: the inference settings; ``seen_calibration`` is taken off the scores of whichever
            of the two names is in ``trained_names``, as ``eval`` does.
        background_name: the name the model is given beside the episode's class.
        trained_names: the names the model was trained on (a checkpoint's, synonyms included).
        candidates: how a Split Matching model's candidate queries score.
        score_size: score at ``score_size x score_size`` (HSNet's 400), not at the label's size.

    Raises:
        DatasetFormatError: an episode's class is the background name, or not a class of the folder.
    """
    check_score_size(score_size)
    classes = folder.classes
    check_episode_names(classes, episodes, background_name)
    samples = {sample.stem: sample for sample in folder.samples(EPISODE_SPLIT)}
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    inference = SegmentationInference(
        model, config.mode, config.window, config.stride, candidates=candidates, amp=config.amp
    )  # calibrated below
    vocabularies: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    areas: list[EpisodeAreas] = []
    background_id = classes.names.index(BACKGROUND) if BACKGROUND in classes.names else None
    false_positives = {"other_classes": 0, "background_class": 0}
    for episode in tqdm(episodes, desc="episodes", disable=not progress, leave=False):
        if episode.class_name not in vocabularies:
            vocabularies[episode.class_name] = _vocabulary(
                model, classes, episode.class_name, background_name, trained_names
            )
        embeddings, trained = vocabularies[episode.class_name]
        sample = samples[episode.stem]
        image = read_image(sample.image_path)
        label = read_label(sample.label_path, classes.num_classes, image.shape[:2])
        scores = predict_scores(inference, image, embeddings, None, config, device)
        scores = calibrate_seen(scores[None], trained, config.seen_calibration)[0]
        predicted = scores_to_labels(scores, image.shape[:2]) == 1
        if score_size is not None:
            predicted, label = nearest_resized(predicted, score_size), nearest_resized(label, score_size)
        target, ignore = episode_target(label, classes.names.index(episode.class_name), classes.ignore_index)
        areas.append(episode_areas(episode.class_name, predicted, target, ignore))
        wrong = predicted & ~target & ~ignore
        on_background = int((wrong & (label == background_id)).sum()) if background_id is not None else 0
        false_positives["background_class"] += on_background
        false_positives["other_classes"] += int(wrong.sum()) - on_background
    model.train(was_training)
    return EpisodeEvaluation(score_fold(areas, fold_classes), false_positives)


def check_score_size(score_size: int | None) -> None:
    """Refuses a scoring side that is not an integer in 1..:data:`MAX_SCORE_SIDE` (``None``: the label's size)."""
    if score_size is None:
        return
    if isinstance(score_size, bool) or not isinstance(score_size, int) or not 1 <= score_size <= MAX_SCORE_SIDE:
        raise ArgumentValueError(
            f"the episode scoring size must be an integer in 1..{MAX_SCORE_SIDE}, got {score_size!r}"
        )


def nearest_resized(array: np.ndarray, size: int) -> np.ndarray:
    """``array [H, W]`` at ``[size, size]`` as ``torch.nn.functional.interpolate(mode="nearest")``
    resizes it: output index i reads ``floor(i * (H / size))``, in float32 as torch computes it."""
    rows, cols = (
        np.minimum(np.floor(np.arange(size, dtype=np.float32) * np.float32(length / size)).astype(np.int64), length - 1)
        for length in array.shape
    )
    return array[rows[:, None], cols[None, :]]


def check_episode_names(classes, episodes: Sequence[Episode], background_name: str) -> None:
    """What :func:`evaluate_episodes` will give the model, checked before any model runs: the
    background name a usable class name (:func:`~splitmatch.data.classes.validate_class_names`),
    every episode's class a class of the folder and not the background name.

    Raises:
        ClassSplitError: a background name that is empty, too long or holds a control character.
        DatasetFormatError: an episode's class is the background name, or not a class of the folder.
    """
    validate_class_names([background_name], where="the background name (--background-name)")
    for class_name in dict.fromkeys(episode.class_name for episode in episodes):
        _check_episode_class(classes, class_name, background_name)


def _check_episode_class(classes, class_name: str, background_name: str) -> None:
    if class_name not in classes.names:
        raise DatasetFormatError(f"episode class '{class_name}' is not a class of '{classes.dataset}'")
    if class_name == background_name.strip():
        raise DatasetFormatError(f"an episode asks for '{class_name}', which is also the background name")


def _vocabulary(
    model: SplitMatchSegmentor, classes, class_name: str, background_name: str, trained_names: Collection[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The episode's two names as the model is given them: embeddings ``[2, D]`` (background, class)
    and ``[2]`` bool, True for those trained on (the class keeps its synonyms)."""
    _check_episode_class(classes, class_name, background_name)
    class_texts = classes.texts[classes.names.index(class_name)]
    texts = [(background_name,), class_texts]
    known = set(trained_names)
    trained = torch.tensor([any(name in known for name in names) for names in texts], dtype=torch.bool)
    return model.encode_classes(texts), trained


def evaluation_dict(evaluation: EpisodeEvaluation) -> dict:
    """An :class:`EpisodeEvaluation` as JSON-ready data (``write_json`` writes a NaN as ``null``)."""
    data = asdict(evaluation.score)
    data["classes_without_episodes"] = list(evaluation.score.classes_without_episodes)
    data["false_positives"] = dict(evaluation.false_positives)
    return data


def describe_false_positives(false_positives: dict[str, int]) -> str:
    """Where the pixels wrongly predicted as the episode's class lie, in one line."""
    total = false_positives["other_classes"] + false_positives["background_class"]
    if not total:
        return "no pixel was wrongly predicted as the episode's class"
    share = 100.0 * false_positives["other_classes"] / total
    return (
        f"of the {total:,} pixels wrongly predicted as the episode's class, {share:.1f}% are other classes' "
        f"objects and {100 - share:.1f}% the '{BACKGROUND}' class"
    )


def format_fold_score(score: FoldScore, title: str, digits: int = 1) -> str:
    """A fold's scores as a markdown table: per class IoU, then mIoU, FB-IoU and the episode count."""
    rows = [f"| {name} | {value:.{digits}f} |" for name, value in score.per_class_iou.items()]
    rows += [
        f"| **mIoU** | **{score.miou:.{digits}f}** |",
        f"| FB-IoU | {score.fb_iou:.{digits}f} |",
        f"| episodes | {score.episodes} |",
    ]
    return f"| {title} | IoU |\n|---|---|\n" + "\n".join(rows)
