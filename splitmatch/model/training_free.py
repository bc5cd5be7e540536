"""A training-free segmentor: a frozen CLIP's dense features, read by a recipe, scored against the names.

MaskCLIP (Zhou, Loy and Dai, ECCV 2022) observed that CLIP's last attention block mixes every
patch with the whole image through its query-key attention, while the value path keeps each
patch's own content; read through CLIP's final norm and projection, each patch's feature lies in
the joint space and can be compared with text embeddings as CLIP compares an image embedding
with them. ClearCLIP, SCLIP, NACLIP and SC-CLIP change that last block in other ways
(:mod:`splitmatch.clip.dense_recipes`, docs/training-free.md). No weight is learned: any CLIP
ViT segments any vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from splitmatch.clip.dense_recipes import check_recipe
from splitmatch.clip.image_encoder import ClipImageEncoder
from splitmatch.clip.loading import build_clip, clip_tokenizer
from splitmatch.clip.text_encoder import ClipTextEncoder, prompt_templates
from splitmatch.config.training_free import FrozenClipConfig, RecipeConfig
from splitmatch.data.classes import ClassEntry

# CLIP was trained with its learned logit scale clamped at 100 (open_clip and OpenAI alike).
MAX_LOGIT_SCALE = 100.0


class TrainingFreeSegmentor(nn.Module):
    """Per-patch class probabilities from a frozen CLIP, no decoder and no training.

    ``p(c | x) = softmax_c(s * cos(f_x, t_c))`` with ``f_x`` the recipe's dense feature of patch
    ``x``, ``t_c`` the class's text embedding and ``s`` the recipe's logit scale (CLIP's own
    learned one unless the recipe's authors fix another), fixed before any image is seen.

    Args:
        image_encoder: the frozen image tower, without prompts.
        text_encoder: the frozen text tower (class names -> embeddings).
        logit_scale: ``s``.
        recipe: how the last block is read (:data:`splitmatch.clip.dense_recipes.RECIPES`).
        pamr_steps, pamr_dilations: PAMR refinement of the scores at the image's size
            (:mod:`splitmatch.inference.pamr`), 0 steps for none.
    """

    def __init__(
        self,
        image_encoder: ClipImageEncoder,
        text_encoder: ClipTextEncoder,
        logit_scale: float,
        recipe: str = "value-path",
        pamr_steps: int = 0,
        pamr_dilations: Sequence[int] = (8, 16),
    ) -> None:
        super().__init__()
        if image_encoder.prompts.numel():
            raise ValueError(
                "a training-free segmentor reads the plain frozen CLIP: its image encoder must have no prompts"
            )
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.logit_scale = float(logit_scale)
        self.recipe = check_recipe(recipe)
        self.pamr_steps = int(pamr_steps)
        self.pamr_dilations = tuple(pamr_dilations)

    @property
    def patch_size(self) -> tuple[int, int]:
        return self.image_encoder.patch_size

    def encode_classes(self, class_names: Sequence[ClassEntry]) -> torch.Tensor:
        """Normalised class embeddings ``[C, D]`` (cached per list), as the trained segmentor's."""
        return self.text_encoder(class_names)

    def dense_features(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` 0..255, H and W multiples of the patch size -> the recipe's features
        ``[B, D, H/p, W/p]``, L2-normalised over D."""
        return F.normalize(self.image_encoder.recipe_features(images, self.recipe).float(), dim=1)

    def logits(self, images: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        """``s * cos`` on the patch grid: ``images [B, 3, H, W]``, ``class_embeddings [C, D]`` ->
        ``[B, C, H/p, W/p]`` (what the recipes' authors average over windows before the softmax)."""
        features = self.dense_features(images)  # [B, D, h, w]
        cosines = torch.einsum("bdhw,cd->bchw", features, class_embeddings.float().to(features.device))
        return self.logit_scale * cosines

    def forward(self, images: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        """Class probabilities on the patch grid.

        Args:
            images: ``[B, 3, H, W]`` uint8 or float in 0..255, H and W multiples of the patch size.
            class_embeddings: ``[C, D]`` from :meth:`encode_classes`.

        Returns:
            ``[B, C, H/p, W/p]``, summing to 1 over C at every patch.
        """
        return self.logits(images, class_embeddings).softmax(dim=1)


def build_training_free(clip_cfg: FrozenClipConfig, recipe_cfg: RecipeConfig | None = None) -> TrainingFreeSegmentor:
    """A :class:`TrainingFreeSegmentor` from the ``clip`` section (``arch``, ``weights``: a file,
    ``packaged:NAME`` or an open_clip pretrained tag such as ``openai``, ``templates``,
    ``pos_interpolation``) and the ``recipe`` section (default: MaskCLIP's); built on the CPU in
    eval mode."""
    recipe_cfg = recipe_cfg or RecipeConfig()
    clip = build_clip(clip_cfg.arch, clip_cfg.weights)
    scale = recipe_cfg.logit_scale or min(float(clip.logit_scale.detach().exp()), MAX_LOGIT_SCALE)
    image_encoder = ClipImageEncoder(clip.visual, region_layers=1, pos_interpolation=clip_cfg.pos_interpolation)
    text_encoder = ClipTextEncoder(clip, clip_tokenizer(clip_cfg.arch), prompt_templates(clip_cfg.templates))
    model = TrainingFreeSegmentor(
        image_encoder, text_encoder, scale, recipe_cfg.name, recipe_cfg.pamr_steps, recipe_cfg.pamr_dilations
    )
    return model.eval()
