"""The segmentation model: prompted CLIP image encoder, pixel decoder with MFE, query decoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from splitmatch.clip.image_encoder import ClipImageEncoder
from splitmatch.clip.text_encoder import ClipTextEncoder
from splitmatch.data.classes import ClassEntry
from splitmatch.model.pixel_decoder import PixelDecoder
from splitmatch.model.query_decoder import QueryDecoder


class SplitMatchSegmentor(nn.Module):
    """Assembles the parts it is given; knows nothing of matching or losses.

    Args:
        image_encoder: frozen CLIP ViT with trainable prompts.
        text_encoder: frozen CLIP text tower (class names -> embeddings).
        pixel_decoder: dense features -> ``memory`` and ``mask_features``.
        query_decoder: queries -> masks, embeddings and class logits.
    """

    def __init__(
        self,
        image_encoder: ClipImageEncoder,
        text_encoder: ClipTextEncoder,
        pixel_decoder: PixelDecoder,
        query_decoder: QueryDecoder,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.pixel_decoder = pixel_decoder
        self.query_decoder = query_decoder

    @property
    def patch_size(self) -> tuple[int, int]:
        return self.image_encoder.patch_size

    def encode_classes(self, class_names: Sequence[ClassEntry]) -> torch.Tensor:
        """Normalised class embeddings ``[C, D]`` (cached per list); an entry is a name, or a name and
        its synonyms (their embeddings averaged)."""
        return self.text_encoder(class_names)

    def forward(self, images: torch.Tensor, class_embeddings: torch.Tensor) -> dict:
        """Segments a batch against a vocabulary.

        Args:
            images: ``[B, 3, H, W]`` uint8 or float in 0..255, H and W multiples of the patch size.
            class_embeddings: ``[C, D]`` from :meth:`encode_classes`.

        Returns:
            ``pred_logits [B, Q, C+1]`` (last column: no-object), ``pred_masks [B, Q, h', w']``
            (logits on the feature grid), ``pred_embeds [B, Q, D]``, ``query_group [Q]``
            (0 seen, 1 candidate) and ``aux_outputs`` (earlier read-outs with the same keys).
        """
        features = self.image_encoder(images)
        decoded = self.pixel_decoder(features["dense_tokens"], features["layer_features"])
        return self.query_decoder(decoded["memory"], decoded["mask_features"], class_embeddings)

    def clip_state_keys(self) -> list[str]:
        """The state-dict keys of the frozen CLIP towers (all of them come from ``clip.weights``),
        sorted; the prompts, decoders and heads are the rest."""
        visual = self.image_encoder.visual.state_dict(prefix="image_encoder.visual.")
        text = self.text_encoder.state_dict(prefix="text_encoder.")
        return sorted([*visual, *text])

    def trainable_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by learning-rate group: ``prompts`` and ``heads`` (everything CLIP is frozen)."""
        groups: dict[str, list[nn.Parameter]] = {"prompts": [], "heads": []}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            groups["prompts" if name.startswith("image_encoder.prompts") else "heads"].append(param)
        return groups
