"""Pseudo masks and region embeddings for training images, from the frozen CLIP
(docs/method.md#pseudo-masks-and-region-embeddings)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from splitmatch.clip.image_encoder import ClipImageEncoder
from splitmatch.config import PseudoMaskConfig
from splitmatch.data.classes import IGNORE_INDEX
from splitmatch.data.transforms import nearest_indices
from splitmatch.pseudo.proposals import index_map, propose
from splitmatch.pseudo.region_crops import crop_region_embeddings

# Written into every cache's fingerprint: raise it whenever a change to the pseudo-mask
# algorithm changes what it computes for the same settings, so old caches are not reused.
GENERATOR_VERSION = 1
# The encoder's output each pseudo.dense_features value clusters (a recipe's: "dense_recipe").
DENSE_KEYS = {"value": "dense_values", "tokens": "dense_tokens"}


@dataclass
class PseudoMasks:
    """One image's candidates.

    Attributes:
        index_map: ``[S, h, w]`` uint8 on the patch grid, 0 none, ``k + 1`` candidate k.
        embeddings: ``[K, D]`` float32 normalised region embeddings.
    """

    index_map: torch.Tensor
    embeddings: torch.Tensor


class PseudoMaskGenerator:
    """Computes pseudo masks with a frozen CLIP image encoder (prompts are not used).

    With ``config.resize == "keep_aspect"`` an image keeps its shape: its long side becomes
    ``input_size``, its short side the nearest whole number of patches, and the rest of the square
    input is padded with CLIP's mean colour (zero once normalised, as the training crops are
    padded). Only the image's own patches are clustered; the index map of that sub-grid is then
    stretched (nearest, pixel centres) over the whole cached grid, so that resizing the cached map
    to the image, as the dataset does, lays every mask back onto the image.

    Args:
        encoder: the CLIP image encoder (its ``region_layers`` sets the masked-CLS depth).
        config: the ``pseudo`` section of the experiment config.
    """

    def __init__(self, encoder: ClipImageEncoder, config: PseudoMaskConfig) -> None:
        self.encoder = encoder
        self.config = config

    def image_grid(self, height: int, width: int) -> tuple[int, int]:
        """The patch grid ``(h, w)`` an ``height x width`` image covers in the CLIP input."""
        side = self.config.input_size
        patch_h, patch_w = self.encoder.patch_size
        full = (side // patch_h, side // patch_w)
        if self.config.resize == "square":
            return full
        scale = side / max(height, width)
        rows = min(max(round(height * scale / patch_h), 1), full[0])
        cols = min(max(round(width * scale / patch_w), 1), full[1])
        return rows, cols

    def prepare(
        self, image: torch.Tensor, label: torch.Tensor, ignore_index: int = IGNORE_INDEX
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Resizes one image and its (seen-only) label to the square CLIP input.

        Args:
            image: ``[3, H, W]`` uint8.
            label: ``[H, W]`` int64 with unseen classes already ``ignore_index``.
            ignore_index: the dataset's ignore value (255, or 65535 above 255 classes).

        Returns:
            ``image [3, S, S]`` float 0..255 and ``unannotated [S, S]`` float: 1 unannotated, 0
            annotated, -1 on the padding outside the image (``keep_aspect``).
        """
        side = self.config.input_size
        rows, cols = self.image_grid(*image.shape[-2:])
        size = (rows * self.encoder.patch_size[0], cols * self.encoder.patch_size[1])
        resized = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False)[0]
        unannotated = (label == ignore_index).float()[None, None]
        unannotated = F.interpolate(unannotated, size=size, mode="nearest")[0, 0]
        if size == (side, side):
            return resized.clamp(0, 255), unannotated
        padded = self.encoder.pixel_mean[0].to(resized).expand(3, side, side).clone()
        padded[:, : size[0], : size[1]] = resized.clamp(0, 255)
        outside = unannotated.new_full((side, side), -1.0)
        outside[: size[0], : size[1]] = unannotated
        return padded, outside

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, unannotated: torch.Tensor) -> list[PseudoMasks]:
        """Pseudo masks for a batch.

        Args:
            images: ``[B, 3, S, S]`` 0..255, S = ``config.input_size``, as :meth:`prepare` gives them.
            unannotated: ``[B, S, S]`` 1 where the pixel carries no seen-class label, -1 on padding.

        Returns:
            one :class:`PseudoMasks` per image, on the CPU, its index map on the whole grid.
        """
        cfg = self.config
        recipe = {} if cfg.dense_features in DENSE_KEYS else {"dense_recipe": cfg.dense_features}
        features = self.encoder(
            images,
            use_prompts=False,
            value_features=cfg.dense_features == "value",
            keep_hidden_before=self.encoder.region_start_layer if cfg.region_embedding == "masked_cls" else None,
            **recipe,
        )
        dense = features[DENSE_KEYS.get(cfg.dense_features, "dense_recipe")]  # [B, D, h, w]
        patch = self.encoder.patch_size
        fraction = F.avg_pool2d(unannotated[:, None].float().clamp(min=0), patch, stride=patch)[:, 0]  # [B, h, w]
        full = tuple(dense.shape[2:])
        inside = F.avg_pool2d((unannotated[:, None] >= 0).float(), patch, stride=patch)[:, 0] > 0  # [B, h, w]
        grids = [(int(rows.any(1).sum()), int(rows.any(0).sum())) for rows in inside]
        proposals: list = [None] * len(grids)
        for grid, members in _groups(grids).items():
            index = torch.tensor(members, device=dense.device)
            whole = grid == full and len(members) == len(grids)  # the usual case: the batch as it is
            group_dense = dense if whole else dense[index][:, :, : grid[0], : grid[1]]
            group_fraction = fraction if whole else fraction[index][:, : grid[0], : grid[1]]
            found = propose(
                group_dense,
                group_fraction,
                cfg.window_sizes,
                cfg.iterations,
                cfg.rho,
                cfg.min_area_per_scale or cfg.min_area,
                cfg.dedup_iou,
                cfg.max_masks,
                cfg.components,
                containment=cfg.dedup_containment,
                order=cfg.mask_order,
                clip=cfg.clip_to_unannotated,
            )
            if cfg.region_embedding == "crop":
                group_images = images if whole else images[index][:, :, : grid[0] * patch[0], : grid[1] * patch[1]]
                crops = crop_region_embeddings(self.encoder, group_images, [m for m, _ in found], cfg.crop_context)
                found = [(masks, scales, F.normalize(e, dim=-1)) for (masks, scales), e in zip(found, crops)]
            for b, result in zip(members, found):
                proposals[b] = result
        if cfg.region_embedding == "masked_cls":
            count = max(masks.shape[0] for masks, _ in proposals)
            padded = torch.zeros(len(proposals), count, *full, dtype=torch.bool, device=dense.device)
            for b, (masks, _) in enumerate(proposals):
                padded[b, : masks.shape[0], : masks.shape[1], : masks.shape[2]] = masks
            regions = F.normalize(self.encoder.region_embeddings_from_hidden(features["hidden"], padded), dim=-1)
            proposals = [(m, s, regions[b, : m.shape[0]]) for b, (m, s) in enumerate(proposals)]
        return [
            PseudoMasks(_stretch(index_map(masks, scales, len(cfg.window_sizes)), full).cpu(), embeddings.cpu())
            for masks, scales, embeddings in proposals
        ]


def _groups(grids: list[tuple[int, int]]) -> dict[tuple[int, int], list[int]]:
    """Batch positions by image grid, in batch order: each group is clustered as one batch."""
    groups: dict[tuple[int, int], list[int]] = {}
    for position, grid in enumerate(grids):
        groups.setdefault(grid, []).append(position)
    return groups


def _stretch(index: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``[S, h, w]`` index map of an image's own patches -> ``[S, H, W]`` over the whole cached grid.

    Nearest neighbour by pixel centres, as :func:`splitmatch.data.transforms.resize_nearest` maps
    the cached grid onto the image, so a mask lands where it lay in the image (within half a cell).
    """
    if tuple(index.shape[1:]) == tuple(grid):
        return index
    rows = torch.from_numpy(nearest_indices(index.shape[1], grid[0])).to(index.device)
    cols = torch.from_numpy(nearest_indices(index.shape[2], grid[1])).to(index.device)
    return index[:, rows[:, None], cols[None, :]]
