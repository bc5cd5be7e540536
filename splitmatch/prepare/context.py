"""PASCAL Context-59, into the folder format.

Source layout (the ``VOCdevkit/VOC2010`` folder after mmseg's ``pascal_context.py``, which
turns the Context ``trainval_merged.json`` into PNGs with the Detail API)::

    SRC/JPEGImages/<stem>.jpg
    SRC/SegmentationClassContext/<stem>.png         0 background, 1..59 the classes, 255
    SRC/ImageSets/SegmentationContext/train.txt     4,996 stems
    SRC/ImageSets/SegmentationContext/val.txt       5,104 stems

Background (0) becomes ignore and classes 1..59 become 0..58 (mmseg ``PascalContextDataset59``
with ``reduce_zero_label``); the class order is mmseg's / ZegCLIP's, alphabetical.

Or from the official full-Context files, without the Detail API, when ``SegmentationClassContext``
is absent: ``SRC/trainval/<stem>.mat`` (``LabelMap``, ids 1..459 of ``SRC/labels.txt``) with the
split lists Context-459 reads (:mod:`~splitmatch.prepare.context459`). The 59 classes are
the 459-class ids that mmseg's ``pascal_context.py`` keeps (:data:`CONTEXT59_LABEL_IDS`), checked
by name against ``labels.txt``; every other id and 0 become ignore, as background does above.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from splitmatch.data.class_lists import BUILTIN_SPLITS, CONTEXT59_CLASSES
from splitmatch.data.classes import IGNORE_INDEX
from splitmatch.data.folder import DatasetFolder, DatasetFormatError
from splitmatch.prepare.common import (
    LabelFormat,
    SourceSample,
    convert_label,
    convert_samples,
    list_names,
    preflight,
    read_list,
    refuse_missing,
    require,
    write_classes,
    write_splits,
)
from splitmatch.prepare.context459 import (
    NUM_CLASSES,
    context459_splits,
    mat_sources,
    read_class_list,
    read_label_map,
)
from splitmatch.prepare.readback import verify_prepared

LAYOUT = (
    "SRC/JPEGImages/*.jpg, SRC/SegmentationClassContext/*.png, "
    "SRC/ImageSets/SegmentationContext/{train,val}.txt; "
    "SRC is VOCdevkit/VOC2010 after mmseg's pascal_context.py; or SRC/trainval/*.mat and SRC/labels.txt "
    "(the official full Context release) with SRC/ImageSets/SegmentationContext/{train,val}.txt"
)

CONTEXT_FORMAT = LabelFormat.from_mapping(
    {0: IGNORE_INDEX, **{value: value - 1 for value in range(1, 60)}, IGNORE_INDEX: IGNORE_INDEX},
    description="0 (background) .. 59, or 255",
)

# The ids of labels.txt (the 459-class list) that are the 59 classes, in their (alphabetical)
# order: mmseg's pascal_context.py mapping without its 0 (background).
CONTEXT59_LABEL_IDS = (
    2,
    9,
    18,
    19,
    22,
    23,
    25,
    31,
    33,
    34,
    44,
    45,
    46,
    59,
    65,
    68,
    72,
    80,
    85,
    98,
    104,
    105,
    113,
    115,
    144,
    158,
    159,
    162,
    187,
    189,
    207,
    220,
    232,
    258,
    259,
    260,
    284,
    295,
    296,
    308,
    324,
    326,
    347,
    349,
    354,
    355,
    360,
    366,
    368,
    397,
    415,
    416,
    420,
    424,
    427,
    440,
    445,
    454,
    458,
)
_MAT_TO_CLASS = np.full(NUM_CLASSES + 1, IGNORE_INDEX, dtype=np.uint8)
_MAT_TO_CLASS[list(CONTEXT59_LABEL_IDS)] = np.arange(len(CONTEXT59_LABEL_IDS))


def check_context59_names(labels_txt: Path) -> None:
    """Refuses a ``labels.txt`` whose names at the 59 ids are not the 59 classes."""
    names = read_class_list(labels_txt).names
    wrong = [
        f"id {label_id} is {names[label_id - 1]!r}, not {expected!r}"
        for label_id, expected in zip(CONTEXT59_LABEL_IDS, CONTEXT59_CLASSES)
        if names[label_id - 1] != expected
    ]
    if wrong:
        raise DatasetFormatError(
            f"{labels_txt} does not name the 59 Context classes at mmseg's ids: {'; '.join(wrong[:5])}"
        )


def convert_context59_mat(sample: SourceSample) -> np.ndarray:
    """An official ``LabelMap`` (ids 0..459) -> the 59 classes ``uint8 [H, W]``, everything else 255."""
    return _MAT_TO_CLASS[read_label_map(sample)]


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


def prepare_context(
    src: str | Path, dst: str | Path, progress: bool = True, allow_partial: bool = False
) -> DatasetFolder:
    """Converts PASCAL Context-59 (see the module docstring) into a dataset folder.

    Reads mmseg's PNGs when ``SRC/SegmentationClassContext`` exists, else the official ``.mat`` files.

    Args:
        allow_partial: accept splits of other sizes than the protocol's (4,996 / 5,104), with a
            :class:`~splitmatch.prepare.protocol_sizes.PartialDatasetWarning`.

    Resumable: files already in ``dst`` are kept, so an interrupted run can simply be repeated.

    Raises:
        DatasetFormatError: ``src`` lacks an expected file (named in the message), or a label
            holds values Context-59 does not use.
    """
    src, dst = Path(src), Path(dst)
    require(src / "JPEGImages", "the VOC2010 JPEG images", LAYOUT)
    classes = BUILTIN_SPLITS["context"]
    if (src / "SegmentationClassContext").is_dir():
        lists = src / "ImageSets" / "SegmentationContext"
        splits = {name: read_list(lists / f"{name}.txt", LAYOUT) for name in ("train", "val")}
        preflight("context", src, dst, splits, allow_partial)
        samples, convert = _sources(src, list(dict.fromkeys(splits["train"] + splits["val"]))), convert_label
    elif (src / "trainval").is_dir():
        check_context59_names(src / "labels.txt")
        splits = context459_splits(src)
        preflight("context", src, dst, splits, allow_partial)
        samples, convert = mat_sources(src, splits), convert_context59_mat
    else:
        raise DatasetFormatError(
            f"neither {src / 'SegmentationClassContext'} (mmseg's label PNGs) nor {src / 'trainval'} (the official "
            f".mat label maps) exists. Expected source layout: {LAYOUT}"
        )
    write_classes(dst, classes)
    convert_samples(samples, dst, progress, desc="context", convert=convert)
    write_splits(dst, splits)
    return verify_prepared(dst, classes, splits)
