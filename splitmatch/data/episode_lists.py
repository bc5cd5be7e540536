"""Test episodes of PASCAL-5i and COCO-20i: which query image asks for which class.

An episode is one binary question: query image ``stem`` holds class ``class_name``; the model
is given that class and a background name and segments the class. A fold is scored on a fixed
list of episodes (1,000 by default, as HSNet and LSeg; PFENet's test.py scores 5,000 on PASCAL and
20,000 on COCO), drawn once from the
val split's labels by ``splitmatch prepare`` and stored as text, so every run scores the same
episodes::

    ROOT/episodes/<scheme>/fold<i>_<count>.txt
        # comment lines: how the list was drawn
        <stem>\\t<class name>          one episode a line, tab-separated

How the list is drawn follows the way of HSNet's data code (``data/pascal.py``, ``data/coco.py``),
not its lists (a peer's list is read as it stands by :mod:`splitmatch.data.published_episodes`):

* Eligible pairs: (val image, fold class) where the class covers at least ``min_pixels`` pixels
  of the image (PFENet's and OSLSM's rule, 2 x 32 x 32 = 2,048 pixels at full resolution),
  in split-list order, then class order.
* ``cycle`` (PASCAL-5i): episode k is pair ``k mod n``, as HSNet's PASCAL test loader does.
* ``sample`` (COCO-20i): each episode draws a fold class uniformly, then one of its eligible
  images uniformly, from ``numpy.random.default_rng(seed)``: HSNet's way, not its generator nor
  its per-class lists' order, so not its episodes (:func:`~splitmatch.data.published_episodes.hsnet_coco_draw`
  draws those from its lists).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from splitmatch.data.fold_schemes import read_fold_scheme
from splitmatch.data.folder import DatasetFolder, DatasetFormatError
from splitmatch.storage.files import read_text

EPISODES_DIR = "episodes"
EPISODE_SPLIT = "val"
DEFAULT_EPISODE_COUNT = 1000
# The longest list prepare draws: 200 times HSNet's longest (5,000); a list of a million lines is 30 MB.
MAX_EPISODE_COUNT = 1_000_000
MIN_OBJECT_PIXELS = 2 * 32 * 32
# The largest side episodes may be scored at (HSNet's is 400): a label resized to N x N is N^2 values.
MAX_SCORE_SIDE = 4096
DEFAULT_EPISODE_SEED = 0


@dataclass(frozen=True)
class Episode:
    """One test episode: the query image's stem and the class asked for."""

    stem: str
    class_name: str


def eligible_pairs(
    stems: Sequence[str],
    counts: Mapping[str, Mapping[int, int]],
    names: Sequence[str],
    fold_classes: Sequence[str],
    min_pixels: int = MIN_OBJECT_PIXELS,
) -> list[Episode]:
    """Every (image, fold class) with at least ``min_pixels`` pixels of the class, in stem then class order.

    Args:
        stems: the split's images, in list order.
        counts: stem -> class id -> pixels (``class_pixels.json``).
        names: the dataset's class names, by id.
        fold_classes: the fold's class names.
    """
    wanted = sorted(names.index(name) for name in fold_classes)
    return [
        Episode(stem, names[class_id])
        for stem in stems
        for class_id in wanted
        if counts.get(stem, {}).get(class_id, 0) >= min_pixels
    ]


def cycled_episodes(pairs: Sequence[Episode], count: int) -> list[Episode]:
    """HSNet's PASCAL-5i test list: episode k is ``pairs[k % len(pairs)]``."""
    if not pairs:
        raise ValueError("no eligible (image, class) pairs to draw episodes from")
    return [pairs[k % len(pairs)] for k in range(count)]


def sampled_episodes(pairs: Sequence[Episode], count: int, seed: int) -> list[Episode]:
    """HSNet's COCO-20i test list: per episode a class uniformly (among those with pairs), then one of its images."""
    by_class: dict[str, list[Episode]] = {}
    for pair in pairs:
        by_class.setdefault(pair.class_name, []).append(pair)
    if not by_class:
        raise ValueError("no eligible (image, class) pairs to draw episodes from")
    classes = list(by_class)
    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(count):
        candidates = by_class[classes[int(rng.integers(len(classes)))]]
        episodes.append(candidates[int(rng.integers(len(candidates)))])
    return episodes


