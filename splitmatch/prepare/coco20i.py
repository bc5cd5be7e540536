"""COCO-20i: COCO 2014 rasterised from its instance annotations, its folds and fixed test episodes.

Source layout (the ``COCO2014`` folder of HSNet's data layout)::

    SRC/train2014/<file_name>                       82,783 images (train2014.zip)
    SRC/val2014/<file_name>                         40,504 images (val2014.zip)
    SRC/annotations/instances_train2014.json        annotations_trainval2014.zip
    SRC/annotations/instances_val2014.json

Every image the annotation file lists is written (an image without annotations is all
background). Labels: 0 ``background``, 1..80 the COCO classes in COCO's order (category ids
sorted, made contiguous), 255 ignore. Each object's polygons or RLE are rasterised by
:mod:`~splitmatch.prepare.coco_masks`.

By default the labels are those HSNet scores COCO-20i on: HSNet reads PNG masks made by PFENet's
parsing script (linked from PFENet's issue #20; its ``save_iscrowd = False`` default), which
skips **crowd** annotations (``iscrowd: 1``), so a crowd pixel no object covers is background,
and paints the objects in the annotation file's order, later ones on top; HSNet's COCO loader
(``data/coco.py``) has no ignore label. Two named options differ (``crowd``, ``object_order``):
``crowd="ignore"`` makes crowd pixels that no object covers ignore (a crowd region is one loose
outline around many objects and the background between them: as background it calls real
objects background), and ``object_order="largest-first"`` paints larger objects first, so a
smaller object on a larger one (a tie on a person) stays visible whatever the file's order.
``conversion.json`` records the two, and a folder converted otherwise is refused.

``classes.json`` names no unseen class: one folder serves all four folds of both conventions
(``folds.json``: ``coco-20i`` interleaved, the default, and ``coco-20i-consecutive``), and the
fold a run holds out comes from its config. Per scheme and fold,
``episodes/<scheme>/fold<i>_1000.txt`` holds the fixed test episodes (:mod:`splitmatch.data.episode_lists`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from splitmatch.data.classes import IGNORE_INDEX, ClassSplit
from splitmatch.data.episode_lists import DEFAULT_EPISODE_COUNT, DEFAULT_EPISODE_SEED, MIN_OBJECT_PIXELS
from splitmatch.data.fold_schemes import BACKGROUND, COCO_CLASSES
from splitmatch.data.folder import CLASSES_FILE, MAX_IMAGE_PIXELS, DatasetFolder, DatasetFormatError
from splitmatch.prepare.coco_masks import segmentation_mask
from splitmatch.prepare.common import (
    LabelFormat,
    SourceSample,
    check_label_size,
    convert_samples,
    list_names,
    preflight,
    refuse_missing,
    require,
    write_classes,
    write_if_changed,
    write_splits,
)
from splitmatch.prepare.fold_files import check_episode_options, write_fold_files
from splitmatch.prepare.readback import verify_prepared
from splitmatch.prepare.safety import check_stems
from splitmatch.storage.files import InvalidJsonError, TextFileError, read_json

LAYOUT = (
    "SRC/train2014/*.jpg, SRC/val2014/*.jpg and SRC/annotations/instances_{train,val}2014.json; "
    "SRC is the COCO 2014 folder"
)
SPLITS = {"train": "train2014", "val": "val2014"}
COCO20I_SPLIT = ClassSplit((BACKGROUND, *COCO_CLASSES), (), "coco-20i")
CROWD_CONVENTIONS = ("background", "ignore")  # HSNet's (PFENet's masks), then the named option
OBJECT_ORDERS = ("annotation", "largest-first")
CONVERSION_FILE = "conversion.json"
# A folder converted before conversion.json existed: crowd ignore, objects largest first.
EARLIER_CONVERSION = {"crowd": "ignore", "object_order": "largest-first"}
# Only the description is used: labels are rasterised from the JSON, not looked up.
INSTANCES_FORMAT = LabelFormat.from_mapping({}, description="COCO instance annotations (polygons or RLE)")


@dataclass(frozen=True)
class ImageRecord:
    """One image of an instances file and its annotations."""

    file_name: str
    height: int
    width: int
    annotations: tuple[dict, ...]


def _field(record: object, key: str, kind: type | tuple[type, ...], where: str):
    value = record.get(key) if isinstance(record, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DatasetFormatError(f"{where} has no valid '{key}'")
    return value


def read_instances(path: Path) -> tuple[dict[str, ImageRecord], dict[int, int]]:
    """Reads an instances file: stem -> its image record, and COCO category id -> class id (1..80).

    Raises:
        DatasetFormatError: not JSON, a missing field, or categories that are not COCO's 80.
    """
    require(path, "a COCO instances annotation file", LAYOUT)
    try:  # the one bounded reader: deep nesting and huge numbers are one line too
        data = read_json(path, "COCO instances file")
    except (InvalidJsonError, TextFileError) as error:
        raise DatasetFormatError(str(error)) from None
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{path}: expected a JSON object with images, annotations and categories")
    categories = sorted(
        (_field(c, "id", int, f"{path}: a category"), _field(c, "name", str, f"{path}: a category"))
        for c in _field(data, "categories", list, str(path))
    )
    if tuple(name for _, name in categories) != COCO_CLASSES:
        raise DatasetFormatError(
            f"{path}: its {len(categories)} categories, by id, are not COCO's 80 classes "
            f"(first: {[name for _, name in categories][:5]})"
        )
    class_of = {category_id: index + 1 for index, (category_id, _) in enumerate(categories)}
    by_id: dict[int, dict] = {}
    for image in _field(data, "images", list, str(path)):
        image_id = _field(image, "id", int, f"{path}: an image")
        if image_id in by_id:  # the second would replace the first, dropping an image without a word
            raise DatasetFormatError(f"{path}: image id {image_id} is listed twice")
        by_id[image_id] = {"record": image, "annotations": []}
    for annotation in _field(data, "annotations", list, str(path)):
        where = f"{path}: annotation {annotation.get('id') if isinstance(annotation, dict) else '?'}"
        image_id = _field(annotation, "image_id", int, where)
        if image_id not in by_id:
            raise DatasetFormatError(f"{where} names image id {image_id}, which the file does not list")
        if _field(annotation, "category_id", int, where) not in class_of:
            raise DatasetFormatError(f"{where} has category_id {annotation['category_id']}, not a COCO class")
        if annotation.get("iscrowd", 0) not in (0, 1):
            raise DatasetFormatError(f"{where} has iscrowd {annotation['iscrowd']!r}; expected 0 or 1")
        by_id[image_id]["annotations"].append(annotation)
    records: dict[str, ImageRecord] = {}
    for entry in by_id.values():
        image, where = entry["record"], f"{path}: image {entry['record']['id']}"
        name = _field(image, "file_name", str, where)
        height, width = _field(image, "height", int, where), _field(image, "width", int, where)
        if not (height > 0 and width > 0 and height * width <= MAX_IMAGE_PIXELS):
            raise DatasetFormatError(
                f"{where}: size {height} x {width} is not an image size (positive, at most {MAX_IMAGE_PIXELS:,} pixels)"
            )
        record = ImageRecord(name, height, width, tuple(entry["annotations"]))
        stem = Path(name).stem if "/" not in name and "\\" not in name else name  # a separator is refused later
        if stem in records:
            raise DatasetFormatError(f"{where}: file name {name!r} is listed twice")
        records[stem] = record
    return records, class_of


def rasterise(
    record: ImageRecord,
    class_of: dict[int, int],
    where: str,
    crowd: str = "background",
    object_order: str = "annotation",
) -> np.ndarray:
    """An image's semantic label ``uint8 [H, W]``: 0 background, 1..80 classes; crowd pixels no object
    covers stay background (``crowd="background"``) or are 255 (``"ignore"``); objects painted in the
    file's order, later on top (``object_order="annotation"``), or largest first (see the module docstring)."""
    label = np.zeros((record.height, record.width), dtype=np.uint8)
    objects, crowd_pixels = [], np.zeros_like(label, dtype=bool)
    for annotation in record.annotations:
        try:
            mask = segmentation_mask(annotation.get("segmentation"), record.height, record.width)
        except ValueError as error:
            raise DatasetFormatError(f"{where}: annotation {annotation.get('id')}: {error}") from None
        if annotation.get("iscrowd", 0) == 1:
            crowd_pixels |= mask
        else:
            objects.append((int(mask.sum()), mask, class_of[annotation["category_id"]]))
    if object_order == "largest-first":
        objects.sort(key=lambda item: -item[0])  # stable among equals
    for _, mask, class_id in objects:
        label[mask] = class_id
    if crowd == "ignore":
        covered = np.zeros_like(crowd_pixels)
        for _, mask, _ in objects:
            covered |= mask
        label[crowd_pixels & ~covered] = IGNORE_INDEX
    return label


