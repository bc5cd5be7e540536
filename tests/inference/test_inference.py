"""How queries score pixels: seen queries as Mask2Former, candidate queries as the config says."""

from __future__ import annotations

import pytest
import torch
from fabricate import untrained_tiny_inputs

from splitmatch.config import ConfigError, merge
from splitmatch.config.presets import load_config, preset
from splitmatch.inference.segmentation import (
    CandidateScoring,
    SegmentationInference,
    candidate_scoring,
    mask_confidence,
    query_class_probabilities,
)
from splitmatch.model.build import build_segmentor

TAU = 0.07
GROUP = torch.tensor([0, 0, 1, 1])  # two seen queries, two candidates


def outputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``pred_logits [2, 4, 3+1]`` as cosines over tau, ``pred_masks [2, 4, 5, 5]``."""
    g = torch.Generator().manual_seed(seed)
    cosines = torch.rand(2, 4, 4, generator=g) * 0.4 + 0.1
    return cosines / TAU, torch.randn(2, 4, 5, 5, generator=g) * 3


def test_seen_queries_and_unscored_candidates_follow_mask2former():
    logits, masks = outputs()
    expected = logits.softmax(-1)[..., :-1]
    assert torch.allclose(query_class_probabilities(logits, masks, GROUP, TAU, None), expected)
    for scoring in (
        CandidateScoring("classes"),
        CandidateScoring("excluded"),
        CandidateScoring("no_object", 0.01, 3.0),
    ):
        probs = query_class_probabilities(logits, masks, GROUP, TAU, scoring)
        assert torch.equal(probs[:, :2], expected[:, :2]), scoring  # seen queries never change
    same = query_class_probabilities(logits, masks, GROUP, TAU, CandidateScoring("no_object"))
    assert torch.allclose(same, expected)


def test_candidate_scoring_modes_temperature_weight_and_confidence():
    logits, masks = outputs()
    off = query_class_probabilities(logits, masks, GROUP, TAU, CandidateScoring("excluded"))
    assert torch.equal(off[:, 2:], torch.zeros_like(off[:, 2:]))

    classes = query_class_probabilities(logits, masks, GROUP, TAU, CandidateScoring("classes"))
    assert torch.allclose(classes[:, 2:].sum(-1), torch.ones(2, 2))  # no share left to no-object
    assert torch.allclose(classes[:, 2:], logits[:, 2:, :-1].softmax(-1))

    sharp = query_class_probabilities(logits, masks, GROUP, TAU, CandidateScoring("classes", temperature=0.01))
    cosines = logits * TAU
    assert torch.allclose(sharp[:, 2:], (cosines[:, 2:, :-1] * 100).softmax(-1), atol=1e-6)  # CLIP's scale
    assert (sharp[:, 2:].amax(-1) > classes[:, 2:].amax(-1)).all()  # a lower temperature sharpens

    half = query_class_probabilities(logits, masks, GROUP, TAU, CandidateScoring("classes", weight=0.5))
    assert torch.allclose(half[:, 2:], 0.5 * classes[:, 2:])

    confident = query_class_probabilities(logits, masks, GROUP, TAU, CandidateScoring("classes", mask_confidence=True))
    assert torch.allclose(confident[:, 2:], classes[:, 2:] * mask_confidence(masks)[:, 2:, None])


def test_mask_confidence_is_the_mean_probability_inside_the_mask():
    masks = torch.full((1, 3, 2, 2), -10.0)
    masks[0, 0] = torch.tensor([[2.0, 0.0], [-1.0, 4.0]])  # inside: the two logits above 0
    masks[0, 1] = 10.0
    confidence = mask_confidence(masks)
    inside = torch.tensor([2.0, 4.0]).sigmoid().mean()
    assert torch.allclose(confidence, torch.stack([inside, torch.tensor(10.0).sigmoid(), torch.tensor(0.0)])[None])


def test_config_builds_the_scoring_and_hungarian_models_score_every_query_alike():
    scoring = {
        "candidate_scoring": "no_object",
        "candidate_temperature": 0.01,
        "candidate_weight": 0.5,
        "candidate_mask_confidence": True,
    }
    config = merge(preset("tiny"), {"inference": scoring})
    assert candidate_scoring(config) == CandidateScoring("no_object", 0.01, 0.5, True)
    assert candidate_scoring(preset("tiny")).temperature is None  # 0 in the config: the model's tau
    assert candidate_scoring(merge(config, {"loss": {"matching": "hungarian"}})) is None
    with pytest.raises(ConfigError, match="inference.candidate_scoring"):
        load_config(preset_name="tiny", overrides=["inference.candidate_scoring=none"])
    with pytest.raises(ConfigError, match="inference.candidate_weight"):
        load_config(preset_name="tiny", overrides=["inference.candidate_weight=-1"])
    with pytest.raises(ValueError, match="candidate scoring mode"):
        CandidateScoring("sometimes")


def test_leaving_candidates_out_changes_only_what_they_scored():
    model, embeddings, image = untrained_tiny_inputs()
    everything = SegmentationInference(model, "whole")(image, embeddings)
    without = SegmentationInference(model, "whole", candidates=CandidateScoring("excluded"))(image, embeddings)
    zero_weight = SegmentationInference(model, "whole", candidates=CandidateScoring("classes", weight=0.0))
    assert torch.allclose(without, zero_weight(image, embeddings))
    assert (without < everything).all()  # every candidate added a positive share to every pixel


@pytest.mark.slow
def test_candidate_scoring_script_evaluates_every_variant(tiny_dataset, tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from splitmatch.model.checkpoint import save_checkpoint

    config = merge(preset("tiny"), {"data": {"root": str(tiny_dataset.root)}})
    model = build_segmentor(config.clip, config.decoder)
    classes = tiny_dataset.classes
    checkpoint = save_checkpoint(tmp_path / "model.safetensors", model, config, classes, classes.seen_names, 1)
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "candidate_scoring.py"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(script.parent.parent))
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            "--checkpoint",
            str(checkpoint),
            "--max-images",
            "2",
            "--json",
            str(tmp_path / "scores.json"),
            "--no-proxy",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert len(scores["variants"]) == 9 and scores["cosines"]["count"] >= 0
    for name, metrics in scores["variants"].items():
        assert set(metrics) == {"miou_seen", "miou_unseen", "hiou", "miou", "pixel_acc"}, name
