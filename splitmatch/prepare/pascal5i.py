"""PASCAL-5i: VOC 2012 + SBD with background as a class, its four folds and fixed test episodes.

Source: the VOC 2012 layout of :mod:`~splitmatch.prepare.voc` (``--src VOCdevkit/VOC2012``)
and SBD's own files (``--sbd benchmark_RELEASE/dataset``, read from ``cls/*.mat``), or the
SegmentationClassAug PNGs in ``--src`` without ``--sbd``. Images, splits and label sources are
those of ``prepare voc``: ``train`` = VOC train + SBD without VOC val (10,582), ``val`` = VOC val
(1,449), the test set of every PASCAL-5i paper.

Written: 21 classes, ``background`` (0) then the 20 VOC classes with their VOC ids (1..20), 255
the VOC borders. ``classes.json`` names no unseen class: one folder serves all four folds, and
the fold a run holds out comes from its config (``folds.json``; in Python
:func:`splitmatch.data.fold_schemes.fold_class_split`). Background is kept as a class so that both
label conventions can be trained (:func:`splitmatch.data.fold_schemes.training_label_map`), and so
that an episode's "not the class" pixels have a name. Per fold, ``episodes/pascal-5i/fold<i>_1000.txt``
holds the fixed test episodes (:mod:`splitmatch.data.episode_lists`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from splitmatch.data.class_lists import VOC_CLASSES
from splitmatch.data.classes import ClassSplit
from splitmatch.data.episode_lists import DEFAULT_EPISODE_COUNT, DEFAULT_EPISODE_SEED, MIN_OBJECT_PIXELS
from splitmatch.data.fold_schemes import BACKGROUND
from splitmatch.data.folder import DatasetFolder
from splitmatch.prepare.common import convert_samples, preflight, write_classes, write_splits
from splitmatch.prepare.fold_files import check_episode_options, write_fold_files
from splitmatch.prepare.readback import verify_prepared
from splitmatch.prepare.sbd import convert_sbd_or_png
from splitmatch.prepare.voc import VOC21_FORMAT, check_voc_root, voc_sources, voc_splits

PASCAL5I_SPLIT = ClassSplit((BACKGROUND, *VOC_CLASSES), (), "pascal-5i")


def prepare_pascal5i(
    src: str | Path,
    dst: str | Path,
    progress: bool = True,
    sbd: str | Path | None = None,
    allow_partial: bool = False,
    episode_counts: Sequence[int] = (DEFAULT_EPISODE_COUNT,),
    min_object_pixels: int = MIN_OBJECT_PIXELS,
) -> DatasetFolder:
    """Converts VOC 2012 + SBD into a PASCAL-5i folder (see the module docstring).

    Args:
        sbd: SBD's ``benchmark_RELEASE/dataset`` folder (its ``.mat`` labels are read directly).
        allow_partial: accept splits of other sizes than 10,582 / 1,449, with a warning.
        episode_counts: the test episode lists to write per fold (1,000; PFENet's test.py scores 5,000).
        min_object_pixels: the smallest object a test episode may ask for (PFENet's 2 x 32 x 32).

    Resumable: files already in ``dst`` are kept, so an interrupted run can simply be repeated.

    Raises:
        DatasetFormatError: a missing or malformed source file (named), or a split of another size.
    """
    src, dst = Path(src), Path(dst)
    sbd = Path(sbd) if sbd is not None else None
    check_episode_options(episode_counts, min_object_pixels, DEFAULT_EPISODE_SEED)
    check_voc_root(src, sbd)
    splits = voc_splits(src, sbd)
    preflight("pascal-5i", src, dst, splits, allow_partial)
    samples = voc_sources(src, splits, VOC21_FORMAT, sbd)
    write_classes(dst, PASCAL5I_SPLIT)
    convert_samples(samples, dst, progress, desc="pascal-5i", convert=convert_sbd_or_png)
    write_splits(dst, splits)
    folder = verify_prepared(dst, PASCAL5I_SPLIT, splits)
    # In order, as HSNet's PASCAL-5i test loader: no seed is involved.
    write_fold_files(folder, episode_counts, min_object_pixels, allow_partial=allow_partial)
    return folder
