"""Semantic segmentation from query outputs, for any vocabulary, whole-image or sliding-window."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from splitmatch.model.segmentor import SplitMatchSegmentor


def semantic_scores(pred_logits: torch.Tensor, pred_masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``S[c, x] = sum_i p_i(c) * sigmoid(m_i(x))``.

    ``p_i`` is the softmax over the classes and no-object, with no-object then dropped
    (Mask2Former), so a query that is confidently "nothing" contributes nothing.

    Args:
        pred_logits: ``[B, Q, C+1]``.
        pred_masks: ``[B, Q, h, w]`` logits.
        size: ``(H, W)`` output size; masks are upsampled bilinearly.

    Returns:
        ``[B, C, H, W]``.
    """
    probs = pred_logits.float().softmax(-1)[..., :-1]
    masks = F.interpolate(pred_masks.float(), size=size, mode="bilinear", align_corners=False).sigmoid_()
    return torch.einsum("bqc,bqhw->bchw", probs, masks)


def calibrate_seen(scores: torch.Tensor, seen: torch.Tensor, amount: float) -> torch.Tensor:
    """ZegCLIP-style calibration: scores normalised per pixel, then ``amount`` taken off seen classes.

    Args:
        scores: ``[B, C, H, W]`` non-negative.
        seen: ``[C]`` bool, True for seen classes.
    """
    if amount == 0:
        return scores
    normalised = scores / scores.sum(1, keepdim=True).clamp(min=1e-6)
    return normalised - amount * seen.to(scores.device, scores.dtype).view(1, -1, 1, 1)


class SegmentationInference:
    """Turns a model and class embeddings into per-pixel class scores for one image.

    Args:
        model: the segmentor.
        mode: ``"whole"`` or ``"slide"`` (windows of ``window`` pixels every ``stride``).
        seen_calibration: amount subtracted from seen-class scores (0 disables).
    """

    def __init__(
        self,
        model: SplitMatchSegmentor,
        mode: str = "whole",
        window: int = 512,
        stride: int = 426,
        seen_calibration: float = 0.0,
    ) -> None:
        if mode not in ("whole", "slide"):
            raise ValueError(f"inference mode must be 'whole' or 'slide', got {mode!r}")
        if mode == "slide" and not 0 < stride <= window:
            raise ValueError(f"sliding-window stride must lie in 1..{window}, got {stride}")
        self.model, self.mode, self.window, self.stride = model, mode, window, stride
        self.seen_calibration = seen_calibration

    def _padded_forward(self, image: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        """Scores of ``[B, 3, h, w]`` padded to whole patches (with the mean colour), cut back."""
        height, width = image.shape[-2:]
        ph, pw = self.model.patch_size
        pad_h, pad_w = math.ceil(height / ph) * ph - height, math.ceil(width / pw) * pw - width
        if pad_h or pad_w:
            mean = self.model.image_encoder.pixel_mean.to(image.device)
            canvas = mean.expand(image.shape[0], 3, height + pad_h, width + pad_w).clone()
            canvas[..., :height, :width] = image
            image = canvas
        outputs = self.model(image, class_embeddings)
        scores = semantic_scores(outputs["pred_logits"], outputs["pred_masks"], image.shape[-2:])
        return scores[..., :height, :width]

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, class_embeddings: torch.Tensor, seen: torch.Tensor | None = None):
        """Scores one image.

        Args:
            image: ``[1, 3, H, W]`` 0..255.
            class_embeddings: ``[C, D]``.
            seen: ``[C]`` bool marking seen classes, used by the calibration.

        Returns:
            ``[C, H, W]`` scores; the prediction is their argmax over C.
        """
        if self.mode == "whole":
            scores = self._padded_forward(image, class_embeddings)[0]
        else:
            scores = self._slide(image, class_embeddings)
        if seen is not None and self.seen_calibration:
            scores = calibrate_seen(scores[None], seen, self.seen_calibration)[0]
        return scores

    def _slide(self, image: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        """mmseg's sliding window: a grid of windows, the last flush with the border, scores averaged."""
        height, width = image.shape[-2:]
        rows = max(height - self.window + self.stride - 1, 0) // self.stride + 1
        cols = max(width - self.window + self.stride - 1, 0) // self.stride + 1
        total = image.new_zeros((class_embeddings.shape[0], height, width), dtype=torch.float32)
        count = image.new_zeros((1, height, width), dtype=torch.float32)
        for row in range(rows):
            for col in range(cols):
                y0 = max(min(row * self.stride, height - self.window), 0)
                x0 = max(min(col * self.stride, width - self.window), 0)
                y1, x1 = min(y0 + self.window, height), min(x0 + self.window, width)
                crop = image[..., y0:y1, x0:x1]
                total[:, y0:y1, x0:x1] += self._padded_forward(crop, class_embeddings)[0]
                count[:, y0:y1, x0:x1] += 1
        return total / count
