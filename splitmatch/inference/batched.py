"""Several images through a segmentor at once, with the labels each one gets on its own.

Every image is resized as :func:`~splitmatch.inference.images.predict_scores` resizes it and
cut into the crops its mode asks for (the whole image, or its sliding windows). Crops are then
grouped by the size they have once padded to whole patches, and each group goes through the
model ``batch_size`` crops at a time. A crop is padded exactly as it is alone (the model's mean
colour, to whole patches), so the model sees the same pixels it sees one image at a time; no
image is ever padded to another's size, which would change what its attention sees and so its
labels. Images of different sizes therefore batch well in sliding-window mode (every window
of an image larger than the window has the window's size) and, in whole-image mode, wherever
their resized sides round up to the same number of patches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from splitmatch.config import InferenceConfig
from splitmatch.inference.images import image_tensor, resize_short_side, scores_to_labels
from splitmatch.inference.segmentation import (
    SegmentationInference,
    calibrate_seen,
    pad_to,
    patch_multiple,
    window_boxes,
)

Box = tuple[int, int, int, int]  # y0, y1, x0, x1


def image_crops(inference: SegmentationInference, height: int, width: int) -> list[Box]:
    """The crops an image of the inference size ``height x width`` is scored by, in the order their
    scores are summed: the image itself (``whole``) or its windows row by row (``slide``)."""
    if inference.mode == "whole":
        return [(0, height, 0, width)]
    return window_boxes(height, width, inference.window, inference.stride)


@torch.no_grad()
def batch_scores(
    inference: SegmentationInference,
    images: Sequence[np.ndarray],
    class_embeddings: torch.Tensor,
    seen: torch.Tensor | None,
    config: InferenceConfig,
    device: torch.device,
    batch_size: int,
) -> list[torch.Tensor]:
    """Each image's class scores ``[C, h, w]`` at the inference resolution, as
    :func:`~splitmatch.inference.images.predict_scores` gives them one image at a time.

    Args:
        images: ``uint8 [H, W, 3]`` each, of any sizes.
        class_embeddings: ``[C, D]``.
        seen: ``[C]`` bool for the seen-class calibration, or ``None`` (never calibrated).
        batch_size: the most crops in one forward pass.

    Memory: the scores of all ``len(images)`` images (``C x h x w`` floats each) are held at once,
    besides one forward pass of ``batch_size`` crops.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive number of crops, got {batch_size}")
    resized = [
        resize_short_side(image_tensor(image, device), config.short_side, config.max_long_side) for image in images
    ]
    groups: dict[tuple[int, int], list[tuple[int, Box]]] = {}
    for index, tensor in enumerate(resized):
        for box in image_crops(inference, *tensor.shape[-2:]):
            size = patch_multiple((box[1] - box[0], box[3] - box[2]), inference.model.patch_size)
            groups.setdefault(size, []).append((index, box))
    classes = class_embeddings.shape[0]
    totals = [t.new_zeros((classes, *t.shape[-2:]), dtype=torch.float32) for t in resized]
    counts = [t.new_zeros((1, *t.shape[-2:]), dtype=torch.float32) for t in resized]
    fill = inference.pixel_mean(device)
    # All crops of one image have one size (a window, or the image where it is smaller), so they
    # sit in one group in window order, and their scores are summed in the order one image's are.
    for size, crops in groups.items():
        for start in range(0, len(crops), batch_size):
            chunk = crops[start : start + batch_size]
            stacked = torch.cat([pad_to(resized[i][..., y0:y1, x0:x1], size, fill) for i, (y0, y1, x0, x1) in chunk])
            scores = inference.padded_scores(stacked, class_embeddings)  # [n, C, *size]
            for (index, (y0, y1, x0, x1)), crop_scores in zip(chunk, scores):
                totals[index][:, y0:y1, x0:x1] += crop_scores[:, : y1 - y0, : x1 - x0]
                counts[index][:, y0:y1, x0:x1] += 1
    # One image alone: the whole-image scores as they come, the windows' mean in slide mode.
    results = totals if inference.mode == "whole" else [total / count for total, count in zip(totals, counts)]
    sizes = [image.shape[:2] if inference.refines_at_image_size else None for image in images]
    results = [inference.finish(scores[None], tensor, size)[0] for scores, tensor, size in zip(results, resized, sizes)]
    if seen is not None and inference.seen_calibration:
        results = [
            calibrate_seen(scores[None], seen, inference.seen_calibration, inference.calibration_form)[0]
            for scores in results
        ]
    return results


@torch.no_grad()
def batch_labels(
    inference: SegmentationInference,
    images: Sequence[np.ndarray],
    class_embeddings: torch.Tensor,
    seen: torch.Tensor | None,
    config: InferenceConfig,
    device: torch.device,
    batch_size: int,
) -> list[np.ndarray]:
    """Each image's ``[H, W]`` label map at its own size (:func:`batch_scores`, then
    :func:`~splitmatch.inference.images.scores_to_labels`): the maps
    :func:`~splitmatch.inference.images.predict_labels` gives one image at a time."""
    scores = batch_scores(inference, images, class_embeddings, seen, config, device, batch_size)
    return [scores_to_labels(s, image.shape[:2]) for s, image in zip(scores, images)]
