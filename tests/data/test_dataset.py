"""SegmentationDataset: inductive mapping, pseudo masks, seeding, collate and bad files."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from host_step_fixture import recorded, value_name
from PIL import Image
from torch.utils.data import DataLoader

from splitmatch.data.augmentation import build_eval_transform, build_train_transform
from splitmatch.data.classes import ClassSplit
from splitmatch.data.dataset import SegmentationDataset, collate_segmentation
from splitmatch.data.folder import DatasetFolder, DatasetFormatError, write_sample, write_split

CLASSES = ClassSplit(("sky", "road", "cow", "tree"), unseen=("cow",), dataset="toy")
COW = 2


def make_label(height: int, width: int, seed: int) -> np.ndarray:
    """Quadrants of the four classes plus an ignore stripe: uint8 [H, W]."""
    label = np.zeros((height, width), dtype=np.uint8)
    label[: height // 2, width // 2 :] = 1
    label[height // 2 :, : width // 2] = COW
    label[height // 2 :, width // 2 :] = 3
    label[:, seed % 4] = 255
    return label


def write_folder(root: Path) -> DatasetFolder:
    """Three PNG samples of 24, 28 and 32 x 32 pixels in a ``train`` split."""
    rng = np.random.default_rng(0)
    stems = ["a", "b", "c"]
    for i, stem in enumerate(stems):
        height, width = 24 + 4 * i, 32
        image = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
        write_sample(root, stem, image, make_label(height, width, i))
    write_split(root, "train", stems)
    CLASSES.write(root / "classes.json")
    return DatasetFolder(root)


@pytest.fixture()
def folder(tmp_path: Path) -> DatasetFolder:
    return write_folder(tmp_path)


class FakePseudoMasks:
    """A coarse 2-scale index map: every cell of a 4x4 grid is its own mask."""

    def __init__(self, dim: int = 8) -> None:
        self.dim = dim

    def load(self, stem: str, image_size=None) -> tuple[np.ndarray, np.ndarray]:
        cells = np.arange(1, 17, dtype=np.uint8).reshape(4, 4)
        index_map = np.stack([cells, np.where(cells > 8, 1, 2).astype(np.uint8)])
        return index_map, np.random.default_rng(len(stem)).normal(size=(16, self.dim)).astype(np.float32)


def file_digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.*")}


def test_items_have_documented_types_and_shapes(folder: DatasetFolder) -> None:
    item = SegmentationDataset(folder, "train")[1]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 28, 32)
    assert item["label"].dtype == torch.uint8 and item["label"].shape == (28, 32)  # the label files' dtype
    assert item["stem"] == "b" and item["orig_size"] == (28, 32)
    assert "pseudo_index" not in item
    # Workers receive the dataset pickled: it must hold paths only, no open files.
    clone = pickle.loads(pickle.dumps(SegmentationDataset(folder, "train", inductive=True)))
    assert torch.equal(clone[1]["label"], SegmentationDataset(folder, "train", inductive=True)[1]["label"])


def test_inductive_maps_unseen_to_ignore_without_touching_files(folder: DatasetFolder) -> None:
    before = file_digests(folder.root)
    full = SegmentationDataset(folder, "train", inductive=False)[0]["label"]
    inductive = SegmentationDataset(folder, "train", inductive=True)[0]["label"]
    assert (full == COW).any()
    assert not (inductive == COW).any()
    assert torch.equal(inductive[full == COW], torch.full_like(full[full == COW], 255))
    others = full != COW
    assert torch.equal(inductive[others], full[others])
    assert file_digests(folder.root) == before


def test_pseudo_index_only_covers_unannotated_pixels(folder: DatasetFolder) -> None:
    dataset = SegmentationDataset(folder, "train", inductive=True, pseudo_masks=FakePseudoMasks())
    item = dataset[0]
    label, index = item["label"], item["pseudo_index"]
    assert index.dtype == torch.uint8 and index.shape == (2, 24, 32)
    assert item["pseudo_embeddings"].dtype == torch.float32 and item["pseudo_embeddings"].shape == (16, 8)
    assert torch.all(index[:, label != 255] == 0)
    # Where unannotated, the map is the coarse grid resized nearest: 4x4 cells of 6x8 pixels.
    unannotated = label == 255
    cells = torch.arange(1, 17, dtype=torch.uint8).reshape(4, 4)
    expected = cells.repeat_interleave(6, 0).repeat_interleave(8, 1)
    assert unannotated.any() and torch.equal(index[0][unannotated], expected[unannotated])


def test_pseudo_index_follows_the_transform(folder: DatasetFolder) -> None:
    transform = build_train_transform(16, (64, 24), (0.5, 2.0), 0.75, 0.5, photometric=True)
    dataset = SegmentationDataset(folder, "train", transform, inductive=True, pseudo_masks=FakePseudoMasks())
    for key in [0, 1, 2, (0, 5), (2, 11)]:
        item = dataset[key]
        assert item["image"].shape == (3, 16, 16) and item["pseudo_index"].shape == (2, 16, 16)
        assert torch.all(item["pseudo_index"][:, item["label"] != 255] == 0)


def test_augmentation_is_fixed_by_the_key(folder: DatasetFolder) -> None:
    transform = build_train_transform(16, (64, 24), (0.5, 2.0), 0.75, 0.5, photometric=True)
    dataset = SegmentationDataset(folder, "train", transform, base_seed=3)
    assert torch.equal(dataset[1]["image"], dataset[1]["image"])
    assert torch.equal(dataset[(1, 42)]["image"], dataset[(1, 42)]["image"])
    assert torch.equal(dataset[(1, 42)]["label"], dataset[(1, 42)]["label"])
    images = [dataset[(1, seed)]["image"] for seed in range(6)]
    assert any(not torch.equal(images[0], other) for other in images[1:])
    reseeded = SegmentationDataset(folder, "train", transform, base_seed=4)
    assert any(not torch.equal(dataset[i]["image"], reseeded[i]["image"]) for i in range(3))
    with pytest.raises(IndexError, match="out of range"):
        dataset[3]


def test_eval_transform_keeps_label_at_file_resolution(folder: DatasetFolder) -> None:
    item = SegmentationDataset(folder, "train", build_eval_transform(48, 200))[0]
    assert item["image"].shape == (3, 48, 64)
    assert item["label"].shape == (24, 32) and item["orig_size"] == (24, 32)


def test_collate_stacks_and_lists(folder: DatasetFolder) -> None:
    transform = build_train_transform(16, (64, 24), (0.5, 2.0), 0.75, 0.5, photometric=False)
    dataset = SegmentationDataset(folder, "train", transform, inductive=True, pseudo_masks=FakePseudoMasks())
    batch = next(iter(DataLoader(dataset, batch_size=3, collate_fn=collate_segmentation)))
    assert batch["image"].shape == (3, 3, 16, 16) and batch["label"].shape == (3, 16, 16)
    assert batch["pseudo_index"].shape == (3, 2, 16, 16)
    assert isinstance(batch["pseudo_embeddings"], list) and batch["pseudo_embeddings"][2].shape == (16, 8)
    assert batch["stem"] == ["a", "b", "c"] and batch["orig_size"][2] == (32, 32)


def test_collate_refuses_mixed_sizes_naming_the_stems(folder: DatasetFolder) -> None:
    dataset = SegmentationDataset(folder, "train")
    with pytest.raises(ValueError, match=r"different sizes.*a: .*c: "):
        collate_segmentation([dataset[0], dataset[2]])


def test_corrupt_image_is_named(folder: DatasetFolder) -> None:
    (folder.root / "images" / "b.png").write_bytes(b"not a png at all")
    with pytest.raises(DatasetFormatError, match=r"b\.png"):
        SegmentationDataset(folder, "train")[1]


def test_out_of_range_label_is_named(folder: DatasetFolder) -> None:
    label = make_label(24, 32, 0)
    label[0, 0] = 9
    Image.fromarray(label).save(folder.root / "labels" / "a.png")
    with pytest.raises(DatasetFormatError, match=r"labels/a\.png.*\[9\]"):
        SegmentationDataset(folder, "train")[0]


def test_label_size_mismatch_is_named(folder: DatasetFolder) -> None:
    Image.fromarray(make_label(20, 32, 0)).save(folder.root / "labels" / "c.png")
    with pytest.raises(DatasetFormatError, match=r"labels/c\.png"):
        SegmentationDataset(folder, "train")[2]


def test_inconsistent_pseudo_masks_are_refused(folder: DatasetFolder) -> None:
    class TooFewEmbeddings(FakePseudoMasks):
        def load(self, stem: str, image_size=None) -> tuple[np.ndarray, np.ndarray]:
            index_map, embeddings = super().load(stem, image_size)
            return index_map, embeddings[:4]

    dataset = SegmentationDataset(folder, "train", pseudo_masks=TooFewEmbeddings())
    with pytest.raises(DatasetFormatError, match=r"'a'.*mask 16.*only 4"):
        dataset[0]


def test_a_class_file_that_is_a_folder_is_named(tmp_path):
    from splitmatch.data.classes import ClassSplit, ClassSplitError

    with pytest.raises(ClassSplitError, match=r"class file .* is a folder, not a JSON file"):
        ClassSplit.read(tmp_path)


TRAIN_TRANSFORM = (16, (64, 24), (0.5, 2.0), 0.75, 0.5, True)  # crop, scale, ratios, cat_max_ratio, flip, photometric
ITEM_KEYS = [0, 1, 2, (0, 5), (2, 11), (1, 99)]
ITEM_FIELDS = ("label", "pseudo_index", "pseudo_embeddings", "image")


def item_key(index: int | tuple[int, int]) -> str:
    """Where the dataset's item ``index`` before the host-step rework is recorded."""
    return value_name("items", *(index if isinstance(index, tuple) else (index,)))