def converted_earlier(dst: Path) -> bool:
    """Whether ``dst`` holds COCO-20i labels converted before ``conversion.json`` existed."""
    if (dst / CONVERSION_FILE).is_file() or not (dst / CLASSES_FILE).is_file():
        return False
    try:
        dataset = ClassSplit.read(dst / CLASSES_FILE).dataset
    except (OSError, ValueError):  # write_classes names what is wrong with it
        return False
    return dataset == COCO20I_SPLIT.dataset and any((dst / "labels").glob("*.png"))


def describe_conversion(folder: DatasetFolder) -> list[str]:
    """How the labels were converted (``conversion.json``), as a line to print."""
    path = folder.root / CONVERSION_FILE
    conversion = read_json(path, "conversion record") if path.is_file() else EARLIER_CONVERSION
    if not isinstance(conversion, dict) or not {"crowd", "object_order"} <= set(conversion):
        raise DatasetFormatError(f"conversion record {path} is damaged: expected crowd and object_order")
    return [f"  crowd pixels no object covers: {conversion['crowd']}; objects painted {conversion['object_order']}"]


def write_conversion(dst: Path, crowd: str, object_order: str, earlier: bool) -> None:
    """Writes ``conversion.json``; refuses a ``dst`` whose labels were converted otherwise.

    ``earlier``: ``dst`` held a COCO-20i folder before this run but no ``conversion.json`` (a folder
    of an earlier splitmatch, whose labels were :data:`EARLIER_CONVERSION`'s).
    """
    wanted = {"crowd": crowd, "object_order": object_order}
    advice = "pass the --crowd and --object-order it was prepared with, or choose an empty --dst"
    if earlier and wanted != EARLIER_CONVERSION:
        raise DatasetFormatError(
            f"{dst} was prepared by an earlier splitmatch, with crowd regions ignore and objects painted largest "
            f"first (--crowd ignore --object-order largest-first); {advice}"
        )
    write_if_changed(dst / CONVERSION_FILE, json.dumps(wanted, indent=2) + "\n", conflict=advice)


