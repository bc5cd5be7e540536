"""What every converter shares: checking the source layout, and resumable, crash-safe writing.

A converter lists its samples as :class:`SourceSample` (where the image and the official
label are, and how to turn the official label values into class ids), then
:func:`convert_samples` writes them into the folder format. Every file appears atomically
(hard link, or copy to a temporary name then rename; labels through ``atomic_write_bytes``), so
a killed run leaves no half-written file, and files already present are skipped, so running
again finishes the job or does nothing. Beside the labels, ``class_pixels.json`` records how many
pixels of each class every label holds (:mod:`splitmatch.prepare.readback`): what
``prepare`` reports, and what the episode lists of PASCAL-5i and COCO-20i are drawn from.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from splitmatch.data.classes import IGNORE_INDEX, ClassSplit
from splitmatch.data.folder import CLASSES_FILE, DatasetFormatError, list_some, open_image, read_label, write_label
from splitmatch.prepare.protocol_sizes import check_split_sizes
from splitmatch.prepare.readback import count_classes, read_pixel_counts, write_pixel_counts
from splitmatch.prepare.safety import check_destination, check_stems
from splitmatch.storage.files import atomic_replace, atomic_write_bytes, read_text, remove_stale_temporaries


@dataclass(frozen=True, eq=False)
class LabelFormat:
    """How an official label file encodes classes.

    Attributes:
        description: the values it may hold, for error messages, e.g. ``"0..20 or 255"``.
        lut: uint8 [256], official value -> class id (255 ignore).
        valid: bool [256], which official values may occur; any other is an error naming the file.
    """

    description: str
    lut: np.ndarray
    valid: np.ndarray

    @classmethod
    def from_mapping(cls, mapping: dict[int, int], description: str) -> LabelFormat:
        """Builds a format from ``{official value: class id}``; unlisted values are invalid."""
        lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        valid = np.zeros(256, dtype=bool)
        for value, class_id in mapping.items():
            lut[value] = class_id
            valid[value] = True
        return cls(description, lut, valid)


@dataclass(frozen=True)
class SourceSample:
    """One image of an official layout and its label file.

    Attributes:
        stem: the name in the folder format (``images/<stem><suffix>``, ``labels/<stem>.png``).
        image: the official image file.
        label: the official label file.
        format: how the label file's values map to class ids (for 8-bit PNG labels).
    """

    stem: str
    image: Path
    label: Path
    format: LabelFormat


def require(path: Path, what: str, layout: str) -> Path:
    """Returns ``path`` if it exists, else raises naming it, what it should be and the layout."""
    if not path.exists():
        raise DatasetFormatError(f"{path} does not exist: expected {what}. Expected source layout: {layout}")
    return path


def refuse_missing(missing: list[str], what: str) -> None:
    """Raises, naming the first few, when any source file is missing: ``what`` says where."""
    if missing:
        raise DatasetFormatError(f"{len(missing)} {what}: {list_some(missing)}")


def read_list(path: Path, layout: str) -> list[str]:
    """Reads a stem list (one per line, blank lines skipped), refusing a missing or empty one."""
    require(path, "a list of image names, one per line", layout)
    text = read_text(path, "list", "expected one image name per line", DatasetFormatError)
    stems = [line.strip() for line in text.splitlines() if line.strip()]
    if not stems:
        raise DatasetFormatError(f"list {path} is empty. Expected source layout: {layout}")
    check_stems(stems, f"list {path}")
    return list(dict.fromkeys(stems))


def preflight(protocol: str, src: Path, dst: Path, splits: dict[str, list[str]], allow_partial: bool) -> None:
    """The checks before anything is written: ``dst`` outside ``src``, every name writable, and
    every split of the protocol's size (see :mod:`~splitmatch.prepare.protocol_sizes`)."""
    check_destination(src, dst)
    for name, stems in splits.items():
        check_stems(stems, f"split '{name}' of {src}")
    check_split_sizes(protocol, splits, allow_partial)


def list_names(directory: Path) -> set[str]:
    """File names in a directory (one scan; far faster than a stat per file on 100k files)."""
    if not directory.is_dir():
        return set()
    with os.scandir(directory) as entries:
        return {entry.name for entry in entries}