def test_items_are_those_of_before_the_host_step_rework(folder: DatasetFolder) -> None:
    ours = SegmentationDataset(folder, "train", build_train_transform(*TRAIN_TRANSFORM), True, FakePseudoMasks())
    for index in ITEM_KEYS:
        item = ours[index]
        item_before = {field: recorded(value_name(item_key(index), field)) for field in ITEM_FIELDS}
        assert item["label"].dtype == torch.uint8 and item_before["label"].dtype == torch.int64
        assert torch.equal(item["label"].long(), item_before["label"])
        assert torch.equal(item["pseudo_index"], item_before["pseudo_index"])  # resized once, the same pixels
        assert torch.equal(item["pseudo_embeddings"], item_before["pseudo_embeddings"])
        assert (item["image"].int() - item_before["image"].int()).abs().max() <= 4


def test_compact_pseudo_maps_expand_to_the_items_pseudo_index(folder: DatasetFolder) -> None:
    from splitmatch.matching.target_maps import dense_masks, expand_index_map
    from splitmatch.train.targets import build_targets, pseudo_view

    transform = build_train_transform(16, (64, 24), (0.5, 2.0), 0.75, 0.5, photometric=True, pad_fill=(1, 2, 3))
    dataset = SegmentationDataset(folder, "train", transform, inductive=True, pseudo_masks=FakePseudoMasks())
    batch = collate_segmentation([dataset[(i % 3, 20 + i)] for i in range(6)])
    assert batch["pseudo_grid"].shape == (6, 2, 4, 4) and batch["pseudo_rows"].shape == (6, 16)
    expanded = expand_index_map(
        batch["pseudo_grid"], batch["pseudo_rows"], batch["pseudo_cols"], batch["label"][:, None]
    )
    assert torch.equal(expanded, batch["pseudo_index"])
    compact = build_targets(
        batch["label"], [0, 1, 3], batch["pseudo_index"], batch["pseudo_embeddings"], pseudo_view=pseudo_view(batch)
    )
    full = build_targets(batch["label"], [0, 1, 3], batch["pseudo_index"], batch["pseudo_embeddings"])
    for small, whole in zip(compact, full):
        assert "pseudo_index" not in small and torch.equal(small["pseudo_ids"], whole["pseudo_ids"])
        grid, rows, cols = (small[k][None] for k in ("pseudo_grid", "pseudo_rows", "pseudo_cols"))
        index = expand_index_map(grid, rows, cols, small["label_map"][None])[0]
        assert torch.equal(
            dense_masks(index, small["pseudo_ids"]), dense_masks(whole["pseudo_index"], whole["pseudo_ids"])
        )


def test_unclipped_pseudo_masks_keep_their_annotated_pixels(tiny_dataset):
    """pseudo.clip_to_unannotated=false (an ablation): the index map is not zeroed on labelled pixels."""
    import torch

    from splitmatch.data.dataset import SegmentationDataset

    class Everywhere:
        def load(self, stem, image_size=None):
            return np.ones((1, 4, 4), np.uint8), np.zeros((1, 8), np.float32)

    clipped = SegmentationDataset(tiny_dataset, "train", inductive=True, pseudo_masks=Everywhere())[0]
    whole = SegmentationDataset(
        tiny_dataset, "train", inductive=True, pseudo_masks=Everywhere(), clip_pseudo_masks=False
    )[0]
    annotated = clipped["label"] != 255
    assert annotated.any() and (clipped["pseudo_index"][0][annotated] == 0).all()
    assert torch.equal(whole["pseudo_index"], torch.ones_like(whole["pseudo_index"]))
