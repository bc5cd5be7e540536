"""Joint image + label transforms (mmseg semantics, on numpy arrays): the pure functions.

A sample is a dict::

    "image":        uint8 [H, W, 3]  RGB
    "label":        uint8 [H, W]     class ids, 255 ignore (uint16 [H, W], 65535 ignore, above 255 classes)
    "pseudo_index": uint8 [S, H, W]  optional; 0 means "no pseudo mask", k >= 1 a mask id
    "source_pixels": NearestView     optional; which row and column of the file each pixel shows, -1 padding

Every geometric transform moves the label and the pseudo index map with the image, nearest
neighbour for both, so the three stay aligned pixel for pixel, and composes ``source_pixels``
(a view of no data: its index vectors alone tell padding from image). Other keys pass through. The
pseudo index map may come as a :class:`~splitmatch.data.deferred.NearestView` of the
cached patch-grid map (the dataset hands it so): the steps then compose index vectors, and it
leaves the pipeline as a view of the crop, read out once by its owner. Likewise :func:`resize` defers
the image's resize (:class:`~splitmatch.data.deferred.ResizedImage`) and :func:`crop` resizes
only the window it keeps; the other steps read the image as an array (:func:`image_array`).

This module holds the work, pure functions of a sample and their parameters (``resize``,
``crop``, ``hflip``, ``pad`` ...); :mod:`splitmatch.data.augmentation` wraps them in the small
random callables the training and evaluation pipelines are built from.
"""

from __future__ import annotations

import numpy as np

from splitmatch.data.classes import ignore_index_of
from splitmatch.data.deferred import NearestView, ResizedImage, nearest_indices

Sample = dict
# The key of the view that records which file pixel each output pixel shows (see source_pixels).
SOURCE_PIXELS = "source_pixels"


def source_pixels(size: tuple[int, int]) -> NearestView:
    """A view of no data over an image of ``size = (H, W)``: after the transforms its ``rows`` and
    ``cols`` are the file row and column each output pixel shows, -1 where it is padding."""
    return NearestView.of(np.zeros((0, *size), dtype=np.uint8))


def check_sample(sample: Sample) -> None:
    """Refuses a sample whose arrays do not have the documented dtypes and agreeing sizes."""
    image = sample.get("image")
    arrays = (np.ndarray, ResizedImage)
    if not isinstance(image, arrays) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, arrays) else type(image).__name__
        raise ValueError(f"sample 'image' must be uint8 [H, W, 3], got {got}")
    size = image.shape[:2]
    label = sample.get("label")
    if label is not None and (label.dtype not in (np.uint8, np.uint16) or label.shape != size):
        raise ValueError(
            f"sample 'label' must be uint8 or uint16 {size} like the image, got {label.dtype} {label.shape}"
        )
    index = sample.get("pseudo_index")
    if index is not None and (
        not isinstance(index, (np.ndarray, NearestView))
        or index.dtype != np.uint8
        or index.ndim != 3
        or index.shape[1:] != size
    ):
        raise ValueError(
            f"sample 'pseudo_index' must be uint8 [S, {size[0]}, {size[1]}], got {index.dtype} {index.shape}"
        )


