"""PASCAL Context-59, into the folder format.

Source layout (the ``VOCdevkit/VOC2010`` folder after mmseg's ``pascal_context.py``, which
turns the Context ``trainval_merged.json`` into PNGs with the Detail API)::

    SRC/JPEGImages/<stem>.jpg
    SRC/SegmentationClassContext/<stem>.png         0 background, 1..59 the classes, 255
    SRC/ImageSets/SegmentationContext/train.txt     4,996 stems
    SRC/ImageSets/SegmentationContext/val.txt       5,104 stems

Background (0) becomes ignore and classes 1..59 become 0..58 (mmseg ``PascalContextDataset59``
with ``reduce_zero_label``); the class order is mmseg's / ZegCLIP's, alphabetical.
"""

from __future__ import annotations

from pathlib import Path

from splitmatch.data.classes import BUILTIN_SPLITS, IGNORE_INDEX
from splitmatch.data.folder import DatasetFolder
from splitmatch.data.prepare.common import (
    LabelFormat,
    SourceSample,
    convert_samples,
    list_names,
    read_list,
    refuse_missing,
    require,
    write_classes,
    write_splits,
)

LAYOUT = (
    "SRC/JPEGImages/*.jpg, SRC/SegmentationClassContext/*.png, "
    "SRC/ImageSets/SegmentationContext/{train,val}.txt; "
    "SRC is VOCdevkit/VOC2010 after mmseg's pascal_context.py"
)

CONTEXT_FORMAT = LabelFormat.from_mapping(
    {0: IGNORE_INDEX, **{value: value - 1 for value in range(1, 60)}, IGNORE_INDEX: IGNORE_INDEX},
    description="0 (background) .. 59, or 255",
)


def _sources(src: Path, stems: list[str]) -> list[SourceSample]:
    images = list_names(src / "JPEGImages")
    labels = list_names(src / "SegmentationClassContext")
    samples, missing = [], []
    for stem in stems:
        if f"{stem}.jpg" not in images:
            missing.append(f"JPEGImages/{stem}.jpg")
        elif f"{stem}.png" not in labels:
            missing.append(f"SegmentationClassContext/{stem}.png")
        else:
            image, label = (
                src / "JPEGImages" / f"{stem}.jpg",
                src / "SegmentationClassContext" / f"{stem}.png",
            )
            samples.append(SourceSample(stem, image, label, CONTEXT_FORMAT))
    refuse_missing(missing, f"file(s) named by the split lists are missing in {src}")
    return samples


def prepare_context(src: str | Path, dst: str | Path, progress: bool = True) -> DatasetFolder:
    """Converts PASCAL Context-59 (see the module docstring) into a dataset folder.

    Resumable: files already in ``dst`` are kept, so an interrupted run can simply be repeated.

    Raises:
        DatasetFormatError: ``src`` lacks an expected file (named in the message), or a label
            holds values Context-59 does not use.
    """
    src, dst = Path(src), Path(dst)
    require(src / "JPEGImages", "the VOC2010 JPEG images", LAYOUT)
    require(src / "SegmentationClassContext", "the Context-59 label PNGs made by mmseg", LAYOUT)
    lists = src / "ImageSets" / "SegmentationContext"
    splits = {name: read_list(lists / f"{name}.txt", LAYOUT) for name in ("train", "val")}
    samples = _sources(src, list(dict.fromkeys(splits["train"] + splits["val"])))
    write_classes(dst, BUILTIN_SPLITS["context"])
    convert_samples(samples, dst, progress, desc="context")
    write_splits(dst, splits)
    return DatasetFolder(dst)
