"""The dataset folder format: how every dataset is stored on disk.

The official datasets are converted into it by ``splitmatch prepare``, the built-in world is
written in it, and users bring their own data in it::

    ROOT/
      classes.json          class names in label-id order and the unseen ones (ClassSplit)
      images/<stem>.jpg     RGB images (.jpg, .jpeg or .png)
      labels/<stem>.png     single-channel uint8 label maps: 0..C-1 a class, 255 ignore
      splits/<split>.txt    one stem per line, e.g. splits/train.txt, splits/val.txt

Label files hold every class, seen and unseen: the inductive mapping (unseen to 255) happens
at training time only. Every read here checks what it reads and names the file when it is not
what is expected.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from splitmatch.data.classes import IGNORE_INDEX, ClassSplit

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CLASSES_FILE = "classes.json"


class DatasetFormatError(ValueError):
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
        """The stems a split list names, in file order."""
        path = self.root / "splits" / f"{split}.txt"
        if not path.is_file():
            known = ", ".join(self.split_names()) or "none"
            raise DatasetFormatError(f"split list {path} does not exist (splits present: {known})")
        stems = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not stems:
            raise DatasetFormatError(f"split list {path} is empty")
        duplicates = sorted({s for s in stems if stems.count(s) > 1}) if len(set(stems)) != len(stems) else []
        if duplicates:
            raise DatasetFormatError(f"split list {path} names {duplicates[:5]} more than once")
        return stems

    def samples(self, split: str, require_labels: bool = True) -> list[Sample]:
        """Resolves every stem of a split to its files, refusing any that is missing."""
        samples, missing = [], []
        for stem in self.stems(split):
            image_path = self.image_path(stem)
            label_path = self.root / "labels" / f"{stem}.png"
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
        for suffix in IMAGE_SUFFIXES:
            path = self.root / "images" / f"{stem}{suffix}"
            if path.is_file():
                return path
        return None


def list_some(items: list[str], limit: int = 5) -> str:
    """``"a, b, c, d, e and 7 more"``: enough of a long list of names to act on, in one line."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def read_image(path: str | Path) -> np.ndarray:
    """Reads an image as RGB ``uint8 [H, W, 3]``; a corrupt or truncated file names itself."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except FileNotFoundError:
        raise DatasetFormatError(f"image {path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DatasetFormatError(f"image {path} is corrupt or truncated: {error}") from None


def read_label(path: str | Path, num_classes: int, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Reads a label map as ``uint8 [H, W]`` and checks its values and size.

    Args:
        path: a single-channel PNG.
        num_classes: values must lie in ``0..num_classes-1`` or be 255.
        image_size: ``(H, W)`` of the image it belongs to, checked when given.
    """
    path = Path(path)
    try:
        with Image.open(path) as label:
            label.load()
            if label.mode not in ("L", "P"):
                raise DatasetFormatError(
                    f"label {path} has mode {label.mode}; expected a single-channel 8-bit PNG (mode L or P)"
                )
            array = np.asarray(label, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise DatasetFormatError(f"label {path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DatasetFormatError(f"label {path} is corrupt or truncated: {error}") from None
    if image_size is not None and tuple(array.shape) != tuple(image_size):
        raise DatasetFormatError(
            f"label {path} is {array.shape[1]}x{array.shape[0]} (WxH) but its image is {image_size[1]}x{image_size[0]}"
        )
    bad = np.unique(array[(array >= num_classes) & (array != IGNORE_INDEX)])
    if bad.size:
        raise DatasetFormatError(
            f"label {path} holds values {bad[:10].tolist()} outside the {num_classes} classes "
            f"(expected 0..{num_classes - 1} or {IGNORE_INDEX})"
        )
    return array


def default_file_mode() -> int:
    """``0o666`` minus the process umask: what ``open(path, "w")`` would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Writes a file so that a reader never sees it half-written (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, default_file_mode())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _png_bytes(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_sample(root: str | Path, stem: str, image: np.ndarray, label: np.ndarray, image_format: str = "png"):
    """Writes one image (``uint8 [H, W, 3]``) and its label map (``uint8 [H, W]``) into a folder.

    Args:
        image_format: ``png`` (lossless) or ``jpg``.
    """
    import io

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image for '{stem}' must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    if label.dtype != np.uint8 or label.shape != image.shape[:2]:
        raise ValueError(f"label for '{stem}' must be uint8 {image.shape[:2]}, got {label.dtype} {label.shape}")
    root = Path(root)
    if image_format == "png":
        atomic_write_bytes(root / "images" / f"{stem}.png", _png_bytes(Image.fromarray(image)))
    elif image_format == "jpg":
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=95)
        atomic_write_bytes(root / "images" / f"{stem}.jpg", buffer.getvalue())
    else:
        raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    atomic_write_bytes(root / "labels" / f"{stem}.png", _png_bytes(Image.fromarray(label)))


def write_split(root: str | Path, split: str, stems: list[str]) -> None:
    """Writes ``splits/<split>.txt``."""
    atomic_write_bytes(Path(root) / "splits" / f"{split}.txt", ("\n".join(stems) + "\n").encode("utf-8"))
