"""Predictor.predict takes what users have: a path, a PIL image or an RGB array."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from splitmatch.config.presets import preset
from splitmatch.data.folder import DatasetFormatError, read_image
from splitmatch.model.build import build_segmentor
from splitmatch.predict.predictor import Predictor, as_rgb_array

NAMES = ["background", "red square", "blue circle"]


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)
    config = preset("tiny")
    return Predictor(build_segmentor(config.clip, config.decoder).eval(), config.inference, seen_classes=["background"])


@pytest.fixture
def sideways_photo(tmp_path):
    """A 40x64 (HxW) picture stored as 64x40 with EXIF orientation 6, as phones store it."""
    upright = np.random.default_rng(0).integers(0, 256, (40, 64, 3), dtype=np.uint8)
    upright[:, :32] = (250, 20, 20)
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # shown turned back by 270
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "photo.png"
    stored.save(path, exif=exif)
    return path


def test_path_pil_and_array_give_the_same_labels_upright(predictor, sideways_photo):
    from_path = predictor.predict(sideways_photo, NAMES)
    from_string = predictor.predict(str(sideways_photo), NAMES)
    with Image.open(sideways_photo) as photo:
        assert photo.size == (40, 64)  # stored sideways
        from_pil = predictor.predict(photo, NAMES)
    from_array = predictor.predict(read_image(sideways_photo), NAMES)
    assert from_path.shape == (40, 64) and from_path.dtype == np.uint8  # as shown, EXIF applied
    assert np.array_equal(from_path, from_pil) and np.array_equal(from_path, from_array)
    assert np.array_equal(from_path, from_string)
    assert from_path.min() >= 0 and from_path.max() < len(NAMES)  # every pixel one of the names


def test_reversed_and_read_only_arrays_are_accepted(predictor, sideways_photo):
    rgb = read_image(sideways_photo)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    read_only = rgb.copy()
    read_only.setflags(write=False)
    expected = predictor.predict(rgb, NAMES)
    assert np.array_equal(predictor.predict(bgr[..., ::-1], NAMES), expected)  # OpenCV's BGR, reversed
    assert np.array_equal(predictor.predict(read_only, NAMES), expected)


def test_grayscale_and_transparent_pil_images_become_rgb(predictor):
    gray = Image.fromarray(np.full((24, 30), 128, np.uint8))
    assert as_rgb_array(gray).shape == (24, 30, 3)
    transparent = Image.new("RGBA", (30, 24), (0, 0, 0, 0))
    assert (as_rgb_array(transparent) == 255).all()  # shown on white
    assert predictor.predict(gray, NAMES).shape == (24, 30)


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((8, 8, 3), np.float32), r"RGB uint8 \[H, W, 3\], got float32 \[8, 8, 3\]"),
        (np.zeros((8, 8), np.uint8), r"got uint8 \[8, 8\]"),
        (np.zeros((8, 8, 4), np.uint8), r"got uint8 \[8, 8, 4\]"),
        (torch.zeros(3, 8, 8), r"a path, a PIL image or a uint8 \[H, W, 3\] array, got Tensor"),
    ],
)
def test_other_inputs_are_refused_with_what_is_expected(predictor, image, message):
    with pytest.raises((ValueError, TypeError), match=message):
        predictor.predict(image, NAMES)


def test_a_missing_file_is_named(predictor, tmp_path):
    with pytest.raises(DatasetFormatError, match="nothing.jpg does not exist"):
        predictor.predict(tmp_path / "nothing.jpg", NAMES)
