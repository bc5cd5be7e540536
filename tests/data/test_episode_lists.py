"""Folds of PASCAL-5i and COCO-20i, the label conventions on a fold, and episode lists: drawing, files, errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from splitmatch.data.class_lists import VOC_CLASSES
from splitmatch.data.classes import ClassSplit, ClassSplitError
from splitmatch.data.episode_lists import (
    Episode,
    cycled_episodes,
    eligible_pairs,
    episode_file_text,
    episode_path,
    episode_target,
    read_episode_file,
    read_episodes,
    sampled_episodes,
)
from splitmatch.data.fold_schemes import (
    COCO_CLASSES,
    FOLD_SCHEMES,
    FOLDS_FILE,
    fold_class_split,
    folds_file_text,
    read_fold_scheme,
    training_label_map,
)
from splitmatch.data.folder import DatasetFolder, DatasetFormatError, write_split
from splitmatch.prepare.coco_stuff import RAW_NAMES, USED_RAW_IDS


def test_pascal_5i_folds_are_voc_classes_five_by_five() -> None:
    folds = FOLD_SCHEMES["pascal-5i"].folds
    assert folds[0] == ("aeroplane", "bicycle", "bird", "boat", "bottle")
    assert folds[1] == ("bus", "car", "cat", "chair", "cow")
    assert folds[2] == ("diningtable", "dog", "horse", "motorbike", "person")
    assert folds[3] == ("pottedplant", "sheep", "sofa", "train", "tvmonitor")
    for i, fold in enumerate(folds):  # 1-based VOC ids 5i+1 .. 5i+5
        assert [VOC_CLASSES.index(name) + 1 for name in fold] == list(range(5 * i + 1, 5 * i + 6))


def test_coco_20i_folds_interleaved_by_default_and_consecutive_as_an_option() -> None:
    # COCO's 80 annotated object categories by id: the stuffthingmap ids below 91 that were used.
    assert tuple(RAW_NAMES[raw] for raw in USED_RAW_IDS if raw < 91) == COCO_CLASSES
    interleaved = FOLD_SCHEMES["coco-20i"].folds
    assert interleaved[0][:5] == ("person", "airplane", "boat", "parking meter", "dog")
    for i, fold in enumerate(interleaved):  # 1-based ids {4k + i + 1}
        assert [COCO_CLASSES.index(name) + 1 for name in fold] == [4 * k + i + 1 for k in range(20)]
    consecutive = FOLD_SCHEMES["coco-20i-consecutive"].folds
    for i, fold in enumerate(consecutive):
        assert [COCO_CLASSES.index(name) + 1 for name in fold] == list(range(20 * i + 1, 20 * i + 21))
    for scheme in FOLD_SCHEMES.values():  # every class in exactly one fold
        assert Counter(name for fold in scheme.folds for name in fold) == Counter(
            VOC_CLASSES if scheme.dataset == "pascal-5i" else COCO_CLASSES
        )


def make_fold_folder(root: Path, dataset: str = "pascal-5i") -> DatasetFolder:
    """A folder that has the classes, splits and folds.json of a prepared fold dataset (no images needed)."""
    names = ("background", *(VOC_CLASSES if dataset == "pascal-5i" else COCO_CLASSES))
    root.mkdir(parents=True)
    ClassSplit(names, (), dataset).write(root / "classes.json")
    (root / FOLDS_FILE).write_text(folds_file_text(dataset))
    write_split(root, "val", ["img_a", "img b", "img_c"])
    return DatasetFolder(root)


def test_fold_class_split_and_the_two_label_conventions(tmp_path) -> None:
    folder = make_fold_folder(tmp_path / "p")
    split = fold_class_split(folder, 3)
    assert split.unseen == ("pottedplant", "sheep", "sofa", "train", "tvmonitor") and split.dataset == "pascal-5i-fold3"
    label = np.array([[0, 1, 16, 20], [255, 17, 5, 0]], dtype=np.uint8)  # background, aeroplane, pottedplant, ...
    inductive = training_label_map(split)[label]
    assert inductive.tolist() == [[0, 1, 255, 255], [255, 255, 5, 0]]
    hsnet = training_label_map(split, "background")[label]
    assert hsnet.tolist() == [[0, 1, 0, 0], [255, 0, 5, 0]]
    with pytest.raises(ClassSplitError, match="convention must be one of ignore, background"):
        training_label_map(split, "seen")
    with pytest.raises(ClassSplitError, match="needs a class named 'background'"):
        training_label_map(ClassSplit(("a", "b"), ("b",)), "background")
    with pytest.raises(ClassSplitError, match=r"fold must be 0\.\.3 for pascal-5i, got 4"):
        fold_class_split(folder, 4)


def test_folds_file_is_checked_against_the_folder(tmp_path) -> None:
    folder = make_fold_folder(tmp_path / "c", "coco-20i")
    assert read_fold_scheme(folder).name == "coco-20i"  # the default
    assert read_fold_scheme(folder, "coco-20i-consecutive").folds[0][:2] == ("person", "bicycle")
    with pytest.raises(DatasetFormatError, match="has no fold scheme 'pascal-5i'"):
        read_fold_scheme(folder, "pascal-5i")
    data = json.loads((folder.root / FOLDS_FILE).read_text())
    data["schemes"]["coco-20i"]["folds"][0][0] = "unicorn"
    (folder.root / FOLDS_FILE).write_text(json.dumps(data))
    with pytest.raises(DatasetFormatError, match=r"names \['unicorn'\], not classes of"):
        read_fold_scheme(folder)
    (folder.root / FOLDS_FILE).unlink()
    with pytest.raises(DatasetFormatError, match="folds.json does not exist"):
        read_fold_scheme(folder)


NAMES = ("background", "cat", "dog", "cow")
COUNTS = {
    "a": {1: 5000, 2: 100},
    "b": {2: 4000, 3: 2048},
    "c": {1: 2047},
    "d": {3: 9000, 1: 3000},
}


def test_eligible_pairs_keep_objects_of_at_least_the_threshold_in_list_then_class_order() -> None:
    pairs = eligible_pairs(["d", "a", "b", "c"], COUNTS, NAMES, ("dog", "cat", "cow"), min_pixels=2048)
    assert pairs == [
        Episode("d", "cat"),
        Episode("d", "cow"),
        Episode("a", "cat"),
        Episode("b", "dog"),
        Episode("b", "cow"),
    ]
    assert eligible_pairs(["a", "c"], COUNTS, NAMES, ("cat",), min_pixels=1) == [
        Episode("a", "cat"),
        Episode("c", "cat"),
    ]


def test_cycled_episodes_repeat_the_pairs_in_order_as_hsnet_pascal() -> None:
    pairs = [Episode(s, "cat") for s in "xyz"]
    assert [e.stem for e in cycled_episodes(pairs, 7)] == list("xyzxyzx")
    with pytest.raises(ValueError, match="no eligible"):
        cycled_episodes([], 3)


def test_sampled_episodes_draw_a_class_then_an_image_reproducibly() -> None:
    pairs = [Episode(f"cat{i}", "cat") for i in range(9)] + [Episode("dog0", "dog")]
    first = sampled_episodes(pairs, 1000, seed=0)
    assert first == sampled_episodes(pairs, 1000, seed=0) and first != sampled_episodes(pairs, 1000, seed=1)
    by_class = Counter(e.class_name for e in first)
    assert 430 < by_class["dog"] < 570  # classes uniform (not pairs: dog has 1 of 10 pairs)
    assert set(first) == set(pairs)


def test_episode_files_round_trip_and_bad_lines_are_named(tmp_path) -> None:
    episodes = [Episode("img_a", "cat"), Episode("img b", "parking meter")]
    path = tmp_path / "fold0_2.txt"
    path.write_text(episode_file_text(episodes, ["made here"]))
    assert path.read_text().startswith("# made here\nimg_a\tcat\nimg b\tparking meter\n")
    assert read_episode_file(path, {"cat", "parking meter"}, {"img_a", "img b"}) == episodes
    for line, problem in [
        ("img_a cat", r"line 2: expected '<stem><TAB><class name>', got 'img_a cat'"),
        ("img_a\tcat\textra", "line 2: expected"),
        ("img_a\tunicorn", r"line 2: class 'unicorn' is not one of this fold's classes \(cat, parking meter\)"),
        ("img_z\tcat", r"line 2: image 'img_z' is not in the val split"),
    ]:
        path.write_text(f"# header\n{line}\n")
        with pytest.raises(DatasetFormatError, match=problem) as caught:
            read_episode_file(path, ("cat", "parking meter"), {"img_a", "img b"})
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    path.write_text("# only a header\n")
    with pytest.raises(DatasetFormatError, match="holds no episodes"):
        read_episode_file(path, ("cat",), {"img_a"})
    path.write_bytes(b"img_\xff\tcat\n")
    with pytest.raises(DatasetFormatError, match="is not UTF-8 text"):
        read_episode_file(path, ("cat",), {"img_a"})


def test_read_episodes_finds_the_list_of_a_fold_and_names_those_present(tmp_path) -> None:
    folder = make_fold_folder(tmp_path / "p")
    path = episode_path(folder.root, "pascal-5i", 3, 1000)
    path.parent.mkdir(parents=True)
    path.write_text(episode_file_text([Episode("img b", "sofa")] * 1000, ["x"]))
    episodes = read_episodes(folder.root, 3)
    assert len(episodes) == 1000 and episodes[0] == Episode("img b", "sofa")
    with pytest.raises(
        DatasetFormatError, match=r"no list of 5000 episodes for fold 3 .*lists present: fold3_1000\.txt"
    ):
        read_episodes(folder, 3, 5000)
    with pytest.raises(DatasetFormatError, match="class 'sofa' is not one of this fold's classes"):
        path.rename(episode_path(folder.root, "pascal-5i", 0, 1000))
        read_episodes(folder, 0)


def test_episode_target_is_the_class_against_everything_else() -> None:
    label = np.array([[0, 3, 3], [255, 2, 3]], dtype=np.uint8)
    foreground, ignore = episode_target(label, 3, 255)
    assert foreground.tolist() == [[False, True, True], [False, False, True]]
    assert ignore.tolist() == [[False, False, False], [True, False, False]]
