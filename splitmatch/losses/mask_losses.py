"""Mask loss terms as plain tensor functions (summed over masks; the caller normalises)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sigmoid_bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``logits, targets: [N, P]`` -> scalar: per-mask mean BCE over points, summed over masks."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1).sum()


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``logits, targets: [N, P]`` -> scalar: ``1 - dice`` (smoothed by 1), summed over masks."""
    probs = logits.sigmoid()
    numerator = 2 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum()


def alignment_loss(embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``embeddings, targets: [N, D]`` -> scalar: ``sum_i 1 - cos(z_i, e_i)``."""
    return (1 - F.cosine_similarity(embeddings, targets, dim=-1)).sum()


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """``student_logits, teacher_logits: [N, C]`` -> scalar: ``sum_i KL(softmax(teacher_i) || softmax(student_i))``.

    The teacher's distribution is a target (no gradient flows into it).
    """
    teacher = teacher_logits.detach().float().log_softmax(-1)
    student = student_logits.float().log_softmax(-1)
    return (teacher.exp() * (teacher - student)).sum()