def episode_path(root: Path, scheme: str, fold: int, count: int) -> Path:
    """Where the list of ``count`` episodes of ``fold`` of ``scheme`` is stored."""
    return Path(root) / EPISODES_DIR / scheme / f"fold{fold}_{count}.txt"


def episode_file_text(episodes: Sequence[Episode], header: Sequence[str]) -> str:
    """The file's content: ``# `` header lines, then ``stem<TAB>class`` lines."""
    return "".join(f"# {line}\n" for line in header) + "".join(f"{e.stem}\t{e.class_name}\n" for e in episodes)


def read_episode_file(path: Path, classes: Collection[str], stems: Collection[str]) -> list[Episode]:
    """Reads an episode list, refusing any line that is not ``<stem><TAB><class>`` of ``stems`` and ``classes``.

    Raises:
        DatasetFormatError: one line naming the file, the line number and what is wrong.
    """
    path = Path(path)
    try:
        text = read_text(path, "episode list", "expected '<stem><TAB><class>' lines", DatasetFormatError)
    except FileNotFoundError:
        raise DatasetFormatError(f"episode list {path} does not exist") from None
    episodes = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not all(fields):
            raise DatasetFormatError(f"{path} line {number}: expected '<stem><TAB><class name>', got {line[:80]!r}")
        episodes.append(checked_episode(path, number, *fields, classes, stems))
    return require_some(episodes, path, "episodes")


def checked_episode(
    path: Path, number: int, stem: str, class_name: str, classes: Collection[str], stems: Collection[str]
) -> Episode:
    """Line ``number`` of an episode list as an :class:`Episode`, refused in one line naming the file
    and the line when its class is not one of the fold's ``classes`` or its image not in ``stems``."""
    if class_name not in classes:
        raise DatasetFormatError(
            f"{path} line {number}: class {class_name!r} is not one of this fold's classes ({', '.join(classes)})"
        )
    if stem not in stems:
        raise DatasetFormatError(f"{path} line {number}: image {stem!r} is not in the {EPISODE_SPLIT} split")
    return Episode(stem, class_name)


def require_some(episodes: list[Episode], path: Path, what: str) -> list[Episode]:
    """``episodes``, refused when the list at ``path`` held none (``what``: how the file calls them)."""
    if not episodes:
        raise DatasetFormatError(f"episode list {path} holds no {what}")
    return episodes


def read_episodes(
    folder: DatasetFolder | str | Path, fold: int, count: int = DEFAULT_EPISODE_COUNT, scheme: str | None = None
) -> list[Episode]:
    """The stored test episodes of one fold, checked against the folder.

    Args:
        folder: a folder made by ``splitmatch prepare pascal-5i`` or ``prepare coco-20i``.
        fold: 0..3.
        count: which list, by length (1,000 unless another was prepared).
        scheme: the fold scheme (``folds.json``), e.g. ``"coco-20i-consecutive"``; default the folder's.

    Raises:
        DatasetFormatError: no such list (the lists present are named), or a malformed line.
    """
    folder = folder if isinstance(folder, DatasetFolder) else DatasetFolder(folder)
    fold_scheme = read_fold_scheme(folder, scheme)
    fold_classes = fold_scheme.fold(fold)
    path = episode_path(folder.root, fold_scheme.name, fold, count)
    if not path.is_file():
        present = sorted(p.name for p in path.parent.glob("fold*_*.txt")) or ["none"]
        raise DatasetFormatError(
            f"no list of {count} episodes for fold {fold} of {fold_scheme.name}: {path} does not exist "
            f"(lists present: {', '.join(present)}); prepare writes them (--episodes)"
        )
    return read_episode_file(path, fold_classes, set(folder.stems(EPISODE_SPLIT)))


def episode_target(label: np.ndarray, class_id: int, ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """An episode's ground truth from a label map ``[H, W]``: ``(foreground, ignore)``, both bool ``[H, W]``.

    Every other class is background, as in HSNet: the episode asks about one class only.
    """
    label = np.asarray(label)
    return label == class_id, label == ignore_index
