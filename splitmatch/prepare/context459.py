"""PASCAL Context with all 459 classes, from the official annotation files, into the folder format.

Source layout (the ``VOCdevkit/VOC2010`` folder, with the official full-Context release
``trainval.tar.gz`` unpacked into it)::

    SRC/JPEGImages/<stem>.jpg
    SRC/trainval/<stem>.mat                          MATLAB label maps: variable LabelMap, 1..459
    SRC/labels.txt                                   "1: accordion" ... "459: wool", one a line
    SRC/ImageSets/SegmentationContext/train.txt      4,996 stems (the Context-59 lists), or
    SRC/ImageSets/SegmentationContext/val.txt        5,104 stems
    SRC/pascalcontext_val.txt                        the same val list as CAT-Seg ships it

The class names and their order are those of ``labels.txt``. Label id k (1..459) becomes k - 1
and 0 (no label) becomes ignore, which is 65535: with more than 255 classes the label PNGs are
16-bit. This is how SAN, CAT-Seg and FC-CLIP score Context-459, on the Context val split the
Context-59 benchmark uses (5,104 images). The ``.mat`` files are read with ``scipy.io.loadmat``,
which decodes MATLAB arrays and never unpickles. Context-459 is a cross-dataset target: it
defines no unseen classes.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import scipy.io

from splitmatch.data.classes import IGNORE_INDEX_16BIT, ClassSplit, ClassSplitError
from splitmatch.data.folder import DatasetFolder, DatasetFormatError
from splitmatch.prepare.common import (
    LabelFormat,
    SourceSample,
    check_label_size,
    convert_samples,
    list_names,
    preflight,
    read_list,
    refuse_missing,
    require,
    write_classes,
    write_splits,
)
from splitmatch.prepare.readback import verify_prepared
from splitmatch.storage.files import read_text

LAYOUT = (
    "SRC/JPEGImages/*.jpg, SRC/trainval/*.mat and SRC/labels.txt (the full PASCAL Context release), "
    "and SRC/ImageSets/SegmentationContext/{train,val}.txt or SRC/pascalcontext_val.txt; SRC is VOCdevkit/VOC2010"
)
NUM_CLASSES = 459
_LABEL_LINE = re.compile(r"^\s*([0-9]+)\s*:\s*(.+?)\s*$")  # ASCII digits: int() reads others too

# Only the description is used: .mat labels are mapped by convert_mat_label, not by a lookup table.
MAT_FORMAT = LabelFormat.from_mapping({}, description=f"LabelMap values 0 (no label) .. {NUM_CLASSES}")


def read_class_list(path: Path) -> ClassSplit:
    """The 459 classes of ``labels.txt`` (``"<id>: <name>"`` lines, ids 1..459), in id order."""
    require(path, "the PASCAL Context class list (labels.txt of the full release)", LAYOUT)
    names: dict[int, str] = {}
    text = read_text(path, "class list", "expected '<id>: <name>' lines", DatasetFormatError)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _LABEL_LINE.match(line)
        if match is None:
            raise DatasetFormatError(f"{path} line {number}: expected '<id>: <name>', got {line.strip()!r}")
        class_id, name = int(match.group(1)), match.group(2)
        if class_id in names:
            raise DatasetFormatError(f"{path} line {number}: id {class_id} is given twice")
        names[class_id] = name
    if sorted(names) != list(range(1, NUM_CLASSES + 1)):
        missing = sorted(set(range(1, NUM_CLASSES + 1)) - set(names))[:5]
        extra = sorted(set(names) - set(range(1, NUM_CLASSES + 1)))[:5]
        raise DatasetFormatError(
            f"{path} lists {len(names)} classes; expected ids 1..{NUM_CLASSES} once each "
            f"(missing {missing}, unexpected {extra})"
        )
    try:
        return ClassSplit(tuple(names[i] for i in range(1, NUM_CLASSES + 1)), (), "context-459")
    except ClassSplitError as error:
        raise DatasetFormatError(f"{path}: {error}") from None


def read_label_map(sample: SourceSample) -> np.ndarray:
    """``LabelMap`` of an official ``.mat`` file, checked: ``int64 [H, W]``, 0 (no label) .. 459."""
    try:
        values = scipy.io.loadmat(str(sample.label), variable_names=["LabelMap"]).get("LabelMap")
    except Exception as error:  # noqa: BLE001 (SciPy's parser fails on a damaged file in many ways, IndexError too)
        raise DatasetFormatError(f"cannot read {sample.label} as a MATLAB label map: {error}") from None
    if values is None or values.ndim != 2 or values.dtype.kind not in "ui":
        raise DatasetFormatError(f"{sample.label} holds no 2-D integer variable 'LabelMap'")
    check_label_size(values, sample)
    values = values.astype(np.int64)
    bad = np.unique(values[(values < 0) | (values > NUM_CLASSES)])
    if bad.size:
        raise DatasetFormatError(
            f"label {sample.label} holds values {bad[:10].tolist()} that its format does not use "
            f"(expected {MAT_FORMAT.description})"
        )
    return values


def convert_mat_label(sample: SourceSample) -> np.ndarray:
    """Reads ``LabelMap`` from an official ``.mat`` file: ``uint16 [H, W]``, 0..458 and 65535 ignore."""
    values = read_label_map(sample)
    return np.where(values == 0, IGNORE_INDEX_16BIT, values - 1).astype(np.uint16)


def context459_splits(src: Path) -> dict[str, list[str]]:
    """``train`` and ``val`` from the Context-59 lists, or ``val`` alone from CAT-Seg's list."""
    lists = src / "ImageSets" / "SegmentationContext"
    if (lists / "val.txt").is_file():
        splits = {"val": read_list(lists / "val.txt", LAYOUT)}
        if (lists / "train.txt").is_file():
            splits = {"train": read_list(lists / "train.txt", LAYOUT), **splits}
        return splits
    if (src / "pascalcontext_val.txt").is_file():
        return {"val": read_list(src / "pascalcontext_val.txt", LAYOUT)}
    raise DatasetFormatError(
        f"neither {lists / 'val.txt'} nor {src / 'pascalcontext_val.txt'} exists: expected the Context val "
        f"list. Expected source layout: {LAYOUT}"
    )


