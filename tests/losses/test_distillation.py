"""The candidates' distillation term over seen names (loss.candidate_distillation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fabricate import fixed_batch

from splitmatch.config import merge, preset
from splitmatch.losses.mask_losses import distillation_loss
from splitmatch.model.build import build_segmentor
from splitmatch.train.step import build_criterion


def test_distillation_is_the_kl_divergence_from_the_teacher():
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=(5, 7)), rng.normal(size=(5, 7)) * 3
    p = np.exp(teacher) / np.exp(teacher).sum(1, keepdims=True)
    q = np.exp(student) / np.exp(student).sum(1, keepdims=True)
    expected = float((p * (np.log(p) - np.log(q))).sum())
    got = distillation_loss(torch.tensor(student), torch.tensor(teacher))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert distillation_loss(torch.tensor(teacher) + 2.0, torch.tensor(teacher)).item() == pytest.approx(0, abs=1e-6)


def test_the_term_adds_its_weight_to_the_loss_and_needs_the_seen_embeddings():
    config = merge(preset("tiny"), {"loss": {"deep_supervision": False}}).validate()
    model = build_segmentor(config.clip, config.decoder)
    images, targets = fixed_batch()
    embeddings = model.encode_classes(["background", "red", "green", "blue"])
    outputs = model(images, embeddings)
    without = build_criterion(config.loss)
    weighted = build_criterion(merge(config, {"loss": {"candidate_distillation": 2.0}}).loss)
    torch.manual_seed(1)
    base = without(outputs, targets, class_embeddings=embeddings)
    torch.manual_seed(1)  # the same sampled points
    terms = weighted(outputs, targets, class_embeddings=embeddings)
    assert "cand_distill" not in base and terms["cand_distill"] > 0
    extra = 2.0 * config.loss.candidate_weight * terms["cand_distill"]
    assert terms["loss"].item() == pytest.approx((base["loss"] + extra).item(), rel=1e-5)
    terms["loss"].backward()  # it trains the candidates' class scores
    with pytest.raises(ValueError, match="class embeddings"):
        weighted(outputs, targets)
