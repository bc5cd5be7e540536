"""What a converter knows about the folder it wrote: class pixel counts, the read-back, the report.

``ROOT/class_pixels.json`` holds, per image, the pixels of each class its label holds
(``{"counts": {stem: {class_id: pixels}}}``, ignore not counted). It is written from the label
arrays as they are converted, so reporting which classes a split holds, and drawing the
episode lists of PASCAL-5i and COCO-20i, need no second pass over the labels.

Every converter ends with :func:`verify_prepared`: the folder is opened with
:class:`~splitmatch.data.folder.DatasetFolder` and :class:`~splitmatch.data.dataset.SegmentationDataset`,
the readers training and evaluation use, so ``prepare`` never reports a folder they cannot read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from splitmatch.data.classes import ClassSplit, ignore_index_of
from splitmatch.data.folder import DatasetFolder, DatasetFormatError, list_some
from splitmatch.storage.files import atomic_write_bytes, parse_json, read_text

PIXEL_COUNTS_FILE = "class_pixels.json"
PixelCounts = dict[str, dict[int, int]]  # stem -> class id -> pixels


def count_classes(label: np.ndarray) -> dict[int, int]:
    """Pixels per class id of a label map ``uint8 | uint16 [H, W]``, its ignore value left out."""
    ignore = ignore_index_of(label.dtype)
    bins = np.bincount(label.ravel(), minlength=1)
    return {int(i): int(bins[i]) for i in np.flatnonzero(bins) if i != ignore}


def read_pixel_counts(root: Path) -> PixelCounts:
    """The counts recorded in ``root``; an absent file is none recorded yet."""
    path = Path(root) / PIXEL_COUNTS_FILE
    if not path.is_file():
        return {}
    try:
        data = parse_json(read_text(path, "pixel counts"))
        return {stem: {int(k): int(v) for k, v in per_class.items()} for stem, per_class in data["counts"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as error:  # InvalidJsonError, TextFileError too
        raise DatasetFormatError(
            f"{path} is damaged ({type(error).__name__}: {error}); delete it and run prepare again to recount"
        ) from None


def pixel_counts_text(counts: PixelCounts) -> str:
    """The file's content: stems sorted, so the same counts always give the same bytes."""
    data = {stem: {str(k): v for k, v in sorted(counts[stem].items())} for stem in sorted(counts)}
    return json.dumps({"counts": data}, separators=(",", ":")) + "\n"


def write_pixel_counts(root: Path, counts: PixelCounts) -> None:
    """Writes the counts atomically, leaving the file untouched when it already holds them."""
    path = Path(root) / PIXEL_COUNTS_FILE
    text = pixel_counts_text(counts)
    if path.is_file() and path.read_bytes() == text.encode("utf-8"):
        return
    atomic_write_bytes(path, text.encode("utf-8"))


def verify_prepared(dst: Path, classes: ClassSplit, splits: Mapping[str, Sequence[str]]) -> DatasetFolder:
    """Reads the written folder back as training does; returns it.

    Checks that ``classes.json`` and every split list read back as written, that every file a
    split names exists, and decodes the first, middle and last sample of each split through
    :class:`~splitmatch.data.dataset.SegmentationDataset` (image and label, sizes compared).

    Raises:
        DatasetFormatError: anything that does not read back, named.
    """
    from splitmatch.data.dataset import SegmentationDataset  # imports torch: only when a folder is finished

    folder = DatasetFolder(dst)
    if folder.classes != classes:
        raise DatasetFormatError(f"{dst / 'classes.json'} does not read back as the classes that were written")
    for split, stems in splits.items():
        if folder.stems(split) != list(stems):
            raise DatasetFormatError(f"split list {dst / 'splits' / f'{split}.txt'} does not read back as written")
        dataset = SegmentationDataset(folder, split)  # resolves every listed file
        for index in sorted({0, len(dataset) // 2, len(dataset) - 1}):
            dataset[index]
    return folder


def describe_prepared(folder: DatasetFolder) -> list[str]:
    """Per split: images, the classes its labels hold, the unseen classes among them (lines to print;
    the folds of a PASCAL-5i or COCO-20i folder: :func:`splitmatch.prepare.fold_files.describe_folds`)."""
    counts = read_pixel_counts(folder.root)
    names, unseen = folder.classes.names, set(folder.classes.unseen)
    lines = []
    for split in folder.split_names():
        stems = folder.stems(split)
        present = sorted({c for stem in stems for c in counts.get(stem, {})})
        uncounted = sum(stem not in counts for stem in stems)
        missing = [names[i] for i in range(len(names)) if i not in set(present)]
        line = f"  {split}: {len(stems):,} images, {len(present)} of {len(names)} classes"
        if missing:
            line += f" (absent: {list_some(missing)})"
        if unseen:
            found = [names[i] for i in present if names[i] in unseen]
            line += f"; unseen classes present: {len(found)} of {len(unseen)}"
            line += f" ({', '.join(found)})" if found else ""
        if uncounted:
            line += f"; {uncounted:,} images without recorded counts"
        lines.append(line)
    return lines
