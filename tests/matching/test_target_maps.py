"""Targets kept as label and pseudo-index maps: read at points as unpacked masks read, built as
build_targets built them before the host-step rework (its unpacked masks, recorded in
tests/fixtures: host_step_fixture.py), moved in few copies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from host_step_fixture import recorded_targets, value_name

from splitmatch.matching.point_sampling import gather_bilinear, point_sample
from splitmatch.matching.target_maps import dense_masks, index_map_areas, read_map_pairs, read_maps
from splitmatch.testing import host_syncs
from splitmatch.train.targets import build_targets, move_targets


def random_maps(generator: torch.Generator, batch: int, layers: int, size: tuple[int, int], ids: int, dtype):
    maps = torch.randint(0, ids + 1, (batch, layers, *size), generator=generator).to(dtype)
    maps[:, :, : size[0] // 3] = 0  # a band without any mask
    return maps


def border_points(batch: int, count: int, generator: torch.Generator) -> torch.Tensor:
    coords = torch.rand(batch, count, 2, generator=generator)
    coords[:, :6] = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.01, 0.99], [0.5, 1.0]])
    return coords  # the corners and edges read zero padding half or three quarters of the time


@pytest.mark.parametrize("dtype, size", [(torch.uint8, (17, 23)), (torch.uint8, (64, 48)), (torch.int64, (31, 31))])
def test_maps_are_read_at_points_as_point_sample_reads_their_masks(dtype, size):
    g = torch.Generator().manual_seed(0)
    maps = random_maps(g, 3, 2, size, 6, dtype)  # two layers: a pixel can be in two masks
    ids = torch.tensor([[1, 2, 6, 0], [3, 5, 4, 2], [6, 1, 2, 3]], dtype=dtype)  # 0: the band, outside all
    coords = border_points(3, 400, g)
    values = read_maps(maps, ids, coords)
    for b in range(3):
        masks = dense_masks(maps[b], ids[b])  # [K, H, W] bool
        assert torch.allclose(values[b], point_sample(masks[None].float(), coords[b : b + 1])[0], atol=1e-5)
        assert torch.equal(values[b], gather_bilinear(masks, coords[b : b + 1]))  # the same arithmetic, bitwise

    images = torch.tensor([2, 0, 0, 1, 2])
    chosen = torch.tensor([1, 6, 0, 4, 3], dtype=dtype)
    own = border_points(5, 300, g)
    pairs = read_map_pairs(maps, chosen, images, own)
    for n in range(5):
        mask = dense_masks(maps[images[n]], chosen[n : n + 1])
        assert torch.equal(pairs[n], gather_bilinear(mask, own[n : n + 1])[0])
        assert torch.allclose(pairs[n], point_sample(mask[None].float(), own[n : n + 1])[0, 0], atol=1e-5)
    assert read_map_pairs(maps, chosen[:0], images[:0], own[:0]).shape == (0, 300)
    assert read_maps(maps, ids[:, :0], coords).shape == (3, 0, 400)  # images without targets


def test_sixteen_bit_label_maps_read_like_eight_bit_ones():
    g = torch.Generator().manual_seed(1)
    small = random_maps(g, 2, 1, (40, 40), 5, torch.uint8)
    wide = small.to(torch.int32).mul_(300).to(torch.uint16)  # ids 0, 300, ..., 1500
    coords = torch.rand(2, 200, 2, generator=g)
    ids = torch.tensor([[1, 4], [2, 5]])
    expected = read_maps(small, ids.to(torch.uint8), coords)
    assert torch.equal(read_maps(wide, (ids * 300).to(torch.uint16), coords), expected)


def test_index_map_areas_count_each_mask_once_across_layers():
    g = torch.Generator().manual_seed(2)
    index = torch.randint(0, 5, (3, 30, 40), generator=g, dtype=torch.uint8)
    index[1, :10] = index[0, :10]  # the same id in two layers at the same pixels
    expected = dense_masks(index, torch.arange(1, 7)).flatten(1).sum(1)  # id 5 and 6: absent
    assert torch.equal(index_map_areas(index, 6), expected)
    assert index_map_areas(index, 0).shape == (0,)


TARGET_CASES = [(torch.uint8, 255), (torch.uint16, 65535)]  # label dtype, its ignore value
MIN_AREAS = [0.0, 0.004]


def train_ids(dtype: torch.dtype) -> list[int]:
    return [0, 3, 7, 1000 if dtype == torch.uint16 else 200]


def targets_key(dtype: torch.dtype, min_area: float) -> str:
    """Where the targets built before the rework for this case are recorded."""
    return value_name("targets", str(dtype).removeprefix("torch."), min_area)


def reference_batch(dtype: torch.dtype, ignore: int, seed: int = 3) -> dict:
    """Labels with a class-free image, pseudo maps in the ignored area with masks of zero area
    (cut away by a crop) and masks below the minimum area."""
    g = torch.Generator().manual_seed(seed)
    classes = torch.tensor([0, 3, 7, 1000 if dtype == torch.uint16 else 200])
    labels = classes[torch.randint(0, 4, (4, 48, 40), generator=g)]
    labels[:, :20] = ignore
    labels[1] = ignore  # no seen class at all
    index = torch.zeros(4, 3, 48, 40, dtype=torch.uint8)
    embeddings = []
    for b, count in enumerate((0, 5, 12, 30)):
        for s in range(3):
            index[b, s, :20] = torch.randint(0, count + 1, (20, 40), generator=g, dtype=torch.uint8)
        index[b][(index[b] == 2) | (index[b] == 4)] = 0  # mask 2 vanished after augmentation
        index[b, 0, 0, 0] = 4 if count >= 4 else 0  # mask 4 almost: a single pixel is left
        # Drawn in float64: the same bits on every CPU (float32 normals take a vectorised path on some).
        embeddings.append(torch.randn(count, 8, generator=g, dtype=torch.float64).float())
    return {"label": labels.to(dtype), "pseudo_index": index, "pseudo_embeddings": embeddings}


@pytest.mark.parametrize("dtype, ignore", TARGET_CASES)
@pytest.mark.parametrize("min_area", MIN_AREAS)
def test_targets_hold_the_masks_build_targets_unpacked_before(dtype, ignore, min_area):
    batch = reference_batch(dtype, ignore)
    args = (train_ids(dtype), batch["pseudo_index"], batch["pseudo_embeddings"])
    ours = build_targets(batch["label"], *args, ignore_index=ignore, min_pseudo_area=min_area)
    reference = recorded_targets(targets_key(dtype, min_area))
    assert len(ours) == len(reference) == 4
    for mine, theirs in zip(ours, reference):
        assert torch.equal(mine["labels"], theirs["labels"])
        assert torch.equal(dense_masks(mine["label_map"], mine["label_ids"]), theirs["masks"])
        assert mine["label_map"].dtype == dtype  # a view of the batch's label: nothing unpacked, nothing copied
        assert mine["label_map"].untyped_storage().data_ptr() == batch["label"].untyped_storage().data_ptr()
        assert torch.equal(dense_masks(mine["pseudo_index"], mine["pseudo_ids"]), theirs["pseudo_masks"])
        assert torch.equal(mine["pseudo_embeddings"], theirs["pseudo_embeddings"])
    assert ours[1]["labels"].numel() == 0 and ours[0]["pseudo_ids"].numel() == 0
    assert 2 not in ours[2]["pseudo_ids"].tolist()  # vanished
    assert (4 in ours[2]["pseudo_ids"].tolist()) == (min_area == 0.0)  # one pixel: below 0.4 % of the crop


def test_targets_refuse_class_ids_that_are_not_training_classes():
    labels = torch.full((1, 4, 4), 255, dtype=torch.uint8)
    labels[0, 0, 0] = 9
    with pytest.raises(ValueError, match=r"class ids \[9\] that are not training classes"):
        build_targets(labels, [0, 1])


def test_targets_are_moved_in_one_copy_per_dtype():
    batch = reference_batch(torch.uint8, 255)
    targets = build_targets(batch["label"], [0, 3, 7, 200], batch["pseudo_index"], batch["pseudo_embeddings"])
    assert all(a is b for t, m in zip(targets, move_targets(targets, "cpu")) for a, b in zip(t.values(), m.values()))
    with host_syncs.EmulatedDevice() as counts:
        moved = move_targets(targets, host_syncs.DEVICE)
    assert counts.h2d_copies == len({v.dtype for t in targets for v in t.values()}) == 3  # uint8, int64, float32
    assert counts.total_syncs == 0
    for original, copy in zip(targets, moved):
        assert original.keys() == copy.keys()
        for key in original:
            assert copy[key].device == host_syncs.DEVICE
            assert torch.equal(host_syncs.to_host(copy[key]), original[key])
    assert np.isclose(counts.h2d_bytes, sum(v.numel() * v.element_size() for t in targets for v in t.values()))