def _sources(src: Path, split_dir: str) -> tuple[list[SourceSample], dict[str, ImageRecord], dict[int, int]]:
    instances = src / "annotations" / f"instances_{split_dir}.json"
    image_dir = require(src / split_dir, f"the COCO {split_dir} images", LAYOUT)
    records, class_of = read_instances(instances)
    check_stems(list(records), f"the file names of {instances}")
    present = list_names(image_dir)
    samples, missing = [], []
    for stem, record in records.items():
        if record.file_name not in present:
            missing.append(f"{split_dir}/{record.file_name}")
        else:
            samples.append(SourceSample(stem, image_dir / record.file_name, instances, INSTANCES_FORMAT))
    refuse_missing(missing, f"image(s) listed by {instances} are missing")
    return samples, records, class_of


def prepare_coco20i(
    src: str | Path,
    dst: str | Path,
    progress: bool = True,
    allow_partial: bool = False,
    episode_counts: Sequence[int] = (DEFAULT_EPISODE_COUNT,),
    min_object_pixels: int = MIN_OBJECT_PIXELS,
    episode_seed: int = DEFAULT_EPISODE_SEED,
    crowd: str = "background",
    object_order: str = "annotation",
) -> DatasetFolder:
    """Converts COCO 2014 with its instance annotations into a COCO-20i folder (see the module docstring).

    Args:
        allow_partial: accept splits of other sizes than 82,783 / 40,504, with a warning.
        episode_counts: the test episode lists to write per fold and scheme (1,000; or also 5,000).
        min_object_pixels: the smallest object a test episode may ask for (PFENet's 2 x 32 x 32).
        episode_seed: seeds the drawing of the episodes (HSNet: 0).
        crowd: what a crowd pixel no object covers becomes: ``"background"`` (HSNet's) or ``"ignore"``.
        object_order: ``"annotation"`` (HSNet's masks: the file's order, later on top) or ``"largest-first"``.

    Resumable: files already in ``dst`` are kept, so an interrupted run can simply be repeated.

    Raises:
        DatasetFormatError: a missing or malformed source file (named), a split of another size, or a
            ``dst`` converted with another ``crowd`` / ``object_order``.
    """
    src, dst = Path(src), Path(dst)
    check_episode_options(episode_counts, min_object_pixels, episode_seed)
    if crowd not in CROWD_CONVENTIONS or object_order not in OBJECT_ORDERS:
        raise DatasetFormatError(
            f"crowd must be one of {', '.join(CROWD_CONVENTIONS)} and object_order one of "
            f"{', '.join(OBJECT_ORDERS)}, got {crowd!r} and {object_order!r}"
        )
    per_split = {split: _sources(src, split_dir) for split, split_dir in SPLITS.items()}
    splits = {split: [s.stem for s in samples] for split, (samples, _, _) in per_split.items()}
    preflight("coco-20i", src, dst, splits, allow_partial)
    earlier = converted_earlier(dst)
    write_classes(dst, COCO20I_SPLIT)
    write_conversion(dst, crowd, object_order, earlier)
    for split, (samples, records, class_of) in per_split.items():

        def convert(sample: SourceSample, records=records, class_of=class_of) -> np.ndarray:
            label = rasterise(
                records[sample.stem], class_of, f"{sample.label} image {sample.image.name}", crowd, object_order
            )
            check_label_size(label, sample)
            return label

        convert_samples(samples, dst, progress, desc=f"coco-20i {split}", convert=convert)
    write_splits(dst, splits)
    folder = verify_prepared(dst, COCO20I_SPLIT, splits)
    write_fold_files(folder, episode_counts, min_object_pixels, episode_seed, allow_partial)
    return folder
