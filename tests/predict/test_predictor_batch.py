"""Predictor.predict on a list: batched, and the labels of each image as it gets them alone."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from splitmatch.config.presets import preset
from splitmatch.inference.batched import batch_scores, image_crops
from splitmatch.inference.images import predict_scores
from splitmatch.model.build import build_segmentor
from splitmatch.predict.predictor import Predictor

NAMES = ["background", "red square", ("blue circle", "blue disc")]
# (H, W): equal sizes, the same sizes turned, sizes that round up to the same patches, one smaller
# than the window, and very long ones (several windows, several images' windows in one batch).
SIZES = [(40, 64), (40, 64), (64, 40), (41, 63), (100, 30), (64, 64), (20, 20), (33, 150)]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = preset("tiny")
    return build_segmentor(config.clip, config.decoder).eval()


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    pictures = []
    for height, width in SIZES:
        image = rng.integers(60, 200, (height, width, 3), dtype=np.uint8)
        image[height // 4 : height // 2, width // 3 :] = (230, 30, 30)
        pictures.append(image)
    return pictures


def predictor_in(model, mode: str, calibration: float = 0.0) -> Predictor:
    inference = dataclasses.replace(preset("tiny").inference, mode=mode, seen_calibration=calibration)
    return Predictor(model, inference, seen_classes=["background"])


@pytest.mark.parametrize("mode, calibration", [("whole", 0.0), ("slide", 0.0), ("slide", 0.1)])
@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_a_list_gets_the_labels_of_one_image_at_a_time(model, images, mode, calibration, batch_size):
    predictor = predictor_in(model, mode, calibration)
    alone = [predictor.predict(image, NAMES) for image in images]
    together = predictor.predict(images, NAMES, batch_size=batch_size)
    assert isinstance(together, list) and len(together) == len(images)
    for one, many, image in zip(alone, together, images):
        assert many.shape == image.shape[:2] and many.dtype == np.uint8
        assert np.array_equal(one, many)


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_batched_scores_equal_the_scores_of_one_image(model, images, mode):
    predictor = predictor_in(model, mode)
    embeddings = model.encode_classes(NAMES)
    batched = batch_scores(predictor.inference, images, embeddings, None, predictor.config, predictor.device, 4)
    for image, scores in zip(images, batched):
        alone = predict_scores(predictor.inference, image, embeddings, None, predictor.config, predictor.device)
        torch.testing.assert_close(scores, alone, rtol=1e-5, atol=1e-6)


def test_crops_share_forward_passes(model, images):
    """The point of batching: fewer forward passes than crops."""
    predictor = predictor_in(model, "slide")
    calls = []
    handle = model.image_encoder.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        predictor.predict(images, NAMES, batch_size=8)
    finally:
        handle.remove()
    config = predictor.config
    crops = 0
    for height, width in SIZES:
        scale = min(config.short_side / min(height, width), config.max_long_side / max(height, width))
        crops += len(image_crops(predictor.inference, round(height * scale), round(width * scale)))
    assert sum(calls) == crops and len(calls) < crops and max(calls) == 8


def test_paths_pil_images_and_arrays_mix_in_one_list(model, images, tmp_path):
    predictor = predictor_in(model, "whole")
    path = tmp_path / "a.png"
    Image.fromarray(images[0]).save(path)
    mixed = predictor.predict([path, str(path), Image.fromarray(images[0]), images[0]], NAMES, batch_size=2)
    assert all(np.array_equal(labels, mixed[0]) for labels in mixed)
    assert predictor.predict([], NAMES) == []
    assert np.array_equal(predictor.predict((images[0],), NAMES)[0], mixed[0])  # a tuple is a list too


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_a_batch_size_must_be_a_positive_integer(model, images, batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        predictor_in(model, "whole").predict(images[:2], NAMES, batch_size=batch_size)
