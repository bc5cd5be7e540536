"""A peer's published episode lists read as they stand: HSNet's PASCAL-5i pairs files and its COCO-20i
per-class pickles, each fabricated here in HSNet's format, and HSNet's COCO draw against a
re-expression of its ``data/coco.py`` / ``test.py`` (NumPy's global generator seeded 0)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from splitmatch.data.class_lists import VOC_CLASSES
from splitmatch.data.episode_lists import Episode, episode_file_text
from splitmatch.data.fold_schemes import COCO_CLASSES, FOLD_SCHEMES
from splitmatch.data.folder import DatasetFormatError
from splitmatch.data.published_episodes import (
    hsnet_coco_draw,
    read_hsnet_coco_lists,
    read_hsnet_pascal_pairs,
    read_published_episodes,
)

PASCAL_FOLD0 = FOLD_SCHEMES["pascal-5i"].fold(0)  # aeroplane .. bottle, VOC ids 1..5
PASCAL_STEMS = {"2007_000033", "2007_000061", "2007_000129", "2008_000002"}


def hsnet_pascal_episodes(text: str, count: int) -> list[tuple[str, int]]:
    """HSNet's data/pascal.py: pairs from the file, then episode idx -> pair idx % n (0-based class ids)."""
    pairs = [(line.split("__")[0], int(line.split("__")[1]) - 1) for line in text.split("\n")[:-1]]
    return [pairs[idx % len(pairs)] for idx in range(count)]


def test_hsnet_pascal_pairs_are_its_episodes_cycled(tmp_path) -> None:
    text = "2007_000033__01\n2007_000061__04\n2007_000129__02\n2008_000002__05\n2007_000033__02\n"
    path = tmp_path / "fold0.txt"
    path.write_text(text)
    pairs = read_hsnet_pascal_pairs(path, PASCAL_FOLD0, PASCAL_STEMS)
    assert len(pairs) == 5 and pairs[1] == Episode("2007_000061", "boat")
    episodes, source = read_published_episodes(path, PASCAL_FOLD0, PASCAL_STEMS, 1000)
    expected = hsnet_pascal_episodes(text, 1000)
    assert [(e.stem, VOC_CLASSES.index(e.class_name)) for e in episodes] == expected
    assert source == "HSNet's 5 pairs of fold0.txt, cycled to 1000 episodes"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2007_000033__01\n2007_000061-04\n", r"fold0\.txt line 2: expected '<stem>__<VOC class id 01\.\.20>'"),
        ("2007_000033__01\n\n", r"fold0\.txt line 2: expected"),
        ("2007_000033__21\n", r"fold0\.txt line 1: expected"),
        ("2007_000033__01\n2007_000033__07\n", r"fold0\.txt line 2: class 'car' is not one of this fold's"),
        ("2007_000033__01\n2009_999999__03\n", r"fold0\.txt line 2: image '2009_999999' is not in the val split"),
        ("2007_000033__01\n2007_000061__04", r"fold0\.txt does not end with a newline"),
        ("", r"fold0\.txt does not end with a newline"),
    ],
)
def test_a_bad_pairs_file_is_one_line_naming_file_and_line(tmp_path, text, message) -> None:
    path = tmp_path / "fold0.txt"
    path.write_text(text)
    with pytest.raises(DatasetFormatError, match=message) as error:
        read_published_episodes(path, PASCAL_FOLD0, PASCAL_STEMS, 1000)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


COCO_FOLD1 = FOLD_SCHEMES["coco-20i"].fold(1)  # bicycle, bus, ... : HSNet's ids 1, 5, 9, ...


def coco_lists(rng: np.random.Generator) -> dict[int, list[str]]:
    """HSNet's fold1.pkl layout: every class id 0..79 a key, the fold's with 'val2014/<file>' names."""
    lists = {class_id: [] for class_id in range(80)}
    for class_id in range(1, 80, 4):
        count = int(rng.integers(2, 30))
        numbers = rng.choice(500, size=count, replace=False)
        lists[class_id] = [f"val2014/COCO_val2014_{n:012d}.jpg" for n in numbers]
    return lists


