"""Converters from tiny fabricated official layouts (real JPEG / PNG formats) into the folder format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from fabricate import CONTEXT459_NAMES, labels_of, snapshot, write_label, write_mat
from PIL import Image

from splitmatch.data.class_lists import BUILTIN_SPLITS
from splitmatch.data.classes import ClassSplit
from splitmatch.data.folder import DatasetFormatError
from splitmatch.prepare import (
    PREPARERS,
    prepare_ade20k,
    prepare_coco_stuff,
    prepare_context,
    prepare_context459,
    prepare_voc,
)
from splitmatch.prepare.ade20k import ADE20K_CLASSES
from splitmatch.prepare.coco_stuff import RAW_NAMES, RAW_TO_TRAIN_ID

# The fabricated trees are far smaller than the protocols' splits: every call accepts that.
pytestmark = pytest.mark.filterwarnings("ignore::splitmatch.prepare.PartialDatasetWarning")


def test_voc_labels_splits_classes_and_links(voc_src: Path, tmp_path: Path) -> None:
    folder = prepare_voc(voc_src, tmp_path / "out", progress=False, allow_partial=True)
    assert folder.stems("train") == ["2007_000032", "2007_000039", "2008_000002"]
    assert folder.stems("val") == ["2007_000033", "2007_000042"]
    assert folder.classes.to_dict() == BUILTIN_SPLITS["voc"].to_dict()
    assert ClassSplit.read(folder.root / "classes.json").to_dict() == BUILTIN_SPLITS["voc"].to_dict()
    assert set(np.unique(labels_of(folder, "2007_000032"))) == {1, 255}  # official: 0 -> 255, 2 -> 1
    assert set(np.unique(labels_of(folder, "2007_000039"))) == {14, 19, 255}  # SBD: 0 -> 255, 20 -> 19
    assert set(np.unique(labels_of(folder, "2007_000033"))) == {0, 18, 255}  # official, not SBD's [4]
    assert set(np.unique(labels_of(folder, "2008_000002"))) == {4}  # aug stem: SBD's 5, not [9]
    assert set(np.unique(labels_of(folder, "2007_000042"))) == {6}  # only SBD's exists
    source = voc_src / "JPEGImages" / "2007_000032.jpg"
    assert (folder.root / "images" / "2007_000032.jpg").stat().st_ino == source.stat().st_ino
    assert len(folder.samples("train")) == 3


def test_voc_rerun_is_a_no_op_and_resumes(voc_src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out"
    prepare_voc(voc_src, dst, progress=False, allow_partial=True)
    before = snapshot(dst)
    prepare_voc(voc_src, dst, progress=False, allow_partial=True)
    assert snapshot(dst) == before
    (dst / "labels" / "2007_000039.png").unlink()  # as if the first run had been killed
    (dst / "images" / "2008_000002.jpg").unlink()
    prepare_voc(voc_src, dst, progress=False, allow_partial=True)
    after = snapshot(dst)
    assert set(after) == set(before)
    unchanged = [k for k in before if "2007_000039" not in k and "2008_000002" not in k]
    assert all(after[k] == before[k] for k in unchanged)
    assert not list(dst.rglob("*.tmp"))


def test_copy_when_hard_links_fail_and_stale_temporaries_go(
    voc_src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: Path, dst: Path) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr("splitmatch.prepare.common.os.link", no_links)
    dst = tmp_path / "out"
    (dst / "labels").mkdir(parents=True)
    stale = dst / "labels" / ".2007_000032.png.abc123.tmp"
    stale.write_bytes(b"half a png")
    folder = prepare_voc(voc_src, dst, progress=False, allow_partial=True)
    source = voc_src / "JPEGImages" / "2007_000032.jpg"
    copied = folder.root / "images" / "2007_000032.jpg"
    assert copied.stat().st_ino != source.stat().st_ino
    assert copied.read_bytes() == source.read_bytes()
    assert not stale.exists() and not list(dst.rglob("*.tmp"))


def test_voc_missing_source_files_are_named(voc_src: Path, tmp_path: Path) -> None:
    (voc_src / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with pytest.raises(DatasetFormatError, match=r"ImageSets/Segmentation/val\.txt does not exist"):
        prepare_voc(voc_src, tmp_path / "out", progress=False, allow_partial=True)
    with pytest.raises(DatasetFormatError, match=r"pass --src .*VOC2012"):
        prepare_voc(tmp_path, tmp_path / "out", progress=False, allow_partial=True)
    with pytest.raises(DatasetFormatError, match="JPEGImages does not exist"):
        prepare_voc(tmp_path / "nowhere", tmp_path / "out", progress=False, allow_partial=True)


def test_voc_missing_label_and_bad_values_are_named(voc_src: Path, tmp_path: Path) -> None:
    (voc_src / "SegmentationClassAug" / "2007_000042.png").unlink()
    with pytest.raises(DatasetFormatError, match=r"SegmentationClass/2007_000042\.png or SegmentationClassAug"):
        prepare_voc(voc_src, tmp_path / "out", progress=False, allow_partial=True)
    write_label(voc_src / "SegmentationClassAug" / "2007_000042.png", [7])
    write_label(voc_src / "SegmentationClassAug" / "2008_000002.png", [3, 21])
    with pytest.raises(DatasetFormatError, match=r"2008_000002\.png holds values \[21\]"):
        prepare_voc(voc_src, tmp_path / "out", progress=False, allow_partial=True)


def test_coco_stuff_mapping_matches_mmseg_and_builtin_order() -> None:
    assert len(RAW_NAMES) == 182 and len(RAW_TO_TRAIN_ID) == 171
    # The official label list's names at raw ids, typed from COCO-Stuff's labels.md (0-based raw ids).
    official = {0: "person", 11: "street sign", 12: "stop sign", 90: "hair brush", 91: "banner", 181: "wood"}
    assert {raw: RAW_NAMES[raw] for raw in official} == official
    assert [RAW_NAMES[raw] for raw in RAW_TO_TRAIN_ID] == list(BUILTIN_SPLITS["coco-stuff"].names)
    # Spot checks against mmseg's clsID_to_trID table.
    assert [RAW_TO_TRAIN_ID[r] for r in (0, 10, 12, 26, 45, 66, 83, 91, 92, 181)] == [
        0,
        10,
        11,
        24,
        40,
        60,
        73,
        80,
        81,
        170,
    ]
    assert 11 not in RAW_TO_TRAIN_ID and 90 not in RAW_TO_TRAIN_ID


def test_coco_stuff_raw_and_train_id_labels(coco_src: Path, tmp_path: Path) -> None:
    folder = prepare_coco_stuff(coco_src, tmp_path / "out", progress=False, allow_partial=True)
    assert folder.stems("train") == ["000000000009", "000000000025"]
    assert folder.stems("val") == ["000000000139"]
    assert folder.classes.to_dict() == BUILTIN_SPLITS["coco-stuff"].to_dict()
    assert set(np.unique(labels_of(folder, "000000000009"))) == {0, 11, 80, 170, 255}
    assert set(np.unique(labels_of(folder, "000000000025"))) == {0, 12, 170, 255}  # kept as is
    assert set(np.unique(labels_of(folder, "000000000139"))) == {1, 24, 255}
    before = snapshot(folder.root)
    prepare_coco_stuff(coco_src, folder.root, progress=False, allow_partial=True)
    assert snapshot(folder.root) == before


def test_coco_stuff_refuses_unused_ids_and_missing_dirs(coco_src: Path, tmp_path: Path) -> None:
    write_label(coco_src / "annotations" / "val2017" / "000000000139.png", [1, 11, 255])
    with pytest.raises(DatasetFormatError, match=r"000000000139\.png holds values \[11\]"):
        prepare_coco_stuff(coco_src, tmp_path / "out", progress=False, allow_partial=True)
    (coco_src / "annotations" / "val2017" / "000000000139.png").unlink()
    with pytest.raises(DatasetFormatError, match=r"000000000139_labelTrainIds\.png or 000000000139\.png"):
        prepare_coco_stuff(coco_src, tmp_path / "out", progress=False, allow_partial=True)
    with pytest.raises(DatasetFormatError, match=r"images/train2017 does not exist"):
        prepare_coco_stuff(tmp_path / "empty", tmp_path / "out2", progress=False, allow_partial=True)


def test_context_labels_splits_and_rerun(context_src: Path, tmp_path: Path) -> None:
    folder = prepare_context(context_src, tmp_path / "out", progress=False, allow_partial=True)
    assert folder.stems("train") == ["2008_000002", "2008_000003"] and folder.stems("val") == ["2008_000007"]
    assert folder.classes.to_dict() == BUILTIN_SPLITS["context"].to_dict()
    assert set(np.unique(labels_of(folder, "2008_000002"))) == {0, 58, 255}
    assert set(np.unique(labels_of(folder, "2008_000003"))) == {19, 255}  # 20 (cow) -> 19
    assert folder.classes.names[19] == "cow" and folder.classes.names[33] == "motorbike"
    before = snapshot(folder.root)
    prepare_context(context_src, folder.root, progress=False, allow_partial=True)
    assert snapshot(folder.root) == before


def test_context_missing_files_and_foreign_dst(context_src: Path, tmp_path: Path) -> None:
    prepare_voc_dst = tmp_path / "other"
    prepare_voc_dst.mkdir()
    BUILTIN_SPLITS["voc"].write(prepare_voc_dst / "classes.json")
    with pytest.raises(DatasetFormatError, match="does not describe 'context'"):
        prepare_context(context_src, prepare_voc_dst, progress=False, allow_partial=True)
    (context_src / "SegmentationClassContext" / "2008_000007.png").unlink()
    with pytest.raises(DatasetFormatError, match=r"SegmentationClassContext/2008_000007\.png"):
        prepare_context(context_src, tmp_path / "out", progress=False, allow_partial=True)
    (context_src / "ImageSets" / "SegmentationContext" / "train.txt").unlink()
    with pytest.raises(DatasetFormatError, match=r"SegmentationContext/train\.txt does not exist"):
        prepare_context(context_src, tmp_path / "out", progress=False, allow_partial=True)


def test_voc_with_background_as_a_class(voc_src: Path, tmp_path: Path) -> None:
    folder = prepare_voc(voc_src, tmp_path / "out", progress=False, allow_partial=True, background=True)
    assert folder.classes.names == ("background", *BUILTIN_SPLITS["voc"].names)
    assert folder.classes.unseen == () and folder.classes.dataset == "voc21"
    assert set(np.unique(labels_of(folder, "2007_000032"))) == {0, 2, 255}  # official: ids kept as they are
    assert set(np.unique(labels_of(folder, "2007_000039"))) == {0, 15, 20, 255}  # SBD: 20 (tvmonitor) stays 20
    assert folder.stems("val") == ["2007_000033", "2007_000042"]
    with pytest.raises(DatasetFormatError, match="does not describe 'voc'"):
        # the 20-class VOC into the 21-class folder
        prepare_voc(voc_src, folder.root, progress=False, allow_partial=True)


def test_background_option_of_another_dataset_is_a_usage_error(tmp_path: Path, capsys) -> None:
    from splitmatch.cli import main

    assert (
        main(["prepare", "context", "--src", str(tmp_path / "src"), "--dst", str(tmp_path / "dst"), "--background"])
        == 2
    )
    assert capsys.readouterr().err.strip() == (
        "splitmatch: error: --background is an option of 'prepare voc', not of 'context'"
    )
    assert not (tmp_path / "dst").exists()


def test_ade20k_labels_classes_and_splits(ade_src: Path, tmp_path: Path) -> None:
    folder = prepare_ade20k(ade_src, tmp_path / "out", progress=False, allow_partial=True)
    assert folder.classes.num_classes == 150 and folder.classes.unseen == ()
    assert folder.classes.names[:8] == ("wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed")
    assert folder.classes.names[-1] == "flag" and folder.classes.names == ADE20K_CLASSES
    assert folder.stems("train") == ["ADE_train_00000001", "ADE_train_00000002"]
    assert folder.stems("val") == ["ADE_val_00000001"]
    assert set(np.unique(labels_of(folder, "ADE_train_00000001"))) == {255, 0, 7, 149}  # 0 -> ignore, k -> k-1
    assert set(np.unique(labels_of(folder, "ADE_val_00000001"))) == {149, 255, 12}
    before = snapshot(folder.root)
    prepare_ade20k(ade_src, folder.root, progress=False, allow_partial=True)
    assert snapshot(folder.root) == before


def test_ade20k_refuses_bad_values_and_missing_files(ade_src: Path, tmp_path: Path) -> None:
    write_label(ade_src / "annotations" / "training" / "ADE_train_00000002.png", [3, 151])
    with pytest.raises(DatasetFormatError, match=r"ADE_train_00000002\.png holds values \[151\]"):
        prepare_ade20k(ade_src, tmp_path / "out", progress=False, allow_partial=True)
    (ade_src / "annotations" / "validation" / "ADE_val_00000001.png").unlink()
    with pytest.raises(DatasetFormatError, match=r"1 image\(s\) of .* have no label .*ADE_val_00000001\.png"):
        prepare_ade20k(ade_src, tmp_path / "out", progress=False, allow_partial=True)
    with pytest.raises(DatasetFormatError, match="pass --src .*ADEChallengeData2016"):
        prepare_ade20k(ade_src.parent, tmp_path / "out", progress=False, allow_partial=True)


def test_context459_sixteen_bit_labels_and_official_names(context459_src: Path, tmp_path: Path) -> None:
    folder = prepare_context459(context459_src, tmp_path / "out", progress=False, allow_partial=True)
    assert folder.classes.names == tuple(CONTEXT459_NAMES) and folder.classes.unseen == ()
    assert folder.classes.ignore_index == 65535
    assert json.loads((folder.root / "classes.json").read_text())["ignore_index"] == 65535
    with Image.open(folder.root / "labels" / "2008_000002.png") as png:
        assert png.mode.startswith("I")  # a 16-bit PNG: ids above 254 survive
    label = labels_of(folder, "2008_000002")
    assert label.dtype == np.uint16 and set(np.unique(label)) == {65535, 0, 299, 458}
    assert set(np.unique(labels_of(folder, "2008_000003"))) == {255, 1}  # 256 -> 255: a class, not ignore
    assert folder.stems("train") == ["2008_000002", "2008_000003"] and folder.stems("val") == ["2008_000007"]
    before = snapshot(folder.root)
    prepare_context459(context459_src, folder.root, progress=False, allow_partial=True)
    assert snapshot(folder.root) == before


def test_context459_val_list_as_cat_seg_ships_it(context459_src: Path, tmp_path: Path) -> None:
    import shutil

    shutil.rmtree(context459_src / "ImageSets")
    (context459_src / "pascalcontext_val.txt").write_text("2008_000007\n2008_000003\n")
    folder = prepare_context459(context459_src, tmp_path / "out", progress=False, allow_partial=True)
    assert folder.split_names() == ["val"] and folder.stems("val") == ["2008_000007", "2008_000003"]


def test_context459_refuses_bad_files(context459_src: Path, tmp_path: Path) -> None:
    write_mat(context459_src / "trainval" / "2008_000003.mat", [2, 460])
    with pytest.raises(DatasetFormatError, match=r"2008_000003\.mat holds values \[460\]"):
        prepare_context459(context459_src, tmp_path / "out", progress=False, allow_partial=True)
    (context459_src / "trainval" / "2008_000003.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(20))
    with pytest.raises(DatasetFormatError, match=r"2008_000003\.mat"):
        prepare_context459(context459_src, tmp_path / "out", progress=False, allow_partial=True)
    scipy.io.savemat(context459_src / "trainval" / "2008_000003.mat", {"Other": np.zeros((2, 2))})
    with pytest.raises(DatasetFormatError, match=r"2008_000003\.mat holds no 2-D integer variable 'LabelMap'"):
        prepare_context459(context459_src, tmp_path / "out", progress=False, allow_partial=True)
    scipy.io.savemat(context459_src / "trainval" / "2008_000003.mat", {"LabelMap": np.ones((3, 3), np.uint16)})
    with pytest.raises(DatasetFormatError, match=r"is 3x3 \(WxH\) but image"):
        prepare_context459(context459_src, tmp_path / "out", progress=False, allow_partial=True)
    (context459_src / "trainval" / "2008_000003.mat").unlink()
    with pytest.raises(DatasetFormatError, match=r"trainval/2008_000003\.mat"):
        prepare_context459(context459_src, tmp_path / "out", progress=False, allow_partial=True)
    (context459_src / "labels.txt").write_text("1: accordion\n2: aeroplane\n")
    with pytest.raises(DatasetFormatError, match=r"labels\.txt lists 2 classes; expected ids 1..459"):
        prepare_context459(context459_src, tmp_path / "out", progress=False, allow_partial=True)
    for line in ("1 accordion", "\u0661: accordion"):  # an id in Arabic-Indic digits is no id of the release
        (context459_src / "labels.txt").write_text(line + "\n", encoding="utf-8")
        with pytest.raises(DatasetFormatError, match=r"labels\.txt line 1: expected '<id>: <name>'"):
            prepare_context459(context459_src, tmp_path / "out", progress=False, allow_partial=True)


def test_preparers_registry() -> None:
    assert set(PREPARERS) == {"voc", "coco-stuff", "context", "ade20k", "context-459", "pascal-5i", "coco-20i"}
    assert PREPARERS["coco-stuff"] is prepare_coco_stuff
