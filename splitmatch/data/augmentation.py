"""The training and evaluation pipelines: random augmentations as small callables over
:mod:`splitmatch.data.transforms`' pure functions (mmseg semantics).

Each step is ``t(sample, rng) -> sample``: it draws its random parameters from the
``np.random.Generator`` it is given and never from a global RNG, so one seed fixes a sample's
augmentation. Deterministic steps take ``rng`` too and ignore it, so that :class:`Compose`
treats all alike. :func:`build_train_transform` is ZegCLIP's training pipeline,
:func:`build_eval_transform` the evaluation resize.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from splitmatch.data.classes import ignore_index_of
from splitmatch.data.colour import adjust_hsv
from splitmatch.data.label_counts import few_classes, label_histogram
from splitmatch.data.transforms import (
    Sample,
    check_sample,
    crop,
    hflip,
    image_array,
    materialise,
    pad,
    rescale_size,
    resize,
)


class Compose:
    """Applies transforms in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        check_sample(sample)
        for transform in self.transforms:
            sample = transform(sample, rng)
        return materialise(sample)

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


@dataclass
class RandomResize:
    """mmseg ``Resize(img_scale=scale, ratio_range=ratio_range, keep_ratio=True)``.

    Draws ``ratio ~ U(ratio_range)``, sets the target scale to ``scale * ratio`` and resizes
    keeping the aspect ratio so that the image fits it (see :func:`rescale_size`).
    """

    scale: tuple[int, int] = (2048, 512)
    ratio_range: tuple[float, float] = (0.5, 2.0)

    def __post_init__(self) -> None:
        if min(self.scale) <= 0 or not 0 < self.ratio_range[0] <= self.ratio_range[1]:
            raise ValueError(
                f"RandomResize needs a positive scale and 0 < min <= max ratio, "
                f"got scale={self.scale}, ratio_range={self.ratio_range}"
            )

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        ratio = rng.uniform(self.ratio_range[0], self.ratio_range[1])
        target = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        height, width = sample["image"].shape[:2]
        return resize(sample, rescale_size(height, width, target))


@dataclass
class RandomCrop:
    """mmseg ``RandomCrop(crop_size, cat_max_ratio)``; images smaller than the crop are not padded.

    Up to 10 crop windows are drawn; the first one in which more than one class is present and
    no class covers ``cat_max_ratio`` or more of the non-ignored pixels is taken, otherwise the
    last one drawn. ``cat_max_ratio >= 1`` turns the check off. Ignored pixels (the label
    type's maximum, see :func:`~splitmatch.data.classes.ignore_index_of`) are not counted.
    """

    crop_size: tuple[int, int]
    cat_max_ratio: float = 0.75
    tries: int = 10

    def __post_init__(self) -> None:
        if min(self.crop_size) <= 0 or self.tries < 1:
            raise ValueError(f"RandomCrop needs a positive crop_size and tries, got {self.crop_size}, {self.tries}")

    def _window(self, height: int, width: int, rng: np.random.Generator) -> tuple[int, int]:
        top = int(rng.integers(0, max(height - self.crop_size[0], 0) + 1))
        left = int(rng.integers(0, max(width - self.crop_size[1], 0) + 1))
        return top, left

    def _balanced(self, window: np.ndarray, classes: np.ndarray | None = None) -> bool:
        """More than one class and none with ``cat_max_ratio`` of the non-ignored pixels.

        ``classes``: the non-ignore ids the whole label holds, counted by comparison (a histogram
        of a mostly-ignore window increments one counter pixel after pixel, which is slow); or
        ``None`` for a histogram (labels of many classes).
        """
        if classes is None:
            counts = label_histogram(window)
            counts[ignore_index_of(window.dtype)] = 0
        else:
            counts = np.array([np.count_nonzero(window == c) for c in classes])
        counts = counts[counts > 0]
        return len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        height, width = sample["image"].shape[:2]
        top, left = self._window(height, width, rng)
        if self.cat_max_ratio < 1.0 and "label" in sample:
            label = sample["label"]
            classes = few_classes(label, 16)
            for _ in range(self.tries - 1):
                if self._balanced(label[top : top + self.crop_size[0], left : left + self.crop_size[1]], classes):
                    break
                top, left = self._window(height, width, rng)
        return crop(sample, top, left, *self.crop_size)


@dataclass
class RandomFlip:
    """Horizontal flip with probability ``prob``."""

    prob: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"RandomFlip prob must lie in [0, 1], got {self.prob}")

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return hflip(sample) if rng.random() < self.prob else sample


