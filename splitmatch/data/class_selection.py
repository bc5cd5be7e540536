"""Seen / unseen splits chosen by a config instead of a dataset's ``classes.json``.

A dataset folder names its classes and one split of them (``classes.json``). An experiment may
ask for another split: a list of unseen names (a PASCAL-5i fold's classes, or none at all for
the fully supervised bound), or a share of the classes drawn with a seed (OC-ZSS's VOC with 25%
or 50% of the classes seen). Whatever ends up unseen is treated by the inductive rule as the
dataset's own unseen classes are: ignored in training labels, their names never used.

Draws (here and in :mod:`splitmatch.data.proxy`) rank the candidates by a SHA-256 of the seed and
the name, so the same seed draws the same classes or images on any machine and with any numpy,
whatever order a list file gives them in.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from splitmatch.data.classes import ClassSplit, ClassSplitError
from splitmatch.data.folder import list_some


def draw(names: Sequence[str], count: int, seed: int, salt: str) -> tuple[str, ...]:
    """``count`` of ``names`` drawn by ``seed``, returned in the order of ``names``.

    ``salt`` keeps draws of different things (classes, images) with one seed independent.
    """
    if not 0 <= count <= len(names):
        raise ValueError(f"cannot draw {count} of {len(names)} names")
    ranked = sorted(names, key=lambda name: hashlib.sha256(f"{seed}/{salt}/{name}".encode()).hexdigest())
    chosen = set(ranked[:count])
    return tuple(name for name in names if name in chosen)


def share_of(total: int, fraction: float) -> int:
    """``fraction`` of ``total`` rounded half up, at least 1 and at most ``total - 1``: both sides keep one."""
    return min(max(math.floor(fraction * total + 0.5), 1), total - 1)


def check_known(names: Sequence[str], classes: ClassSplit, key: str) -> None:
    """Refuses names that are not classes of the dataset, in one line naming them."""
    known = set(classes.names)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ClassSplitError(
            f"{key} names {len(unknown)} class(es) that '{classes.dataset}' does not have: {', '.join(unknown)} "
            f"(its classes: {list_some(list(classes.names), 8)})"
        )


def select_unseen(
    classes: ClassSplit,
    unseen: Sequence[str] | None = None,
    unseen_fraction: float | None = None,
    seed: int = 0,
) -> ClassSplit:
    """The dataset's classes with the unseen ones the config asks for.

    Args:
        classes: the dataset's own split (``classes.json``).
        unseen: unseen class names (``data.unseen``); ``[]``: every class seen; ``None``: not this way.
        unseen_fraction: this share of the classes drawn as unseen by ``seed`` (``data.unseen_fraction``).

    Returns:
        ``classes`` itself when neither is given, else the same names, synonyms and dataset name
        with the new unseen classes.

    Raises:
        ClassSplitError: a name the dataset does not have, both ways at once, or a dataset of one class.
    """
    if unseen is None and unseen_fraction is None:
        return classes
    if unseen is not None and unseen_fraction is not None:
        raise ClassSplitError("data.unseen and data.unseen_fraction both choose the unseen classes; set one of them")
    if unseen is not None:
        check_known(unseen, classes, "data.unseen")
        chosen = tuple(unseen)
    else:
        if classes.num_classes < 2:
            raise ClassSplitError(f"data.unseen_fraction: '{classes.dataset}' has one class; it cannot be split")
        chosen = draw(classes.names, share_of(classes.num_classes, unseen_fraction), seed, "unseen")
    return ClassSplit(classes.names, chosen, classes.dataset, classes.synonyms)


def describe_split(classes: ClassSplit) -> str:
    """``'voc': 15 seen, 5 unseen (pottedplant, sheep, ...)`` for messages."""
    unseen = list_some(list(classes.unseen)) or "none"
    return f"'{classes.dataset}': {len(classes.seen_ids)} seen, {len(classes.unseen)} unseen ({unseen})"
