"""A training-free segmentor: CLIP's value-path dense features scored against the class names.

MaskCLIP (Zhou, Loy and Dai, ECCV 2022) observed that CLIP's last attention block mixes every
patch with the whole image through its query-key attention, while the value path keeps each
patch's own content; read through CLIP's final norm and projection, the value of each patch
already lies in the joint space and can be compared with text embeddings as CLIP compares an
image embedding with them. No weight is learned: any CLIP ViT segments any vocabulary.

Here the value-path features are :class:`~splitmatch.clip.image_encoder.ClipImageEncoder`'s
``dense_values`` (the ones the pseudo masks use; :func:`splitmatch.clip.attention.value_path`).
MaskCLIP's refinements (key smoothing, prompt denoising) are not applied: this is the plain
read-out, the training-free baseline of the zero-shot tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from splitmatch.clip.image_encoder import ClipImageEncoder
from splitmatch.clip.loading import build_clip, clip_tokenizer
from splitmatch.clip.text_encoder import ClipTextEncoder, prompt_templates
from splitmatch.config.maskclip import FrozenClipConfig
from splitmatch.data.classes import ClassEntry

# CLIP was trained with its learned logit scale clamped at 100 (open_clip and OpenAI alike).
MAX_LOGIT_SCALE = 100.0


class MaskClipSegmentor(nn.Module):
    """Per-patch class probabilities from a frozen CLIP, no decoder and no training.

    ``p(c | x) = softmax_c(s * cos(v_x, t_c))`` with ``v_x`` the value-path feature of patch
    ``x``, ``t_c`` the class's text embedding and ``s`` CLIP's own learned logit scale: the
    softmax CLIP's zero-shot classifier takes over an image embedding, taken per patch. The
    scale is CLIP's, fixed before any image is seen, never tuned on a split.

    Args:
        image_encoder: the frozen image tower, without prompts.
        text_encoder: the frozen text tower (class names -> embeddings).
        logit_scale: ``s``, CLIP's ``exp(logit_scale)`` (100 for OpenAI's weights).
    """

    def __init__(self, image_encoder: ClipImageEncoder, text_encoder: ClipTextEncoder, logit_scale: float) -> None:
        super().__init__()
        if image_encoder.prompts.numel():
            raise ValueError("a MaskCLIP segmentor reads the plain frozen CLIP: its image encoder must have no prompts")
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.logit_scale = float(logit_scale)

    @property
    def patch_size(self) -> tuple[int, int]:
        return self.image_encoder.patch_size

    def encode_classes(self, class_names: Sequence[ClassEntry]) -> torch.Tensor:
        """Normalised class embeddings ``[C, D]`` (cached per list), as the trained segmentor's."""
        return self.text_encoder(class_names)

    def dense_features(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` 0..255, H and W multiples of the patch size -> value-path features
        ``[B, D, H/p, W/p]``, L2-normalised over D."""
        values = self.image_encoder(images, use_prompts=False, value_features=True)["dense_values"]
        return F.normalize(values.float(), dim=1)

    def forward(self, images: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        """Class probabilities on the patch grid.

        Args:
            images: ``[B, 3, H, W]`` uint8 or float in 0..255, H and W multiples of the patch size.
            class_embeddings: ``[C, D]`` from :meth:`encode_classes`.

        Returns:
            ``[B, C, H/p, W/p]``, summing to 1 over C at every patch.
        """
        features = self.dense_features(images)  # [B, D, h, w]
        cosines = torch.einsum("bdhw,cd->bchw", features, class_embeddings.float().to(features.device))
        return (self.logit_scale * cosines).softmax(dim=1)


def build_maskclip(clip_cfg: FrozenClipConfig) -> MaskClipSegmentor:
    """A :class:`MaskClipSegmentor` from the ``clip`` section: ``arch``, ``weights`` (a file,
    ``packaged:NAME`` or an open_clip pretrained tag such as ``openai``) and ``templates``;
    built on the CPU in eval mode."""
    clip = build_clip(clip_cfg.arch, clip_cfg.weights)
    scale = min(float(clip.logit_scale.detach().exp()), MAX_LOGIT_SCALE)
    image_encoder = ClipImageEncoder(clip.visual, region_layers=1)  # no region tokens: any depth will do
    text_encoder = ClipTextEncoder(clip, clip_tokenizer(clip_cfg.arch), prompt_templates(clip_cfg.templates))
    return MaskClipSegmentor(image_encoder, text_encoder, scale).eval()
