"""The split sizes of each benchmark protocol, and the check that a prepared dataset has them.

Published numbers are scored on these exact splits, so a converter refuses a source whose
splits have other sizes (a partial download, a different release, the wrong list files)
before it writes anything. ``allow_partial=True`` (``--allow-partial``) accepts such a source
and says so with a :class:`PartialDatasetWarning`: a partial folder serves tests and trials,
and its numbers do not compare with published ones.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sized
from dataclasses import dataclass

from splitmatch.data.folder import DatasetFormatError


class PartialDatasetWarning(UserWarning):
    """A split does not have its protocol's size and ``allow_partial`` accepted it."""


@dataclass(frozen=True)
class ProtocolSizes:
    """Image counts per split of one protocol.

    Attributes:
        sizes: split name -> number of images.
        optional: splits that may be absent (e.g. Context-459's train split: it is a target of
            models trained elsewhere); when present they must have their size too.
        note: where the sizes come from, for the error message.
    """

    sizes: Mapping[str, int]
    note: str
    optional: tuple[str, ...] = ()


_VOC = ProtocolSizes({"train": 10_582, "val": 1_449}, "VOC 2012 train + SBD aug without val, and VOC 2012 val")
_CONTEXT = ProtocolSizes({"train": 4_996, "val": 5_104}, "the PASCAL Context train and val lists")

PROTOCOL_SIZES: dict[str, ProtocolSizes] = {
    "voc": _VOC,
    "voc21": _VOC,
    "pascal-5i": _VOC,
    "coco-stuff": ProtocolSizes({"train": 118_287, "val": 5_000}, "COCO 2017 train and val"),
    "context": _CONTEXT,
    "context-459": ProtocolSizes(_CONTEXT.sizes, _CONTEXT.note, optional=("train",)),
    "ade20k-150": ProtocolSizes({"train": 20_210, "val": 2_000}, "ADEChallengeData2016 training and validation"),
    "coco-20i": ProtocolSizes({"train": 82_783, "val": 40_504}, "COCO 2014 train and val (every image listed)"),
}


def size_mismatches(protocol: str, splits: Mapping[str, Sized]) -> list[str]:
    """``"'train' has 3 images, not 10,582"`` for every split whose size is not the protocol's."""
    expected = PROTOCOL_SIZES[protocol]
    problems = []
    for split, size in expected.sizes.items():
        if split not in splits:
            if split not in expected.optional:
                problems.append(f"'{split}' is missing ({size:,} images expected)")
        elif len(splits[split]) != size:
            problems.append(f"'{split}' has {len(splits[split]):,} images, not {size:,}")
    return problems


def check_split_sizes(protocol: str, splits: Mapping[str, Sized], allow_partial: bool) -> None:
    """Refuses (or, with ``allow_partial``, warns about) splits of other sizes than the protocol's.

    Args:
        protocol: a key of :data:`PROTOCOL_SIZES`, e.g. ``"voc"``.
        splits: split name -> the stems it will hold.
        allow_partial: accept other sizes with a :class:`PartialDatasetWarning` instead of refusing.

    Raises:
        DatasetFormatError: a size differs and ``allow_partial`` is false (one line naming every split).
    """
    problems = size_mismatches(protocol, splits)
    if not problems:
        return
    what = f"{protocol}: split {'; split '.join(problems)} ({PROTOCOL_SIZES[protocol].note})"
    if not allow_partial:
        raise DatasetFormatError(
            f"{what}: a partial or different download? Published numbers are scored on the full splits; "
            "pass --allow-partial to prepare it anyway"
        )
    warnings.warn(
        f"PARTIAL DATASET {what}; prepared anyway (--allow-partial): its numbers do not compare with published ones",
        PartialDatasetWarning,
        stacklevel=2,
    )
