"""Scoring a dataset with another class list: reordered, renamed, a subset, or with synonyms.

A vocabulary file has the form of ``classes.json`` (``classes``, optional ``unseen``,
``synonyms``, ``dataset``) and one more optional field, ``renamed``::

    {
      "classes": ["heart", "background", "tv"],
      "renamed": {"tv": "tvmonitor"},
      "synonyms": {"tv": ["television"]}
    }

Every class of the vocabulary takes the pixels of the dataset class of the same name, or of
the one ``renamed`` names; classes of the dataset that the vocabulary leaves out become
ignore (they are not scored, and nothing is predicted as them). Label ids follow the
vocabulary's order, so the same label files serve every vocabulary without being rewritten.
Fields the file leaves out come from the dataset: ``unseen`` (the dataset's unseen classes
the vocabulary keeps) and ``synonyms`` (those of the classes it keeps, under their new names).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from splitmatch.data.classes import ClassSplit, ClassSplitError, read_json_file, validate_class_names
from splitmatch.data.names import printable


@dataclass(frozen=True)
class Vocabulary:
    """A class list to score a dataset with, tied to the dataset's label ids by name.

    Attributes:
        classes: the vocabulary: names in the order of the scored label ids, unseen, synonyms.
        dataset: the dataset's own classes (what its label files hold).
        source_ids: per vocabulary class, the dataset label id whose pixels it takes.
    """

    classes: ClassSplit
    dataset: ClassSplit
    source_ids: tuple[int, ...]
    _lookup: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.source_ids) != self.classes.num_classes or len(set(self.source_ids)) != len(self.source_ids):
            raise ClassSplitError("a vocabulary needs one distinct dataset class per class")
        lookup = np.full(self.dataset.ignore_index + 1, self.classes.ignore_index, dtype=self.classes.label_dtype)
        lookup[list(self.source_ids)] = np.arange(self.classes.num_classes)
        object.__setattr__(self, "_lookup", lookup)

    @classmethod
    def of_dataset(cls, classes: ClassSplit) -> Vocabulary:
        """The dataset's own class list: scoring with it changes nothing."""
        return cls(classes, classes, tuple(range(classes.num_classes)))

    @property
    def is_identity(self) -> bool:
        return self.classes.names == self.dataset.names and self.source_ids == tuple(range(len(self.source_ids)))

    @property
    def left_out(self) -> list[str]:
        """Dataset classes the vocabulary does not keep (their pixels are ignored)."""
        kept = set(self.source_ids)
        return [name for i, name in enumerate(self.dataset.names) if i not in kept]

    def relabel(self, label: np.ndarray) -> np.ndarray:
        """Dataset label map ``[H, W]`` (ids of :attr:`dataset`) -> ``[H, W]`` ids of :attr:`classes`,
        in the vocabulary's label dtype; left-out classes become the vocabulary's ignore value."""
        if self.is_identity:
            return label
        return self._lookup[label]


def vocabulary_from_dict(data: dict, dataset: ClassSplit, where: str = "vocabulary") -> Vocabulary:
    """Builds a vocabulary from a parsed vocabulary file (see the module docstring)."""
    if not isinstance(data, dict):
        raise ClassSplitError(f"{where}: expected a JSON object, got {type(data).__name__}")
    renamed = data.get("renamed", {})
    if not isinstance(renamed, dict) or not all(isinstance(v, str) for v in renamed.values()):
        raise ClassSplitError(f"{where}: 'renamed' must map vocabulary names to class names of the dataset")
    names = data.get("classes")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ClassSplitError(f"{where}: 'classes' must be a list of class-name strings")
    validate_class_names(names, where=where)  # names before they are looked up
    listed = set(names)
    stray = [name for name in renamed if name not in listed]
    if stray:
        raise ClassSplitError(f"{where}: 'renamed' gives {printable(str(stray), 300)}, which are not among its classes")
    index = {name: i for i, name in enumerate(dataset.names)}
    sources = [renamed.get(name, name) for name in names]
    missing = [
        f"'{name}'" + (f" (renamed from '{renamed[name]}')" if name in renamed else "")
        for name, source in zip(names, sources)
        if source not in index
    ]
    if missing:
        raise ClassSplitError(
            f"{where}: {_some(missing)} name no class of dataset '{dataset.dataset}' "
            f"(its classes: {_some(list(dataset.names))})"
        )
    twice = sorted(source for source, count in Counter(sources).items() if count > 1)
    if twice:
        raise ClassSplitError(
            f"{where}: dataset classes {printable(str(twice), 300)} are taken by more than one vocabulary class"
        )
    new_name = dict(zip(sources, names))
    full = dict(data)
    full.pop("renamed", None)
    full.setdefault("dataset", dataset.dataset)
    if "unseen" not in data:
        full["unseen"] = [new_name[n] for n in dataset.unseen if n in new_name]
        full.pop("seen", None)
    if "synonyms" not in data:
        full["synonyms"] = {new_name[n]: list(more) for n, more in dataset.synonyms.items() if n in new_name}
    full.pop("ignore_index", None)  # follows from the vocabulary's size
    classes = ClassSplit.from_dict(full, where=where)
    return Vocabulary(classes, dataset, tuple(index[s] for s in sources))


def _some(items: list[str]) -> str:
    return printable(", ".join(items), 300)


def read_vocabulary(path: str | Path, dataset: ClassSplit) -> Vocabulary:
    """Reads a vocabulary file (see the module docstring) for a dataset of classes ``dataset``."""
    return vocabulary_from_dict(read_json_file(path, "vocabulary file"), dataset, where=f"vocabulary file {path}")
