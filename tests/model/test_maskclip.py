"""The training-free MaskCLIP model (and the value-path reading it used to name): its read-out, its
presets, and what it scores in the world."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from splitmatch.clip.attention import value_path
from splitmatch.clip.loading import packaged_weights, read_clip_state_dict
from splitmatch.config import ConfigError
from splitmatch.config.maskclip import FrozenClipConfig, maskclip_config, maskclip_vitb16
from splitmatch.evaluation.metrics import ConfusionMatrix, summarize
from splitmatch.inference.images import predict_scores
from splitmatch.model.maskclip import MaskClipSegmentor, build_maskclip
from splitmatch.predict.predictor import Predictor
from splitmatch.world.generator import DEFAULT_SPEC, image_rng, render_image, world_class_split

WORLD = world_class_split()
WORLD_NAMES = list(WORLD.names)


@pytest.fixture(scope="module")
def world_val():
    """The first 48 validation images of the default world, as `splitmatch world` writes them."""
    return [render_image(image_rng(0, "val", index), DEFAULT_SPEC) for index in range(48)]


@pytest.fixture(scope="module")
def world_maskclip() -> Predictor:
    return Predictor.maskclip("maskclip-world", device="cpu")


def test_the_value_path_is_the_last_block_with_each_token_attending_only_to_itself(world_maskclip):
    block = world_maskclip.model.image_encoder.visual.transformer.resblocks[-1]
    tokens = torch.randn(2, 17, block.attn.embed_dim)
    normed = block.ln_1(tokens)
    alone = ~torch.eye(17, dtype=torch.bool)  # True: may not attend
    attended = block.attn(normed, normed, normed, attn_mask=alone, need_weights=False)[0]
    torch.testing.assert_close(value_path(block, tokens), block.ls_1(attended), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "preset, features",
    [("maskclip-world", {"dense_recipe": "maskclip"}), ("value-path-world", {"value_features": True})],
)
def test_scores_are_clips_softmax_over_the_names_per_patch(preset, features):
    model = Predictor.training_free(preset, device="cpu").model
    stored = read_clip_state_dict(packaged_weights("packaged:world-clip"))["logit_scale"].float().exp()
    assert model.logit_scale == pytest.approx(min(float(stored), 100.0))
    image = torch.randint(0, 256, (1, 3, 96, 128))
    texts = model.encode_classes(WORLD_NAMES)
    probabilities = model(image, texts)  # [1, C, 12, 16]
    assert probabilities.shape == (1, len(WORLD_NAMES), 12, 16)
    torch.testing.assert_close(probabilities.sum(1), torch.ones(1, 12, 16))
    out = model.image_encoder(image, use_prompts=False, **features)
    dense = out["dense_recipe" if "dense_recipe" in features else "dense_values"]
    cosines = torch.einsum("dhw,cd->chw", F.normalize(dense[0], dim=0), texts)
    assert torch.equal(probabilities[0].argmax(0), cosines.argmax(0))  # the nearest name wins each patch


def test_its_logit_scale_is_clips_own():
    clip_cfg = FrozenClipConfig(arch="tiny-test", weights=None, templates="single")
    model = build_maskclip(clip_cfg)
    assert model.logit_scale == pytest.approx(1 / 0.07, rel=1e-5)  # open_clip's initial exp(logit_scale)
    with pytest.raises(ValueError, match="no prompts"):
        from splitmatch.clip.image_encoder import ClipImageEncoder

        MaskClipSegmentor(ClipImageEncoder(model.image_encoder.visual, prompt_tokens=2, prompt_layers=1), None, 1.0)


def test_in_the_world_it_segments_without_training_but_below_the_trained_model(world_val, world_maskclip):
    """The training-free baseline row beside the packaged model, on 48 validation images."""
    trained = Predictor.packaged(device="cpu")
    results = {}
    for name, predictor in (("maskclip", world_maskclip), ("trained", trained)):
        confusion = ConfusionMatrix(WORLD.num_classes, WORLD.ignore_index)
        for labels, (_, truth) in zip(predictor.predict([image for image, _ in world_val], WORLD_NAMES), world_val):
            confusion.update(labels, truth)
        results[name] = summarize(confusion.matrix, WORLD)
    print(
        json.dumps(
            {name: {k: round(m[k], 1) for k in ("miou_seen", "miou_unseen", "hiou")} for name, m in results.items()}
        )
    )
    maskclip, packaged = results["maskclip"], results["trained"]
    # Chance for 13 classes is a few IoU points; the world's CLIP reads its value path well above it,
    # for the classes the packaged model never saw as much as for the others.
    assert maskclip["miou_seen"] > 10 and maskclip["miou_unseen"] > 10
    assert packaged["hiou"] > maskclip["hiou"] + 20  # what training on the seen classes adds


@pytest.mark.slow
def test_random_vitb16_at_real_shapes_gives_labels_at_the_image_size():
    """ViT-B/16 as the photo preset builds it (random weights: nothing to download), 512 windows."""
    torch.manual_seed(0)
    config = maskclip_config("maskclip", ["clip.templates=single"])
    assert config.inference.mode == "slide" and config.inference.window == 512 and config.inference.short_side == 512
    random_clip = dataclasses.replace(config.clip, weights=None)  # the config refuses null; the builder takes it
    predictor = Predictor(build_maskclip(random_clip), config.inference)
    image = np.random.default_rng(0).integers(0, 256, (300, 420, 3), dtype=np.uint8)  # -> 512 x 717, two windows
    names = ["background", "cat", "sofa"]
    scores = predict_scores(
        predictor.inference, image, predictor.model.encode_classes(names), None, predictor.config, predictor.device
    )
    assert scores.shape == (3, 512, 717)
    torch.testing.assert_close(scores.sum(0), torch.ones(512, 717))  # the windows' mean of probabilities
    labels = predictor.predict(image, names)
    assert labels.shape == (300, 420) and labels.dtype == np.uint8 and labels.max() < 3
    assert np.array_equal(predictor.predict([image], names)[0], labels)


def test_presets_and_their_overrides():
    photo = maskclip_vitb16()
    assert (photo.clip.arch, photo.clip.weights, photo.clip.templates) == ("ViT-B-16-quickgelu", "openai", "maskclip")
    assert photo.recipe.name == "maskclip" and maskclip_config("maskclip").recipe.name == "maskclip"
    world = maskclip_config("maskclip-world", ["inference.mode=slide", "clip.templates=ensemble"])
    assert world.inference.mode == "slide" and world.clip.templates == "ensemble"
    assert world.clip.weights == "packaged:world-clip"
    with pytest.raises(ConfigError, match="unknown training-free model 'maskclip-vitl14'"):
        maskclip_config("maskclip-vitl14")
    with pytest.raises(ConfigError, match="takes clip.\\*, recipe.\\* and inference.\\* keys"):
        maskclip_config("maskclip", ["decoder.hidden_dim=64"])
    with pytest.raises(ConfigError, match="unknown config key 'clip.prompt_tokens'"):
        maskclip_config("maskclip", ["clip.prompt_tokens=4"])
    with pytest.raises(ConfigError, match="clip.weights of a training-free model must name weights"):
        maskclip_config("maskclip-world", ["clip.weights=null"])  # never random weights nobody chose
    with pytest.raises(ConfigError, match="inference.window must be a multiple of the CLIP patch size 8"):
        maskclip_config("maskclip-world", ["inference.window=100"])
    with pytest.raises(ConfigError, match="clip.templates must be one of"):
        maskclip_config("maskclip", ["clip.templates=many"])
