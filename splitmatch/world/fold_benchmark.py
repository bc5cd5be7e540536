"""The world as a fold benchmark: its 12 object classes in four folds of three, with fixed test episodes.

PASCAL-5i cuts VOC's 20 object classes into four folds of five, ``background`` (class 0) in
none of them; the world's 12 object classes are cut the same way, in class order, into four
folds of three (scheme ``world-3i``)::

    fold 0  circle, square, triangle        fold 2  cross, hexagon, crescent
    fold 1  star, heart, ring               fold 3  diamond, arrow, bolt

Each fold holds one of the world's default unseen classes (square, heart, cross, bolt). The
test episodes are drawn from the val split by the code ``splitmatch prepare pascal-5i`` uses
(:mod:`splitmatch.data.episode_lists`: eligible pairs, then PASCAL-5i's in-order cycling) and read
back by the same reader. An episode asks for an object of at least :data:`WORLD_MIN_OBJECT_PIXELS`
pixels: 2 x 8 x 8, two patches of the world CLIP's 8-pixel grid, as PFENet's 2 x 32 x 32 are
two 32-pixel blocks (1.4% of a 96-pixel image; PFENet's 2,048 pixels are 1.1% of a 500 x 375
VOC image); chosen before any model was scored.

``splitmatch world --out DIR --folds`` writes ``folds.json`` and ``episodes/world-3i/`` into a
world folder; its images, labels, splits and classes stay as they are.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from splitmatch.data.episode_lists import (
    DEFAULT_EPISODE_COUNT,
    EPISODE_SPLIT,
    cycled_episodes,
    eligible_pairs,
    episode_file_text,
    episode_path,
    read_episodes,
)
from splitmatch.data.fold_schemes import FOLDS_FILE, FoldScheme, consecutive_folds
from splitmatch.data.folder import DatasetFolder, DatasetFormatError, read_label
from splitmatch.prepare.common import write_if_changed
from splitmatch.prepare.readback import count_classes
from splitmatch.world.generator import CLASS_NAMES

WORLD_FOLD_SCHEME = FoldScheme("world-3i", "world", "consecutive", consecutive_folds(CLASS_NAMES[1:]), "cycle")
WORLD_MIN_OBJECT_PIXELS = 2 * 8 * 8


def folds_text(scheme: FoldScheme = WORLD_FOLD_SCHEME) -> str:
    """``folds.json`` of a world folder, in the format ``prepare`` writes
    (:func:`splitmatch.data.fold_schemes.read_fold_scheme` reads it)."""
    data = {
        "default": scheme.name,
        "schemes": {
            scheme.name: {
                "convention": scheme.convention,
                "sampling": scheme.sampling,
                "folds": [list(fold) for fold in scheme.folds],
            }
        },
    }
    return json.dumps(data, indent=2) + "\n"


def write_world_folds(
    folder: DatasetFolder,
    counts: Sequence[int] = (DEFAULT_EPISODE_COUNT,),
    min_pixels: int = WORLD_MIN_OBJECT_PIXELS,
) -> list[str]:
    """Writes ``folds.json`` and each fold's episode lists into a world folder; returns lines to print.

    Raises:
        DatasetFormatError: the folder is not a world, or a fold class has no eligible val image.
    """
    scheme = WORLD_FOLD_SCHEME
    if tuple(folder.classes.names) != CLASS_NAMES:
        raise DatasetFormatError(
            f"{folder.root} is not a world folder (classes {list(folder.classes.names)[:4]}...); "
            "make one with `splitmatch world --out DIR`"
        )
    stems = folder.stems(EPISODE_SPLIT)
    samples = {sample.stem: sample for sample in folder.samples(EPISODE_SPLIT)}
    pixels = {stem: count_classes(read_label(samples[stem].label_path, folder.classes.num_classes)) for stem in stems}
    write_if_changed(folder.root / FOLDS_FILE, folds_text(scheme))
    lines = []
    for fold, fold_classes in enumerate(scheme.folds):
        pairs = eligible_pairs(stems, pixels, folder.classes.names, fold_classes, min_pixels)
        absent = [name for name in fold_classes if name not in {pair.class_name for pair in pairs}]
        if absent:
            raise DatasetFormatError(
                f"{scheme.name} fold {fold}: no {EPISODE_SPLIT} image of {folder.root} holds {min_pixels} pixels "
                f"of {', '.join(absent)}"
            )
        for count in counts:
            header = [
                f"{scheme.name} fold {fold}: {', '.join(fold_classes)}",
                f"{count} episodes from {len(pairs)} ({EPISODE_SPLIT} image, class) pairs with at least "
                f"{min_pixels} pixels of the class, drawn in order, cycling (HSNet's PASCAL-5i)",
                "one episode a line: <stem><TAB><class name>",
            ]
            episodes = cycled_episodes(pairs, count)
            write_if_changed(episode_path(folder.root, scheme.name, fold, count), episode_file_text(episodes, header))
            read_episodes(folder, fold, count, scheme.name)
        lines.append(
            f"  fold {fold}: {', '.join(fold_classes)}; {len(pairs)} eligible pairs; "
            f"episodes: {', '.join(str(c) for c in counts)}"
        )
    return lines
