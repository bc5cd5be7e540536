"""Every preset builds, runs forward and backward at random init; the loss falls on a fixed batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fabricate import fixed_batch

from splitmatch.config import merge
from splitmatch.config.presets import load_config, preset
from splitmatch.model.build import build_segmentor
from splitmatch.model.mfe import MultiScaleFeatureEnhancement
from splitmatch.train.step import build_criterion

CONFIG_FILES = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_mfe_is_residual_and_keeps_shape():
    mfe = MultiScaleFeatureEnhancement(32, [1, 2, 4])
    features = torch.randn(2, 32, 7, 9)
    out = mfe(features)
    assert out.shape == features.shape
    for branch in mfe.branches:
        torch.nn.init.zeros_(branch[0].weight)
    assert torch.allclose(mfe(features), features + sum(torch.nn.functional.gelu(torch.zeros(1)) for _ in range(3)))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"decoder": {"mfe": False}},
        {"decoder": {"masked_attention": False}},
        {"decoder": {"fuse_intermediate": False, "mask_upsample": 2}},
    ],
)
def test_tiny_variants_forward_and_backward(overrides):
    config = merge(preset("tiny"), overrides).validate()
    model = build_segmentor(config.clip, config.decoder)
    images, targets = fixed_batch()
    embeddings = model.encode_classes(["background", "red", "green", "blue"])
    outputs = model(images, embeddings)
    queries = config.decoder.num_seen_queries + config.decoder.num_candidate_queries
    grid = 64 // 8 * config.decoder.mask_upsample
    assert outputs["pred_logits"].shape == (2, queries, 5)
    assert outputs["pred_masks"].shape == (2, queries, grid, grid)
    assert outputs["pred_embeds"].shape == (2, queries, 32)
    assert outputs["query_group"].tolist() == [0] * 6 + [1] * 4
    assert len(outputs["aux_outputs"]) == config.decoder.num_layers
    losses = build_criterion(config.loss)(outputs, targets)
    losses["loss"].backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in trainable)
    clip_params = list(model.image_encoder.visual.parameters()) + list(model.text_encoder.parameters())
    assert all(not p.requires_grad and p.grad is None for p in clip_params)


@pytest.mark.parametrize("name", ["voc-vitb16", "coco-stuff-vitb16", "context-vitb16"])
def test_benchmark_presets_are_valid_configs(name):
    config = preset(name).validate()
    assert config.clip.arch == "ViT-B-16-quickgelu"
    assert config.decoder.num_seen_queries == 100 and config.decoder.num_candidate_queries == 20
    assert config.train.lr == 2e-5 and config.train.batch_size == 16


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("matching", ["split", "hungarian"])
def test_shipped_config_files_resolve(path, matching):
    config = load_config(str(path), None, [f"loss.matching={matching}"])
    assert config.loss.matching == matching
    assert config.data.root and config.clip.weights  # each file says where its data and weights live


def test_config_files_exist():
    assert {p.stem for p in CONFIG_FILES} >= {"voc", "coco-stuff", "context", "world"}


@pytest.mark.parametrize("matching", ["split", "hungarian"])
def test_loss_falls_on_a_fixed_batch(matching):
    torch.manual_seed(0)
    config = merge(preset("tiny"), {"loss": {"matching": matching}}).validate()
    model = build_segmentor(config.clip, config.decoder)
    criterion = build_criterion(config.loss)
    images, targets = fixed_batch()
    embeddings = model.encode_classes(["background", "red", "green", "blue"])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    history = []
    for _ in range(40):
        losses = criterion(model(images, embeddings), targets)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append(losses["loss"].item())
    assert ("cand_align" in losses) == (matching == "split")
    assert sum(history[-5:]) / 5 < 0.6 * sum(history[:5]) / 5


def test_hungarian_pushes_unmatched_candidates_to_no_object_but_split_does_not():
    """The failure Split Matching removes: a query on an unseen object is taught 'no object'."""
    torch.manual_seed(0)
    images, targets = fixed_batch()
    results = {}
    for matching in ("hungarian", "split"):
        config = merge(preset("tiny"), {"loss": {"matching": matching}}).validate()
        criterion = build_criterion(config.loss)
        model = build_segmentor(config.clip, config.decoder)
        embeddings = model.encode_classes(["background", "red", "green", "blue"])
        outputs = model(images, embeddings)
        matching_result = criterion.matcher(outputs, targets)
        results[matching] = matching_result.class_queries.tolist()
    assert results["hungarian"] == list(range(10))  # every query, candidates included, gets CE
    assert results["split"] == list(range(6))  # candidates never get a seen-class CE
