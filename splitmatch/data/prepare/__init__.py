"""Converters from the official dataset layouts into the dataset folder format.

Each is ``prepare_<name>(src, dst, progress=True) -> DatasetFolder``; ``PREPARERS`` maps the
names used on the command line (``splitmatch prepare voc --src S --dst D``) to them. See
``docs/datasets.md`` for where the archives come from and the layouts expected in ``src``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from splitmatch.data.folder import DatasetFolder
from splitmatch.data.prepare.ade20k import prepare_ade20k
from splitmatch.data.prepare.coco_stuff import prepare_coco_stuff
from splitmatch.data.prepare.context import prepare_context
from splitmatch.data.prepare.context459 import prepare_context459
from splitmatch.data.prepare.voc import prepare_voc

PREPARERS: dict[str, Callable[[str | Path, str | Path, bool], DatasetFolder]] = {
    "voc": prepare_voc,
    "coco-stuff": prepare_coco_stuff,
    "context": prepare_context,
    "ade20k": prepare_ade20k,
    "context-459": prepare_context459,
}

__all__ = [
    "PREPARERS", "prepare_ade20k", "prepare_coco_stuff", "prepare_context", "prepare_context459", "prepare_voc",
]  # fmt: skip
