"""The fold files of PASCAL-5i and COCO-20i folders: ``folds.json`` and the fixed test episode lists.

Written last, from the val split's class pixel counts (``class_pixels.json``), and read back
with :func:`splitmatch.data.episode_lists.read_episodes`, the reader evaluation uses. See
:mod:`splitmatch.data.fold_schemes` for the folds and :mod:`splitmatch.data.episode_lists` for how the
episodes are drawn.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from splitmatch.data.episode_lists import (
    DEFAULT_EPISODE_COUNT,
    DEFAULT_EPISODE_SEED,
    EPISODE_SPLIT,
    MAX_EPISODE_COUNT,
    MIN_OBJECT_PIXELS,
    cycled_episodes,
    eligible_pairs,
    episode_file_text,
    episode_path,
    read_episodes,
    sampled_episodes,
)
from splitmatch.data.fold_schemes import FOLDS_FILE, folds_file_text, read_fold_scheme, schemes_for
from splitmatch.data.folder import DatasetFolder, DatasetFormatError
from splitmatch.prepare.common import write_if_changed
from splitmatch.prepare.protocol_sizes import PartialDatasetWarning
from splitmatch.prepare.readback import read_pixel_counts


def check_episode_options(counts: Sequence[int], min_pixels: int, seed: int) -> None:
    """Refuses episode counts, object sizes or seeds that are not positive (or, for the seed, >= 0) integers."""
    if not counts or any(
        not isinstance(c, int) or isinstance(c, bool) or not 1 <= c <= MAX_EPISODE_COUNT for c in counts
    ):
        raise DatasetFormatError(f"episode counts must be integers in 1..{MAX_EPISODE_COUNT:,}, got {list(counts)[:8]}")
    if len(set(counts)) != len(counts):  # one list per length: a repeat is a typo, not a second list
        raise DatasetFormatError(f"episode counts must be distinct, got {list(counts)[:8]}")
    if not isinstance(min_pixels, int) or min_pixels < 1:
        raise DatasetFormatError(f"the smallest object of an episode must be at least 1 pixel, got {min_pixels!r}")
    if not isinstance(seed, int) or seed < 0:
        raise DatasetFormatError(f"the episode seed must be a non-negative integer, got {seed!r}")


def write_fold_files(
    folder: DatasetFolder,
    counts: Sequence[int] = (DEFAULT_EPISODE_COUNT,),
    min_pixels: int = MIN_OBJECT_PIXELS,
    seed: int = DEFAULT_EPISODE_SEED,
    allow_partial: bool = False,
) -> None:
    """Writes ``folds.json`` and, per fold scheme, fold and count, the episode list; reads them back.
    Every fold is drawn and checked before the first file is written, so a fold that cannot be
    drawn leaves no list of the others behind.

    Args:
        folder: a prepared ``pascal-5i`` or ``coco-20i`` folder with its val split and pixel counts.
        counts: the list lengths to write, e.g. ``(1000, 5000)``.
        min_pixels: the smallest object an episode may ask for.
        seed: seeds the ``sample`` drawing (the ``cycle`` drawing has no randomness).
        allow_partial: a fold class without any eligible image is a warning, not an error.

    Raises:
        DatasetFormatError: a fold has no eligible pair at all, or (without ``allow_partial``)
            a fold class has none.
    """
    dataset = folder.classes.dataset
    pixels = read_pixel_counts(folder.root)
    planned: list[tuple[str, int, int, str]] = []  # scheme, fold, count, the list's text
    stems = folder.stems(EPISODE_SPLIT)
    for scheme in schemes_for(dataset):
        for fold, fold_classes in enumerate(scheme.folds):
            pairs = eligible_pairs(stems, pixels, folder.classes.names, fold_classes, min_pixels)
            absent = [name for name in fold_classes if name not in {p.class_name for p in pairs}]
            where = f"{scheme.name} fold {fold}"
            if len(absent) == len(fold_classes):
                raise DatasetFormatError(
                    f"{where}: no {EPISODE_SPLIT} image holds {min_pixels:,} pixels of any of its classes; "
                    "no episode can be drawn"
                )
            if absent:
                message = f"{where}: no {EPISODE_SPLIT} image holds {min_pixels:,} pixels of {', '.join(absent)}"
                if not allow_partial:
                    raise DatasetFormatError(f"{message}; pass --allow-partial to draw episodes without them")
                warnings.warn(
                    f"PARTIAL DATASET {message}: its episodes leave them out", PartialDatasetWarning, stacklevel=3
                )
            for count in counts:
                if scheme.sampling == "cycle":
                    episodes, how = cycled_episodes(pairs, count), "in order, cycling (HSNet's PASCAL-5i loader's way)"
                else:
                    episodes = sampled_episodes(pairs, count, seed)
                    how = f"a class, then one of its images, default_rng seed {seed} (HSNet's way, not its episodes)"
                header = [
                    f"{where}: {', '.join(fold_classes)}",
                    f"{count} episodes from {len(pairs)} ({EPISODE_SPLIT} image, class) pairs with at least "
                    f"{min_pixels} pixels of the class, drawn {how}",
                    "one episode a line: <stem><TAB><class name>",
                ]
                planned.append((scheme.name, fold, count, episode_file_text(episodes, header)))
    write_if_changed(folder.root / FOLDS_FILE, folds_file_text(dataset))
    for scheme_name, fold, count, text in planned:
        write_if_changed(episode_path(folder.root, scheme_name, fold, count), text)
        read_episodes(folder, fold, count, scheme_name)


def describe_folds(folder: DatasetFolder) -> list[str]:
    """Per fold scheme and fold: its classes and the episode lists stored (lines to print)."""
    lines = []
    for scheme in schemes_for(folder.classes.dataset):
        stored = read_fold_scheme(folder, scheme.name)
        default = " (default)" if scheme.name == schemes_for(folder.classes.dataset)[0].name else ""
        lines.append(f"  fold scheme {scheme.name}{default}, {stored.convention}:")
        for fold, fold_classes in enumerate(stored.folds):
            directory = episode_path(folder.root, scheme.name, fold, 0).parent
            lists = sorted(p.name for p in directory.glob(f"fold{fold}_*.txt"))
            lines.append(f"    fold {fold}: {', '.join(fold_classes)}; episodes: {', '.join(lists) or 'none'}")
    return lines
