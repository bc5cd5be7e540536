"""Fold definitions of PASCAL-5i and COCO-20i, as data, and the label conventions for training on a fold.

The few-shot and zero-shot works that report on these benchmarks (OSLSM, PFENet, HSNet, LSeg,
Fusioner, SAZS, ESDA) split the classes of one dataset into four folds; a run holds one fold's
classes out as unseen and trains on the rest. One prepared folder holds every class and serves
all four folds: ``ROOT/folds.json`` names each fold's classes, and a config names the fold.

* **PASCAL-5i**: fold i is VOC classes 5i+1..5i+5 (fold 0 aeroplane .. bottle, fold 3
  pottedplant .. tvmonitor), as in OSLSM, PFENet and HSNet.
* **COCO-20i**: the 80 COCO classes in COCO's order (category ids sorted). The default,
  ``coco-20i``, is the interleaved split of HSNet, LSeg and PFENet's ``use_split_coco``:
  fold i = classes {4k + i + 1 : k = 0..19} (fold 0 person, airplane, boat, parking meter,
  dog, ...). ``coco-20i-consecutive`` is what PFENet's code does without ``use_split_coco``
  (its released COCO configs set it): fold i = classes 20i+1..20i+20.

Training labels on a fold (:func:`training_label_map`): ``ignore`` (the default, ours,
inductive) makes the fold's pixels ignore, so training never sees them; ``background`` is
HSNet's convention, where they become background, class 0 of the prepared folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from splitmatch.data.class_lists import COCO_STUFF_CLASSES, VOC_CLASSES
from splitmatch.data.classes import ClassSplit, ClassSplitError
from splitmatch.data.folder import DatasetFolder, DatasetFormatError
from splitmatch.storage.files import InvalidJsonError, TextFileError, parse_json, read_text

FOLD_COUNT = 4
FOLDS_FILE = "folds.json"
BACKGROUND = "background"
COCO_CLASSES = COCO_STUFF_CLASSES[:80]  # the 80 COCO object classes, by category id (COCO-Stuff lists them first)
UNSEEN_CONVENTIONS = ("ignore", "background")


@dataclass(frozen=True)
class FoldScheme:
    """The four folds of a benchmark.

    Attributes:
        name: how configs and file names refer to it, e.g. ``"coco-20i"``.
        dataset: the prepared folder it applies to (``classes.json``'s ``dataset``).
        convention: ``"consecutive"`` or ``"interleaved"``: how the folds cut the class list.
        folds: per fold, its class names in class order.
        sampling: how the test episodes are drawn (:mod:`splitmatch.data.episode_lists`): ``"cycle"``
            (the eligible pairs in order, as HSNet's PASCAL) or ``"sample"`` (a class, then an
            image of it, at random, as HSNet's COCO).
    """

    name: str
    dataset: str
    convention: str
    folds: tuple[tuple[str, ...], ...]
    sampling: str

    def fold(self, index: int) -> tuple[str, ...]:
        """The class names of fold ``index`` (0..3)."""
        if not isinstance(index, int) or not 0 <= index < len(self.folds):
            raise ClassSplitError(f"fold must be 0..{len(self.folds) - 1} for {self.name}, got {index!r}")
        return self.folds[index]


def consecutive_folds(classes: Sequence[str], count: int = FOLD_COUNT) -> tuple[tuple[str, ...], ...]:
    """Fold i = classes ``i*n .. i*n + n - 1`` (0-based), n = len(classes) / count."""
    size = len(classes) // count
    return tuple(tuple(classes[i * size : (i + 1) * size]) for i in range(count))


def interleaved_folds(classes: Sequence[str], count: int = FOLD_COUNT) -> tuple[tuple[str, ...], ...]:
    """Fold i = classes ``i, i + count, i + 2 count, ...`` (0-based): 1-based ids {count*k + i + 1}."""
    return tuple(tuple(classes[i::count]) for i in range(count))


FOLD_SCHEMES: dict[str, FoldScheme] = {
    "pascal-5i": FoldScheme("pascal-5i", "pascal-5i", "consecutive", consecutive_folds(VOC_CLASSES), "cycle"),
    "coco-20i": FoldScheme("coco-20i", "coco-20i", "interleaved", interleaved_folds(COCO_CLASSES), "sample"),
    "coco-20i-consecutive": FoldScheme(
        "coco-20i-consecutive", "coco-20i", "consecutive", consecutive_folds(COCO_CLASSES), "sample"
    ),
}
# The scheme a folder's fold number means when a config names none.
DEFAULT_SCHEMES = {"pascal-5i": "pascal-5i", "coco-20i": "coco-20i"}


def schemes_for(dataset: str) -> list[FoldScheme]:
    """The fold schemes of a prepared dataset, its default first."""
    default = DEFAULT_SCHEMES[dataset]
    return [FOLD_SCHEMES[default]] + [s for s in FOLD_SCHEMES.values() if s.dataset == dataset and s.name != default]


def folds_file_text(dataset: str) -> str:
    """The content of ``ROOT/folds.json`` for a dataset: its default scheme and every scheme's folds, by name."""
    schemes = schemes_for(dataset)
    data = {
        "default": schemes[0].name,
        "schemes": {
            s.name: {"convention": s.convention, "sampling": s.sampling, "folds": [list(f) for f in s.folds]}
            for s in schemes
        },
    }
    return json.dumps(data, indent=2) + "\n"


def read_fold_scheme(folder: DatasetFolder, scheme: str | None = None) -> FoldScheme:
    """The fold scheme ``scheme`` (or the folder's default) from ``ROOT/folds.json``, checked
    against the folder's classes.

    Raises:
        DatasetFormatError: the file is missing or malformed, names another class, or lacks ``scheme``.
    """
    path = folder.root / FOLDS_FILE
    try:
        data = parse_json(read_text(path, "fold schemes"))
        name = scheme if scheme is not None else data["default"]
        if name not in data["schemes"]:
            known = ", ".join(data["schemes"])
            raise DatasetFormatError(f"{path} has no fold scheme '{name}' (schemes: {known})")
        entry = data["schemes"][name]
        folds = tuple(tuple(str(c) for c in fold) for fold in entry["folds"])
        result = FoldScheme(name, folder.classes.dataset, str(entry["convention"]), folds, str(entry["sampling"]))
    except FileNotFoundError:
        raise DatasetFormatError(
            f"{path} does not exist: folds are written by `splitmatch prepare pascal-5i` and `prepare coco-20i`"
        ) from None
    except (InvalidJsonError, TextFileError, KeyError, TypeError, AttributeError) as error:
        raise DatasetFormatError(f"{path} is malformed ({type(error).__name__}: {error})") from None
    unknown = [c for fold in result.folds for c in fold if c not in set(folder.classes.names)]
    if unknown:
        raise DatasetFormatError(f"{path}: fold scheme '{name}' names {unknown[:5]}, not classes of {folder.root}")
    if result.sampling not in ("cycle", "sample"):
        raise DatasetFormatError(
            f"{path}: fold scheme '{name}' has sampling {result.sampling!r}; expected cycle or sample"
        )
    return result


def fold_class_split(folder: DatasetFolder, fold: int, scheme: str | None = None) -> ClassSplit:
    """The folder's classes with fold ``fold`` of ``scheme`` as the unseen ones (what a run on that fold uses)."""
    fold_scheme = read_fold_scheme(folder, scheme)
    classes = folder.classes
    return ClassSplit(classes.names, fold_scheme.fold(fold), f"{fold_scheme.name}-fold{fold}", classes.synonyms)


def training_label_map(classes: ClassSplit, convention: str = "ignore") -> np.ndarray:
    """Lookup table for training labels: ``lut[label]`` maps every label value, ``[ignore + 1]``.

    Args:
        classes: the classes with the fold's classes as ``unseen`` (:func:`fold_class_split`).
        convention: ``"ignore"`` (default, inductive: unseen pixels become ignore) or
            ``"background"`` (HSNet's: unseen pixels become the ``background`` class).

    Raises:
        ClassSplitError: an unknown convention, or ``background`` without a background class.
    """
    if convention not in UNSEEN_CONVENTIONS:
        raise ClassSplitError(
            f"unseen-pixel convention must be one of {', '.join(UNSEEN_CONVENTIONS)}, got {convention!r}"
        )
    lut = np.arange(classes.ignore_index + 1, dtype=classes.label_dtype)
    if convention == "ignore":
        lut[classes.unseen_ids] = classes.ignore_index
    else:
        if BACKGROUND not in classes.names:
            raise ClassSplitError(
                f"the '{BACKGROUND}' convention needs a class named '{BACKGROUND}'; '{classes.dataset}' has none"
            )
        lut[classes.unseen_ids] = classes.names.index(BACKGROUND)
    return lut
