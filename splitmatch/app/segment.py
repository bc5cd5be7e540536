"""What the app does with one request, without the web page.

An image, a typed class list and two inference settings go in; the overlay with its legend,
the label map, the area of each class and the time taken come out. Every input the page can
send is checked here, and a bad one raises :class:`AppError` with a message fit to show the
user as it is::

    segmenter = Segmenter.from_checkpoint("runs/world/model.safetensors")
    result = segmenter.segment("photo.jpg", "background, circle, heart", seen_calibration=0.1, mode="whole")
    result.figure            # uint8 [h, w, 3]: overlay above a legend of the typed names
    result.label_png()       # PNG bytes: pixel value = index into result.names
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from splitmatch.data.classes import ClassSplitError, label_dtype_for, parse_class_entries
from splitmatch.data.folder import DatasetFormatError, read_image
from splitmatch.errors import SplitmatchError
from splitmatch.predict.predictor import Predictor
from splitmatch.visualize import palette, prediction_figure

# 16 MP (a 4000 x 4000 image): scores for a few dozen classes at full size stay within a few GiB.
DEFAULT_MAX_PIXELS = 16_000_000
# Small images are enlarged (nearest neighbour) for display until their long side reaches this,
# so that a 96-pixel world image is not a blur of browser scaling beside a sharp legend.
DISPLAY_LONG_SIDE = 384
MODES = ("whole", "slide")


class AppError(SplitmatchError, ValueError):
    """A request or start-up setting the app cannot use; the message is for the user, as it is."""


@dataclass(frozen=True)
class Segmentation:
    """One request's result.

    Attributes:
        figure: ``uint8 [h, w, 3]``, the overlay (enlarged when small) above a legend of ``names``.
        labels: ``[H, W]`` at the image's size, indices into ``names``: ``uint8`` up to 255 names,
            ``uint16`` above.
        names: the class names as typed, in order.
        seconds: time the model took (text encoding and prediction), wall clock.
        mode: the inference mode used.
        seen_calibration: the amount taken off the scores of the model's seen classes.
        device: where the model ran (``"cpu"``, ``"cuda:0"``...).
    """

    figure: np.ndarray
    labels: np.ndarray
    names: tuple[str, ...]
    seconds: float
    mode: str
    seen_calibration: float
    device: str = "cpu"

    def area_percent(self) -> list[tuple[str, float]]:
        """``(name, percent of the image)`` for every typed class, largest first (ties in typed order)."""
        shares = np.bincount(self.labels.ravel(), minlength=len(self.names))[: len(self.names)] / self.labels.size
        order = sorted(range(len(self.names)), key=lambda i: -shares[i])
        return [(self.names[i], round(100.0 * float(shares[i]), 2)) for i in order]

    def label_png(self) -> bytes:
        """The label map as a PNG: pixel value ``i`` is ``names[i]``. Up to 255 names an 8-bit
        palette PNG in the overlay's colours, above a 16-bit grayscale one (as ``splitmatch
        predict`` writes); the names are stored in the file too (text chunk ``classes``, JSON)."""
        image = Image.fromarray(self.labels)  # uint8 [H, W]: mode L; uint16: mode I;16
        if self.labels.dtype == np.uint8:
            colours = palette(len(self.names))
            image.putpalette(colours.ravel().tolist() + [0, 0, 0] * (256 - len(self.names)))
        info = PngImagePlugin.PngInfo()
        info.add_text("classes", json.dumps(list(self.names)))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", pnginfo=info)
        return buffer.getvalue()

    def summary(self) -> str:
        """One line for the page: time, mode, size, vocabulary."""
        height, width = self.labels.shape
        mode = "whole image" if self.mode == "whole" else "sliding window"
        where = "the CPU" if self.device == "cpu" else self.device
        return (
            f"{self.seconds:.2f} s on {where} ({mode}, seen-class calibration {self.seen_calibration:g}, "
            f"{width}x{height} px, {len(self.names)} classes)"
        )


def read_upload(source: str | Path | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Reads an uploaded image as RGB ``uint8 [H, W, 3]``, as :func:`splitmatch.data.folder.read_image`
    does (upright by its EXIF orientation, transparency on white, size checked before decoding).

    Raises:
        AppError: no image, a file that is not an image, or one over ``max_pixels``; the message
            names the file but not the folder the server keeps uploads in.
    """
    if source is None or str(source) == "":
        raise AppError("no image: upload one or pick an example")
    path = Path(source)
    try:
        return read_image(path, max_pixels)
    except DatasetFormatError as error:  # the folder is the server's: named neither whole nor in part
        message = str(error).replace(str(path), path.name).replace(str(path.parent), "")
        raise AppError(message) from None


def _too_large(width: int, height: int, max_pixels: int) -> str:
    side = math.isqrt(max_pixels)
    return (
        f"the image is {width}x{height} px ({width * height / 1e6:.1f} MP); this app takes at most "
        f"{max_pixels / 1e6:.1f} MP (e.g. {side}x{side}): make it smaller"
    )


def parse_entries(text: str | None) -> list[tuple[str, ...]]:
    """The page's class-name box -> per class its names, as ``splitmatch predict --classes``
    parses them (commas between classes, ``|`` between a class's synonyms)."""
    if text is None or not text.strip():
        raise AppError("no class names: type at least one, comma-separated (e.g. background, circle, heart)")
    try:
        entries = parse_class_entries(text)
    except ClassSplitError as error:
        raise AppError(str(error)) from None
    return entries  # at most MAX_CLASSES: a 16-bit label map holds them (uint8 up to 255)