def hsnet_coco_episodes(lists: dict[int, list[str]], fold: int, count: int, shot: int = 1) -> list[tuple[int, str]]:
    """HSNet's test: seed NumPy's global generator with 0, then per episode a class, a query, supports;
    ``choice(a, 1, replace=False)[0]`` is ``a[permutation(len(a))[0]]``."""
    np.random.seed(0)
    class_ids = [fold + 4 * v for v in range(20)]
    episodes = []
    for _ in range(count):
        class_id = class_ids[np.random.permutation(len(class_ids))[0]]
        names = lists[class_id]
        query = names[np.random.permutation(len(names))[0]]
        supports = []
        while len(supports) < shot:
            support = names[np.random.permutation(len(names))[0]]
            if support != query:
                supports.append(support)
        episodes.append((class_id, query))
    return episodes


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_hsnet_coco_draw_picks_what_its_test_loader_picks(tmp_path, protocol) -> None:
    lists = coco_lists(np.random.default_rng(protocol))
    path = tmp_path / "fold1.pkl"
    path.write_bytes(pickle.dumps(lists, protocol=protocol))
    stems = {name[8:-4] for names in lists.values() for name in names}
    read = read_hsnet_coco_lists(path, COCO_FOLD1, stems)
    assert list(read) == list(COCO_FOLD1)  # HSNet's class order: ids 1, 5, 9, ...
    episodes, source = read_published_episodes(path, COCO_FOLD1, stems, 300)
    expected = hsnet_coco_episodes(lists, 1, 300)
    assert [(COCO_CLASSES.index(e.class_name), f"val2014/{e.stem}.jpg") for e in episodes] == expected
    assert "drawn as HSNet's test.py does" in source
    # Five shots move the generator further per episode: other episodes after the first.
    five = hsnet_coco_draw(read, 50, shot=5)
    assert [(COCO_CLASSES.index(e.class_name), f"val2014/{e.stem}.jpg") for e in five] == hsnet_coco_episodes(
        lists, 1, 50, shot=5
    )


def test_a_bad_per_class_pickle_is_one_line_and_never_runs_code(tmp_path) -> None:
    lists = coco_lists(np.random.default_rng(0))
    stems = {name[8:-4] for names in lists.values() for name in names}
    path = tmp_path / "fold1.pkl"
    path.write_bytes(pickle.dumps({**lists, 5: [*lists[5][:1], "val2014/COCO_val2014_999999999999.jpg"]}))
    with pytest.raises(
        DatasetFormatError,
        match=r"fold1\.pkl class 5 \(bus\) entry 1: "
        r"'val2014/COCO_val2014_999999999999\.jpg' is not a val image",
    ):
        read_published_episodes(path, COCO_FOLD1, stems, 10)
    path.write_bytes(pickle.dumps({**lists, 9: []}))
    with pytest.raises(DatasetFormatError, match=r"fold1\.pkl class 9 \(traffic light\): no list of images"):
        read_published_episodes(path, COCO_FOLD1, stems, 10)
    path.write_bytes(pickle.dumps({**lists, 13: lists[13][:1]}))
    with pytest.raises(DatasetFormatError, match=r"class 'bench' lists fewer than two images"):
        read_published_episodes(path, COCO_FOLD1, stems, 10)
    path.write_bytes(pickle.dumps(np.arange(3)))  # needs numpy's classes to load: refused, never imported
    with pytest.raises(
        DatasetFormatError, match=r"fold1\.pkl is not HSNet's per-class image lists: it holds the opcode STACK_GLOBAL"
    ):
        read_published_episodes(path, COCO_FOLD1, stems, 10)
    path.write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(DatasetFormatError, match=r"fold1\.pkl is not HSNet's per-class image lists"):
        read_published_episodes(path, COCO_FOLD1, stems, 10)


def test_a_list_in_the_stored_format_is_read_as_it_stands(tmp_path) -> None:
    episodes = [Episode("2007_000129", "bird"), Episode("2007_000033", "aeroplane")]
    path = tmp_path / "mine.txt"
    path.write_text(episode_file_text(episodes, ["two episodes"]))
    assert read_published_episodes(path, PASCAL_FOLD0, PASCAL_STEMS)[0] == episodes
    # A count would go unused on a list scored as it stands: refused, not ignored (eval --episode-count).
    with pytest.raises(DatasetFormatError, match=r"mine\.txt is scored as it stands .*\(5\) would not be used"):
        read_published_episodes(path, PASCAL_FOLD0, PASCAL_STEMS, 5)
    with pytest.raises(DatasetFormatError, match=r"episode list .*nothing\.txt does not exist"):
        read_published_episodes(tmp_path / "nothing.txt", PASCAL_FOLD0, PASCAL_STEMS, 1000)


@pytest.mark.parametrize("class_text", ["\u00b9", "\u0660\u0665", "+5", " 5"])
def test_a_pairs_line_whose_class_id_is_not_ascii_digits_is_one_line(tmp_path, class_text) -> None:
    """'¹' passes str.isdigit() but not int(): it was a ValueError with a traceback; Arabic-Indic
    digits were read as VOC id 5."""
    path = tmp_path / "fold0.txt"
    path.write_text(f"2007_000033__01\n2007_000061__{class_text}\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=r"fold0\.txt line 2: expected '<stem>__<VOC class id 01\.\.20>'"):
        read_hsnet_pascal_pairs(path, PASCAL_FOLD0, PASCAL_STEMS)


def test_hsnet_coco_lists_for_a_fold_of_other_classes_is_one_line(tmp_path) -> None:
    """A world or PASCAL fold has no COCO class ids: it was a ValueError of tuple.index with a traceback."""
    path = tmp_path / "fold0.pkl"
    path.write_bytes(pickle.dumps({0: ["val2014/COCO_val2014_000000000001.jpg"]}))
    with pytest.raises(DatasetFormatError, match=r"classes 'aeroplane' are not COCO classes"):
        read_published_episodes(path, PASCAL_FOLD0, PASCAL_STEMS, 10)
