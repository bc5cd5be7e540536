"""The dataset folder format: how every dataset is stored on disk.

The official datasets are converted into it by ``splitmatch prepare``, the built-in world is
written in it, and users bring their own data in it::

    ROOT/
      classes.json          class names in label-id order and the unseen ones (ClassSplit)
      images/<stem>.jpg     RGB images (.jpg, .jpeg or .png)
      labels/<stem>.png     single-channel label maps: 0..C-1 a class; 8-bit with 255 ignore,
                            or 16-bit with 65535 ignore for datasets of more than 255 classes
      splits/<split>.txt    one stem per line, e.g. splits/train.txt, splits/val.txt

A stem is a name, not a path: it may name a file in a sub-folder (``city/frame_001``), but no
line of a split list may be absolute, hold ``..``, an empty part, a backslash or a control
character (:mod:`splitmatch.data.names`), and a file it names that links outside ``images/`` or
``labels/`` is refused: nothing a dataset holds makes splitmatch read outside it.

Label files hold every class, seen and unseen: the inductive mapping (unseen to 255) happens
at training time only. Every read here checks what it reads and names the file when it is not
what is expected.
"""

from __future__ import annotations

import io
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from splitmatch.data.classes import IGNORE_INDEX, IGNORE_INDEX_16BIT, ClassSplit, ignore_index_for, label_dtype_for
from splitmatch.data.names import file_name_problem, outside, printable, stem_problem
from splitmatch.errors import SplitmatchError
from splitmatch.storage.files import atomic_write_bytes, read_text

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CLASSES_FILE = "classes.json"
# Images with more pixels are refused before decoding: a small file can declare a huge image
# (a "decompression bomb"). Pillow's own hard limit; 16,000 x 11,000 still passes.
MAX_IMAGE_PIXELS = 2 * 89_478_485
_EIGHT_BIT_LABEL_MODES = ("L", "P")
_SIXTEEN_BIT_LABEL_MODES = ("I;16", "I;16L", "I;16B", "I")


class DatasetFormatError(SplitmatchError, ValueError):
    """A dataset folder or one of its files is not in the expected format."""


@dataclass(frozen=True)
class Sample:
    """Paths of one image and its label map."""

    stem: str
    image_path: Path
    label_path: Path


