"""Semantic segmentation from query outputs, for any vocabulary, whole-image or sliding-window."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from splitmatch.config import ExperimentConfig
from splitmatch.device import mixed_precision
from splitmatch.inference.pamr import pamr
from splitmatch.model.query_decoder import CANDIDATE_GROUP
from splitmatch.model.segmentor import SplitMatchSegmentor
from splitmatch.model.training_free import TrainingFreeSegmentor


@dataclass(frozen=True)
class CandidateScoring:
    """How the candidate queries of a Split Matching model score pixels.

    Candidates are trained on masks and region embeddings only: no class loss, no no-object
    loss. Their no-object logit is therefore untrained, and an unmatched candidate was never
    taught to switch off.

    Attributes:
        mode: ``"classes"`` (softmax over the classes alone), ``"no_object"`` (softmax over the
            classes and no-object, no-object dropped: as seen queries) or ``"excluded"`` (left out).
        temperature: tau of the candidates' softmax; ``None`` keeps the model's.
        weight: factor on each candidate's class probabilities.
        mask_confidence: also weight each candidate by :func:`mask_confidence`.
    """

    mode: str = "classes"
    temperature: float | None = None
    weight: float = 1.0
    mask_confidence: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("classes", "no_object", "excluded"):
            raise ValueError(f"candidate scoring mode must be 'classes', 'no_object' or 'excluded', got {self.mode!r}")
        if (self.temperature is not None and self.temperature <= 0) or self.weight < 0:
            raise ValueError(f"candidate temperature must be > 0, weight >= 0; got {self.temperature}, {self.weight}")


def candidate_scoring(config: ExperimentConfig) -> CandidateScoring | None:
    """The candidate scoring ``config.inference`` asks for; ``None`` (all queries scored alike) for a
    Hungarian model, whose candidate queries are trained as seen queries are."""
    if config.loss.matching != "split":
        return None
    inference = config.inference
    return CandidateScoring(
        inference.candidate_scoring,
        inference.candidate_temperature or None,
        inference.candidate_weight,
        inference.candidate_mask_confidence,
    )


def mask_confidence(pred_masks: torch.Tensor) -> torch.Tensor:
    """Mean foreground probability inside each predicted mask (Mask2Former's mask score).

    Args:
        pred_masks: ``[B, Q, h, w]`` logits.

    Returns:
        ``[B, Q]`` in ``[0, 1]``; 0 for an empty mask.
    """
    probs = pred_masks.float().sigmoid().flatten(2)  # [B, Q, h*w]
    inside = (probs > 0.5).float()
    return (probs * inside).sum(-1) / inside.sum(-1).clamp(min=1.0)


def query_class_probabilities(
    pred_logits: torch.Tensor,
    pred_masks: torch.Tensor,
    query_group: torch.Tensor,
    model_temperature: float,
    candidates: CandidateScoring | None = None,
) -> torch.Tensor:
    """``p_i(c)``, each query's weight on each class in the semantic map.

    Seen queries (and every query when ``candidates`` is ``None``): softmax over the classes
    and no-object, no-object then dropped (Mask2Former), so a query that is confidently
    "nothing" contributes nothing. Candidate queries: as ``candidates`` says.

    Args:
        pred_logits: ``[B, Q, C+1]``, ``cos / model_temperature``.
        pred_masks: ``[B, Q, h, w]`` logits (for the mask confidence).
        query_group: ``[Q]``, 0 seen, 1 candidate.
        model_temperature: the decoder's tau.

    Returns:
        ``[B, Q, C]``.
    """
    logits = pred_logits.float()
    probs = logits.softmax(-1)[..., :-1]  # [B, Q, C]
    if candidates is None:
        return probs
    # No shortcut for a model without candidates: torch.where below then keeps ``probs`` as they
    # are, and a branch on the tensor's values could not be traced (ONNX export).
    is_candidate = (query_group == CANDIDATE_GROUP).to(logits.device)
    if candidates.mode == "excluded":
        return probs * (~is_candidate).view(1, -1, 1)
    scale = model_temperature / candidates.temperature if candidates.temperature else 1.0
    if candidates.mode == "classes":
        candidate_probs = (logits[..., :-1] * scale).softmax(-1)
    else:
        candidate_probs = (logits * scale).softmax(-1)[..., :-1]
    candidate_probs = candidate_probs * candidates.weight
    if candidates.mask_confidence:
        candidate_probs = candidate_probs * mask_confidence(pred_masks).unsqueeze(-1)
    return torch.where(is_candidate.view(1, -1, 1), candidate_probs, probs)


def semantic_scores(class_probs: torch.Tensor, pred_masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``S[c, x] = sum_i p_i(c) * sigmoid(m_i(x))``.

    Args:
        class_probs: ``[B, Q, C]`` from :func:`query_class_probabilities`.
        pred_masks: ``[B, Q, h, w]`` logits.
        size: ``(H, W)`` output size; masks are upsampled bilinearly.

    Returns:
        ``[B, C, H, W]``.
    """
    masks = F.interpolate(pred_masks.float(), size=size, mode="bilinear", align_corners=False).sigmoid_()
    return torch.einsum("bqc,bqhw->bchw", class_probs.float(), masks)


CALIBRATION_FORMS = ("normalised", "zegclip")


def calibrate_seen(scores: torch.Tensor, seen: torch.Tensor, amount: float, form: str = "normalised") -> torch.Tensor:
    """Seen-class calibration: ``amount`` taken off the seen classes' scores.

    ``form`` (``inference.seen_calibration_form``):

    * ``"normalised"`` (this project's, the presets'): the scores are first normalised per pixel
      to sum to 1, so ``amount`` is a share of the pixel's total whatever the class count;
    * ``"zegclip"``: taken off the per-class scores as they are, ``S[c, x] = sum_i p_i(c)
      sigmoid(m_i(x))``, as ZegCLIP takes it off its per-class mask probabilities before any
      normalisation (``semantic_inference`` in its decode head). The two differ more the more
      classes there are: normalised shares shrink with the class count, raw scores do not.

    Args:
        scores: ``[B, C, H, W]`` non-negative.
        seen: ``[C]`` bool, True for seen classes.
    """
    if form not in CALIBRATION_FORMS:
        raise ValueError(f"seen calibration form must be one of {CALIBRATION_FORMS}, got {form!r}")
    if amount == 0:
        return scores
    if form == "normalised":
        scores = scores / scores.sum(1, keepdim=True).clamp(min=1e-6)
    return scores - amount * seen.to(scores.device, scores.dtype).view(1, -1, 1, 1)


class SegmentationInference:
    """Turns a model and class embeddings into per-pixel class scores for one image.

    Args:
        model: the segmentor: a trained one, or a training-free :class:`TrainingFreeSegmentor`.
        mode: ``"whole"`` or ``"slide"`` (windows of ``window`` pixels every ``stride``).
        seen_calibration: amount subtracted from seen-class scores (0 disables).
        calibration_form: how it is subtracted (:func:`calibrate_seen`).
        candidates: how candidate queries score (:func:`candidate_scoring`); ``None`` scores every
            query as a seen query.
        amp: ``"none"``, ``"bf16"`` or ``"fp16"``: autocast of the model on CUDA; the scores are
            computed in float32 from its outputs either way.
    """

    def __init__(
        self,
        model: SplitMatchSegmentor | TrainingFreeSegmentor,
        mode: str = "whole",
        window: int = 512,
        stride: int = 426,
        seen_calibration: float = 0.0,
        candidates: CandidateScoring | None = None,
        amp: str = "none",
        calibration_form: str = "normalised",
    ) -> None:
        if mode not in ("whole", "slide"):
            raise ValueError(f"inference mode must be 'whole' or 'slide', got {mode!r}")
        if mode == "slide" and not 0 < stride <= window:
            raise ValueError(f"sliding-window stride must lie in 1..{window}, got {stride}")
        self.model, self.mode, self.window, self.stride = model, mode, window, stride
        self.seen_calibration = seen_calibration
        self.calibration_form = calibration_form
        self.candidates = candidates
        self.amp = amp

    def _padded_forward(self, image: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        """Scores of ``[B, 3, h, w]`` padded to whole patches (with the mean colour), cut back."""
        height, width = image.shape[-2:]
        padded = pad_to(image, patch_multiple(image.shape[-2:], self.model.patch_size), self.pixel_mean(image.device))
        return self.padded_scores(padded, class_embeddings)[..., :height, :width]

    def pixel_mean(self, device: torch.device) -> torch.Tensor:
        """``[1, 3, 1, 1]`` the model's mean colour in 0..255: what images are padded with."""
        return self.model.image_encoder.pixel_mean.to(device)

    def padded_scores(self, images: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        """Scores of ``[B, 3, H, W]`` images whose sides are whole patches: ``[B, C, H, W]``.

        A trained segmentor's: :func:`semantic_scores` of its queries. A training-free model's: its
        per-patch logits ``s * cos``, upsampled bilinearly as masks are; :meth:`finish` turns them
        into probabilities once windows are averaged (as the recipes' authors average logits).
        """
        if isinstance(self.model, TrainingFreeSegmentor):
            with mixed_precision(images.device, self.amp):
                logits = self.model.logits(images, class_embeddings)  # [B, C, H/p, W/p]
            return F.interpolate(logits.float(), size=images.shape[-2:], mode="bilinear", align_corners=False)
        with mixed_precision(images.device, self.amp):
            outputs = self.model(images, class_embeddings)
        probs = query_class_probabilities(
            outputs["pred_logits"],
            outputs["pred_masks"],
            outputs["query_group"],
            self.model.query_decoder.temperature,
            self.candidates,
        )
        return semantic_scores(probs, outputs["pred_masks"], images.shape[-2:])

    @property
    def refines_at_image_size(self) -> bool:
        """Whether :meth:`finish` wants the image's own size (PAMR runs there, as its users run it)."""
        return isinstance(self.model, TrainingFreeSegmentor) and self.model.pamr_steps > 0

    def finish(
        self, scores: torch.Tensor, images: torch.Tensor, output_size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Averaged window scores -> the scores a label is the argmax of.

        A trained segmentor's are final as they are. A training-free model's logits get its PAMR
        (when it has steps; at ``output_size``, the scores and the image resized there bilinearly
        as the recipes' authors do, the image normalised as CLIP sees it), then the softmax.

        Args:
            scores: ``[B, C, h, w]``.
            images: ``[B, 3, h, w]`` 0..255, the images the scores belong to.
            output_size: where PAMR runs (default: ``(h, w)``).

        Returns:
            ``[B, C, h, w]``, or ``[B, C, *output_size]`` after PAMR.
        """
        if not isinstance(self.model, TrainingFreeSegmentor):
            return scores
        if self.model.pamr_steps:
            size = tuple(output_size or scores.shape[-2:])
            if size != tuple(scores.shape[-2:]):
                scores = F.interpolate(scores, size=size, mode="bilinear", align_corners=False)
            normalised = self.model.image_encoder.normalize(images)
            if size != tuple(images.shape[-2:]):
                normalised = F.interpolate(normalised, size=size, mode="bilinear", align_corners=False)
            scores = pamr(normalised, scores, self.model.pamr_steps, self.model.pamr_dilations)
        return scores.softmax(dim=1)

    @torch.no_grad()
    def __call__(
        self,
        image: torch.Tensor,
        class_embeddings: torch.Tensor,
        seen: torch.Tensor | None = None,
        output_size: tuple[int, int] | None = None,
    ):
        """Scores one image.

        Args:
            image: ``[1, 3, H, W]`` 0..255.
            class_embeddings: ``[C, D]``.
            seen: ``[C]`` bool marking seen classes, used by the calibration.
            output_size: where a training-free model's PAMR runs (:meth:`finish`).

        Returns:
            ``[C, H, W]`` scores (``[C, *output_size]`` after PAMR); the prediction is their argmax over C.
        """
        if self.mode == "whole":
            scores = self._padded_forward(image, class_embeddings)
        else:
            scores = self._slide(image, class_embeddings)[None]
        scores = self.finish(scores, image, output_size)
        if seen is not None and self.seen_calibration:
            scores = calibrate_seen(scores, seen, self.seen_calibration, self.calibration_form)
        return scores[0]

    def window_scores(
        self, images: torch.Tensor, class_embeddings: torch.Tensor, seen: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scores a batch, each image as one window: what ``"whole"`` mode computes, image by image.

        Args:
            images: ``[B, 3, H, W]`` 0..255.
            class_embeddings: ``[C, D]``.
            seen: ``[C]`` bool marking seen classes, used by the calibration.

        Returns:
            ``[B, C, H, W]`` scores.
        """
        scores = self.finish(self._padded_forward(images, class_embeddings), images)
        if seen is not None and self.seen_calibration:
            scores = calibrate_seen(scores, seen, self.seen_calibration, self.calibration_form)
        return scores

    def _slide(self, image: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        """mmseg's sliding window: a grid of windows, the last flush with the border, scores averaged."""
        height, width = image.shape[-2:]
        total = image.new_zeros((class_embeddings.shape[0], height, width), dtype=torch.float32)
        count = image.new_zeros((1, height, width), dtype=torch.float32)
        for y0, y1, x0, x1 in window_boxes(height, width, self.window, self.stride):
            crop = image[..., y0:y1, x0:x1]
            total[:, y0:y1, x0:x1] += self._padded_forward(crop, class_embeddings)[0]
            count[:, y0:y1, x0:x1] += 1
        return total / count


def window_boxes(height: int, width: int, window: int, stride: int) -> list[tuple[int, int, int, int]]:
    """The sliding windows of an image, row by row: ``(y0, y1, x0, x1)``, the last of a row or column
    flush with the border; one window (the image) when it is smaller than ``window``."""
    rows = max(height - window + stride - 1, 0) // stride + 1
    cols = max(width - window + stride - 1, 0) // stride + 1
    boxes = []
    for row in range(rows):
        for col in range(cols):
            y0 = max(min(row * stride, height - window), 0)
            x0 = max(min(col * stride, width - window), 0)
            boxes.append((y0, min(y0 + window, height), x0, min(x0 + window, width)))
    return boxes


def patch_multiple(size: tuple[int, int], patch_size: tuple[int, int]) -> tuple[int, int]:
    """``(h, w)`` rounded up to whole patches."""
    return math.ceil(size[0] / patch_size[0]) * patch_size[0], math.ceil(size[1] / patch_size[1]) * patch_size[1]


def pad_to(images: torch.Tensor, size: tuple[int, int], fill: torch.Tensor) -> torch.Tensor:
    """``[B, 3, h, w]`` on a canvas ``[B, 3, *size]`` of the colour ``fill [1, 3, 1, 1]``, top left;
    ``images`` themselves when they already have that size."""
    height, width = images.shape[-2:]
    if (height, width) == tuple(size):
        return images
    canvas = fill.expand(images.shape[0], 3, *size).clone()
    canvas[..., :height, :width] = images
    return canvas
