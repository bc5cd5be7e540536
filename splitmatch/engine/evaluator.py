"""Evaluation under the zero-shot protocol: every class, seen and unseen, scored by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from splitmatch.config import InferenceConfig
from splitmatch.data.classes import ClassSplit
from splitmatch.data.folder import DatasetFolder, DatasetFormatError, read_image, read_label
from splitmatch.distributed import all_reduce_sum, is_main_process, rank, world_size
from splitmatch.inference import SegmentationInference
from splitmatch.metrics import ConfusionMatrix, summarize
from splitmatch.model.segmentor import SplitMatchSegmentor


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
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].to(device)
    resized = resize_short_side(tensor, config.short_side, config.max_long_side)
    scores = inference(resized, class_embeddings, seen)  # [C, h, w]
    scores = F.interpolate(scores[None], size=image.shape[:2], mode="bilinear", align_corners=False)[0]
    return scores.argmax(0).cpu().numpy()


def evaluate(
    model: SplitMatchSegmentor,
    folder: DatasetFolder,
    split: str,
    config: InferenceConfig,
    classes: ClassSplit | None = None,
    progress: bool = True,
    max_images: int | None = None,
    progress_position: int = 0,
) -> dict:
    """Scores a split with the sliding-window (or whole-image) protocol; images are sharded over processes.

    Returns:
        :func:`splitmatch.metrics.summarize`'s dict (percent).
    """
    classes = classes or folder.classes
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    inference = SegmentationInference(model, config.mode, config.window, config.stride, config.seen_calibration)
    embeddings = model.encode_classes(classes.names)
    seen = torch.zeros(classes.num_classes, dtype=torch.bool)
    seen[classes.seen_ids] = True
    samples = folder.samples(split)[:max_images]
    confusion = ConfusionMatrix(classes.num_classes)
    mine = samples[rank() :: world_size()]
    bar = tqdm(mine, desc=f"evaluate {split}", disable=not (progress and is_main_process()), leave=False,
               position=progress_position)  # fmt: skip
    for sample in bar:
        image = read_image(sample.image_path)
        label = read_label(sample.label_path, classes.num_classes, image.shape[:2])
        confusion.update(predict_labels(inference, image, embeddings, seen, config, device), label)
    matrix = all_reduce_sum(torch.from_numpy(confusion.matrix).to(device)).cpu().numpy()
    model.train(was_training)
    return summarize(matrix, classes)


def evaluate_predictions(predictions: str | Path, folder: DatasetFolder, split: str) -> dict:
    """Scores label PNGs made by any method (``<stem>.png`` per image) with the same protocol."""
    predictions = Path(predictions)
    if not predictions.is_dir():
        raise DatasetFormatError(f"prediction folder {predictions} does not exist")
    classes = folder.classes
    confusion = ConfusionMatrix(classes.num_classes)
    for sample in tqdm(folder.samples(split), desc="score predictions", leave=False):
        path = predictions / f"{sample.stem}.png"
        label = read_label(sample.label_path, classes.num_classes)
        prediction = read_label(path, classes.num_classes, label.shape)
        if (prediction == 255).any():
            raise DatasetFormatError(f"prediction {path} contains 255; every pixel needs a class id")
        confusion.update(prediction, label)
    return summarize(confusion.matrix, classes)
