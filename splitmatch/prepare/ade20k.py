"""ADE20K-150 (the SceneParsing challenge release), into the folder format.

Source layout (``ADEChallengeData2016.zip`` unpacked)::

    SRC/images/training/<stem>.jpg          20,210 images
    SRC/images/validation/<stem>.jpg         2,000 images
    SRC/annotations/training/<stem>.png     raw ids: 0 "other", 1..150 the classes
    SRC/annotations/validation/<stem>.png

Raw 0 ("other objects", unlabelled) becomes ignore (255) and class k becomes k - 1, as mmseg's
``ADE20KDataset`` (``reduce_zero_label``) and the open-vocabulary papers score it. Names and order
are mmseg's (its ``'bed '`` without the trailing space). Splits written: ``train`` and ``val``.
ADE20K-150 is a cross-dataset target: it defines no unseen classes.
"""

from __future__ import annotations

from pathlib import Path

from splitmatch.data.classes import IGNORE_INDEX, ClassSplit
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
    "SRC/images/{training,validation}/*.jpg and SRC/annotations/{training,validation}/*.png; "
    "SRC is ADEChallengeData2016"
)
SPLITS = {"train": "training", "val": "validation"}

ADE20K_CLASSES = (
    "wall",
    "building",
    "sky",
    "floor",
    "tree",
    "ceiling",
    "road",
    "bed",
    "windowpane",
    "grass",
    "cabinet",
    "sidewalk",
    "person",
    "earth",
    "door",
    "table",
    "mountain",
    "plant",
    "curtain",
    "chair",
    "car",
    "water",
    "painting",
    "sofa",
    "shelf",
    "house",
    "sea",
    "mirror",
    "rug",
    "field",
    "armchair",
    "seat",
    "fence",
    "desk",
    "rock",
    "wardrobe",
    "lamp",
    "bathtub",
    "railing",
    "cushion",
    "base",
    "box",
    "column",
    "signboard",
    "chest of drawers",
    "counter",
    "sand",
    "sink",
    "skyscraper",
    "fireplace",
    "refrigerator",
    "grandstand",
    "path",
    "stairs",
    "runway",
    "case",
    "pool table",
    "pillow",
    "screen door",
    "stairway",
    "river",
    "bridge",
    "bookcase",
    "blind",
    "coffee table",
    "toilet",
    "flower",
    "book",
    "hill",
    "bench",
    "countertop",
    "stove",
    "palm",
    "kitchen island",
    "computer",
    "swivel chair",
    "boat",
    "bar",
    "arcade machine",
    "hovel",
    "bus",
    "towel",
    "light",
    "truck",
    "tower",
    "chandelier",
    "awning",
    "streetlight",
    "booth",
    "television receiver",
    "airplane",
    "dirt track",
    "apparel",
    "pole",
    "land",
    "bannister",
    "escalator",
    "ottoman",
    "bottle",
    "buffet",
    "poster",
    "stage",
    "van",
    "ship",
    "fountain",
    "conveyer belt",
    "canopy",
    "washer",
    "plaything",
    "swimming pool",
    "stool",
    "barrel",
    "basket",
    "waterfall",
    "tent",
    "bag",
    "minibike",
    "cradle",
    "oven",
    "ball",
    "food",
    "step",
    "tank",
    "trade name",
    "microwave",
    "pot",
    "animal",
    "bicycle",
    "lake",
    "dishwasher",
    "screen",
    "blanket",
    "sculpture",
    "hood",
    "sconce",
    "vase",
    "traffic light",
    "tray",
    "ashcan",
    "fan",
    "pier",
    "crt screen",
    "plate",
    "monitor",
    "bulletin board",
    "shower",
    "radiator",
    "glass",
    "clock",
    "flag",
)
ADE20K_SPLIT = ClassSplit(ADE20K_CLASSES, (), "ade20k-150")

ADE20K_FORMAT = LabelFormat.from_mapping(
    {0: IGNORE_INDEX, **{value: value - 1 for value in range(1, 151)}},
    description='0 ("other") .. 150',
)


def _sources(src: Path, split_dir: str) -> list[SourceSample]:
    image_dir = require(src / "images" / split_dir, f"the ADE20K {split_dir} images", LAYOUT)
    label_dir = require(src / "annotations" / split_dir, f"the ADE20K {split_dir} label PNGs", LAYOUT)
    stems = sorted(name[: -len(".jpg")] for name in list_names(image_dir) if name.endswith(".jpg"))
    if not stems:
        raise DatasetFormatError(f"{image_dir} holds no .jpg images. Expected source layout: {LAYOUT}")
    check_stems(stems, str(image_dir))
    labels = list_names(label_dir)
    missing = [f"{stem}.png" for stem in stems if f"{stem}.png" not in labels]
    refuse_missing(missing, f"image(s) of {image_dir} have no label in {label_dir}")
    return [SourceSample(s, image_dir / f"{s}.jpg", label_dir / f"{s}.png", ADE20K_FORMAT) for s in stems]


def prepare_ade20k(
    src: str | Path, dst: str | Path, progress: bool = True, allow_partial: bool = False
) -> DatasetFolder:
    """Converts ADE20K-150 (see the module docstring) into a dataset folder.

    Args:
        allow_partial: accept splits of other sizes than the protocol's (20,210 / 2,000), with a
            :class:`~splitmatch.prepare.protocol_sizes.PartialDatasetWarning`.

    Resumable: files already in ``dst`` are kept, so an interrupted run can simply be repeated.

    Raises:
        DatasetFormatError: ``src`` lacks an expected file (named in the message), or a label
            holds values ADE20K-150 does not use.
    """
    src, dst = Path(src), Path(dst)
    if not (src / "images").is_dir() and (src / "ADEChallengeData2016" / "images").is_dir():
        raise DatasetFormatError(
            f"{src / 'images'} does not exist, but {src / 'ADEChallengeData2016'} does: "
            f"pass --src {src / 'ADEChallengeData2016'}"
        )
    per_split = {split: _sources(src, split_dir) for split, split_dir in SPLITS.items()}
    splits = {split: [s.stem for s in samples] for split, samples in per_split.items()}
    preflight("ade20k-150", src, dst, splits, allow_partial)
    write_classes(dst, ADE20K_SPLIT)
    for split, samples in per_split.items():
        convert_samples(samples, dst, progress, desc=f"ade20k {split}")
    write_splits(dst, splits)
    return verify_prepared(dst, ADE20K_SPLIT, splits)
