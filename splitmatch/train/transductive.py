"""Transductive self-training: the model's own predictions label pixels of a batch.

The transductive protocol of ZegCLIP, OTSeg+ and SPT-SEG knows the unseen classes' **names**
in training. ZegCLIP's recipe (``models/segmentor/zegclip.py``, ``_visiable_mask_st``;
``models/decode_heads/decode_seg.py``, ``forward_train`` with ``self_training``; configs
``*_st.py``): train inductively, then load that checkpoint into a fresh run that gives the model
every class's name and labels each **unseen-class** pixel of a training batch with the argmax of
the model's own prediction over the unseen classes only, no threshold. Its training labels mark
the pixels of unseen classes -1, apart from void ones (255: VOC's background and borders, which
its VOC makes void, COCO's unlabelled pixels, padding), and only the -1 pixels are labelled: the
protocol knows where unseen objects are, not which class they are.

Here, with ``train.transductive`` (``train.transductive_start``, ``_pixels``, ``_schedule``,
``_threshold``):

* Inductively up to step ``floor(start * iterations)``; from the next step on, every step first
  runs the model without gradients on its batch with every class's name, then labels pixels.
* **Which pixels** (``train.transductive_pixels``). ``unseen`` (ZegCLIP's): the pixels of unseen
  classes, which the dataset marks apart from void ones all the way through the augmentation
  (``unseen_mask``, :class:`~splitmatch.data.dataset.SegmentationDataset`). ``ignored``: every
  ignored pixel, void ones included (VOC's background and borders, COCO's crowd regions), which
  uses nothing of where the unseen pixels are. Never a pixel of padding, which the batch tells
  apart (``source_rows`` / ``source_cols``, -1 for padding).
* **Which label.** Each query's class probabilities (as inference scores them, candidate
  queries as ``inference.candidate_*`` says) times its mask probability, summed over queries,
  on the mask grid; the argmax over the unseen classes, upsampled to the crop. With a
  threshold, a pixel is labelled only where that class holds at least that share of the sum
  over every class; 0 labels every pixel the rule names (ZegCLIP).
* **Schedule** (``train.transductive_schedule``). ``restart`` (ZegCLIP's): at the first
  self-training step AdamW's moments are dropped and the warm-up and poly schedule start again
  over the remaining iterations (:class:`splitmatch.train.optim.PolyWarmupSchedule`); ``continue``:
  one schedule throughout.
* The pseudo masks of Split Matching stay those of the unannotated region as the dataset
  gave them, so the candidate queries keep their targets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from splitmatch.config import ConfigError, TrainConfig
from splitmatch.data.classes import ClassSplit
from splitmatch.inference.segmentation import CandidateScoring, query_class_probabilities


def first_self_training_step(train: TrainConfig) -> int | None:
    """The first step (1-based) that self-trains, or ``None`` for an inductive run."""
    if not train.transductive:
        return None
    return math.floor(train.transductive_start * train.iterations) + 1


def marks_unseen(train: TrainConfig) -> bool:
    """Whether self-training labels the unseen-class pixels only (ZegCLIP's rule), so the data marks them."""
    return train.transductive and train.transductive_pixels == "unseen"


def schedule_restart(train: TrainConfig) -> int | None:
    """The steps done when the schedule starts again (``transductive_schedule: restart``), or ``None``."""
    first = first_self_training_step(train)
    return first - 1 if first is not None and train.transductive_schedule == "restart" else None


def check_transductive(train: TrainConfig, classes: ClassSplit) -> None:
    """Refuses a transductive run with no unseen class to name (one line)."""
    if train.transductive and not classes.unseen:
        raise ConfigError(
            f"train.transductive needs unseen classes to self-train on; '{classes.dataset}' has none here "
            "(data.unseen, or classes.json)"
        )


def padding_mask(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``[B, H, W]`` bool, True for padding, from ``source_rows [B, H]`` and ``source_cols [B, W]`` (-1: padding)."""
    return (rows < 0).unsqueeze(2) | (cols < 0).unsqueeze(1)


@torch.no_grad()
def unseen_predictions(
    outputs: dict,
    unseen_ids: Sequence[int],
    size: tuple[int, int],
    temperature: float,
    candidates: CandidateScoring | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The best unseen class of every pixel and its share of the pixel's class scores.

    Args:
        outputs: the segmentor's outputs with every class's embedding, in dataset order:
            ``pred_logits [B, Q, C+1]``, ``pred_masks [B, Q, h, w]``, ``query_group [Q]``.
        unseen_ids: the unseen classes' dataset ids.
        size: ``(H, W)`` of the crop.
        temperature: the decoder's tau.
        candidates: how candidate queries score (``None``: as seen queries).

    Returns:
        ``ids [B, H, W]`` int64 dataset ids and ``share [B, H, W]`` float32 in ``[0, 1]``.
    """
    masks = outputs["pred_masks"].float()
    probs = query_class_probabilities(outputs["pred_logits"], masks, outputs["query_group"], temperature, candidates)
    mask_probs = masks.sigmoid()  # [B, Q, h, w]
    unseen = torch.as_tensor(list(unseen_ids), device=probs.device)
    # Scores on the mask grid, then upsampled: the crop-sized mask stack [B, Q, H, W] is never made.
    scores = torch.einsum("bqc,bqhw->bchw", probs[..., unseen], mask_probs)  # [B, U, h, w]
    total = torch.einsum("bq,bqhw->bhw", probs.sum(-1), mask_probs).unsqueeze(1)  # [B, 1, h, w]
    scores = F.interpolate(scores, size=size, mode="bilinear", align_corners=False)
    total = F.interpolate(total, size=size, mode="bilinear", align_corners=False)[:, 0]
    best, position = scores.max(1)
    share = (best / total.clamp(min=1e-12)).clamp(0, 1)
    return unseen[position], share


def self_training_labels(
    labels: torch.Tensor,
    padding: torch.Tensor,
    ids: torch.Tensor,
    share: torch.Tensor,
    ignore_index: int,
    threshold: float = 0.0,
    unseen: torch.Tensor | None = None,
) -> torch.Tensor:
    """``labels`` with the pixels self-training labels set to ``ids`` (where ``share >= threshold``).

    Args:
        labels: ``[B, H, W]`` uint8 / uint16 training labels (unseen pixels already ignore).
        padding: ``[B, H, W]`` bool, True where the crop was padded.
        ids, share: :func:`unseen_predictions`.
        unseen: ``[B, H, W]`` bool, True on the pixels of unseen classes (``transductive_pixels:
            unseen``, ZegCLIP's): only those are labelled; ``None`` labels every ignored pixel.

    Returns:
        a new ``[B, H, W]`` tensor of ``labels``' dtype and device.
    """
    wanted = (labels == ignore_index) & ~padding.to(labels.device)
    if unseen is not None:
        wanted &= unseen.to(labels.device)
    if threshold > 0:
        wanted &= share.to(labels.device) >= threshold
    return torch.where(wanted, ids.to(labels.device, labels.dtype), labels)
