"""Evaluation under the zero-shot protocol: every class, seen and unseen, scored by name."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from splitmatch.config import InferenceConfig
from splitmatch.data.classes import ClassSplit
from splitmatch.data.folder import DatasetFolder, DatasetFormatError, read_image, read_label
from splitmatch.distributed import all_reduce_sum, is_main_process, rank, world_size
from splitmatch.inference import CandidateScoring, SegmentationInference, calibrate_seen
from splitmatch.metrics import SUMMARY_KEYS, ConfusionMatrix, summarize
from splitmatch.model.segmentor import SplitMatchSegmentor

# Seen-class calibration is reported both ways, without and with ZegCLIP's 0.1
# (docs/method.md#evaluation-protocol).
COMPARED_SEEN_CALIBRATIONS = (0.0, 0.1)


def resize_short_side(image: torch.Tensor, short: int, max_long: int) -> torch.Tensor:
    """``[B, 3, H, W]`` -> bilinear resize so the short side is ``short`` and the long at most ``max_long``."""
    height, width = image.shape[-2:]
    scale = min(short / min(height, width), max_long / max(height, width))
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return F.interpolate(image.float(), size=size, mode="bilinear", align_corners=False).clamp(0, 255)


@torch.no_grad()
def predict_labels(
    inference: SegmentationInference,
    image: np.ndarray,
    class_embeddings: torch.Tensor,
    seen: torch.Tensor,
    config: InferenceConfig,
    device: torch.device,
) -> np.ndarray:
    """One image's label map at its own resolution.

    Args:
        image: ``uint8 [H, W, 3]``.
        class_embeddings: ``[C, D]``.
        seen: ``[C]`` bool.

    Returns:
        ``[H, W]`` int64 class ids.
    """
    scores = predict_scores(inference, image, class_embeddings, seen, config, device)
    return scores_to_labels(scores, image.shape[:2])


@torch.no_grad()
def predict_scores(
    inference: SegmentationInference,
    image: np.ndarray,
    class_embeddings: torch.Tensor,
    seen: torch.Tensor | None,
    config: InferenceConfig,
    device: torch.device,
) -> torch.Tensor:
    """Class scores ``[C, h, w]`` at the inference resolution (``seen=None``: never calibrated)."""
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].to(device)
    resized = resize_short_side(tensor, config.short_side, config.max_long_side)
    return inference(resized, class_embeddings, seen)


def scores_to_labels(scores: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """``[C, h, w]`` scores to ``[H, W]`` int64 class ids at the image's own size."""
    scores = F.interpolate(scores[None], size=size, mode="bilinear", align_corners=False)[0]
    return scores.argmax(0).cpu().numpy()


@torch.no_grad()
def evaluate(
    model: SplitMatchSegmentor,
    folder: DatasetFolder,
    split: str,
    config: InferenceConfig,
    classes: ClassSplit | None = None,
    progress: bool = True,
    max_images: int | None = None,
    progress_position: int = 0,
    compared_calibrations: Sequence[float] = COMPARED_SEEN_CALIBRATIONS,
    candidates: CandidateScoring | None = None,
) -> dict:
    """Scores a split with the sliding-window (or whole-image) protocol; images are sharded over processes.

    Every image is run once; its scores are turned into labels under each seen-class
    calibration (``config.seen_calibration`` and ``compared_calibrations``). ``candidates``: how a
    Split Matching model's candidate queries score (:func:`splitmatch.inference.candidate_scoring`
    of the model's config); ``None`` scores every query alike, as for a Hungarian model.

    Returns:
        :func:`splitmatch.metrics.summarize`'s dict (percent) under ``config.seen_calibration``,
        plus ``seen_calibration``: amount (as text) -> the summary metrics under that amount.
    """
    classes = classes or folder.classes
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    inference = SegmentationInference(
        model, config.mode, config.window, config.stride, candidates=candidates, amp=config.amp
    )  # calibrated below, once per amount
    embeddings = model.encode_classes(classes.names)
    seen = torch.zeros(classes.num_classes, dtype=torch.bool)
    seen[classes.seen_ids] = True
    amounts = list(dict.fromkeys([config.seen_calibration, *compared_calibrations]))
    samples = folder.samples(split)[:max_images]
    confusions = [ConfusionMatrix(classes.num_classes, classes.ignore_index) for _ in amounts]
    mine = samples[rank() :: world_size()]
    bar = tqdm(mine, desc=f"evaluate {split}", disable=not (progress and is_main_process()), leave=False,
               position=progress_position)  # fmt: skip
    for sample in bar:
        image = read_image(sample.image_path)
        label = read_label(sample.label_path, classes.num_classes, image.shape[:2])
        scores = predict_scores(inference, image, embeddings, None, config, device)
        for amount, confusion in zip(amounts, confusions):
            calibrated = calibrate_seen(scores[None], seen, amount)[0]
            confusion.update(scores_to_labels(calibrated, image.shape[:2]), label)
    stacked = torch.from_numpy(np.stack([c.matrix for c in confusions])).to(device)
    matrices = all_reduce_sum(stacked).cpu().numpy()
    model.train(was_training)
    summaries = [summarize(matrix, classes) for matrix in matrices]
    metrics = summaries[0]
    metrics["seen_calibration"] = {
        f"{amount:g}": {key: summary[key] for key in SUMMARY_KEYS} for amount, summary in zip(amounts, summaries)
    }
    return metrics


def evaluate_predictions(predictions: str | Path, folder: DatasetFolder, split: str, progress: bool = True) -> dict:
    """Scores label PNGs made by any method (``<stem>.png`` per image) with the same protocol."""
    predictions = Path(predictions)
    if not predictions.is_dir():
        raise DatasetFormatError(f"prediction folder {predictions} does not exist")
    classes = folder.classes
    confusion = ConfusionMatrix(classes.num_classes, classes.ignore_index)
    for sample in tqdm(folder.samples(split), desc="score predictions", leave=False, disable=not progress):
        path = predictions / f"{sample.stem}.png"
        label = read_label(sample.label_path, classes.num_classes)
        prediction = read_label(path, classes.num_classes, label.shape)
        if (prediction == classes.ignore_index).any():
            raise DatasetFormatError(
                f"prediction {path} contains the ignore value {classes.ignore_index}; every pixel needs a class id"
            )
        confusion.update(prediction, label)
    return summarize(confusion.matrix, classes)
