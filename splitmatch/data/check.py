"""Checking a run's images before its first step, so that a bad file stops it then, not hours later.

Every image and label of the splits a run reads is opened to its header (size, mode, the
pixel limit, image and label of the same size); the images of the evaluation split, which
training reads only at its end, are also decoded whole. Under ``torchrun`` each rank checks its
share and every rank stops with the first problem found.
"""

from __future__ import annotations

from collections.abc import Sequence

from splitmatch import distributed as dist
from splitmatch.data.folder import (
    _EIGHT_BIT_LABEL_MODES,
    _SIXTEEN_BIT_LABEL_MODES,
    MAX_IMAGE_PIXELS,
    DatasetFolder,
    DatasetFormatError,
    Sample,
    open_image,
    read_image,
)

_SWAPPED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that turn an image by 90 degrees


def header_size(path, what: str, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[tuple[int, int], str, int]:
    """``((H, W) as shown, mode, EXIF orientation)`` of an image file, from its header alone."""
    with open_image(path, what, max_pixels) as image:
        width, height = image.size
        mode = image.mode
        try:
            orientation = image.getexif().get(0x0112, 1) if what == "image" else 1
        except (OSError, SyntaxError, ValueError) as error:
            raise DatasetFormatError(f"{what} {path} is corrupt or truncated: {error}") from None
    if orientation in _SWAPPED_ORIENTATIONS:
        width, height = height, width
    return (height, width), mode, orientation


def check_sample(sample: Sample, decode: bool = False) -> None:
    """One sample's image and label: readable headers, a single-channel label of the image's size.

    With ``decode``, the image is decoded whole too (truncated data show only then).
    """
    size, _, _ = header_size(sample.image_path, "image")
    label_size, mode, _ = header_size(sample.label_path, "label")
    if mode not in _EIGHT_BIT_LABEL_MODES + _SIXTEEN_BIT_LABEL_MODES:
        raise DatasetFormatError(
            f"label {sample.label_path} has mode {mode}; expected a single-channel PNG "
            "(8-bit grayscale or palette, or 16-bit grayscale) holding class ids"
        )
    if label_size != size:
        raise DatasetFormatError(
            f"label {sample.label_path} is {label_size[1]}x{label_size[0]} (WxH) but its image "
            f"{sample.image_path} is {size[1]}x{size[0]}"
        )
    if decode:
        read_image(sample.image_path)


def check_run_images(folder: DatasetFolder, splits: Sequence[str], decode: Sequence[str] = ()) -> int:
    """Checks every sample of ``splits`` (this rank's share); decodes those of the ``decode`` splits.

    Returns:
        how many samples this rank checked.

    Raises:
        DatasetFormatError: the first bad file this rank found, or (on the other ranks) the
            message of the rank that found one.
    """
    problem, checked = None, 0
    for split in dict.fromkeys(splits):
        samples = folder.samples(split)[dist.rank() :: dist.world_size()]
        for sample in samples:
            try:
                check_sample(sample, decode=split in decode)
            except DatasetFormatError as error:
                problem = f"split '{split}': {error}"
                break
            checked += 1
        if problem:
            break
    if dist.all_ranks_ok(problem is None):
        return checked
    if problem is None:  # another rank found it: say what it found
        raise DatasetFormatError(dist.peer_failure(wait_seconds=10.0) or "another process found a bad image or label")
    dist.publish_failure(problem)
    raise DatasetFormatError(problem)