@dataclass
class PhotometricDistortion:
    """mmseg ``PhotoMetricDistortion``; changes the image only.

    Each step happens with probability 1/2: brightness ``+U(-32, 32)``; contrast ``*U(0.5, 1.5)``
    (before or after the HSV steps, at random); saturation ``*U(0.5, 1.5)``; hue shifted by a
    whole number of degrees in ``[-2*18, 2*18]`` (mmseg counts hue in OpenCV's 0..180 units).
    Values are clipped to 0..255 and rounded down to uint8 after each step, as in mmseg
    (brightness and contrast through a 256-entry table of the same float32 arithmetic); the HSV
    steps run in float32 (:func:`~splitmatch.data.colour.adjust_hsv`), without OpenCV's 8-bit
    HSV rounding.
    """

    brightness_delta: float = 32
    contrast_range: tuple[float, float] = (0.5, 1.5)
    saturation_range: tuple[float, float] = (0.5, 1.5)
    hue_delta: int = 18

    @staticmethod
    def _affine(image: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
        table = np.clip(np.arange(256, dtype=np.float32) * alpha + beta, 0, 255).astype(np.uint8)
        return np.array(Image.fromarray(np.ascontiguousarray(image)).point(table.tolist() * 3))  # per band

    def _contrast(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.integers(2):
            return self._affine(image, alpha=rng.uniform(*self.contrast_range))
        return image

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        image = image_array(sample)
        if rng.integers(2):
            image = self._affine(image, beta=rng.uniform(-self.brightness_delta, self.brightness_delta))
        contrast_first = bool(rng.integers(2))
        if contrast_first:
            image = self._contrast(image, rng)
        saturation = rng.uniform(*self.saturation_range) if rng.integers(2) else 1.0
        hue_shift = 2.0 * int(rng.integers(-self.hue_delta, self.hue_delta + 1)) if rng.integers(2) else 0.0
        if saturation != 1.0 or hue_shift != 0.0:
            image = adjust_hsv(image, saturation=saturation, hue_shift_degrees=hue_shift)
        if not contrast_first:
            image = self._contrast(image, rng)
        return {**sample, "image": image}


@dataclass
class Pad:
    """Pads bottom/right to at least ``size = (H, W)`` with the RGB colour ``fill`` (see :func:`pad`)."""

    size: tuple[int, int]
    fill: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self) -> None:
        if len(self.fill) != 3 or not all(0 <= int(v) <= 255 for v in self.fill):
            raise ValueError(f"Pad fill must be three values in 0..255, got {self.fill}")

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        return pad(sample, self.size, self.fill)


@dataclass
class ResizeShortSide:
    """Deterministic evaluation resize, keeping the aspect ratio.

    The image is scaled (up or down) so that its short side is ``short``, unless its long side
    would then exceed ``max_long`` (mmseg ``Resize(img_scale=(max_long, short), keep_ratio=True)``).
    ``max_long=None`` never caps the long side, which is what ZegCLIP's test pipeline does
    (its ``min_size=512`` overrides the 2048 cap); the two differ only beyond a 4:1 aspect.
    With ``resize_label=False`` the label and pseudo index map keep the file's resolution, so
    predictions can be scored at the original size.
    """

    short: int = 512
    max_long: int | None = 2048
    resize_label: bool = True

    def __post_init__(self) -> None:
        if self.short <= 0 or (self.max_long is not None and self.max_long < self.short):
            raise ValueError(
                f"ResizeShortSide needs 0 < short <= max_long (or max_long=None), "
                f"got short={self.short}, max_long={self.max_long}"
            )

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        height, width = sample["image"].shape[:2]
        if self.max_long is None:
            factor = self.short / min(height, width)
            size = (max(int(height * factor + 0.5), 1), max(int(width * factor + 0.5), 1))
        else:
            size = rescale_size(height, width, (self.max_long, self.short))
        return resize(sample, size, self.resize_label)


def build_train_transform(
    crop_size: int = 512,
    scale: tuple[int, int] = (2048, 512),
    ratio_range: tuple[float, float] = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    flip_prob: float = 0.5,
    photometric: bool = True,
    pad_fill: tuple[int, int, int] = (0, 0, 0),
) -> Compose:
    """The ZegCLIP training pipeline: resize, crop, flip, photometric distortion, pad to the crop.

    ``pad_fill``: the RGB colour of the padding. mmseg pads after normalising, with zeros, which
    is the normalisation's mean colour; pass that mean (0..255) to do the same.
    """
    steps = [
        RandomResize(scale, ratio_range),
        RandomCrop((crop_size, crop_size), cat_max_ratio),
        RandomFlip(flip_prob),
    ]
    if photometric:
        steps.append(PhotometricDistortion())
    steps.append(Pad((crop_size, crop_size), pad_fill))
    return Compose(steps)


def build_eval_transform(short_side: int = 512, max_long: int | None = 2048, resize_label: bool = False) -> Compose:
    """Evaluation pipeline: short side to ``short_side``; the label stays at file resolution by default."""
    return Compose([ResizeShortSide(short_side, max_long, resize_label)])
