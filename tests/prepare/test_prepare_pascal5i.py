"""prepare pascal-5i on a fabricated VOC 2012 + SBD tree: 21 classes, folds, fixed test episodes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fabricate import labels_of, snapshot, write_list
from PIL import Image
from test_prepare_official import write_sbd_mat

from splitmatch.cli import main
from splitmatch.data.episode_lists import Episode, read_episodes
from splitmatch.data.fold_schemes import fold_class_split, training_label_map
from splitmatch.data.folder import DatasetFormatError
from splitmatch.prepare import PartialDatasetWarning, prepare_pascal5i

pytestmark = pytest.mark.filterwarnings("ignore::splitmatch.prepare.PartialDatasetWarning")
HEIGHT, WIDTH = 12, 16  # the size write_sbd_mat uses


def voc_label(blocks: list[tuple[int, int]]) -> np.ndarray:
    """A VOC label: background, a 255 border row, and per (class, pixels) a block of that many pixels."""
    label = np.zeros((HEIGHT, WIDTH), np.uint8)
    label[0] = 255
    flat = label[1:].reshape(-1)  # a view: blocks are laid out one after another
    start = 0
    for class_id, pixels in blocks:
        flat[start : start + pixels] = class_id
        start += pixels
    return label


def write_palette_png(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    png = Image.fromarray(label).convert("P")
    png.putpalette([(i * 37) % 256 for i in range(768)])
    png.putdata(label.ravel().tolist())
    png.save(path)


@pytest.fixture()
def pascal_src(tmp_path: Path) -> tuple[Path, Path]:
    voc, sbd = tmp_path / "VOC2012", tmp_path / "benchmark_RELEASE" / "dataset"
    val = {
        "2007_000001": [(1, 40), (6, 30)],  # aeroplane (fold 0), bus (fold 1)
        "2007_000002": [(11, 35), (16, 50), (2, 5)],  # diningtable (2), pottedplant (3), a tiny bicycle (0)
        "2007_000003": [(20, 60), (12, 25)],  # tvmonitor (3), dog (2)
    }
    train = {"2007_000010": [(3, 50), (17, 20)]}
    rng = np.random.default_rng(0)
    for stem, blocks in {**val, **train}.items():
        write_palette_png(voc / "SegmentationClass" / f"{stem}.png", voc_label(blocks))
    for stem in [*val, *train, "2008_000100"]:
        (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(
            voc / "JPEGImages" / f"{stem}.jpg"
        )
    write_sbd_mat(sbd / "cls" / "2008_000100.mat", [0, 9, 18])  # chair, sofa
    write_list(voc / "ImageSets" / "Segmentation" / "train.txt", list(train))
    write_list(voc / "ImageSets" / "Segmentation" / "val.txt", list(val))
    write_list(sbd / "train.txt", ["2008_000100"])
    write_list(sbd / "val.txt", ["2007_000001"])
    return voc, sbd


def test_pascal5i_keeps_voc_ids_with_background_and_writes_folds_and_episodes(pascal_src, tmp_path) -> None:
    voc, sbd = pascal_src
    folder = prepare_pascal5i(voc, tmp_path / "out", progress=False, sbd=sbd, allow_partial=True, min_object_pixels=20)
    assert folder.classes.names[0] == "background" and folder.classes.num_classes == 21 and not folder.classes.unseen
    assert folder.stems("train") == ["2007_000010", "2008_000100"] and len(folder.stems("val")) == 3
    assert set(np.unique(labels_of(folder, "2007_000001"))) == {0, 1, 6, 255}  # VOC ids as they are
    assert set(np.unique(labels_of(folder, "2008_000100"))) == {0, 9, 18}  # from SBD's .mat
    folds = json.loads((folder.root / "folds.json").read_text())
    assert folds["default"] == "pascal-5i" and list(folds["schemes"]) == ["pascal-5i"]
    assert folds["schemes"]["pascal-5i"]["folds"][3] == ["pottedplant", "sheep", "sofa", "train", "tvmonitor"]
    # Eligible (>= 20 pixels): fold 0 only the aeroplane (the 5-pixel bicycle is too small).
    assert set(read_episodes(folder, 0)) == {Episode("2007_000001", "aeroplane")}
    fold2 = read_episodes(folder, 2)
    assert len(fold2) == 1000
    assert fold2[:3] == [
        Episode("2007_000002", "diningtable"),
        Episode("2007_000003", "dog"),
        Episode("2007_000002", "diningtable"),
    ]
    fold3 = read_episodes(folder.root, 3)
    assert fold3[:2] == [Episode("2007_000002", "pottedplant"), Episode("2007_000003", "tvmonitor")]
    header = (folder.root / "episodes" / "pascal-5i" / "fold3_1000.txt").read_text().splitlines()[:2]
    assert header[0] == "# pascal-5i fold 3: pottedplant, sheep, sofa, train, tvmonitor"
    assert "from 2 (val image, class) pairs with at least 20 pixels" in header[1]
    before = snapshot(folder.root)
    prepare_pascal5i(voc, folder.root, progress=False, sbd=sbd, allow_partial=True, min_object_pixels=20)
    assert snapshot(folder.root) == before


def test_a_fold_trains_with_either_convention(pascal_src, tmp_path) -> None:
    voc, sbd = pascal_src
    folder = prepare_pascal5i(voc, tmp_path / "out", progress=False, sbd=sbd, allow_partial=True, min_object_pixels=20)
    split = fold_class_split(folder, 3)
    label = labels_of(folder, "2008_000100")  # background, chair (fold 1), sofa (fold 3)
    assert set(np.unique(training_label_map(split)[label])) == {0, 9, 255}  # ours: sofa ignored
    assert set(np.unique(training_label_map(split, "background")[label])) == {0, 9}  # HSNet: sofa is background


def test_classes_without_eligible_images_need_allow_partial_and_a_fold_without_any_fails(pascal_src, tmp_path) -> None:
    voc, sbd = pascal_src
    with pytest.warns(PartialDatasetWarning, match="pascal-5i fold 0: no val image holds 20 pixels of bicycle"):
        prepare_pascal5i(voc, tmp_path / "a", progress=False, sbd=sbd, allow_partial=True, min_object_pixels=20)
    with pytest.raises(DatasetFormatError, match="pascal-5i fold 0: no val image holds 2,048 pixels of any"):
        prepare_pascal5i(voc, tmp_path / "b", progress=False, sbd=sbd, allow_partial=True)
    with pytest.raises(DatasetFormatError, match=r"episode counts must be integers in 1\.\.1,000,000"):
        prepare_pascal5i(voc, tmp_path / "c", progress=False, sbd=sbd, allow_partial=True, episode_counts=(0,))


def test_pascal5i_on_the_command_line(pascal_src, tmp_path, capsys) -> None:
    voc, sbd = pascal_src
    args = ["prepare", "pascal-5i", "--src", str(voc), "--sbd", str(sbd), "--dst", str(tmp_path / "out"), "--quiet"]
    assert main([*args, "--allow-partial", "--min-object-pixels", "20", "--episodes", "1000,5000"]) == 0
    out = capsys.readouterr().out
    assert "  fold scheme pascal-5i (default), consecutive:" in out
    assert "    fold 3: pottedplant, sheep, sofa, train, tvmonitor; episodes: fold3_1000.txt, fold3_5000.txt" in out
    assert len(read_episodes(tmp_path / "out", 1, 5000)) == 5000
    assert main([*args, "--allow-partial", "--episode-seed", "3"]) == 2
    assert "--episode-seed is an option of 'prepare coco-20i', not of 'pascal-5i'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--episodes", "1000,x"])
    assert exit_info.value.code == 2
    assert "must be episode counts in 1..1,000,000 separated by commas, got '1000,x'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--episodes", "1000,1000"])
    assert exit_info.value.code == 2
    assert "must be distinct episode counts, got '1000,1000'" in capsys.readouterr().err


def test_the_library_refuses_a_repeated_episode_count() -> None:
    from splitmatch.data.folder import DatasetFormatError
    from splitmatch.prepare.fold_files import check_episode_options

    check_episode_options((1000, 5000), 2048, 0)
    with pytest.raises(DatasetFormatError, match=r"episode counts must be distinct, got \[1000, 1000\]"):
        check_episode_options((1000, 1000), 2048, 0)