def parse_names(text: str | None) -> list[str]:
    """The page's class-name box -> the class names (each class's first name)."""
    return [entry[0] for entry in parse_entries(text)]


def _enlarged(array: np.ndarray) -> np.ndarray:
    """Nearest-neighbour enlargement by a whole factor until the long side reaches ``DISPLAY_LONG_SIDE``."""
    factor = max(1, DISPLAY_LONG_SIDE // max(array.shape[:2]))
    return array.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else array


# The class box's first text for a model of photos that was trained on no dataset (training-free):
# things and stuff of everyday photos, any of which the user replaces.
PHOTO_CLASSES = ("sky", "tree", "grass", "road", "building", "person", "car", "dog", "cat", "water", "background")
TRAINING_FREE = "(training-free)"  # the dataset of a model trained on none


class Segmenter:
    """A loaded model answering the page's requests.

    Args:
        predictor: the model with its default inference settings.
        model_classes: the classes the model was trained with, all of them (seen and unseen);
            they prefill the page's class box.
        max_pixels: the largest image accepted.
        dataset: the short name of the dataset the model was trained on, for the page.
    """

    def __init__(
        self,
        predictor: Predictor,
        model_classes: list[str],
        max_pixels: int = DEFAULT_MAX_PIXELS,
        dataset: str = "custom",
    ):
        self.predictor = predictor
        self.model_classes = list(model_classes)
        self.max_pixels = max_pixels
        self.dataset = dataset

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", max_pixels: int = DEFAULT_MAX_PIXELS) -> Segmenter:
        predictor = Predictor.from_checkpoint(path, device)
        return cls(predictor, list(predictor.classes.names), max_pixels, predictor.classes.dataset)

    @classmethod
    def from_training_free(cls, preset: str, device: str = "cpu", max_pixels: int = DEFAULT_MAX_PIXELS) -> Segmenter:
        """A training-free model (``--model sclip``, ``maskclip-world``...); the class box starts with a
        vocabulary of everyday scenes (the world's classes for a ``-world`` preset)."""
        predictor = Predictor.training_free(preset, device)
        if predictor.name.endswith("-world"):
            from splitmatch.world.generator import world_class_split

            names = list(world_class_split().names)
        else:
            names = list(PHOTO_CLASSES)
        return cls(predictor, names, max_pixels, dataset=TRAINING_FREE)

    from_maskclip = from_training_free  # its name in version 0.2

    @property
    def default_class_text(self) -> str:
        return ", ".join(self.model_classes)

    @property
    def default_mode(self) -> str:
        return self.predictor.config.mode

    @property
    def default_seen_calibration(self) -> float:
        return float(self.predictor.config.seen_calibration)

    @property
    def seen_classes(self) -> list[str]:
        return [name for name in self.model_classes if name in self.predictor.seen_classes]

    def _predictor(self, mode: str | None, seen_calibration: float | None) -> Predictor:
        mode = self.default_mode if mode is None else mode
        if mode not in MODES:
            raise AppError(f"inference mode must be one of {', '.join(MODES)}, got {mode!r}")
        amount = self.default_seen_calibration if seen_calibration is None else seen_calibration
        try:
            amount = float(amount)
        except (TypeError, ValueError):
            raise AppError(f"seen-class calibration must be a number in 0..1, got {amount!r}") from None
        if not 0.0 <= amount <= 1.0:
            raise AppError(f"seen-class calibration must lie in 0..1, got {amount:g}")
        base = self.predictor
        if (mode, amount) == (base.config.mode, base.config.seen_calibration):
            return base
        config = replace(base.config, mode=mode, seen_calibration=amount)
        return Predictor(base.model, config, sorted(base.seen_classes), base.candidates)

    def segment(
        self,
        image: str | Path | np.ndarray | None,
        class_text: str | None,
        seen_calibration: float | None = None,
        mode: str | None = None,
    ) -> Segmentation:
        """Segments one image with the typed class names.

        Args:
            image: a file path (what the page uploads) or RGB ``uint8 [H, W, 3]``.
            class_text: comma-separated names.
            seen_calibration: amount taken off seen-class scores, 0..1 (``None``: the model's).
            mode: ``"whole"`` or ``"slide"`` (``None``: the model's).

        Raises:
            AppError: any input the model cannot be run on.
        """
        entries = parse_entries(class_text)
        names = [entry[0] for entry in entries]  # shown; synonyms only shape the text embeddings
        predictor = self._predictor(mode, seen_calibration)
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise AppError(f"image must be RGB uint8 [H, W, 3], got {image.dtype} {list(image.shape)}")
            if image.shape[0] * image.shape[1] > self.max_pixels:
                raise AppError(_too_large(image.shape[1], image.shape[0], self.max_pixels))
            pixels = image
        else:
            pixels = read_upload(image, self.max_pixels)
        started = time.perf_counter()
        labels = predictor.predict(pixels, entries).astype(label_dtype_for(len(entries)))  # [H, W]
        seconds = time.perf_counter() - started
        figure = prediction_figure(_enlarged(pixels), _enlarged(labels), names)
        config = predictor.config
        return Segmentation(
            figure, labels, tuple(names), seconds, config.mode, float(config.seen_calibration), str(predictor.device)
        )