def link_or_copy(src: Path, dst: Path) -> None:
    """Puts ``src`` at ``dst`` as a hard link when the file system allows it, else as a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # a link appears whole or not at all
        return
    except FileExistsError:
        return
    except OSError:
        pass  # another file system, or links not permitted: copy instead
    with atomic_replace(dst) as tmp:
        shutil.copyfile(src, tmp)


def convert_label(sample: SourceSample) -> np.ndarray:
    """Reads an official label (mode L or P: the raw indices) and maps it: uint8 [H, W]."""
    with open_image(sample.label, "label") as label:
        if label.mode not in ("L", "P"):
            raise DatasetFormatError(
                f"label {sample.label} has mode {label.mode}; expected a single-channel 8-bit PNG "
                f"(grayscale or palette) holding class indices"
            )
        try:
            label.load()
            values = np.asarray(label, dtype=np.uint8)
        except (OSError, SyntaxError, ValueError) as error:
            raise DatasetFormatError(f"cannot read label {sample.label}: {error}") from None
    check_label_size(values, sample)
    return apply_format(values, sample)


def apply_format(values: np.ndarray, sample: SourceSample) -> np.ndarray:
    """Maps official label values ``[H, W]`` (any integer type) to class ids ``uint8 [H, W]``
    with the sample's format, refusing values the format does not use (named with the file)."""
    values = np.asarray(values)
    outside = (values < 0) | (values > 255)
    bad = np.unique(values[outside]) if outside.any() else np.unique(values[~sample.format.valid[values]])
    if bad.size:
        raise DatasetFormatError(
            f"label {sample.label} holds values {bad[:10].tolist()} that its format does not use "
            f"(expected {sample.format.description})"
        )
    return sample.format.lut[values]


def check_label_size(values: np.ndarray, sample: SourceSample) -> None:
    """Refuses an official label ``[H, W]`` whose size is not its image's, and an image too large to
    decode (both read from the image's header only)."""
    with open_image(sample.image, "image") as image:
        width, height = image.size
    if values.shape != (height, width):
        raise DatasetFormatError(
            f"label {sample.label} is {values.shape[1]}x{values.shape[0]} (WxH) but image {sample.image} "
            f"is {width}x{height}"
        )


def convert_samples(
    samples: list[SourceSample],
    dst: Path,
    progress: bool,
    desc: str,
    convert: Callable[[SourceSample], np.ndarray] = convert_label,
) -> int:
    """Writes every sample not yet in ``dst`` and records every sample's class pixel counts;
    returns how many were written.

    Called after :func:`write_classes`. A sample already in ``dst`` whose counts are not recorded
    (its run was killed before the counts were saved) has its label read back, with the reader
    training uses, to count it.

    Args:
        convert: reads a sample's official label and returns its class ids, ``uint8 [H, W]``
            (255 ignore) or ``uint16 [H, W]`` (65535 ignore) for datasets of more than 255 classes.
    """
    check_stems([s.stem for s in samples], desc)
    remove_stale_temporaries(dst / "images", dst / "labels")
    images, labels = list_names(dst / "images"), list_names(dst / "labels")
    counts = read_pixel_counts(dst)
    todo = [s for s in samples if s.stem + s.image.suffix not in images or s.stem + ".png" not in labels]
    try:
        for sample in tqdm(todo, desc=desc, unit="img", disable=not progress):
            label = convert(sample)
            write_label(dst / "labels" / f"{sample.stem}.png", label)
            link_or_copy(sample.image, dst / "images" / f"{sample.stem}{sample.image.suffix}")
            counts[sample.stem] = count_classes(label)
        uncounted = [s for s in samples if s.stem not in counts]
        if uncounted:
            num_classes = ClassSplit.read(dst / CLASSES_FILE).num_classes
            for sample in tqdm(uncounted, desc=f"{desc}: counting", unit="img", disable=not progress):
                counts[sample.stem] = count_classes(read_label(dst / "labels" / f"{sample.stem}.png", num_classes))
    finally:  # a failure half-way keeps the counts of what was written
        write_pixel_counts(dst, counts)
    return len(todo)


def write_if_changed(path: Path, text: str, conflict: str | None = None) -> None:
    """Writes ``text`` atomically unless the file already holds it.

    Args:
        conflict: when given, an existing file with other content is an error with this advice
            instead of being replaced.
    """
    if path.is_file():
        if path.read_bytes() == text.encode("utf-8"):  # bytes: a file that is not UTF-8 is simply different
            return
        if conflict is not None:
            raise DatasetFormatError(f"{path} already exists with different content; {conflict}")
    atomic_write_bytes(path, text.encode("utf-8"))


def write_classes(dst: Path, classes: ClassSplit) -> None:
    """Writes ``classes.json``; refuses a ``dst`` that already describes another dataset.

    Called before any image is converted, so a wrong ``--dst`` fails at once.
    """
    write_if_changed(
        dst / CLASSES_FILE,
        json.dumps(classes.to_dict(), indent=2) + "\n",
        conflict=f"it does not describe '{classes.dataset}'; choose an empty --dst",
    )


def write_splits(dst: Path, splits: dict[str, Iterable[str]]) -> None:
    """Writes ``splits/<name>.txt``; called last, so a split list only names converted files."""
    for name, stems in splits.items():
        write_if_changed(dst / "splits" / f"{name}.txt", "\n".join(stems) + "\n")
