"""Recipe switches that change what training computes: crop padding, sliver pseudo masks, prompt decay."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splitmatch.config import ConfigError
from splitmatch.config.presets import load_config, preset
from splitmatch.data.augmentation import Pad, build_train_transform
from splitmatch.matching.target_maps import dense_masks
from splitmatch.model.build import build_segmentor
from splitmatch.train.data import mean_colour
from splitmatch.train.optim import build_optimizer
from splitmatch.train.targets import build_targets


def test_crops_are_padded_with_the_colour_asked_for_which_normalises_to_zero():
    sample = {"image": np.full((20, 30, 3), 7, np.uint8), "label": np.zeros((20, 30), np.uint8)}
    out = Pad((32, 40), (123, 117, 104))(sample)
    assert np.all(out["image"][20:] == [123, 117, 104]) and np.all(out["image"][:, 30:] == [123, 117, 104])
    assert np.all(out["image"][:20, :30] == 7) and np.all(out["label"][20:] == 255)
    with pytest.raises(ValueError, match="fill"):
        Pad((32, 40), (0, 300, 0))

    model = build_segmentor(preset("tiny").clip, preset("tiny").decoder)
    fill = mean_colour(model)
    canvas = torch.tensor(fill, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert model.image_encoder.normalize(canvas).abs().max() < 0.01  # the frame is (almost) zero, as in mmseg

    transform = build_train_transform(64, (32, 24), (1.0, 1.0), 1.0, 0.0, photometric=False, pad_fill=fill)
    image = np.zeros((24, 32, 3), np.uint8)
    padded = transform({"image": image, "label": np.zeros((24, 32), np.uint8)}, np.random.default_rng(0))
    assert padded["image"].shape == (64, 64, 3) and np.all(padded["image"][24:] == fill)


def test_pseudo_masks_cut_below_the_minimum_area_by_the_crop_are_dropped():
    labels = torch.full((1, 20, 20), 255, dtype=torch.int64)
    labels[0, :10] = 0  # a seen class
    index = torch.zeros(1, 1, 20, 20, dtype=torch.uint8)
    index[0, 0, 10:, :] = 1  # 200 pixels: half the crop
    index[0, 0, 10:12, :2] = 2  # a 4-pixel sliver (1 % of the crop) carved out of it
    embeddings = [torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)]
    kept_all = build_targets(labels, [0], index, embeddings)[0]
    assert kept_all["pseudo_ids"].tolist() == [1, 2]
    kept = build_targets(labels, [0], index, embeddings, min_pseudo_area=0.02)[0]
    assert kept["pseudo_ids"].tolist() == [1] and dense_masks(kept["pseudo_index"], kept["pseudo_ids"]).sum() == 196
    assert torch.equal(kept["pseudo_embeddings"], embeddings[0][:1])  # the embedding stays with its mask
    assert build_targets(labels, [0], index, embeddings, min_pseudo_area=0.01)[0]["pseudo_ids"].tolist() == [1, 2]
    with pytest.raises(ConfigError, match="pseudo.min_crop_area"):
        load_config(preset_name="tiny", overrides=["pseudo.min_crop_area=1.5"])


@pytest.mark.parametrize("decay_prompts", [False, True])
def test_prompt_weight_decay_is_a_switch(decay_prompts):
    config = load_config(preset_name="tiny", overrides=[f"train.decay_prompts={str(decay_prompts).lower()}"])
    model = build_segmentor(config.clip, config.decoder)
    optimizer = build_optimizer(model, config.train)
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    assert decay_of[id(model.image_encoder.prompts)] == (config.train.weight_decay if decay_prompts else 0.0)
    assert decay_of[id(model.query_decoder.query_feat.weight)] == 0.0  # query embeddings never decay
    assert decay_of[id(model.query_decoder.mask_embed[0].weight)] == config.train.weight_decay
    assert len(decay_of) == sum(1 for p in model.parameters() if p.requires_grad)
