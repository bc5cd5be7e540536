"""Every training-free recipe through Predictor by name, the windows' logits averaged before the
softmax, and a whole-image pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splitmatch.config.training_free import RECIPE_NAMES
from splitmatch.inference.images import predict_scores
from splitmatch.inference.segmentation import window_boxes
from splitmatch.predict.predictor import Predictor
from splitmatch.world.generator import DEFAULT_SPEC, image_rng, render_image, world_class_split

NAMES = list(world_class_split().names)


@pytest.fixture(scope="module")
def world_image():
    return render_image(image_rng(0, "val", 5), DEFAULT_SPEC)[0]


@pytest.mark.parametrize("recipe", RECIPE_NAMES)
def test_each_recipe_labels_a_world_image_by_name(recipe, world_image):
    predictor = Predictor.training_free(f"{recipe}-world", device="cpu")
    assert predictor.name == f"{recipe}-world" and predictor.recipe.name == recipe == predictor.model.recipe
    labels = predictor.predict(world_image, NAMES)
    assert labels.shape == world_image.shape[:2] and labels.dtype == np.uint8 and labels.max() < len(NAMES)
    features = predictor.features(world_image, NAMES)  # the recipe's own features, unit length per patch
    grid = tuple(side // 8 for side in features["padded_size"])
    assert features["clip_features"].shape == (128, *grid)
    torch.testing.assert_close(features["clip_features"].norm(dim=0), torch.ones(grid))
    assert features["class_probabilities"].shape == (len(NAMES), *grid)


def test_the_old_name_still_builds_and_means_maskclip():
    assert Predictor.maskclip("maskclip-world", device="cpu").recipe.name == "maskclip"
    assert Predictor.maskclip("sclip-world", device="cpu").recipe.name == "sclip"


def test_slide_mode_averages_window_logits_then_takes_the_softmax(world_image):
    predictor = Predictor.training_free("sclip-world", device="cpu", mode="slide", window=48, stride=32)
    texts = predictor.model.encode_classes(NAMES)
    scores = predict_scores(predictor.inference, world_image, texts, None, predictor.config, predictor.device)
    resized = torch.nn.functional.interpolate(
        torch.from_numpy(world_image).permute(2, 0, 1)[None].float(),
        size=scores.shape[-2:],
        mode="bilinear",
        align_corners=False,
    ).clamp(0, 255)
    total = torch.zeros_like(scores)
    count = torch.zeros(scores.shape[-2:])
    for y0, y1, x0, x1 in window_boxes(*scores.shape[-2:], 48, 32):
        total[:, y0:y1, x0:x1] += predictor.inference.padded_scores(resized[..., y0:y1, x0:x1], texts)[0]
        count[y0:y1, x0:x1] += 1
    torch.testing.assert_close(scores, (total / count).softmax(0))
    assert len(window_boxes(*scores.shape[-2:], 48, 32)) > 1


def test_whole_mode_runs_an_s_by_s_image_as_one_pass(monkeypatch):
    predictor = Predictor.training_free(
        "clearclip-world", device="cpu", settings=["inference.short_side=64"], mode="whole"
    )
    shapes = []
    logits = predictor.model.logits
    monkeypatch.setattr(
        predictor.model, "logits", lambda images, texts: shapes.append(images.shape) or logits(images, texts)
    )
    square = np.random.default_rng(0).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    assert predictor.predict(square, NAMES).shape == (100, 100)
    assert shapes == [(1, 3, 64, 64)]
