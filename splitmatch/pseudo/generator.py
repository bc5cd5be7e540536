"""Pseudo masks and region embeddings for training images, from the frozen CLIP
(docs/method.md#pseudo-masks-and-region-embeddings)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from splitmatch.clip.image_encoder import ClipImageEncoder
from splitmatch.config import PseudoMaskConfig
from splitmatch.data.classes import IGNORE_INDEX
from splitmatch.pseudo.proposals import index_map, propose
from splitmatch.pseudo.region_crops import crop_region_embeddings

# Written into every cache's fingerprint: raise it whenever a change to the pseudo-mask
# algorithm changes what it computes for the same settings, so old caches are not reused.
GENERATOR_VERSION = 1


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

    Args:
        encoder: the CLIP image encoder (its ``region_layers`` sets the masked-CLS depth).
        config: the ``pseudo`` section of the experiment config.
    """

    def __init__(self, encoder: ClipImageEncoder, config: PseudoMaskConfig) -> None:
        self.encoder = encoder
        self.config = config

    def prepare(
        self, image: torch.Tensor, label: torch.Tensor, ignore_index: int = IGNORE_INDEX
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Resizes one image and its (seen-only) label to the square CLIP input.

        Args:
            image: ``[3, H, W]`` uint8.
            label: ``[H, W]`` int64 with unseen classes already ``ignore_index``.
            ignore_index: the dataset's ignore value (255, or 65535 above 255 classes).

        Returns:
            ``image [3, S, S]`` float 0..255 and ``unannotated [S, S]`` float 0/1.
        """
        size = (self.config.input_size, self.config.input_size)
        resized = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False)[0]
        unannotated = (label == ignore_index).float()[None, None]
        return resized.clamp(0, 255), F.interpolate(unannotated, size=size, mode="nearest")[0, 0]

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, unannotated: torch.Tensor) -> list[PseudoMasks]:
        """Pseudo masks for a batch.

        Args:
            images: ``[B, 3, S, S]`` 0..255, S = ``config.input_size``.
            unannotated: ``[B, S, S]`` 1 where the pixel carries no seen-class label.

        Returns:
            one :class:`PseudoMasks` per image, on the CPU.
        """
        cfg = self.config
        features = self.encoder(
            images,
            use_prompts=False,
            value_features=cfg.dense_features == "value",
            keep_hidden_before=self.encoder.region_start_layer if cfg.region_embedding == "masked_cls" else None,
        )
        dense = features["dense_values" if cfg.dense_features == "value" else "dense_tokens"]  # [B, D, h, w]
        patch = self.encoder.patch_size
        fraction = F.avg_pool2d(unannotated[:, None].float(), patch, stride=patch)[:, 0]  # [B, h, w]
        proposals = propose(
            dense,
            fraction,
            cfg.window_sizes,
            cfg.iterations,
            cfg.rho,
            cfg.min_area,
            cfg.dedup_iou,
            cfg.max_masks,
            cfg.components,
        )
        if cfg.region_embedding == "crop":
            crops = crop_region_embeddings(self.encoder, images, [m for m, _ in proposals], cfg.crop_context)
            embeddings = [F.normalize(e, dim=-1) for e in crops]
        else:
            count = max(masks.shape[0] for masks, _ in proposals)
            padded = torch.zeros(len(proposals), count, *dense.shape[2:], dtype=torch.bool, device=dense.device)
            for b, (masks, _) in enumerate(proposals):
                padded[b, : masks.shape[0]] = masks
            regions = F.normalize(self.encoder.region_embeddings_from_hidden(features["hidden"], padded), dim=-1)
            embeddings = [regions[b, : masks.shape[0]] for b, (masks, _) in enumerate(proposals)]
        return [
            PseudoMasks(index_map(masks, scales, len(cfg.window_sizes)).cpu(), embeddings[b].cpu())
            for b, (masks, scales) in enumerate(proposals)
        ]
