"""Converters from the official dataset layouts into the dataset folder format.

Each is ``prepare_<name>(src, dst, progress=True, allow_partial=False, ...) -> DatasetFolder``;
``PREPARERS`` maps the names used on the command line (``splitmatch prepare voc --src S --dst D``)
to them. Every converter refuses a split of another size than its protocol's unless
``allow_partial`` (then a :class:`PartialDatasetWarning`), and ends by reading its output back
with the readers training uses. See ``docs/datasets.md`` for where the archives come from and
the layouts expected in ``src``.
"""

from __future__ import annotations

from collections.abc import Callable

from splitmatch.data.folder import DatasetFolder
from splitmatch.prepare.ade20k import prepare_ade20k
from splitmatch.prepare.coco20i import prepare_coco20i
from splitmatch.prepare.coco_stuff import prepare_coco_stuff
from splitmatch.prepare.context import prepare_context
from splitmatch.prepare.context459 import prepare_context459
from splitmatch.prepare.pascal5i import prepare_pascal5i
from splitmatch.prepare.protocol_sizes import PartialDatasetWarning
from splitmatch.prepare.voc import prepare_voc

PREPARERS: dict[str, Callable[..., DatasetFolder]] = {
    "voc": prepare_voc,
    "coco-stuff": prepare_coco_stuff,
    "context": prepare_context,
    "ade20k": prepare_ade20k,
    "context-459": prepare_context459,
    "pascal-5i": prepare_pascal5i,
    "coco-20i": prepare_coco20i,
}

__all__ = [
    "PREPARERS",
    "PartialDatasetWarning",
    "prepare_ade20k",
    "prepare_coco20i",
    "prepare_coco_stuff",
    "prepare_context",
    "prepare_context459",
    "prepare_pascal5i",
    "prepare_voc",
]
