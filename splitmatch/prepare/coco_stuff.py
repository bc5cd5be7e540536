"""COCO-Stuff 164K, into the folder format.

Source layout::

    SRC/images/train2017/<stem>.jpg     118,287 images (train2017.zip)
    SRC/images/val2017/<stem>.jpg         5,000 images (val2017.zip)
    SRC/annotations/train2017/<stem>_labelTrainIds.png   mmseg-converted labels, 0..170 and 255
    SRC/annotations/train2017/<stem>.png                 or the official stuffthingmaps
    SRC/annotations/val2017/...                          (stuffthingmaps_trainval2017.zip)

The official stuffthingmaps hold raw ids 0..181 (COCO category id - 1) and 255 for unlabeled;
11 of those ids are COCO thing categories that were never annotated. Dropping them and
numbering the other 171 in order gives the 0..170 ids of mmseg's ``coco_stuff164k.py``
(e.g. raw 12 -> 11, raw 91 -> 80, raw 181 -> 170). A stem with a ``_labelTrainIds.png`` uses it
as is; otherwise its raw map is converted. Splits written: ``train`` and ``val``.
"""

from __future__ import annotations

from pathlib import Path

from splitmatch.data.class_lists import BUILTIN_SPLITS, COCO_STUFF_CLASSES
from splitmatch.data.classes import IGNORE_INDEX
from splitmatch.data.folder import DatasetFolder, DatasetFormatError
from splitmatch.prepare.common import (
    LabelFormat,
    SourceSample,
    convert_samples,
    list_names,
    preflight,
    refuse_missing,
    require,
    write_classes,
    write_splits,
)
from splitmatch.prepare.readback import verify_prepared
from splitmatch.prepare.safety import check_stems

LAYOUT = (
    "SRC/images/{train2017,val2017}/*.jpg and SRC/annotations/{train2017,val2017}/ holding either "
    "<stem>_labelTrainIds.png (0..170, 255) or the official stuffthingmaps <stem>.png (raw ids 0..181, 255)"
)
SPLITS = {"train": "train2017", "val": "val2017"}

# Thing categories COCO defined but never annotated, by raw id (COCO category id - 1).
UNANNOTATED_RAW_NAMES = {
    11: "street sign",
    25: "hat",
    28: "shoe",
    29: "eye glasses",
    44: "plate",
    65: "mirror",
    67: "window",
    68: "desk",
    70: "door",
    82: "blender",
    90: "hair brush",
}
RAW_ID_COUNT = 182  # 91 thing slots, then 91 stuff classes
UNUSED_RAW_IDS = tuple(sorted(UNANNOTATED_RAW_NAMES))
USED_RAW_IDS = tuple(raw for raw in range(RAW_ID_COUNT) if raw not in UNANNOTATED_RAW_NAMES)
_ANNOTATED = iter(COCO_STUFF_CLASSES)
# The official COCO-Stuff label list by raw id: the 171 classes in order, the unannotated between them.
RAW_NAMES = tuple(UNANNOTATED_RAW_NAMES.get(raw) or next(_ANNOTATED) for raw in range(RAW_ID_COUNT))
RAW_TO_TRAIN_ID = {raw: train_id for train_id, raw in enumerate(USED_RAW_IDS)}

RAW_FORMAT = LabelFormat.from_mapping(
    {**RAW_TO_TRAIN_ID, IGNORE_INDEX: IGNORE_INDEX},
    description=f"raw stuffthingmap ids 0..181 except the unannotated {list(UNUSED_RAW_IDS)}, or 255",
)
TRAIN_ID_FORMAT = LabelFormat.from_mapping(
    {**{i: i for i in range(len(USED_RAW_IDS))}, IGNORE_INDEX: IGNORE_INDEX},
    description="train ids 0..170 or 255",
)


def _sources(src: Path, split_dir: str) -> list[SourceSample]:
    image_dir = require(src / "images" / split_dir, f"the COCO {split_dir} images", LAYOUT)
    label_dir = require(src / "annotations" / split_dir, f"the COCO-Stuff {split_dir} label PNGs", LAYOUT)
    stems = sorted(name[: -len(".jpg")] for name in list_names(image_dir) if name.endswith(".jpg"))
    if not stems:
        raise DatasetFormatError(f"{image_dir} holds no .jpg images. Expected source layout: {LAYOUT}")
    check_stems(stems, str(image_dir))
    labels = list_names(label_dir)
    samples, missing = [], []
    for stem in stems:
        image = image_dir / f"{stem}.jpg"
        if f"{stem}_labelTrainIds.png" in labels:
            samples.append(SourceSample(stem, image, label_dir / f"{stem}_labelTrainIds.png", TRAIN_ID_FORMAT))
        elif f"{stem}.png" in labels:
            samples.append(SourceSample(stem, image, label_dir / f"{stem}.png", RAW_FORMAT))
        else:
            missing.append(f"{stem}_labelTrainIds.png or {stem}.png")
    refuse_missing(missing, f"image(s) of {image_dir} have no label in {label_dir}")
    return samples


def prepare_coco_stuff(
    src: str | Path, dst: str | Path, progress: bool = True, allow_partial: bool = False
) -> DatasetFolder:
    """Converts COCO-Stuff 164K (see the module docstring) into a dataset folder.

    Args:
        allow_partial: accept splits of other sizes than the protocol's (118,287 / 5,000), with a
            :class:`~splitmatch.prepare.protocol_sizes.PartialDatasetWarning`.

    Resumable: files already in ``dst`` are kept, so an interrupted run can simply be repeated.

    Raises:
        DatasetFormatError: ``src`` lacks an expected file (named in the message), or a label
            holds values its format does not use.
    """
    src, dst = Path(src), Path(dst)
    per_split = {split: _sources(src, split_dir) for split, split_dir in SPLITS.items()}
    splits = {split: [s.stem for s in samples] for split, samples in per_split.items()}
    preflight("coco-stuff", src, dst, splits, allow_partial)
    write_classes(dst, BUILTIN_SPLITS["coco-stuff"])
    for split, samples in per_split.items():
        convert_samples(samples, dst, progress, desc=f"coco-stuff {split}")
    write_splits(dst, splits)
    return verify_prepared(dst, BUILTIN_SPLITS["coco-stuff"], splits)
