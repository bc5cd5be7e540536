"""PASCAL VOC 2012 with the SBD augmented labels, into the folder format.

Source layout (the ``VOCdevkit/VOC2012`` folder after mmseg's ``voc_aug.py``)::

    SRC/JPEGImages/<stem>.jpg
    SRC/SegmentationClassAug/<stem>.png     SBD-augmented labels, values 0..20 and 255
    SRC/SegmentationClass/<stem>.png        official palette PNGs (indices are class ids)
    SRC/ImageSets/Segmentation/train.txt    1,464 stems
    SRC/ImageSets/Segmentation/val.txt      1,449 stems
    SRC/ImageSets/Segmentation/aug.txt      optional: the SBD stems not in train or val

Splits written: ``train`` = train + aug without any val stem (10,582 with the full SBD set),
``val`` = val. As in mmseg's ``pascal_voc12_aug`` and ZegCLIP, the stems of the official
train and val lists take their label from SegmentationClass, the other (SBD) stems from
SegmentationClassAug; either folder stands in when the preferred one lacks a stem.
Background (0) becomes ignore, classes 1..20 become 0..19, 255 stays: the 20-class VOC of the
zero-shot benchmark (and "VOC-20" / "PAS-20" of the open-vocabulary papers). With
``background=True`` background is a class instead: 21 classes, ``background`` first, ids as in
the files (the "PAS-21" of FC-CLIP), with no unseen classes (a cross-dataset target).
"""

from __future__ import annotations

from pathlib import Path

from splitmatch.data.classes import BUILTIN_SPLITS, IGNORE_INDEX, VOC_CLASSES, ClassSplit
from splitmatch.data.folder import DatasetFolder, DatasetFormatError
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
    "SRC/JPEGImages/*.jpg, SRC/SegmentationClassAug/*.png and/or SRC/SegmentationClass/*.png, "
    "SRC/ImageSets/Segmentation/{train,val}.txt (+ optional aug.txt); SRC is VOCdevkit/VOC2012"
)

VOC_FORMAT = LabelFormat.from_mapping(
    {0: IGNORE_INDEX, **{value: value - 1 for value in range(1, 21)}, IGNORE_INDEX: IGNORE_INDEX},
    description="0 (background) .. 20, or 255",
)
VOC21_FORMAT = LabelFormat.from_mapping(
    {value: value for value in [*range(21), IGNORE_INDEX]}, description="0 (background) .. 20, or 255"
)
VOC21_SPLIT = ClassSplit(("background", *VOC_CLASSES), (), "voc21")


def _check_root(src: Path) -> None:
    if not (src / "JPEGImages").is_dir():
        for nested in (src / "VOC2012", src / "VOCdevkit" / "VOC2012"):
            if (nested / "JPEGImages").is_dir():
                raise DatasetFormatError(
                    f"{src / 'JPEGImages'} does not exist, but {nested / 'JPEGImages'} does: pass --src {nested}"
                )
    require(src / "JPEGImages", "the VOC2012 JPEG images", LAYOUT)
    if not (src / "SegmentationClassAug").is_dir() and not (src / "SegmentationClass").is_dir():
        raise DatasetFormatError(
            f"neither {src / 'SegmentationClassAug'} nor {src / 'SegmentationClass'} exists: expected the "
            f"label PNGs. Expected source layout: {LAYOUT}"
        )


def voc_splits(src: Path) -> dict[str, list[str]]:
    """The ``train`` (train + aug - val) and ``val`` stem lists, in file order."""
    lists = src / "ImageSets" / "Segmentation"
    train = read_list(lists / "train.txt", LAYOUT)
    val = read_list(lists / "val.txt", LAYOUT)
    aug = read_list(lists / "aug.txt", LAYOUT) if (lists / "aug.txt").is_file() else []
    # SBD's own train list holds VOC val images; dropping them keeps val out of training.
    held_out = set(val)
    merged = [stem for stem in dict.fromkeys(train + aug) if stem not in held_out]
    return {"train": merged, "val": val}


def _sources(
    src: Path, official_stems: list[str], aug_stems: list[str], label_format: LabelFormat
) -> list[SourceSample]:
    images = list_names(src / "JPEGImages")
    folders = {name: list_names(src / name) for name in ("SegmentationClass", "SegmentationClassAug")}
    # As in mmseg / ZegCLIP: the VOC train and val stems use the official labels; only the
    # SBD extra stems use SBD's. mmseg's voc_aug.py also writes SBD labels for VOC val images,
    # and those differ from the official ones that every published number is scored on.
    order = {stem: ("SegmentationClass", "SegmentationClassAug") for stem in official_stems}
    for stem in aug_stems:
        order.setdefault(stem, ("SegmentationClassAug", "SegmentationClass"))
    samples, missing = [], []
    for stem, preference in order.items():
        found = [name for name in preference if f"{stem}.png" in folders[name]]
        if not found:
            missing.append(f"{preference[0]}/{stem}.png or {preference[1]}/{stem}.png")
        elif f"{stem}.jpg" not in images:
            missing.append(f"JPEGImages/{stem}.jpg")
        else:
            label = src / found[0] / f"{stem}.png"
            samples.append(SourceSample(stem, src / "JPEGImages" / f"{stem}.jpg", label, label_format))
    refuse_missing(missing, f"file(s) named by the split lists are missing in {src}")
    return samples


def prepare_voc(src: str | Path, dst: str | Path, progress: bool = True, background: bool = False) -> DatasetFolder:
    """Converts VOC 2012 + SBD (mmseg layout, see the module docstring) into a dataset folder.

    Args:
        background: keep background as class 0 (21 classes, dataset ``voc21``) instead of ignoring it.

    Resumable: files already in ``dst`` are kept, so an interrupted run can simply be repeated.

    Raises:
        DatasetFormatError: ``src`` lacks an expected file (named in the message), or a label
            holds values VOC does not use.
    """
    src, dst = Path(src), Path(dst)
    _check_root(src)
    splits = voc_splits(src)
    official = read_list(src / "ImageSets" / "Segmentation" / "train.txt", LAYOUT) + splits["val"]
    samples = _sources(src, official, splits["train"], VOC21_FORMAT if background else VOC_FORMAT)
    write_classes(dst, VOC21_SPLIT if background else BUILTIN_SPLITS["voc"])
    convert_samples(samples, dst, progress, desc="voc")
    write_splits(dst, splits)
    return DatasetFolder(dst)
