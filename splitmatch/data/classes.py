"""Class vocabularies and seen/unseen splits.

A :class:`ClassSplit` names every class of a dataset in label-id order and says which are
unseen. It is what a dataset's ``classes.json`` holds, what a checkpoint carries, and what the
metrics use to report mIoU(S), mIoU(U) and hIoU.

A class may carry synonyms: more names for the text encoder, whose embeddings are averaged
with the class name's (``"synonyms": {"tvmonitor": ["tv monitor", "television"]}``). Anywhere a
vocabulary is given as a list, an entry is either one name or a sequence of names, the first
being the class's name and the rest its synonyms (:func:`class_texts`).

The built-in vocabularies (VOC, COCO-Stuff, Context-59) are :mod:`splitmatch.data.class_lists`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from splitmatch.data.names import bad_character, printable
from splitmatch.errors import ArgumentTypeError, SplitmatchError
from splitmatch.storage.files import read_json, write_json

IGNORE_INDEX = 255  # "no class" in 8-bit label maps (datasets of up to 255 classes)
IGNORE_INDEX_16BIT = 65535  # "no class" in 16-bit label maps (datasets of more classes)
MAX_CLASSES = IGNORE_INDEX_16BIT  # ids 0..65534 fit a 16-bit label map beside its ignore value
# The longest class name or synonym, in characters. Published vocabularies stay under 60 (ADE20K's
# "pool table, billiard table, snooker table"); CLIP reads 77 tokens at most.
MAX_NAME_CHARS = 256
# Deeper JSON than this is refused: no class file or vocabulary is nested more than three levels.
MAX_JSON_DEPTH = 32


def ignore_index_for(num_classes: int) -> int:
    """The ignore value of a dataset's label maps: 255 up to 255 classes, 65535 above.

    Labels are stored in the narrowest unsigned type that holds every class id and one value
    more; that value (the type's maximum) marks ignored pixels.
    """
    return IGNORE_INDEX if num_classes <= IGNORE_INDEX else IGNORE_INDEX_16BIT


def label_dtype_for(num_classes: int) -> np.dtype:
    """``uint8`` label maps up to 255 classes, ``uint16`` above."""
    return np.dtype(np.uint8) if num_classes <= IGNORE_INDEX else np.dtype(np.uint16)


def ignore_index_of(dtype: np.dtype) -> int:
    """The ignore value of a label array of this dtype (its maximum): 255 for uint8, 65535 for uint16."""
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.uint16):
        raise ValueError(f"label maps are uint8 or uint16, got {dtype}")
    return int(np.iinfo(dtype).max)


class ClassSplitError(SplitmatchError, ValueError):
    """A class vocabulary or seen/unseen split is malformed."""


def read_json_file(path: str | Path, description: str) -> object:
    """A class or vocabulary file's JSON; a missing file, a folder, text that is not UTF-8 or not JSON, or
    JSON nested deeper than :data:`MAX_JSON_DEPTH` is one ClassSplitError naming ``description`` and the path."""
    try:
        return read_json(path, description, error=ClassSplitError, max_depth=MAX_JSON_DEPTH)
    except FileNotFoundError:
        raise ClassSplitError(f"{description} {path} does not exist") from None
    except IsADirectoryError:
        raise ClassSplitError(f"{description} {path} is a folder, not a JSON file") from None


@dataclass(frozen=True)
class ClassSplit:
    """Class names in label-id order and the names of the unseen classes.

    Attributes:
        names: every class name; label id ``i`` means ``names[i]``.
        unseen: the unseen class names, a subset of ``names`` (order does not matter).
        dataset: a short name of the dataset, for records and messages.
        synonyms: class name -> more names for the same class; the text encoder averages the
            embeddings of the name and its synonyms. Classes without synonyms are left out.
    """

    names: tuple[str, ...]
    unseen: tuple[str, ...]
    dataset: str = "custom"
    synonyms: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        validate_class_names(self.names, where=f"class list of '{self.dataset}'")
        object.__setattr__(self, "synonyms", _checked_synonyms(self.names, self.synonyms, self.dataset))
        known = set(self.names)
        unknown = [n for n in self.unseen if n not in known]
        if unknown:
            raise ClassSplitError(f"unseen classes {_some(unknown)} of '{self.dataset}' are not among its class names")
        if len(set(self.unseen)) != len(self.unseen):
            raise ClassSplitError(f"unseen class list of '{self.dataset}' has duplicates: {_some(list(self.unseen))}")
        # Canonical order (label-id order) so that equal splits compare equal however they were listed.
        unseen = set(self.unseen)
        object.__setattr__(self, "unseen", tuple(n for n in self.names if n in unseen))
        if len(self.names) > MAX_CLASSES:
            raise ClassSplitError(
                f"'{self.dataset}' has {len(self.names)} classes; 16-bit label maps hold at most {MAX_CLASSES}"
            )

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def ignore_index(self) -> int:
        """255 for datasets of up to 255 classes (8-bit labels), 65535 above (16-bit labels)."""
        return ignore_index_for(self.num_classes)

    @property
    def label_dtype(self) -> np.dtype:
        """``uint8`` or ``uint16``: the type of this dataset's label maps in memory and on disk."""
        return label_dtype_for(self.num_classes)

    @property
    def unseen_ids(self) -> list[int]:
        """Label ids of the unseen classes, ascending."""
        unseen = set(self.unseen)
        return [i for i, n in enumerate(self.names) if n in unseen]

    @property
    def seen_ids(self) -> list[int]:
        """Label ids of the seen classes, ascending."""
        unseen = set(self.unseen)
        return [i for i, n in enumerate(self.names) if n not in unseen]

    @property
    def seen_names(self) -> list[str]:
        return [self.names[i] for i in self.seen_ids]

    @property
    def texts(self) -> tuple[tuple[str, ...], ...]:
        """Per class, in label-id order, its name followed by its synonyms: what the text encoder reads."""
        return tuple((name, *self.synonyms.get(name, ())) for name in self.names)

    def to_dict(self) -> dict:
        """JSON-ready form; ``seen`` is written out too so a reader sees the split at a glance."""
        data = {
            "dataset": self.dataset,
            "ignore_index": self.ignore_index,
            "classes": list(self.names),
            "seen": self.seen_names,
            "unseen": list(self.unseen),
        }
        if self.synonyms:
            data["synonyms"] = {name: list(more) for name, more in self.synonyms.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict, where: str = "class split") -> ClassSplit:
        """Builds a split from :meth:`to_dict`'s form, checking every field.

        ``seen`` is optional; when present it must be exactly the classes not listed as unseen.
        ``synonyms`` is optional: class name -> list of more names.
        """
        if not isinstance(data, dict):
            raise ClassSplitError(f"{where}: expected a JSON object, got {type(data).__name__}")
        names = data.get("classes")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ClassSplitError(f"{where}: 'classes' must be a list of class-name strings")
        unseen = data.get("unseen", [])
        if not isinstance(unseen, list) or not all(isinstance(n, str) for n in unseen):
            raise ClassSplitError(f"{where}: 'unseen' must be a list of class-name strings")
        expected_ignore = ignore_index_for(len(names))
        ignore = data.get("ignore_index", expected_ignore)
        if ignore != expected_ignore:
            raise ClassSplitError(
                f"{where}: ignore_index must be {expected_ignore} for {len(names)} classes "
                f"({IGNORE_INDEX} up to {IGNORE_INDEX} classes, {IGNORE_INDEX_16BIT} above), got {_shown(ignore)}"
            )
        if "seen" in data:
            seen = data["seen"]
            if not isinstance(seen, list) or not all(isinstance(n, str) for n in seen):
                raise ClassSplitError(f"{where}: 'seen' must be a list of class-name strings")
            both = sorted(set(seen) & set(unseen))
            if both:
                raise ClassSplitError(f"{where}: classes {both} are listed as both seen and unseen")
            listed, known = set(seen) | set(unseen), set(names)
            missing = [n for n in names if n not in listed]
            if missing:
                raise ClassSplitError(f"{where}: classes {_some(missing)} are neither seen nor unseen")
            extra = [n for n in seen if n not in known]
            if extra:
                raise ClassSplitError(f"{where}: seen classes {_some(extra)} are not among its class names")
        dataset = data.get("dataset", "custom")
        if (
            not isinstance(dataset, str)
            or not dataset.strip()
            or len(dataset) > MAX_NAME_CHARS
            or bad_character(dataset)
        ):
            raise ClassSplitError(f"{where}: 'dataset' must be a short name, got {_shown(dataset)}")
        synonyms = data.get("synonyms", {})
        if not isinstance(synonyms, dict) or not all(
            isinstance(more, list) and all(isinstance(n, str) for n in more) for more in synonyms.values()
        ):
            raise ClassSplitError(
                f"{where}: 'synonyms' must map class names to lists of names, "
                f'e.g. {{"tvmonitor": ["tv monitor", "television"]}}'
            )
        try:
            return cls(tuple(names), tuple(unseen), dataset, synonyms)
        except ClassSplitError as error:
            raise ClassSplitError(f"{where}: {error}") from None

    @classmethod
    def read(cls, path: str | Path) -> ClassSplit:
        """Reads a ``classes.json`` file."""
        return cls.from_dict(read_json_file(path, "class file"), where=f"class file {path}")

    def write(self, path: str | Path) -> None:
        write_json(path, self.to_dict())


def _shown(value: object) -> str:
    """A value read from JSON (nested at most MAX_JSON_DEPTH levels) for a message: 80 characters at most."""
    return printable(repr(value), 80)


def _some(names: list[str]) -> str:
    return printable(str(names), 200)


def validate_class_names(names: list[str] | tuple[str, ...], where: str = "class names") -> None:
    """Refuses an empty vocabulary, blank names and duplicates, naming the offender."""
    if len(names) == 0:
        raise ClassSplitError(f"{where}: no class names given")
    if len(names) > MAX_CLASSES:
        raise ClassSplitError(f"{where}: {len(names)} names; label maps (16-bit) hold at most {MAX_CLASSES}")
    for i, name in enumerate(names):
        if not isinstance(name, str):  # b"cat" is not the name "cat": refused, never read as its bytes
            raise ArgumentTypeError(f"{where}: class {i}'s name must be a str, got {printable(repr(name), 60)}")
        if not name.strip():
            raise ClassSplitError(f"{where}: class {i} has an empty name")
        if len(name) > MAX_NAME_CHARS:
            raise ClassSplitError(
                f"{where}: class {i}'s name is {len(name):,} characters long; at most {MAX_NAME_CHARS} are taken"
            )
        bad = bad_character(name)
        if bad:
            raise ClassSplitError(f"{where}: class {i}'s name '{printable(name, 80)}' holds control character {bad}")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        key = name.strip()
        if key in seen:
            raise ClassSplitError(f"{where}: class name '{name}' appears twice (ids {seen[key]} and {i})")
        seen[key] = i


def _checked_synonyms(names: tuple[str, ...], synonyms: Mapping, dataset: str) -> dict[str, tuple[str, ...]]:
    """Synonyms in label-id order, as tuples, empty lists dropped; refuses what would be ambiguous."""
    known = set(names)
    unknown = [name for name in synonyms if name not in known]
    if unknown:
        raise ClassSplitError(f"synonyms are given for {_some(unknown)}, which are not classes of '{dataset}'")
    checked = {}
    for name in names:
        more = tuple(synonyms.get(name, ()))
        if more:
            validate_class_names((name, *more), where=f"names of class '{name}' of '{dataset}'")
            clash = [n for n in more if n in known]
            if clash:
                raise ClassSplitError(f"synonyms {clash} of class '{name}' of '{dataset}' are names of other classes")
            checked[name] = more
    return checked


ClassEntry = str | Sequence[str]  # one class: its name, or its name followed by synonyms


def class_texts(entries: Sequence[ClassEntry], where: str = "class names") -> tuple[tuple[str, ...], ...]:
    """A vocabulary as given by a user -> per class, its names (name first, then synonyms).

    ``["cat", ("tv monitor", "television")]`` -> ``(("cat",), ("tv monitor", "television"))``.
    Refuses names that are not str, an empty vocabulary, blank names, a class named twice, a name
    repeated in one class and a synonym that is another class's name (which class would it mean?)."""
    if isinstance(entries, (str, bytes, bytearray, Mapping)) or not isinstance(entries, Iterable):
        raise ArgumentTypeError(f"{where}: expected a list of class names, got {printable(repr(entries), 80)}")
    # Labels are indices into the list: a set has no order to index, and a generator would be used
    # up by the first of the several reads a vocabulary gets (it then looked like no names at all).
    if isinstance(entries, (Set, Iterator)):
        kind = "a set has no order" if isinstance(entries, Set) else "an iterator can be read once"
        raise ArgumentTypeError(
            f"{where}: expected a list of class names (labels are indices into it), got a {type(entries).__name__}: "
            f"{kind}; pass a list"
        )
    texts = tuple(
        (entry,) if isinstance(entry, (str, bytes)) or not isinstance(entry, Iterable) else tuple(entry)
        for entry in entries
    )
    validate_class_names([t[0] if t else "" for t in texts], where=where)
    class_names = {t[0] for t in texts}
    for names in texts:
        validate_class_names(names, where=f"{where}: names of class '{names[0]}'")
        clash = [n for n in names[1:] if n in class_names]
        if clash:
            raise ClassSplitError(f"{where}: synonyms {clash} of class '{names[0]}' are names of other classes")
    return texts


def parse_class_entries(text: str) -> list[tuple[str, ...]]:
    """Parses a class list as typed on the command line, keeping synonyms.

    Classes are separated by commas, a class's synonyms by ``|``:
    ``"cat, tv monitor|television"`` -> ``[("cat",), ("tv monitor", "television")]``.
    """
    entries = [tuple(name.strip() for name in part.split("|")) for part in text.split(",")]
    return list(class_texts(entries, where=f"class list '{printable(text, 80)}'"))


def parse_class_list(text: str) -> list[str]:
    """The class names of a typed class list: ``"cat, dog,sofa"`` -> ``["cat", "dog", "sofa"]``.

    Synonyms (``"tv monitor|television"``) are checked, and only each class's first name is
    returned; :func:`parse_class_entries` keeps them.
    """
    return [entry[0] for entry in parse_class_entries(text)]