def rescale_size(height: int, width: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv ``imrescale`` size: the largest size keeping the aspect ratio that fits ``scale``.

    The long side ends <= max(scale) and the short side <= min(scale), one of them equal.

    Returns:
        ``(new_height, new_width)``.
    """
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return max(int(height * factor + 0.5), 1), max(int(width * factor + 0.5), 1)


def resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of the last two axes: ``[..., h, w] -> [..., H, W]``."""
    rows = nearest_indices(array.shape[-2], size[0])
    cols = nearest_indices(array.shape[-1], size[1])
    return np.take(np.take(array, rows, axis=-2), cols, axis=-1)  # a take per axis: no 2-D index arrays


def _resize_map(array: np.ndarray | NearestView, size: tuple[int, int]) -> np.ndarray | NearestView:
    return array.resize(size) if isinstance(array, NearestView) else resize_nearest(array, size)


def image_array(sample: Sample) -> np.ndarray:
    """The sample's image as an array, a deferred resize done now (the whole image)."""
    image = sample["image"]
    return image.array() if isinstance(image, ResizedImage) else image


def resize(sample: Sample, size: tuple[int, int], resize_label: bool = True) -> Sample:
    """Resizes to ``size = (H, W)``: image bilinear (deferred: see :class:`ResizedImage`), label and
    pseudo index map nearest."""
    out = dict(sample)
    height, width = size
    if sample["image"].shape[:2] != (height, width):
        out["image"] = ResizedImage(image_array(sample), (height, width))
    if resize_label:
        for key in ("label", "pseudo_index", SOURCE_PIXELS):
            if key in sample and sample[key].shape[-2:] != (height, width):
                out[key] = _resize_map(sample[key], size)
    return out


def crop(sample: Sample, top: int, left: int, height: int, width: int) -> Sample:
    """Crops ``[top:top+height, left:left+width]`` (clipped at the border) from every array."""
    out = dict(sample)
    image = sample["image"]
    if isinstance(image, ResizedImage):
        out["image"] = image.crop(top, left, height, width)
    else:
        out["image"] = image[top : top + height, left : left + width]
    if "label" in sample:
        out["label"] = sample["label"][top : top + height, left : left + width]
    if "pseudo_index" in sample:
        index = sample["pseudo_index"]
        if isinstance(index, NearestView):
            out["pseudo_index"] = index.crop(top, left, height, width)
        else:
            out["pseudo_index"] = index[:, top : top + height, left : left + width]
    if SOURCE_PIXELS in sample:
        out[SOURCE_PIXELS] = sample[SOURCE_PIXELS].crop(top, left, height, width)
    return out


def hflip(sample: Sample) -> Sample:
    """Mirrors every array left to right."""
    out = dict(sample)
    out["image"] = image_array(sample)[:, ::-1]
    if "label" in sample:
        out["label"] = sample["label"][:, ::-1]
    if "pseudo_index" in sample:
        index = sample["pseudo_index"]
        out["pseudo_index"] = index.hflip() if isinstance(index, NearestView) else index[:, :, ::-1]
    if SOURCE_PIXELS in sample:
        out[SOURCE_PIXELS] = sample[SOURCE_PIXELS].hflip()
    return out


def pad(sample: Sample, size: tuple[int, int], fill: tuple[int, int, int] = (0, 0, 0)) -> Sample:
    """Pads bottom and right to at least ``size = (H, W)``: image ``fill`` (RGB), label ignore, pseudo index 0."""
    height, width = sample["image"].shape[:2]
    extra_h, extra_w = max(size[0] - height, 0), max(size[1] - width, 0)
    if extra_h == 0 and extra_w == 0:
        return dict(sample)
    out = dict(sample)
    image = np.empty((height + extra_h, width + extra_w, 3), dtype=np.uint8)
    image[...] = np.asarray(fill, dtype=image.dtype)
    image[:height, :width] = image_array(sample)
    out["image"] = image
    if "label" in sample:
        ignore = ignore_index_of(sample["label"].dtype)
        out["label"] = np.pad(sample["label"], ((0, extra_h), (0, extra_w)), constant_values=ignore)
    if "pseudo_index" in sample:
        index = sample["pseudo_index"]
        if isinstance(index, NearestView):
            out["pseudo_index"] = index.pad(extra_h, extra_w)
        else:
            out["pseudo_index"] = np.pad(index, ((0, 0), (0, extra_h), (0, extra_w)), constant_values=0)
    if SOURCE_PIXELS in sample:
        out[SOURCE_PIXELS] = sample[SOURCE_PIXELS].pad(extra_h, extra_w)
    return out


def materialise(sample: Sample) -> Sample:
    """Arrays made contiguous (views from flips and crops) and a deferred image resize done.

    A :class:`NearestView` given in stays a view: its owner reads it out (``.array()``) and may
    keep its compact form too, as the dataset does for the device.
    """
    out = {}
    for key, value in sample.items():
        if isinstance(value, ResizedImage):
            value = value.array()
        elif isinstance(value, np.ndarray):
            value = np.ascontiguousarray(value)
        out[key] = value
    return out
