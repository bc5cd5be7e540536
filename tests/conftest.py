"""Shared fixtures: tiny datasets in the folder format, made in the test."""

from __future__ import annotations

import os
import subprocess

# Before torch loads: passive OpenMP waiting keeps tests fast when the other core is busy.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from command_lines import predict_args  # noqa: E402
from fabricate import (  # noqa: E402
    CONTEXT459_NAMES,
    fabricate_context_mat,
    fabricate_split_folders,
    write_jpeg,
    write_label,
    write_list,
)

from splitmatch.data.classes import ClassSplit  # noqa: E402
from splitmatch.data.folder import DatasetFolder, write_sample, write_split  # noqa: E402

TINY_CLASSES = ClassSplit(("background", "red", "green", "blue", "yellow"), ("yellow",), dataset="tiny")
_COLOURS = {1: (220, 40, 40), 2: (40, 200, 60), 3: (40, 60, 220), 4: (230, 220, 40)}


def make_tiny_dataset(root, num_train: int = 8, num_val: int = 4, size: int = 64, seed: int = 0) -> DatasetFolder:
    """Images with 1-3 coloured rectangles on grey noise; class 4 ('yellow') is unseen."""
    rng = np.random.default_rng(seed)
    splits: dict[str, list[str]] = {"train": [], "val": []}
    for split, count in (("train", num_train), ("val", num_val)):
        for i in range(count):
            height, width = size, size + 16 * (i % 2)
            image = rng.integers(90, 140, size=(height, width, 3), dtype=np.uint8)
            label = np.zeros((height, width), np.uint8)
            classes = rng.choice([1, 2, 3, 4], size=int(rng.integers(1, 4)), replace=False)
            for c in classes:
                h, w = rng.integers(size // 4, size // 2, size=2)
                y, x = rng.integers(0, height - h), rng.integers(0, width - w)
                image[y : y + h, x : x + w] = _COLOURS[int(c)]
                label[y : y + h, x : x + w] = c
            stem = f"{split}_{i:03d}"
            write_sample(root, stem, image, label)
            splits[split].append(stem)
    for split, stems in splits.items():
        write_split(root, split, stems)
    TINY_CLASSES.write(root / "classes.json")
    return DatasetFolder(root)


@pytest.fixture
def tiny_dataset(tmp_path) -> DatasetFolder:
    return make_tiny_dataset(tmp_path / "data")


@pytest.fixture
def small_tmpfs(tmp_path):
    """Mounts a tmpfs; yields a function (size, read_only) -> its folder, or skips where mounting is not
    allowed (a real full disk or read-only file system, where the tests run as root on Linux)."""
    mounted = []

    def mount(size: str, read_only: bool = False) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
        mounted.append(point)
        return point

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], capture_output=True)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny model trained for two steps on a tiny dataset: what the app tests serve."""
    from splitmatch.config.presets import preset
    from splitmatch.train.trainer import train

    root = tmp_path_factory.mktemp("tiny_checkpoint")
    config = preset("tiny")
    config.data.root = str(make_tiny_dataset(root / "data").root)
    config.train.iterations = 2
    config.train.checkpoint_every = 2
    train(config, root / "run", progress=False)
    return root / "run" / "model.safetensors"


@pytest.fixture
def untrained_checkpoint(tiny_dataset, tmp_path):
    """A tiny model's checkpoint (random weights: predict's plumbing does not need a trained one)."""
    from splitmatch.config.presets import preset
    from splitmatch.model.build import build_segmentor
    from splitmatch.model.checkpoint import save_checkpoint

    config = preset("tiny")
    classes = tiny_dataset.classes
    model = build_segmentor(config.clip, config.decoder)
    return save_checkpoint(tmp_path / "model.safetensors", model, config, classes, classes.seen_names, 1)


def run_predict(capsys, checkpoint, out, paths, classes: str, *extra) -> tuple[int, str, str]:
    """``splitmatch predict`` in this process: (exit code, stdout, stderr)."""
    from splitmatch.cli import main

    code = main(predict_args(checkpoint, classes, out, *extra, *map(str, paths)))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# Official dataset layouts, fabricated small, for the prepare, workflow and checks tests.
@pytest.fixture()
def voc_src(tmp_path: Path) -> Path:
    src = tmp_path / "VOC2012"
    for i, stem in enumerate(["2007_000032", "2007_000039", "2008_000002", "2007_000033", "2007_000042"]):
        write_jpeg(src / "JPEGImages" / f"{stem}.jpg", i)
    write_label(src / "SegmentationClassAug" / "2007_000032.png", [0, 1, 20, 255])
    write_label(src / "SegmentationClassAug" / "2007_000039.png", [15, 20, 0, 255])
    write_label(src / "SegmentationClassAug" / "2008_000002.png", [5])
    write_label(src / "SegmentationClassAug" / "2007_000042.png", [7])
    # Official palette PNGs; where SBD's label exists too, the official one must win for the
    # VOC train/val stems (2007_000032, 2007_000033), SBD's for the aug stems.
    write_label(src / "SegmentationClass" / "2007_000032.png", [0, 2, 255], palette=True)
    write_label(src / "SegmentationClass" / "2007_000033.png", [0, 1, 19, 255], palette=True)
    write_label(src / "SegmentationClassAug" / "2007_000033.png", [4])
    write_label(src / "SegmentationClass" / "2008_000002.png", [9], palette=True)
    lists = src / "ImageSets" / "Segmentation"
    write_list(lists / "train.txt", ["2007_000032", "2007_000039"])
    write_list(lists / "val.txt", ["2007_000033", "2007_000042"])
    write_list(lists / "aug.txt", ["2008_000002", "2007_000042"])  # SBD lists hold a val image
    return src


@pytest.fixture()
def coco_src(tmp_path: Path) -> Path:
    images = [("train2017", "000000000009"), ("train2017", "000000000025"), ("val2017", "000000000139")]
    labels = {
        "train2017/000000000009.png": [0, 12, 91, 181, 255],
        "train2017/000000000025_labelTrainIds.png": [0, 12, 170, 255],
        "val2017/000000000139.png": [1, 26, 255],
    }
    return fabricate_split_folders(tmp_path / "coco_stuff164k", images, labels)


@pytest.fixture()
def context_src(tmp_path: Path) -> Path:
    src = tmp_path / "VOC2010"
    for i, stem in enumerate(["2008_000002", "2008_000003", "2008_000007"]):
        write_jpeg(src / "JPEGImages" / f"{stem}.jpg", i)
    write_label(src / "SegmentationClassContext" / "2008_000002.png", [0, 1, 59, 255])
    write_label(src / "SegmentationClassContext" / "2008_000003.png", [20, 0])
    write_label(src / "SegmentationClassContext" / "2008_000007.png", [33])
    write_list(src / "ImageSets" / "SegmentationContext" / "train.txt", ["2008_000002", "2008_000003"])
    write_list(src / "ImageSets" / "SegmentationContext" / "val.txt", ["2008_000007"])
    return src


@pytest.fixture()
def ade_src(tmp_path: Path) -> Path:
    images = [
        ("training", "ADE_train_00000001"),
        ("training", "ADE_train_00000002"),
        ("validation", "ADE_val_00000001"),
    ]
    labels = {
        "training/ADE_train_00000001.png": [0, 1, 8, 150],
        "training/ADE_train_00000002.png": [3],
        "validation/ADE_val_00000001.png": [150, 0, 13],
    }
    return fabricate_split_folders(tmp_path / "ADEChallengeData2016", images, labels)


@pytest.fixture()
def context459_src(tmp_path: Path) -> Path:
    label_maps = {"2008_000002": [0, 1, 300, 459], "2008_000003": [256, 2], "2008_000007": [3, 0, 459]}
    return fabricate_context_mat(tmp_path / "VOC2010", label_maps, CONTEXT459_NAMES)