def mat_sources(src: Path, splits: dict[str, list[str]]) -> list[SourceSample]:
    """One sample per stem of ``splits``: ``JPEGImages/<stem>.jpg`` and ``trainval/<stem>.mat``."""
    images, mats = list_names(src / "JPEGImages"), list_names(src / "trainval")
    samples, missing = [], []
    for stem in dict.fromkeys(stem for stems in splits.values() for stem in stems):
        if f"{stem}.jpg" not in images:
            missing.append(f"JPEGImages/{stem}.jpg")
        elif f"{stem}.mat" not in mats:
            missing.append(f"trainval/{stem}.mat")
        else:
            samples.append(
                SourceSample(stem, src / "JPEGImages" / f"{stem}.jpg", src / "trainval" / f"{stem}.mat", MAT_FORMAT)
            )
    refuse_missing(missing, f"file(s) named by the split lists are missing in {src}")
    return samples


def prepare_context459(
    src: str | Path, dst: str | Path, progress: bool = True, allow_partial: bool = False
) -> DatasetFolder:
    """Converts PASCAL Context-459 (see the module docstring) into a dataset folder.

    Args:
        allow_partial: accept splits of other sizes than the protocol's (val 5,104; train, when
            listed, 4,996), with a :class:`~splitmatch.prepare.protocol_sizes.PartialDatasetWarning`.

    Resumable: files already in ``dst`` are kept, so an interrupted run can simply be repeated.

    Raises:
        DatasetFormatError: ``src`` lacks an expected file (named in the message), or a label
            holds values Context-459 does not use.
    """
    src, dst = Path(src), Path(dst)
    require(src / "JPEGImages", "the VOC2010 JPEG images", LAYOUT)
    require(src / "trainval", "the full PASCAL Context label maps (trainval/*.mat)", LAYOUT)
    classes = read_class_list(src / "labels.txt")
    splits = context459_splits(src)
    preflight("context-459", src, dst, splits, allow_partial)
    samples = mat_sources(src, splits)
    write_classes(dst, classes)
    convert_samples(samples, dst, progress, desc="context-459", convert=convert_mat_label)
    write_splits(dst, splits)
    return verify_prepared(dst, classes, splits)
