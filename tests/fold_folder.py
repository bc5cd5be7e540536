"""A small fold benchmark made in the test: a folder with folds.json and hand-made episodes.

Classes: background, red, green, blue, yellow (scheme ``tiny-2i``: fold 0 red, green; fold 1
blue, yellow). The val images are chosen for the episode cases: one all red (every pixel the
episode's class), one without green (an episode with no foreground), one with red and green
(a class asked for in several episodes), one with a void border (255).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from splitmatch.data.classes import ClassSplit
from splitmatch.data.episode_lists import Episode, episode_file_text, episode_path
from splitmatch.data.folder import DatasetFolder, write_sample, write_split

FOLD_CLASSES = ClassSplit(("background", "red", "green", "blue", "yellow"), (), dataset="tinyfolds")
SCHEME = "tiny-2i"
FOLDS = (("red", "green"), ("blue", "yellow"))
COLOURS = {1: (220, 40, 40), 2: (40, 200, 60), 3: (40, 60, 220), 4: (230, 220, 40)}
# Per fold, its hand-made episodes (stem, class).
EPISODES = {
    0: [("val_000", "red"), ("val_001", "green"), ("val_002", "red"), ("val_002", "green"), ("val_003", "red")],
    1: [("val_001", "blue"), ("val_002", "yellow"), ("val_003", "blue"), ("val_000", "yellow"), ("val_003", "yellow")],
}
EPISODE_COUNT = 5


def _image(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    image = rng.integers(90, 140, size=(*label.shape, 3), dtype=np.uint8)
    for class_id, colour in COLOURS.items():
        image[label == class_id] = colour
    return image


def _val_labels(size: int) -> list[np.ndarray]:
    all_red = np.full((size, size), 1, np.uint8)
    without_green = np.zeros((size, size), np.uint8)
    without_green[4:30, 8:40] = 3
    red_and_green = np.zeros((size, size + 16), np.uint8)
    red_and_green[2:20, 2:30] = 1
    red_and_green[30:60, 40:70] = 2
    red_and_green[40:50, 5:15] = 4
    bordered = np.zeros((size, size), np.uint8)
    bordered[10:40, 10:40] = 1
    bordered[9, 9:41] = bordered[40, 9:41] = 255  # a void border, as VOC's
    bordered[45:60, 20:50] = 3
    bordered[50:55, 52:60] = 4
    return [all_red, without_green, red_and_green, bordered]


def make_fold_folder(root: Path, num_train: int = 8, size: int = 64, seed: int = 0) -> DatasetFolder:
    """Writes the folder (train images with random rectangles of every class) and returns it."""
    rng = np.random.default_rng(seed)
    train = []
    for i in range(num_train):
        label = np.zeros((size, size), np.uint8)
        for class_id in rng.choice([1, 2, 3, 4], size=int(rng.integers(1, 4)), replace=False):
            h, w = rng.integers(size // 4, size // 2, size=2)
            y, x = rng.integers(0, size - h), rng.integers(0, size - w)
            label[y : y + h, x : x + w] = class_id
        stem = f"train_{i:03d}"
        write_sample(root, stem, _image(label, rng), label)
        train.append(stem)
    val = []
    for i, label in enumerate(_val_labels(size)):
        stem = f"val_{i:03d}"
        write_sample(root, stem, _image(label, rng), label)
        val.append(stem)
    write_split(root, "train", train)
    write_split(root, "val", val)
    FOLD_CLASSES.write(root / "classes.json")
    folds = {
        "default": SCHEME,
        "schemes": {SCHEME: {"convention": "consecutive", "sampling": "cycle", "folds": [list(f) for f in FOLDS]}},
    }
    (root / "folds.json").write_text(json.dumps(folds), encoding="utf-8")
    for fold, episodes in EPISODES.items():
        path = episode_path(root, SCHEME, fold, EPISODE_COUNT)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(episode_file_text([Episode(*e) for e in episodes], ["hand-made"]), encoding="utf-8")
    return DatasetFolder(root)
