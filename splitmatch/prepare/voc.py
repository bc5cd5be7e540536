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

With ``sbd=`` (``--sbd benchmark_RELEASE/dataset``) the SBD labels are read from SBD's own
``cls/<stem>.mat`` files (:mod:`~splitmatch.prepare.sbd`) instead of SegmentationClassAug
PNGs, and the aug stems are SBD's ``train.txt`` + ``val.txt`` (``aug.txt`` is then not read).
"""

from __future__ import annotations

from pathlib import Path

from splitmatch.data.class_lists import BUILTIN_SPLITS, VOC_CLASSES
from splitmatch.data.classes import IGNORE_INDEX, ClassSplit
from splitmatch.data.folder import DatasetFolder, DatasetFormatError
from splitmatch.prepare.common import (
    LabelFormat,
    SourceSample,
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
from splitmatch.prepare.sbd import convert_sbd_or_png, sbd_stems

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


def check_voc_root(src: Path, sbd: Path | None) -> None:
    if not (src / "JPEGImages").is_dir():
        for nested in (src / "VOC2012", src / "VOCdevkit" / "VOC2012"):
            if (nested / "JPEGImages").is_dir():
                raise DatasetFormatError(
                    f"{src / 'JPEGImages'} does not exist, but {nested / 'JPEGImages'} does: pass --src {nested}"
                )
    require(src / "JPEGImages", "the VOC2012 JPEG images", LAYOUT)
    if sbd is None and not (src / "SegmentationClassAug").is_dir() and not (src / "SegmentationClass").is_dir():
        raise DatasetFormatError(
            f"neither {src / 'SegmentationClassAug'} nor {src / 'SegmentationClass'} exists: expected the "
            f"label PNGs (or pass --sbd with SBD's .mat files). Expected source layout: {LAYOUT}"
        )


def voc_splits(src: Path, sbd: Path | None = None) -> dict[str, list[str]]:
    """The ``train`` (train + aug - val) and ``val`` stem lists, in file order.

    ``aug`` is ``aug.txt`` when present, or SBD's train + val lists when ``sbd`` is given.
    """
    lists = src / "ImageSets" / "Segmentation"
    train = read_list(lists / "train.txt", LAYOUT)
    val = read_list(lists / "val.txt", LAYOUT)
    if sbd is not None:
        aug = sbd_stems(sbd)
    else:
        aug = read_list(lists / "aug.txt", LAYOUT) if (lists / "aug.txt").is_file() else []
    # SBD's own train list holds VOC val images; dropping them keeps val out of training.
    held_out = set(val)
    merged = [stem for stem in dict.fromkeys(train + aug) if stem not in held_out]
    return {"train": merged, "val": val}


def voc_sources(
    src: Path, splits: dict[str, list[str]], label_format: LabelFormat, sbd: Path | None = None
) -> list[SourceSample]:
    """One sample per stem of ``splits``, each with its label source (see the module docstring)."""
    official_stems = read_list(src / "ImageSets" / "Segmentation" / "train.txt", LAYOUT) + splits["val"]
    images = list_names(src / "JPEGImages")
    aug_name = "SBD cls" if sbd is not None else "SegmentationClassAug"
    folders = {
        "SegmentationClass": (src / "SegmentationClass", ".png"),
        aug_name: (sbd / "cls", ".mat") if sbd is not None else (src / "SegmentationClassAug", ".png"),
    }
    present = {name: list_names(folder) for name, (folder, _) in folders.items()}
    # As in mmseg / ZegCLIP: the VOC train and val stems use the official labels; only the
    # SBD extra stems use SBD's. mmseg's voc_aug.py also writes SBD labels for VOC val images,
    # and those differ from the official ones that every published number is scored on.
    order = {stem: ("SegmentationClass", aug_name) for stem in official_stems}
    for stem in splits["train"]:
        order.setdefault(stem, (aug_name, "SegmentationClass"))
    samples, missing = [], []
    for stem, preference in order.items():
        found = [name for name in preference if f"{stem}{folders[name][1]}" in present[name]]
        if not found:
            missing.append(" or ".join(f"{name}/{stem}{folders[name][1]}" for name in preference))
        elif f"{stem}.jpg" not in images:
            missing.append(f"JPEGImages/{stem}.jpg")
        else:
            folder, suffix = folders[found[0]]
            image = src / "JPEGImages" / f"{stem}.jpg"
            samples.append(SourceSample(stem, image, folder / f"{stem}{suffix}", label_format))
    refuse_missing(missing, f"file(s) named by the split lists are missing in {src}")
    return samples


def prepare_voc(
    src: str | Path,
    dst: str | Path,
    progress: bool = True,
    background: bool = False,
    sbd: str | Path | None = None,
    allow_partial: bool = False,
) -> DatasetFolder:
    """Converts VOC 2012 + SBD (see the module docstring) into a dataset folder.

    Args:
        background: keep background as class 0 (21 classes, dataset ``voc21``) instead of ignoring it.
        sbd: SBD's ``benchmark_RELEASE/dataset`` folder, to read its ``.mat`` labels directly.
        allow_partial: accept splits of other sizes than the protocol's (10,582 / 1,449), with a
            :class:`~splitmatch.prepare.protocol_sizes.PartialDatasetWarning`.

    Resumable: files already in ``dst`` are kept, so an interrupted run can simply be repeated.

    Raises:
        DatasetFormatError: ``src`` lacks an expected file (named in the message), a label
            holds values VOC does not use, or a split is not of the protocol's size.
    """
    src, dst = Path(src), Path(dst)
    sbd = Path(sbd) if sbd is not None else None
    check_voc_root(src, sbd)
    splits = voc_splits(src, sbd)
    classes = VOC21_SPLIT if background else BUILTIN_SPLITS["voc"]
    preflight(classes.dataset, src, dst, splits, allow_partial)
    samples = voc_sources(src, splits, VOC21_FORMAT if background else VOC_FORMAT, sbd)
    write_classes(dst, classes)
    convert_samples(samples, dst, progress, desc=classes.dataset, convert=convert_sbd_or_png)
    write_splits(dst, splits)
    return verify_prepared(dst, classes, splits)
