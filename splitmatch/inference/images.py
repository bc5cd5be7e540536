"""One image through a segmentor: resized to the protocol's size, scored, labelled at its own size.

The evaluator and the predictor both go through these functions, so a label map from
``splitmatch predict`` and the one ``splitmatch eval`` scores are computed the same way.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from splitmatch.config import InferenceConfig
from splitmatch.data.classes import label_dtype_for
from splitmatch.inference.label_upsampling import upsample_argmax
from splitmatch.inference.segmentation import SegmentationInference


def resize_short_side(image: torch.Tensor, short: int, max_long: int) -> torch.Tensor:
    """``[B, 3, H, W]`` -> bilinear resize so the short side is ``short`` and the long at most ``max_long``.

    One channel at a time (the same numbers as all at once, within float rounding): a large
    uint8 image is never held as float whole.
    """
    height, width = image.shape[-2:]
    scale = min(short / min(height, width), max_long / max(height, width))
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    channels = [
        F.interpolate(image[:, c : c + 1].float(), size=size, mode="bilinear", align_corners=False)
        for c in range(image.shape[1])
    ]
    return torch.cat(channels, dim=1).clamp_(0, 255)


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
        ``[H, W]`` class ids, ``uint8`` up to 255 classes, else ``uint16`` (the label-map types).
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
    """Class scores ``[C, h, w]`` at the inference resolution (``seen=None``: never calibrated); at the
    image's own size ``[C, H, W]`` for a training-free model with PAMR, which runs there."""
    resized = resize_short_side(image_tensor(image, device), config.short_side, config.max_long_side)
    output_size = tuple(image.shape[:2]) if inference.refines_at_image_size else None
    return inference(resized, class_embeddings, seen, output_size)


def image_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """``uint8 [H, W, 3]`` -> ``uint8 [1, 3, H, W]`` on ``device``."""
    with warnings.catch_warnings():  # a read-only array (np.asarray of a PIL image) is only read here
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(image).permute(2, 0, 1)[None].to(device)


def scores_to_labels(scores: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """``[C, h, w]`` scores to ``[H, W]`` class ids at the image's own size (bilinear, then argmax).

    Memory does not grow with image size times class count (:func:`upsample_argmax`). The ids
    are ``uint8`` up to 255 classes, else ``uint16``, the types of label maps on disk.
    """
    dtype = torch.uint8 if label_dtype_for(scores.shape[0]) == np.uint8 else torch.uint16
    return upsample_argmax(scores, size, dtype).cpu().numpy()
