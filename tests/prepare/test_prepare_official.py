"""prepare from the official files without conversion tools: SBD's .mat labels (voc --sbd) and
PASCAL Context-59 from the full Context release's .mat label maps."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from fabricate import HEIGHT, WIDTH, fabricate_context_mat, labels_of, snapshot, write_list

from splitmatch.cli import main
from splitmatch.data.class_lists import BUILTIN_SPLITS, CONTEXT59_CLASSES
from splitmatch.data.folder import DatasetFormatError
from splitmatch.prepare import prepare_context, prepare_voc
from splitmatch.prepare.context import CONTEXT59_LABEL_IDS

pytestmark = pytest.mark.filterwarnings("ignore::splitmatch.prepare.PartialDatasetWarning")


def write_sbd_mat(path: Path, values: list[int]) -> np.ndarray:
    """An SBD cls/<stem>.mat: struct GTcls with Segmentation (rows cycling through ``values``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    segmentation = np.array(values, np.uint8)[np.arange(HEIGHT * WIDTH).reshape(HEIGHT, WIDTH) % len(values)]
    present = np.array(sorted(set(values) - {0}), np.uint8)
    scipy.io.savemat(
        path, {"GTcls": {"Segmentation": segmentation, "Boundaries": np.zeros(3), "CategoriesPresent": present}}
    )
    return segmentation


@pytest.fixture()
def sbd_src(voc_src: Path, tmp_path: Path) -> tuple[Path, Path]:
    """VOC2012 without SegmentationClassAug, and SBD's benchmark_RELEASE/dataset beside it."""
    shutil.rmtree(voc_src / "SegmentationClassAug")
    (voc_src / "ImageSets" / "Segmentation" / "aug.txt").unlink()
    sbd = tmp_path / "benchmark_RELEASE" / "dataset"
    write_sbd_mat(sbd / "cls" / "2007_000039.mat", [15, 20, 0])  # a VOC train stem without an official PNG
    write_sbd_mat(sbd / "cls" / "2008_000002.mat", [5])  # an SBD stem: SBD's label wins over the official [9]
    write_sbd_mat(sbd / "cls" / "2007_000042.mat", [7])  # a VOC val stem without an official PNG
    write_sbd_mat(sbd / "cls" / "2007_000033.mat", [4])  # a VOC val stem with an official PNG: not used
    write_list(sbd / "train.txt", ["2007_000039", "2008_000002"])
    write_list(sbd / "val.txt", ["2007_000042", "2007_000033"])  # SBD's val holds VOC val images
    return voc_src, sbd


def test_voc_reads_sbd_mat_files_directly(sbd_src, tmp_path) -> None:
    voc, sbd = sbd_src
    folder = prepare_voc(voc, tmp_path / "out", progress=False, sbd=sbd, allow_partial=True)
    assert folder.stems("train") == ["2007_000032", "2007_000039", "2008_000002"]
    assert folder.stems("val") == ["2007_000033", "2007_000042"]
    assert folder.classes == BUILTIN_SPLITS["voc"]
    assert set(np.unique(labels_of(folder, "2007_000032"))) == {1, 255}  # official PNG
    assert set(np.unique(labels_of(folder, "2007_000039"))) == {14, 19, 255}  # SBD: 0 -> 255, 15 -> 14, 20 -> 19
    assert set(np.unique(labels_of(folder, "2008_000002"))) == {4}  # SBD's 5, not the official 9
    assert set(np.unique(labels_of(folder, "2007_000033"))) == {0, 18, 255}  # official, not SBD's 4
    assert set(np.unique(labels_of(folder, "2007_000042"))) == {6}
    before = snapshot(folder.root)
    prepare_voc(voc, folder.root, progress=False, sbd=sbd, allow_partial=True)
    assert snapshot(folder.root) == before


def test_voc_sbd_refuses_bad_mat_files_by_name(sbd_src, tmp_path) -> None:
    voc, sbd = sbd_src
    write_sbd_mat(sbd / "cls" / "2008_000002.mat", [5, 21])
    with pytest.raises(DatasetFormatError, match=r"2008_000002\.mat holds values \[21\]"):
        prepare_voc(voc, tmp_path / "out", progress=False, sbd=sbd, allow_partial=True)
    scipy.io.savemat(sbd / "cls" / "2008_000002.mat", {"Other": np.zeros((2, 2))})
    with pytest.raises(DatasetFormatError, match=r"2008_000002\.mat holds no struct 'GTcls'"):
        prepare_voc(voc, tmp_path / "out", progress=False, sbd=sbd, allow_partial=True)
    (sbd / "cls" / "2008_000002.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(20))
    with pytest.raises(DatasetFormatError, match=r"cannot read .*2008_000002\.mat as an SBD label file"):
        prepare_voc(voc, tmp_path / "out", progress=False, sbd=sbd, allow_partial=True)
    scipy.io.savemat(sbd / "cls" / "2008_000002.mat", {"GTcls": {"Segmentation": np.ones((3, 3), np.uint8)}})
    with pytest.raises(DatasetFormatError, match=r"is 3x3 \(WxH\) but image"):
        prepare_voc(voc, tmp_path / "out", progress=False, sbd=sbd, allow_partial=True)
    (sbd / "cls" / "2008_000002.mat").unlink()
    (voc / "SegmentationClass" / "2008_000002.png").unlink()
    with pytest.raises(DatasetFormatError, match=r"SBD cls/2008_000002\.mat or SegmentationClass/2008_000002\.png"):
        prepare_voc(voc, tmp_path / "out", progress=False, sbd=sbd, allow_partial=True)
    (sbd / "val.txt").unlink()
    with pytest.raises(DatasetFormatError, match=r"dataset/val\.txt does not exist"):
        prepare_voc(voc, tmp_path / "out", progress=False, sbd=sbd, allow_partial=True)


def test_sbd_option_on_the_command_line(sbd_src, tmp_path, capsys) -> None:
    voc, sbd = sbd_src
    args = ["prepare", "voc", "--src", str(voc), "--dst", str(tmp_path / "out"), "--quiet", "--allow-partial"]
    assert main([*args, "--sbd", str(sbd)]) == 0
    assert "train: 3 images" in capsys.readouterr().out
    assert main(["prepare", "context", "--src", str(voc), "--dst", str(tmp_path / "x"), "--sbd", str(sbd)]) == 2
    assert capsys.readouterr().err.strip() == (
        "splitmatch: error: --sbd is an option of 'prepare voc / pascal-5i', not of 'context'"
    )


def context_names() -> list[str]:
    """A labels.txt of 459 classes holding the 59 at mmseg's ids (the rest stand-in names)."""
    names = [f"other {i}" for i in range(1, 460)]
    for label_id, name in zip(CONTEXT59_LABEL_IDS, CONTEXT59_CLASSES):
        names[label_id - 1] = name
    return names


@pytest.fixture()
def context_mat_src(tmp_path: Path) -> Path:
    label_maps = {
        "2008_000002": [0, 2, 458, 1],  # aeroplane, wood, accordion (not of the 59)
        "2008_000003": [98, 300],  # cow, a class outside the 59
        "2008_000007": [427, 0],  # tvmonitor
    }
    return fabricate_context_mat(tmp_path / "VOC2010", label_maps, context_names())


def test_context59_from_the_official_mat_files(context_mat_src, tmp_path) -> None:
    folder = prepare_context(context_mat_src, tmp_path / "out", progress=False, allow_partial=True)
    assert folder.classes == BUILTIN_SPLITS["context"]
    names = folder.classes.names
    assert set(np.unique(labels_of(folder, "2008_000002"))) == {names.index("aeroplane"), names.index("wood"), 255}
    assert set(np.unique(labels_of(folder, "2008_000003"))) == {names.index("cow"), 255}
    assert set(np.unique(labels_of(folder, "2008_000007"))) == {names.index("tvmonitor"), 255}
    assert folder.stems("train") == ["2008_000002", "2008_000003"] and folder.stems("val") == ["2008_000007"]
    assert len(CONTEXT59_LABEL_IDS) == 59 and list(CONTEXT59_LABEL_IDS) == sorted(CONTEXT59_LABEL_IDS)


def test_context59_mat_route_refuses_another_class_list_and_a_source_with_neither(context_mat_src, tmp_path) -> None:
    names = context_names()
    names[98 - 1] = "cattle"
    (context_mat_src / "labels.txt").write_text("".join(f"{i}: {name}\n" for i, name in enumerate(names, 1)))
    with pytest.raises(DatasetFormatError, match=r"labels\.txt does not name the 59 .*id 98 is 'cattle', not 'cow'"):
        prepare_context(context_mat_src, tmp_path / "out", progress=False, allow_partial=True)
    shutil.rmtree(context_mat_src / "trainval")
    with pytest.raises(DatasetFormatError, match=r"neither .*SegmentationClassContext .* nor .*trainval"):
        prepare_context(context_mat_src, tmp_path / "out", progress=False, allow_partial=True)
