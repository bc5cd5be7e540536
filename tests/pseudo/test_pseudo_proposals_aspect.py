"""pseudo.resize: keep_aspect pads instead of squashing, and the cached masks still land on the image's objects."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from splitmatch.config import merge
from splitmatch.config.presets import preset
from splitmatch.data.classes import ClassSplit
from splitmatch.data.dataset import SegmentationDataset
from splitmatch.data.folder import DatasetFolder, write_sample, write_split
from splitmatch.data.transforms import resize_nearest
from splitmatch.pseudo.build_cache import fill_cache
from splitmatch.pseudo.cache import PseudoMaskCache
from splitmatch.pseudo.generator import PseudoMaskGenerator
from splitmatch.pseudo.proposals import masks_from_index_map

CLASSES = ClassSplit(("background", "red", "yellow"), ("yellow",), dataset="aspect")
COLOURS = {0: (128, 128, 128), 1: (220, 40, 40), 2: (230, 220, 40)}


class ColourEncoder(nn.Module):
    """A stand-in for the frozen CLIP: each patch's feature is its mean colour (and a constant).

    Region embeddings are the mean feature inside the mask. What the test needs is a feature in
    which an object's patches are alike and unlike the background, so that K-Means finds it.
    """

    patch_size = (8, 8)
    region_start_layer = 0
    embed_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.visual = nn.Module()
        self.visual.image_size = (16, 16)  # crops are resized to this side
        self.anchor = nn.Parameter(torch.zeros(1))  # fill_cache reads the device from a parameter
        self.register_buffer("pixel_mean", torch.tensor([122.8, 116.7, 104.1]).view(1, 3, 1, 1))

    def forward(self, images, use_prompts=False, value_features=False, keep_hidden_before=None) -> dict:
        colour = F.avg_pool2d(images.float() / 255, self.patch_size)  # [B, 3, h, w]
        dense = torch.cat([colour, torch.full_like(colour[:, :1], 0.5)], dim=1)  # [B, 4, h, w]
        tokens = dense.flatten(2).transpose(1, 2)
        hidden = torch.cat([tokens.mean(1, keepdim=True), tokens], dim=1)
        return {"dense_values": dense, "dense_tokens": dense, "hidden": hidden, "cls_embedding": dense.mean((2, 3))}

    def region_embeddings_from_hidden(self, hidden: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        weights = masks.flatten(2).float()  # [B, K, N]
        return weights @ hidden[:, 1:] / weights.sum(-1, keepdim=True).clamp(min=1)


def draw(height: int, width: int, boxes: dict[int, tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """An image and its label: a grey background and one box (top, left, bottom, right) per class."""
    label = np.zeros((height, width), np.uint8)
    for class_id, (top, left, bottom, right) in boxes.items():
        label[top:bottom, left:right] = class_id
    image = np.zeros((height, width, 3), np.uint8)
    for class_id, colour in COLOURS.items():
        image[label == class_id] = colour
    return image, label


SHAPES = {  # stem: (height, width, boxes)
    "wide": (60, 150, {1: (5, 10, 35, 50), 2: (12, 88, 52, 140)}),
    "tall": (150, 60, {1: (10, 5, 45, 40), 2: (96, 12, 144, 50)}),
    "square": (90, 90, {1: (5, 5, 40, 40), 2: (50, 48, 86, 86)}),
}


@pytest.fixture
def aspect_folder(tmp_path) -> DatasetFolder:
    root = tmp_path / "data"
    for stem, (height, width, boxes) in SHAPES.items():
        write_sample(root, stem, *draw(height, width, boxes))
    write_split(root, "train", list(SHAPES))
    CLASSES.write(root / "classes.json")
    return DatasetFolder(root)


def pseudo_config(resize: str):
    return merge(
        preset("tiny"),
        {"pseudo": {"input_size": 128, "window_sizes": [2, 4], "min_area": 0.02, "resize": resize, "rho": 0.8}},
    ).pseudo


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)


def test_a_cached_mask_lands_on_the_unseen_object_of_every_image(aspect_folder, tmp_path):
    # Were the padding not cropped away (the image's rows cached at the top of the grid, say), the
    # best IoU of the wide and tall images would be about 0.13.
    encoder, pseudo = ColourEncoder(), pseudo_config("keep_aspect")
    cache = PseudoMaskCache(tmp_path / "cache", {"resize": "keep_aspect"}, (2, 16, 16), embed_dim=4)
    assert fill_cache(cache, encoder, pseudo, aspect_folder, "train", batch_size=3, progress=False) == 3
    dataset = SegmentationDataset(aspect_folder, "train", inductive=True, pseudo_masks=cache)
    for index, (stem, (height, width, boxes)) in enumerate(SHAPES.items()):
        top, left, bottom, right = boxes[2]
        unseen = np.zeros((height, width), bool)
        unseen[top:bottom, left:right] = True
        index_map, embeddings = cache.load(stem, image_size=(height, width))
        # The cached grid resized to the image, as the dataset reads it, before any clipping.
        masks = masks_from_index_map(torch.from_numpy(resize_nearest(index_map, (height, width))), len(embeddings))
        best = max(iou(mask.numpy(), unseen) for mask in masks)
        assert best >= 0.7, (stem, best)  # 0.76-0.84: the grid is coarse (8-px patches on a 60-px side)
        item = dataset[index]
        covered = (item["pseudo_index"] > 0).any(0).numpy()
        assert covered[unseen].mean() >= 0.7, stem  # the training item's masks cover the object


def test_keep_aspect_clusters_only_the_image_and_pads_with_the_mean_colour():
    generator = PseudoMaskGenerator(ColourEncoder(), pseudo_config("keep_aspect"))
    image, label = draw(60, 150, SHAPES["wide"][2])
    label[label == 2] = 255  # unseen: unannotated
    assert generator.image_grid(60, 150) == (6, 16)  # 150 -> 128 px, 60 -> 51.2 -> 6 patches
    assert generator.image_grid(150, 60) == (16, 6)
    assert generator.image_grid(3, 500) == (1, 16)  # at least one patch
    resized, unannotated = generator.prepare(
        torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(label.astype(np.int64))
    )
    assert resized.shape == (3, 128, 128) and unannotated.shape == (128, 128)
    assert torch.allclose(resized[:, 48:], torch.tensor([122.8, 116.7, 104.1]).view(3, 1, 1).expand(3, 80, 128))
    assert (unannotated[48:] == -1).all() and set(unannotated[:48].unique().tolist()) == {0.0, 1.0}
    (result,) = generator(resized[None], unannotated[None])
    assert result.index_map.shape == (2, 16, 16) and len(result.embeddings) >= 1
    # Stretched from 6 rows to 16 by pixel centres: cached rows 0-2 all come from the image's row 0
    assert torch.equal(result.index_map[:, 0], result.index_map[:, 2])


def test_square_images_give_the_same_masks_either_way():
    from splitmatch.model.build import build_segmentor

    config = preset("tiny")
    encoder = build_segmentor(config.clip, config.decoder).image_encoder.eval()
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.integers(0, 256, size=(3, 80, 80), dtype=np.uint8))
    label = torch.from_numpy(np.where(rng.random((80, 80)) < 0.6, 255, 1).astype(np.int64))
    results = []
    for resize in ("square", "keep_aspect"):
        pseudo = merge(config, {"pseudo": {"resize": resize}}).pseudo
        generator = PseudoMaskGenerator(encoder, pseudo)
        resized, unannotated = generator.prepare(image, label)
        results.append(generator(resized[None], unannotated[None])[0])
    assert torch.equal(results[0].index_map, results[1].index_map)
    assert torch.equal(results[0].embeddings, results[1].embeddings)


def test_in_a_batch_of_mixed_shapes_each_image_gets_what_it_gets_alone():
    generator = PseudoMaskGenerator(ColourEncoder(), pseudo_config("keep_aspect"))
    prepared = []
    for height, width, boxes in SHAPES.values():
        image, label = draw(height, width, boxes)
        label[label == 2] = 255
        prepared.append(
            generator.prepare(torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(label.astype(np.int64)))
        )
    together = generator(torch.stack([p[0] for p in prepared]), torch.stack([p[1] for p in prepared]))
    for (image, unannotated), joint in zip(prepared, together):
        (alone,) = generator(image[None], unannotated[None])
        assert torch.equal(alone.index_map, joint.index_map)
        assert torch.allclose(alone.embeddings, joint.embeddings, atol=1e-6)


def test_crop_embeddings_never_see_the_padding():
    pseudo = merge(
        preset("tiny"), {"pseudo": {**vars(pseudo_config("keep_aspect")), "region_embedding": "crop"}}
    ).pseudo
    generator = PseudoMaskGenerator(ColourEncoder(), pseudo)
    image, label = draw(60, 150, SHAPES["wide"][2])  # the unseen box reaches row 52 of 60
    label[label == 2] = 255
    resized, unannotated = generator.prepare(
        torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(label.astype(np.int64))
    )
    (first,) = generator(resized[None], unannotated[None])
    repainted = resized.clone()
    repainted[:, 48:] = torch.tensor([255.0, 0.0, 255.0]).view(3, 1, 1)  # the padding, another colour
    (second,) = generator(repainted[None], unannotated[None])
    assert len(first.embeddings) >= 1 and torch.equal(first.index_map, second.index_map)
    assert torch.equal(first.embeddings, second.embeddings)