class DatasetFolder:
    """A dataset in the folder format.

    Args:
        root: the dataset folder.

    Raises:
        DatasetFormatError: the folder or its ``classes.json`` is missing or malformed.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetFormatError(f"dataset folder {self.root} does not exist")
        self.classes = ClassSplit.read(self.root / CLASSES_FILE)

    def split_names(self) -> list[str]:
        """Names of the splits that have a list file, e.g. ``['train', 'val']``."""
        return sorted(p.stem for p in (self.root / "splits").glob("*.txt"))

    def stems(self, split: str) -> list[str]:
        """The stems a split list names, in file order, each checked to be a name (module docstring)."""
        problem = file_name_problem(split)
        if problem:
            raise DatasetFormatError(f"split name '{printable(str(split), 80)}' cannot be used: {problem}")
        path = self.root / "splits" / f"{split}.txt"
        if not path.is_file():
            known = ", ".join(self.split_names()) or "none"
            raise DatasetFormatError(f"split list {path} does not exist (splits present: {known})")
        if outside(self.root / "splits", path):
            raise DatasetFormatError(f"split list {path} links outside {self.root / 'splits'}")
        stems = read_split_list(path)
        if not stems:
            raise DatasetFormatError(f"split list {path} is empty")
        duplicates = sorted(stem for stem, count in Counter(stems).items() if count > 1)
        if duplicates:
            raise DatasetFormatError(f"split list {path} names {duplicates[:5]} more than once")
        return stems

    def samples(self, split: str, require_labels: bool = True) -> list[Sample]:
        """Resolves every stem of a split to its files, refusing any that is missing or links outside."""
        samples, missing = [], []
        for stem in self.stems(split):
            image_path = self.image_path(stem)
            label_path = self.label_path(stem)
            if image_path is None:
                missing.append(f"images/{stem}{{{','.join(IMAGE_SUFFIXES)}}}")
            elif require_labels and not label_path.is_file():
                missing.append(f"labels/{stem}.png")
            else:
                samples.append(Sample(stem, image_path, label_path))
        if missing:
            raise DatasetFormatError(
                f"split '{split}' of {self.root} names {len(missing)} file(s) that do not exist: {list_some(missing)}"
            )
        return samples

    def image_path(self, stem: str) -> Path | None:
        """``images/<stem>.jpg`` (or ``.jpeg``, ``.png``), the first that exists, or ``None``.

        Raises:
            DatasetFormatError: ``stem`` is not a name, or the file links outside ``images/``.
        """
        for suffix in IMAGE_SUFFIXES:
            path = self._member("images", stem, suffix)
            if path.is_file():
                return self._inside("images", path)
        return None

    def label_path(self, stem: str) -> Path:
        """``labels/<stem>.png`` (which may not exist).

        Raises:
            DatasetFormatError: ``stem`` is not a name, or the file links outside ``labels/``.
        """
        path = self._member("labels", stem, ".png")
        return self._inside("labels", path) if path.exists() else path

    def _member(self, folder: str, stem: str, suffix: str) -> Path:
        problem = stem_problem(stem)
        if problem:
            raise DatasetFormatError(f"'{printable(str(stem), 80)}' in {self.root} is not a usable stem: {problem}")
        return self.root / folder / f"{stem}{suffix}"

    def _inside(self, folder: str, path: Path) -> Path:
        if outside(self.root / folder, path):
            raise DatasetFormatError(
                f"{path} links to {path.resolve()}, outside {self.root / folder}; a dataset's files must lie in "
                "its folders (link the whole folder instead)"
            )
        return path


def read_split_list(path: Path) -> list[str]:
    """The stems of a split list file, one a line (blank lines skipped), each a name.

    Raises:
        DatasetFormatError: the file is not UTF-8 text, or a line is not a usable stem
            (:func:`splitmatch.data.names.stem_problem`), named with its line number.
    """
    text = read_text(path, "split list", "a split list holds one stem per line", DatasetFormatError)
    stems = []
    for number, line in enumerate(text.split("\n"), start=1):
        stem = line.strip(" \t\r\ufeff" if number == 1 else " \t\r")  # a BOM may open the file
        if not stem:
            continue
        problem = stem_problem(stem)
        if problem:
            raise DatasetFormatError(
                f"split list {path}, line {number}: '{printable(stem, 80)}' is not a usable stem: {problem} "
                "(a stem names files below images/ and labels/, e.g. 2008_000123 or city/frame_001)"
            )
        stems.append(stem)
    return stems


def list_some(items: list[str], limit: int = 5) -> str:
    """``"a, b, c, d, e and 7 more"``: enough of a long list of names to act on, in one line."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def open_image(path: str | Path, what: str = "image", max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Opens an image or label file with only its header read, refused if it claims too many pixels.

    The one place where splitmatch opens an image file (reading, checking, converting): a file
    whose header declares more than ``max_pixels`` is refused before any pixel is decoded. The
    caller closes the image (``with open_image(...) as image``).

    Raises:
        DatasetFormatError: ``path`` is missing, a folder, not an image, or too large (named).
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies
            image = Image.open(path)
    except FileNotFoundError:
        raise DatasetFormatError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise DatasetFormatError(f"{what} {path} is a folder, not an image file") from None
    except Image.DecompressionBombError as error:  # Pillow's own hard limit, checked inside Image.open
        raise DatasetFormatError(
            f"{what} {path} is too large to decode safely (limit {max_pixels:,} pixels): {error}"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DatasetFormatError(f"{what} {path} is corrupt or truncated: {error}") from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise DatasetFormatError(
            f"{what} {path} is {width}x{height} = {width * height:,} pixels, more than the {max_pixels:,} "
            "that are safe to decode"
        )
    return image


def read_image(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Reads an image as RGB ``uint8 [H, W, 3]``, the way image viewers show it.

    * The EXIF orientation tag is applied (phone photos are often stored sideways), so the
      array has the orientation users see and their label maps were drawn on.
    * 16-bit grayscale is scaled to 8 bits (not clipped to white); other grayscale and palette
      images become RGB; transparent pixels are shown on white.
    * Images of more than ``max_pixels`` pixels are refused before they are decoded.

    Raises:
        DatasetFormatError: the file is missing, corrupt, truncated or too large (named).
    """
    path = Path(path)
    with open_image(path, "image", max_pixels) as image:
        return image_to_rgb(image, f"image {path}", max_pixels)


def image_to_rgb(image: Image.Image, name: str = "image", max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """A Pillow image as RGB ``uint8 [H, W, 3]``, the way :func:`read_image` reads files (EXIF
    orientation applied, 16-bit grayscale scaled, transparency on white, size limit checked
    before decoding). ``name`` names the image in errors.

    Raises:
        DatasetFormatError: the image is too large, or its data are corrupt or truncated.
    """
    width, height = image.size  # from the header: a freshly opened image is not decoded yet
    if width < 1 or height < 1:
        raise DatasetFormatError(f"{name} is {width}x{height}: it has no pixels")
    if width * height > max_pixels:
        raise DatasetFormatError(
            f"{name} is {width}x{height} = {width * height:,} pixels, more than the {max_pixels:,} "
            "that are safe to decode"
        )
    try:
        image.load()
        return _as_rgb(ImageOps.exif_transpose(image))
    except (OSError, SyntaxError, ValueError) as error:
        raise DatasetFormatError(f"{name} is corrupt or truncated: {error}") from None


def _as_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow image -> ``uint8 [H, W, 3]`` RGB."""
    if image.mode in _SIXTEEN_BIT_LABEL_MODES:  # 16-bit grayscale: 0..65535 -> 0..255
        values = np.asarray(image, dtype=np.float64)
        gray = np.clip(np.rint(values * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def read_label(
    path: str | Path, num_classes: int, image_size: tuple[int, int] | None = None, max_pixels: int = MAX_IMAGE_PIXELS
) -> np.ndarray:
    """Reads a label map and checks its values and size.

    Datasets of up to 255 classes have 8-bit label maps (255 ignore); a 16-bit file is
    accepted too, with 255 or 65535 as ignore. Datasets of more classes need 16-bit label maps
    (65535 ignore): in an 8-bit file 255 could not be told apart from class 255.

    Args:
        path: a single-channel PNG (8-bit grayscale or palette, or 16-bit grayscale).
        num_classes: C; values must lie in ``0..C-1`` or be the ignore value.
        image_size: ``(H, W)`` of the image it belongs to, checked when given.
        max_pixels: larger maps are refused from their header, before they are decoded (a
            label file, like an image, can declare a size its few bytes do not hold).

    Returns:
        ``[H, W]`` ``uint8`` (ignore 255) when C <= 255, else ``uint16`` (ignore 65535); see
        :attr:`splitmatch.data.classes.ClassSplit.label_dtype`.
    """
    path = Path(path)
    ignore = ignore_index_for(num_classes)
    with open_image(path, "label", max_pixels) as label:
        try:
            width, height = label.size  # from the header: not decoded yet
            if image_size is not None and (height, width) != tuple(image_size):
                raise DatasetFormatError(
                    f"label {path} is {width}x{height} (WxH) but its image is {image_size[1]}x{image_size[0]}"
                )
            label.load()
            mode = label.mode
            if mode not in _EIGHT_BIT_LABEL_MODES + _SIXTEEN_BIT_LABEL_MODES:
                raise DatasetFormatError(
                    f"label {path} has mode {mode}; expected a single-channel PNG "
                    f"(8-bit grayscale or palette, or 16-bit grayscale) holding class ids"
                )
            array = np.asarray(label).astype(np.int64)
        except DatasetFormatError:
            raise
        except (OSError, SyntaxError, ValueError) as error:  # the pixel data, decoded only now
            raise DatasetFormatError(f"label {path} is corrupt or truncated: {error}") from None
    if mode in _EIGHT_BIT_LABEL_MODES and ignore != IGNORE_INDEX:
        raise DatasetFormatError(
            f"label {path} is an 8-bit PNG, but the dataset has {num_classes} classes: datasets of more "
            f"than {IGNORE_INDEX} classes need 16-bit label PNGs ({IGNORE_INDEX_16BIT} = ignore)"
        )
    if mode in _SIXTEEN_BIT_LABEL_MODES:
        array[array == IGNORE_INDEX_16BIT] = ignore  # a 16-bit file may mark ignore either way
    bad = np.unique(array[((array < 0) | (array >= num_classes)) & (array != ignore)])
    if bad.size:
        raise DatasetFormatError(
            f"label {path} holds values {bad[:10].tolist()} outside the {num_classes} classes "
            f"(expected 0..{num_classes - 1} or {ignore})"
        )
    return array.astype(label_dtype_for(num_classes))


def label_png_bytes(label: np.ndarray) -> bytes:
    """Encodes a label map as PNG: ``uint8 [H, W]`` as 8-bit, ``uint16 [H, W]`` as 16-bit grayscale."""
    if label.ndim != 2 or label.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"a label map must be uint8 or uint16 [H, W], got {label.dtype} {label.shape}")
    return _png_bytes(Image.fromarray(np.ascontiguousarray(label)))


def write_label(path: str | Path, label: np.ndarray) -> None:
    """Writes a label map atomically: 8-bit PNG for ``uint8``, 16-bit PNG for ``uint16``.

    Use ``label.astype(ClassSplit.label_dtype)`` (or :func:`~splitmatch.data.classes.label_dtype_for`)
    so that datasets and vocabularies of more than 255 classes get 16-bit files.
    """
    atomic_write_bytes(path, label_png_bytes(label))


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Writes an ``uint8 [H, W, 3]`` picture (or any array Pillow takes) as PNG, atomically."""
    atomic_write_bytes(path, _png_bytes(Image.fromarray(array)))


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_sample(root: str | Path, stem: str, image: np.ndarray, label: np.ndarray, image_format: str = "png"):
    """Writes one image (``uint8 [H, W, 3]``) and its label map (``uint8`` or ``uint16 [H, W]``) into a folder.

    Args:
        image_format: ``png`` (lossless) or ``jpg``.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image for '{stem}' must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    if label.dtype not in (np.uint8, np.uint16) or label.shape != image.shape[:2]:
        raise ValueError(
            f"label for '{stem}' must be uint8 or uint16 {image.shape[:2]}, got {label.dtype} {label.shape}"
        )
    _check_stem_to_write(stem)
    root = Path(root)
    if image_format == "png":
        atomic_write_bytes(root / "images" / f"{stem}.png", _png_bytes(Image.fromarray(image)))
    elif image_format == "jpg":
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=95)
        atomic_write_bytes(root / "images" / f"{stem}.jpg", buffer.getvalue())
    else:
        raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    write_label(root / "labels" / f"{stem}.png", label)


def write_split(root: str | Path, split: str, stems: list[str]) -> None:
    """Writes ``splits/<split>.txt``, refusing a split name or stem a reader would refuse."""
    problem = file_name_problem(split)
    if problem:
        raise DatasetFormatError(f"split name '{printable(str(split), 80)}' cannot be used: {problem}")
    for stem in stems:
        _check_stem_to_write(stem)
    atomic_write_bytes(Path(root) / "splits" / f"{split}.txt", ("\n".join(stems) + "\n").encode("utf-8"))


def _check_stem_to_write(stem: str) -> None:
    problem = stem_problem(stem)
    if problem or stem != stem.strip():
        raise DatasetFormatError(
            f"'{printable(str(stem), 80)}' cannot be written as a stem: {problem or 'it starts or ends with a space'}"
        )
