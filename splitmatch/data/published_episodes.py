"""A peer's published test lists of PASCAL-5i and COCO-20i, read as they stand, and HSNet's COCO draw.

So that a fold is scored on exactly the episodes a peer scored, these files are read (by
``eval --episodes --episode-file`` and ``folds --episode-files``) besides this project's own
``<stem><TAB><class>`` lists (:mod:`splitmatch.data.episode_lists`):

* **HSNet's PASCAL-5i pairs** (``data/splits/pascal/val/fold<i>.txt`` of juhongm999/hsnet): one
  ``<stem>__<VOC class id, two digits>`` a line, ending with a newline (HSNet's ``data/pascal.py``
  reads ``f.read().split('\\n')[:-1]``). Episode k is pair ``k mod n``, as its test loader does.
* **HSNet's COCO-20i per-class lists** (``data/splits/coco/val/fold<i>.pkl``): a pickled dict from
  HSNet's 0-based class id (COCO's order) to the ``val2014/<file name>`` of its images. Its test
  episodes are drawn, not listed (``data/coco.py``, ``load_frame``; ``test.py`` seeds NumPy's
  global generator with 0 and reads the episodes in one process): per episode a class of the fold
  (ids ``fold + 4k``, in that order), then a query image of it, then support images until
  ``shot`` differ from the query, each draw ``numpy.random.choice(list, 1, replace=False)``.
  :func:`hsnet_coco_draw` repeats that with NumPy's legacy generator, the one ``numpy.random.seed``
  seeds; the supports are drawn and dropped, since a zero-shot episode has none, but their draws
  move the generator as HSNet's do. The pickle is never unpickled: its opcodes are read as plain
  data (:func:`splitmatch.storage.pickled_data.read_pickled_data`), and one that names a class or
  a function is refused.

A bad file is one line naming it and the line (or, in a pickle, the class and the entry).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np

from splitmatch.data.class_lists import VOC_CLASSES
from splitmatch.data.episode_lists import (
    DEFAULT_EPISODE_COUNT,
    EPISODE_SPLIT,
    Episode,
    checked_episode,
    cycled_episodes,
    read_episode_file,
    read_episodes,
    require_some,
)
from splitmatch.data.fold_schemes import COCO_CLASSES, FoldScheme
from splitmatch.data.folder import DatasetFolder, DatasetFormatError
from splitmatch.storage.pickled_data import InvalidPickledDataError, read_pickled_data

HSNET_SHOT = 1  # HSNet's test.py default (--nshot 1)
HSNET_SEED = 0  # test.py: utils.fix_randseed(0)
MAX_LIST_BYTES = 256 * 2**20  # HSNet's largest list is 1.3 MB


def _read_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_LIST_BYTES:
            raise DatasetFormatError(f"episode list {path} is {size:,} bytes, more than {MAX_LIST_BYTES:,}")
        return path.read_bytes()
    except FileNotFoundError:
        raise DatasetFormatError(f"episode list {path} does not exist") from None
    except IsADirectoryError:
        raise DatasetFormatError(f"episode list {path} is a folder, not a file") from None


def read_hsnet_pascal_pairs(path: Path, fold_classes: Collection[str], stems: Collection[str]) -> list[Episode]:
    """HSNet's PASCAL-5i pairs file: its ``(stem, class)`` pairs, in file order.

    Args:
        fold_classes: the fold's class names (VOC's names, as a PASCAL-5i folder has them).
        stems: the folder's val images.
    """
    path = Path(path)
    try:
        text = _read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as error:
        raise DatasetFormatError(f"episode list {path} is not UTF-8 text ({error.reason})") from None
    if not text.endswith("\n"):
        raise DatasetFormatError(f"{path} does not end with a newline (HSNet's reader would drop its last line)")
    pairs = []
    for number, line in enumerate(text.split("\n")[:-1], start=1):
        stem, _, class_text = line.partition("__")
        # ASCII digits only: str.isdigit() also takes '¹' (which int() refuses) and other scripts' digits.
        digits = class_text.isascii() and class_text.isdigit()
        if not stem or not digits or not 1 <= int(class_text) <= len(VOC_CLASSES):
            raise DatasetFormatError(
                f"{path} line {number}: expected '<stem>__<VOC class id 01..20>', got {line[:80]!r}"
            )
        pairs.append(checked_episode(path, number, stem, VOC_CLASSES[int(class_text) - 1], fold_classes, stems))
    return require_some(pairs, path, "pairs")


def read_hsnet_coco_lists(path: Path, fold_classes: Sequence[str], stems: Collection[str]) -> dict[str, list[str]]:
    """HSNet's COCO-20i per-class lists of one fold: class name -> query image stems, in file order.

    Args:
        fold_classes: the fold's class names (COCO's names, as a COCO-20i folder has them).
        stems: the folder's val images.
    """
    path = Path(path)
    try:
        data = read_pickled_data(_read_bytes(path))
    except InvalidPickledDataError as error:
        raise DatasetFormatError(f"{path} is not HSNet's per-class image lists: {error}") from None
    if not isinstance(data, dict) or not all(isinstance(k, int) and not isinstance(k, bool) for k in data):
        raise DatasetFormatError(f"{path} is not HSNet's per-class image lists: expected a dict from class ids")
    foreign = [name for name in fold_classes if name not in COCO_CLASSES]
    if foreign:  # HSNet's lists are keyed by COCO's class ids: another dataset's folds have none
        raise DatasetFormatError(
            f"{path} is HSNet's COCO-20i per-class lists, keyed by COCO's class ids, but the fold's classes "
            f"{', '.join(map(repr, foreign[:3]))} are not COCO classes; give a <stem><TAB><class> list instead"
        )
    lists = {}
    for class_name in fold_classes:
        class_id = COCO_CLASSES.index(class_name)
        names = data.get(class_id)
        where = f"{path} class {class_id} ({class_name})"
        if not isinstance(names, list) or not names:
            raise DatasetFormatError(f"{where}: no list of images")
        found = []
        for entry, name in enumerate(names):
            stem = Path(name).stem if isinstance(name, str) else None
            if stem not in stems:
                raise DatasetFormatError(f"{where} entry {entry}: {str(name)[:80]!r} is not a {EPISODE_SPLIT} image")
            found.append(stem)
        lists[class_name] = found
    return lists


def hsnet_coco_draw(
    lists: Mapping[str, Sequence[str]], count: int, shot: int = HSNET_SHOT, seed: int = HSNET_SEED
) -> list[Episode]:
    """HSNet's COCO-20i test episodes from its per-class lists (see the module docstring).

    Args:
        lists: :func:`read_hsnet_coco_lists`, its classes in the fold's order (HSNet's ids ``fold + 4k``).
        count: episodes to draw (HSNet: 1,000).
        shot: support images drawn per episode (and dropped).
    """
    rng = np.random.RandomState(seed)  # the legacy generator numpy.random.seed seeds
    classes = list(lists)
    for class_name, images in lists.items():
        if len(set(images)) < 2:  # HSNet's support loop would never end
            raise DatasetFormatError(f"class {class_name!r} lists fewer than two images: no support can be drawn")
    episodes = []
    for _ in range(count):
        class_name = str(rng.choice(classes, 1, replace=False)[0])
        images = lists[class_name]
        query = str(rng.choice(images, 1, replace=False)[0])
        supports = 0
        while supports < shot:
            supports += str(rng.choice(images, 1, replace=False)[0]) != query
        episodes.append(Episode(query, class_name))
    return episodes


def read_published_episodes(
    path: Path, fold_classes: Sequence[str], stems: Collection[str], count: int | None = None
) -> tuple[list[Episode], str]:
    """The ``count`` episodes a list file stands for, and what kind of file it was (to print).

    ``.pkl``: HSNet's COCO-20i per-class lists, drawn as HSNet draws; a text file of
    ``<stem>__<id>`` lines: HSNet's PASCAL-5i pairs, cycled; of ``<stem><TAB><class>`` lines: a
    list as ``prepare`` writes them, as it stands. ``count`` (``None``: 1,000, as HSNet) is how many
    to draw or cycle; a list that stands as it is refuses one, which would otherwise go unused.
    """
    path = Path(path)
    given, count = count, DEFAULT_EPISODE_COUNT if count is None else count
    if path.suffix == ".pkl":
        episodes = hsnet_coco_draw(read_hsnet_coco_lists(path, fold_classes, stems), count)
        return episodes, f"HSNet's per-class lists {path.name}, {count} episodes drawn as HSNet's test.py does"
    try:
        first = next(
            (
                line
                for line in _read_bytes(path).decode("utf-8").splitlines()
                if line.strip() and not line.startswith("#")
            ),
            "",
        )
    except UnicodeDecodeError as error:
        raise DatasetFormatError(f"episode list {path} is not UTF-8 text ({error.reason})") from None
    if "\t" in first:
        if given is not None:
            raise DatasetFormatError(
                f"episode list {path} is scored as it stands (<stem><TAB><class> lines): an episode count "
                f"({given}) would not be used; leave it out"
            )
        return read_episode_file(path, fold_classes, stems), f"the episode list {path.name}, as it stands"
    pairs = read_hsnet_pascal_pairs(path, fold_classes, stems)
    return cycled_episodes(pairs, count), f"HSNet's {len(pairs)} pairs of {path.name}, cycled to {count} episodes"


def fold_episodes(
    folder: DatasetFolder, scheme: FoldScheme, fold: int, count: int | None, episode_file: Path | None = None
) -> tuple[list[Episode], str]:
    """One fold's test episodes and where they come from (to print and to record).

    Args:
        folder, scheme: the fold benchmark and its fold scheme.
        count: the user's episode count, ``None`` when not given (1,000 then, as HSNet).
        episode_file: a peer's list for this fold (:func:`read_published_episodes`); ``None``: the
            folder's stored list of ``count`` episodes.
    """
    if episode_file is None:
        count = DEFAULT_EPISODE_COUNT if count is None else count
        return read_episodes(folder, fold, count, scheme.name), f"the stored list of {count}"
    return read_published_episodes(episode_file, scheme.fold(fold), set(folder.stems(EPISODE_SPLIT)), count)
