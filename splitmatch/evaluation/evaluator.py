"""Evaluation under the zero-shot protocol: every class, seen and unseen, scored by name."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from splitmatch.config import InferenceConfig
from splitmatch.data.classes import ClassSplit
from splitmatch.data.folder import DatasetFolder, DatasetFormatError, list_some, read_image, read_label
from splitmatch.data.names import output_stem, outside
from splitmatch.data.vocabulary import Vocabulary
from splitmatch.distributed import all_reduce_sum, is_main_process, rank, world_size
from splitmatch.evaluation.metrics import (
    NAME_SPLIT_KEYS,
    SUMMARY_KEYS,
    ConfusionMatrix,
    summarize,
    summarize_name_split,
)
from splitmatch.inference.images import predict_scores, scores_to_labels
from splitmatch.inference.segmentation import CandidateScoring, SegmentationInference, calibrate_seen
from splitmatch.model.segmentor import SplitMatchSegmentor

# Seen-class calibration is reported both ways, without and with ZegCLIP's 0.1
# (docs/method.md#evaluation-protocol).
COMPARED_SEEN_CALIBRATIONS = (0.0, 0.1)


@torch.no_grad()
def evaluate(
    model: SplitMatchSegmentor,
    folder: DatasetFolder,
    split: str,
    config: InferenceConfig,
    vocabulary: Vocabulary | None = None,
    trained_names: Collection[str] | None = None,
    progress: bool = True,
    max_images: int | None = None,
    progress_position: int = 0,
    compared_calibrations: Sequence[float] = COMPARED_SEEN_CALIBRATIONS,
    candidates: CandidateScoring | None = None,
) -> dict:
    """Scores a split with the sliding-window (or whole-image) protocol; images are sharded over processes.

    Every image is run once; its scores are turned into labels under each seen-class
    calibration (``config.seen_calibration`` and ``compared_calibrations``). ``candidates``: how a
    Split Matching model's candidate queries score (:func:`splitmatch.inference.segmentation.candidate_scoring`
    of the model's config); ``None`` scores every query alike, as for a Hungarian model.

    Args:
        vocabulary: the class list to score with (default: the dataset's own). Its classes are
            named to the model by their names and synonyms; its label ids are what is scored.
        trained_names: the names the model was trained on (a checkpoint's, synonyms included).
            A class any of whose names is among them counts as trained on: the seen-class
            calibration applies to it, and the metrics are split by it. Default: the
            vocabulary's seen classes (a model trained on this dataset).

    Returns:
        :func:`splitmatch.evaluation.metrics.summarize`'s dict (percent) under ``config.seen_calibration``,
        the split by training names (:func:`splitmatch.evaluation.metrics.summarize_name_split`, with
        ``trained_names`` and ``other_names`` listing the classes on each side), and
        ``seen_calibration``: amount (as text) -> the summary metrics under that amount.
    """
    vocabulary = vocabulary or Vocabulary.of_dataset(folder.classes)
    classes = vocabulary.classes
    trained = trained_mask(classes, trained_names)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    inference = SegmentationInference(
        model, config.mode, config.window, config.stride, candidates=candidates, amp=config.amp
    )  # calibrated below, once per amount
    embeddings = model.encode_classes(classes.texts)
    amounts = list(dict.fromkeys([config.seen_calibration, *compared_calibrations]))
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be a positive number of images or None (all), got {max_images}")
    samples = folder.samples(split)[:max_images]
    confusions = [ConfusionMatrix(classes.num_classes, classes.ignore_index) for _ in amounts]
    mine = samples[rank() :: world_size()]
    bar = tqdm(
        mine,
        desc=f"evaluate {split}",
        disable=not (progress and is_main_process()),
        leave=False,
        position=progress_position,
    )
    for sample in bar:
        image = read_image(sample.image_path)
        label = vocabulary.relabel(read_label(sample.label_path, folder.classes.num_classes, image.shape[:2]))
        scores = predict_scores(inference, image, embeddings, None, config, device)
        for amount, confusion in zip(amounts, confusions):
            calibrated = calibrate_seen(scores[None], trained, amount, config.seen_calibration_form)[0]
            confusion.update(scores_to_labels(calibrated, image.shape[:2]), label)
    stacked = torch.from_numpy(np.stack([c.matrix for c in confusions])).to(device)
    matrices = all_reduce_sum(stacked).cpu().numpy()
    model.train(was_training)
    summaries = [summarize(matrix, classes) | summarize_name_split(matrix, trained.numpy()) for matrix in matrices]
    metrics = summaries[0]
    metrics["trained_names"] = [name for name, on in zip(classes.names, trained.tolist()) if on]
    metrics["other_names"] = [name for name, on in zip(classes.names, trained.tolist()) if not on]
    keys = SUMMARY_KEYS + NAME_SPLIT_KEYS
    metrics["seen_calibration"] = {
        f"{amount:g}": {key: summary[key] for key in keys} for amount, summary in zip(amounts, summaries)
    }
    return metrics


def trained_mask(classes: ClassSplit, trained_names: Collection[str] | None = None) -> torch.Tensor:
    """``[C]`` bool: True for the classes a model was trained on.

    With ``trained_names``, a class counts when its name or one of its synonyms is among them;
    without, the classes' own seen/unseen split decides (a model trained on this dataset).
    """
    if trained_names is None:
        mask = torch.zeros(classes.num_classes, dtype=torch.bool)
        mask[classes.seen_ids] = True
        return mask
    known = set(trained_names)
    return torch.tensor([any(name in known for name in names) for names in classes.texts], dtype=torch.bool)


def evaluate_predictions(
    predictions: str | Path,
    folder: DatasetFolder,
    split: str,
    progress: bool = True,
    vocabulary: Vocabulary | None = None,
) -> dict:
    """Scores label PNGs made by any method with the same protocol.

    Each image of the split needs ``<stem>.png`` or ``<stem>_labels.png`` (what ``splitmatch
    predict`` writes, its name shortened as predict shortens it) in ``predictions``: 8-bit, or
    16-bit for more than 255 classes. With a ``vocabulary``, the PNGs hold its label ids and the
    dataset's labels are relabelled to it. A prediction that links outside ``predictions`` is refused.
    """
    predictions = Path(predictions)
    if not predictions.is_dir():
        raise DatasetFormatError(f"prediction folder {predictions} does not exist")
    vocabulary = vocabulary or Vocabulary.of_dataset(folder.classes)
    classes = vocabulary.classes
    samples = folder.samples(split)
    paths, missing = {}, []
    for sample in samples:
        found = [p for p in _prediction_files(predictions, sample.stem) if p.is_file()]
        if found and outside(predictions, found[0]):
            raise DatasetFormatError(
                f"prediction {found[0]} links to {found[0].resolve()}, outside the prediction folder {predictions}"
            )
        if found:
            paths[sample.stem] = found[0]
        else:
            missing.append(f"{sample.stem}.png")
    if missing:
        raise DatasetFormatError(
            f"prediction folder {predictions} lacks {len(missing)} of the {len(samples)} images of split "
            f"'{split}': {list_some(missing)} (or <stem>_labels.png)"
        )
    confusion = ConfusionMatrix(classes.num_classes, classes.ignore_index)
    for sample in tqdm(samples, desc="score predictions", leave=False, disable=not progress):
        path = paths[sample.stem]
        label = vocabulary.relabel(read_label(sample.label_path, folder.classes.num_classes))
        prediction = read_label(path, classes.num_classes, label.shape)
        if (prediction == classes.ignore_index).any():
            raise DatasetFormatError(
                f"prediction {path} contains the ignore value {classes.ignore_index}; every pixel needs a class id"
            )
        confusion.update(prediction, label)
    return summarize(confusion.matrix, classes)


def _prediction_files(predictions: Path, stem: str) -> tuple[Path, Path]:
    """Where a prediction of ``stem`` may be: ``<stem>.png``, or ``<stem>_labels.png`` as
    ``splitmatch predict`` names it (a long last part shortened). ``stem`` was checked to be a
    name when the split list was read (:mod:`splitmatch.data.names`)."""
    folder, _, name = stem.rpartition("/")
    return predictions / f"{stem}.png", predictions / folder / f"{output_stem(name)}_labels.png"
