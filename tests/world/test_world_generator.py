"""Tests of the built-in world's generator: determinism, format, class coverage and occlusion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from splitmatch.data.folder import DatasetFolder, read_image, read_label
from splitmatch.world.generator import (
    WorldMismatchError,
    WorldSpec,
    _place_objects,
    generate_world,
    image_rng,
    render_image,
    world_class_split,
)
from splitmatch.world.shapes import WORLD_CLASSES

SMALL = WorldSpec(num_train=20, num_val=10, num_captions=10)


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> DatasetFolder:
    return generate_world(tmp_path_factory.mktemp("world"), seed=3, spec=SMALL, progress=False)


def test_same_call_twice_gives_byte_identical_folders(world: DatasetFolder, tmp_path: Path) -> None:
    again = generate_world(tmp_path / "again", seed=3, spec=SMALL, progress=False)
    first, second = _files(world.root), _files(again.root)
    assert len(first) == 2 * 40 + 5  # images, labels, three split lists, classes.json, world.json
    assert first == second


def test_image_does_not_depend_on_split_size(tmp_path: Path) -> None:
    short = generate_world(tmp_path / "a", 7, WorldSpec(num_train=5, num_val=1, num_captions=1), progress=False)
    long = generate_world(tmp_path / "b", 7, WorldSpec(num_train=10, num_val=2, num_captions=1), progress=False)
    for name in ("images/train_000003.png", "labels/train_000003.png", "images/val_000000.png"):
        assert (short.root / name).read_bytes() == (long.root / name).read_bytes()
    assert (short.root / "images/train_000003.png").read_bytes() != (long.root / "images/train_000004.png").read_bytes()


def test_complete_world_is_left_alone_and_partial_one_resumed(tmp_path: Path) -> None:
    spec = WorldSpec(num_train=4, num_val=2, num_captions=2)
    root = generate_world(tmp_path / "w", seed=1, spec=spec, progress=False).root
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    generate_world(root, seed=1, spec=spec, progress=False)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == before
    original = _files(root)
    (root / "images/train_000002.png").unlink()
    (root / "splits/val.txt").unlink()
    generate_world(root, seed=1, spec=spec, progress=False)
    assert _files(root) == original


def test_refuses_to_mix_worlds(tmp_path: Path) -> None:
    spec = WorldSpec(num_train=2, num_val=1, num_captions=1)
    root = generate_world(tmp_path / "w", seed=0, spec=spec, progress=False).root
    with pytest.raises(WorldMismatchError, match="seed"):
        generate_world(root, seed=1, spec=spec, progress=False)
    with pytest.raises(WorldMismatchError, match="different world"):
        generate_world(root, seed=0, spec=WorldSpec(num_train=3, num_val=1, num_captions=1), progress=False)
    (tmp_path / "other" / "images").mkdir(parents=True)
    with pytest.raises(WorldMismatchError, match="no world.json"):
        generate_world(tmp_path / "other", seed=0, spec=spec, progress=False)


def test_folder_format(world: DatasetFolder) -> None:
    assert world.split_names() == ["captions", "train", "val"]
    assert world.classes == world_class_split()
    sizes = set()
    for split, count in (("train", 20), ("val", 10), ("captions", 10)):
        samples = world.samples(split)
        assert len(samples) == count
        for sample in samples:
            image = read_image(sample.image_path)
            label = read_label(sample.label_path, world.classes.num_classes, image.shape[:2])
            assert 64 <= image.shape[0] <= 128 and 64 <= image.shape[1] <= 128
            assert label.max() < world.classes.num_classes  # no ignore pixels: every pixel is labelled
            assert 1 <= len(np.unique(label)) - (0 in label) <= 4  # 1-4 object classes
            sizes.add(image.shape[:2])
    assert len(sizes) > 10  # sizes vary


def test_class_split_and_unique_looks() -> None:
    split = world_class_split()
    assert split.names[0] == "background" and "background" not in split.unseen
    assert split.num_classes >= 13 and len(split.unseen) >= 3
    assert all(name.isalpha() and name.islower() for name in split.names)
    assert len({c.texture_name for c in WORLD_CLASSES}) == len(WORLD_CLASSES)
    assert len({c.shape for c in WORLD_CLASSES}) == len(WORLD_CLASSES)
    with pytest.raises(ValueError, match="unicorn"):
        WorldSpec(unseen=("unicorn",))
    with pytest.raises(ValueError, match="background"):
        WorldSpec(unseen=("background", "star"))


def test_every_class_occurs_in_a_similar_share_of_images() -> None:
    count = 240
    present = np.zeros(len(WORLD_CLASSES) + 1)
    for i in range(count):
        _, label = render_image(image_rng(0, "val", i), WorldSpec())
        present[np.unique(label)] += 1
    share = present[1:] / count  # about 2.5 objects of 12 classes: 0.21 expected
    assert share.min() >= 0.1 and share.max() <= 0.35, share


def test_visible_area_rule() -> None:
    spec = WorldSpec()
    lowest = 1.0
    for i in range(150):
        rng = image_rng(5, "train", i)
        h, w = int(rng.integers(64, 129)), int(rng.integers(64, 129))
        objects, instance = _place_objects(rng, spec, h, w)
        assert 1 <= len(objects) <= 4
        visible = np.bincount(instance[instance >= 0], minlength=len(objects))
        for k, obj in enumerate(objects):
            full = int(obj.mask(obj.box(1), 1).sum())  # the whole shape, inside the image or not
            assert visible[k] >= spec.min_visible * full > 0
            lowest = min(lowest, visible[k] / full)
        _, label = render_image(image_rng(5, "train", i), spec)
        ids, areas = np.unique(label, return_counts=True)
        assert areas[ids > 0].min() >= 8  # every class present is a region, not a few stray pixels
    assert lowest < 0.6  # objects do get occluded (or cut by the border), so the rule was tested
