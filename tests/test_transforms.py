"""Joint transforms: alignment of image, label and pseudo index map; mmseg semantics; seeding."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from splitmatch.data.colour import hsv_to_rgb, rgb_to_hsv
from splitmatch.data.transforms import (
    Compose,
    Pad,
    PhotometricDistortion,
    RandomCrop,
    RandomFlip,
    RandomResize,
    ResizeShortSide,
    build_eval_transform,
    build_train_transform,
    rescale_size,
)

BLOCK = 16


def position_sample(height: int = 96, width: int = 128, channels: int = 2) -> dict:
    """A label that is a function of position (16x16 blocks), an image and index map that encode it.

    image[..., 0] = 10 * label, and pseudo_index[s] = label + 1 + s, so after any geometric
    transform all three can be compared pixel by pixel.
    """
    rows, cols = np.mgrid[0:height, 0:width]
    label = ((rows // BLOCK) * 5 + (cols // BLOCK) * 3) % 20
    image = np.stack([label * 10, cols % 256, rows % 256], axis=-1)
    index = np.stack([label + 1 + s for s in range(channels)])
    return {
        "image": image.astype(np.uint8),
        "label": label.astype(np.uint8),
        "pseudo_index": index.astype(np.uint8),
    }


def interior(label: np.ndarray, radius: int = 2) -> np.ndarray:
    """Pixels whose (2r+1)^2 neighbourhood in ``label`` is constant: bool [H, W].

    The border counts as different (-1): after a resize and a crop, border pixels were blended
    with pixels that are no longer there.
    """
    padded = np.pad(label.astype(np.int32), radius, constant_values=-1)
    same = np.ones(label.shape, dtype=bool)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            same &= padded[dy : dy + label.shape[0], dx : dx + label.shape[1]] == label
    return same


def assert_aligned(out: dict, exact_image: bool) -> None:
    label, index, image = out["label"], out["pseudo_index"], out["image"]
    assert image.shape[:2] == label.shape == index.shape[1:]
    annotated = label != 255
    for s in range(index.shape[0]):
        assert np.array_equal(index[s][annotated], label[annotated] + 1 + s)
        assert np.all(index[s][~annotated] == 0)
    # Bilinear resizing blends block borders, so after a resize only block interiors compare.
    where = annotated if exact_image else annotated & interior(label)
    assert where.any()
    assert np.array_equal(image[..., 0][where], label[where].astype(np.uint8) * 10)


@pytest.mark.parametrize(
    "transform, exact",
    [
        (RandomFlip(prob=1.0), True),
        (RandomCrop((40, 56), cat_max_ratio=1.0), True),
        (Pad((130, 150)), True),
        (RandomResize(scale=(256, 96), ratio_range=(0.5, 2.0)), False),
        (ResizeShortSide(short=150, max_long=400), False),
        (build_train_transform(64, (256, 96), (0.5, 2.0), 0.75, 0.5, photometric=False), False),
    ],
)
def test_geometric_transforms_keep_image_label_and_index_aligned(transform, exact: bool) -> None:
    for seed in range(5):
        out = Compose([transform])(position_sample(), np.random.default_rng(seed))
        assert_aligned(out, exact_image=exact)


def test_same_seed_same_output_and_seeds_differ() -> None:
    transform = build_train_transform(48, (256, 96), (0.5, 2.0), 0.75, 0.5, photometric=True)
    first = transform(position_sample(), np.random.default_rng(7))
    again = transform(position_sample(), np.random.default_rng(7))
    for key in ("image", "label", "pseudo_index"):
        assert np.array_equal(first[key], again[key])
    others = [transform(position_sample(), np.random.default_rng(s))["image"] for s in range(8, 12)]
    assert any(o.shape != first["image"].shape or not np.array_equal(o, first["image"]) for o in others)


def test_train_transform_output_size_is_the_crop() -> None:
    transform = build_train_transform(64, (256, 96), (0.5, 2.0), 0.75, 0.5, photometric=True)
    for seed in range(6):
        out = transform(position_sample(), np.random.default_rng(seed))
        assert out["image"].shape == (64, 64, 3) and out["label"].shape == (64, 64)
        assert out["pseudo_index"].shape == (2, 64, 64)
        assert out["image"].flags["C_CONTIGUOUS"]


def test_random_crop_respects_cat_max_ratio_and_excludes_ignore() -> None:
    label = np.zeros((100, 100), dtype=np.uint8)
    label[:, 50:] = 1
    label[:20] = 255  # many ignored pixels: they must not count
    sample = {"image": np.zeros((100, 100, 3), np.uint8), "label": label}

    def majority(window: np.ndarray) -> float:
        counts = np.bincount(window[window != 255], minlength=2)
        return counts.max() / counts.sum()

    constrained = RandomCrop((50, 50), cat_max_ratio=0.75)
    free = RandomCrop((50, 50), cat_max_ratio=1.0)
    checked = [majority(constrained(sample, np.random.default_rng(s))["label"]) for s in range(30)]
    unchecked = [majority(free(sample, np.random.default_rng(s))["label"]) for s in range(30)]
    assert all(r < 0.75 for r in checked)
    assert any(r >= 0.75 for r in unchecked)


def test_random_crop_gives_up_after_its_tries_and_never_pads() -> None:
    single = {"image": np.zeros((30, 40, 3), np.uint8), "label": np.full((30, 40), 3, np.uint8)}
    out = RandomCrop((20, 20), cat_max_ratio=0.75)(single, np.random.default_rng(0))
    assert out["label"].shape == (20, 20)
    small = RandomCrop((64, 64))(single, np.random.default_rng(0))
    assert small["image"].shape == (30, 40, 3)


def test_pad_values_and_position() -> None:
    sample = position_sample(20, 30)
    out = Pad((32, 40))(sample)
    assert out["image"].shape == (32, 40, 3)
    assert np.array_equal(out["image"][:20, :30], sample["image"])
    assert np.all(out["image"][20:] == 0) and np.all(out["image"][:, 30:] == 0)
    assert np.all(out["label"][20:] == 255) and np.all(out["label"][:, 30:] == 255)
    assert np.all(out["pseudo_index"][:, 20:] == 0) and np.all(out["pseudo_index"][:, :, 30:] == 0)
    assert Pad((10, 10))(sample)["image"].shape == (20, 30, 3)


def test_rescale_size_follows_mmcv() -> None:
    # ZegCLIP test resize (2048, 512) on a 375x500 VOC image: short side to 512.
    assert rescale_size(375, 500, (2048, 512)) == (512, 683)
    # A very long image is limited by its long side instead.
    assert rescale_size(100, 1000, (2048, 512)) == (205, 2048)
    assert rescale_size(600, 400, (512, 2048)) == (768, 512)


def test_resize_short_side_can_keep_the_label_resolution() -> None:
    sample = position_sample(60, 80)
    kept = ResizeShortSide(short=120, max_long=1000, resize_label=False)(sample)
    assert kept["image"].shape == (120, 160, 3)
    assert kept["label"].shape == (60, 80) and np.array_equal(kept["label"], sample["label"])
    moved = build_eval_transform(120, 1000)(sample, np.random.default_rng(0))
    assert moved["label"].shape == (60, 80)
    # ZegCLIP's test resize (min_size=512) never caps the long side: max_long=None.
    wide = {"image": np.zeros((100, 1000, 3), np.uint8), "label": np.zeros((100, 1000), np.uint8)}
    assert ResizeShortSide(512, None)(wide)["image"].shape == (512, 5120, 3)
    assert ResizeShortSide(512, 2048)(wide)["image"].shape == (205, 2048, 3)


def test_photometric_distortion_changes_image_only_and_is_seeded() -> None:
    sample = position_sample()
    sample["image"] = np.random.default_rng(0).integers(0, 256, sample["image"].shape).astype(np.uint8)
    transform = PhotometricDistortion()
    outs = [transform(sample, np.random.default_rng(s)) for s in range(6)]
    for out in outs:
        assert out["image"].dtype == np.uint8 and out["image"].shape == sample["image"].shape
        assert out["label"] is sample["label"] and out["pseudo_index"] is sample["pseudo_index"]
    assert any(not np.array_equal(o["image"], sample["image"]) for o in outs)
    assert np.array_equal(transform(sample, np.random.default_rng(3))["image"], outs[3]["image"])


def test_hsv_conversion_matches_colorsys() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (500, 3)).astype(np.uint8)
    pixels[:3] = [[0, 0, 0], [255, 255, 255], [128, 128, 128]]  # grey: no hue
    ours = rgb_to_hsv(pixels)
    reference = np.array([colorsys.rgb_to_hsv(*(p / 255.0)) for p in pixels.astype(np.float64)])
    assert np.allclose(ours[:, 0] / 360.0, reference[:, 0], atol=1e-9)
    assert np.allclose(ours[:, 1], reference[:, 1], atol=1e-9)
    assert np.allclose(ours[:, 2] / 255.0, reference[:, 2], atol=1e-9)
    assert np.allclose(hsv_to_rgb(ours), pixels, atol=1e-6)


def test_bad_samples_and_arguments_are_refused() -> None:
    sample = position_sample(20, 30)
    with pytest.raises(ValueError, match="label"):
        Compose([])({**sample, "label": sample["label"][:10]}, np.random.default_rng(0))
    with pytest.raises(ValueError, match="image"):
        Compose([])({**sample, "image": sample["image"][..., 0]}, np.random.default_rng(0))
    with pytest.raises(ValueError, match="pseudo_index"):
        Compose([])({**sample, "pseudo_index": sample["pseudo_index"][0]}, np.random.default_rng(0))
    with pytest.raises(ValueError, match="prob"):
        RandomFlip(prob=1.5)
    with pytest.raises(ValueError, match="ratio"):
        RandomResize(ratio_range=(2.0, 0.5))
