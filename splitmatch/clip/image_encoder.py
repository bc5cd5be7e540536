"""CLIP's image tower with deep visual prompts, dense features and masked region embeddings."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer
from torch import nn

from splitmatch.clip.attention import block_forward, value_path
from splitmatch.clip.dense_recipes import NEEDS_BLOCK_OUTPUTS, check_recipe, last_block_tokens
from splitmatch.clip.loading import ClipWeightsError
from splitmatch.clip.maskclip_tower import maskclip_patch_tokens

# How each ``clip.pos_interpolation`` resizes the positional embedding's grid: F.interpolate's arguments.
POS_INTERPOLATION = {
    "bicubic": {"mode": "bicubic", "align_corners": False},  # mmseg's resize_pos_embed
    "bilinear": {"mode": "bilinear", "align_corners": False},  # ZegCLIP's (F.interpolate's defaults)
    "bicubic_antialias": {"mode": "bicubic", "align_corners": False, "antialias": True},  # open_clip's
    # By a scale factor of (grid + 0.1) / native, the factor itself setting where samples fall (not the
    # sizes' ratio): DINO's form, which SCLIP, ClearCLIP, NACLIP and SC-CLIP resize with (docs/training-free.md).
    "bicubic_scale": {"mode": "bicubic", "align_corners": False, "recompute_scale_factor": False},
}


class ClipImageEncoder(nn.Module):
    """A frozen open_clip ViT whose only trainable part is a set of deep visual prompts.

    ``prompt_tokens`` learned tokens are appended to the sequence before each of the first
    ``prompt_layers`` blocks, replacing the previous block's prompt outputs (VPT-deep, as in
    ZegCLIP); after the last prompted block the prompt outputs flow on. With no prompt tokens
    the encoder computes exactly open_clip's image forward. The positional embedding is
    interpolated to whatever patch grid the input has (``pos_interpolation``).

    Args:
        visual: an open_clip ``VisionTransformer`` with plain blocks and CLS pooling.
        prompt_tokens: N_p, 0 disables prompts.
        prompt_layers: L_p, number of leading blocks that receive fresh prompts.
        feature_layers: indices of blocks whose output tokens the decoder receives.
        region_layers: n, the last blocks in which masked region tokens attend (1..L).
        image_mean, image_std: per-channel normalisation of 0..1 images.
        pos_interpolation: how the positional embedding is resized to another patch grid, a key of
            :data:`POS_INTERPOLATION` (``bicubic``, ``bilinear``, ``bicubic_antialias``, ``bicubic_scale``).
    """

    def __init__(
        self,
        visual: VisionTransformer,
        prompt_tokens: int = 0,
        prompt_layers: int = 0,
        feature_layers: Sequence[int] = (),
        region_layers: int = 3,
        image_mean: Sequence[float] = OPENAI_DATASET_MEAN,
        image_std: Sequence[float] = OPENAI_DATASET_STD,
        pos_interpolation: str = "bicubic",
    ) -> None:
        super().__init__()
        if pos_interpolation not in POS_INTERPOLATION:
            raise ValueError(f"pos_interpolation must be one of {list(POS_INTERPOLATION)}, got {pos_interpolation!r}")
        self.pos_interpolation = pos_interpolation
        if not isinstance(visual, VisionTransformer) or visual.attn_pool is not None:
            raise ClipWeightsError(
                f"expected an open_clip VisionTransformer without attention pooling, got {type(visual)}"
            )
        if not all(isinstance(b, ResidualAttentionBlock) for b in visual.transformer.resblocks):
            raise ClipWeightsError("the CLIP image tower uses custom blocks; splitmatch needs ResidualAttentionBlock")
        self.visual = visual.requires_grad_(False)
        self.patch_size = tuple(visual.patch_size)
        self.width = visual.conv1.out_channels
        self.embed_dim = visual.proj.shape[1]
        self.num_layers = len(visual.transformer.resblocks)
        if not 0 <= prompt_layers <= self.num_layers:
            raise ValueError(f"prompt_layers must lie in 0..{self.num_layers}, got {prompt_layers}")
        bad = [i for i in feature_layers if not 0 <= i < self.num_layers]
        if bad:
            raise ValueError(f"feature layers {bad} out of range 0..{self.num_layers - 1}")
        self.feature_layers = list(feature_layers)
        if not 1 <= region_layers <= self.num_layers:
            raise ValueError(f"region_layers must lie in 1..{self.num_layers}, got {region_layers}")
        self.region_layers = region_layers
        self.prompts = nn.Parameter(torch.zeros(prompt_layers if prompt_tokens else 0, prompt_tokens, self.width))
        # VPT's uniform init, scaled to the patch embedding's fan-in.
        bound = math.sqrt(6.0 / (3 * self.patch_size[0] * self.patch_size[1] + self.width))
        nn.init.uniform_(self.prompts, -bound, bound)
        self.register_buffer("pixel_mean", torch.tensor(image_mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(image_std).view(1, 3, 1, 1) * 255, persistent=False)

    def train(self, mode: bool = True) -> ClipImageEncoder:
        super().train(mode)
        self.visual.eval()  # frozen: patch dropout and the like stay off
        return self

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` uint8 or float in 0..255 -> CLIP-normalised float."""
        return (images.float() - self.pixel_mean) / self.pixel_std

    def positional_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """``[1 + h*w, W]`` positional embedding for a patch grid, resized (``pos_interpolation``) if needed."""
        pos = self.visual.positional_embedding
        native = tuple(self.visual.grid_size)
        if tuple(grid) == native:
            return pos
        resize = POS_INTERPOLATION[self.pos_interpolation]
        if "recompute_scale_factor" in resize and grid[0] * grid[1] == native[0] * native[1]:
            return pos  # those recipes resize only when the token count changes
        cls_pos, patch_pos = pos[:1], pos[1:]
        patch_pos = patch_pos.reshape(1, native[0], native[1], -1).permute(0, 3, 1, 2)
        if "recompute_scale_factor" in resize:
            factor = ((grid[0] + 0.1) / native[0], (grid[1] + 0.1) / native[1])
            patch_pos = F.interpolate(patch_pos, scale_factor=factor, **resize)
        else:
            patch_pos = F.interpolate(patch_pos, size=grid, **resize)
        return torch.cat([cls_pos, patch_pos.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)])

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """``[B, 3, H, W]`` 0..255 images -> tokens ``[B, 1 + h*w, W]`` (CLS first) and the grid ``(h, w)``."""
        x, grid = self.patch_tokens(images)
        return self.visual.ln_pre(x), grid

    def patch_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """What :meth:`embed` gives before CLIP's first norm: patch embeddings with the CLS token and
        the positional embedding, ``[B, 1 + h*w, W]``, and the grid ``(h, w)``."""
        x = self.visual.conv1(self.normalize(images).to(self.visual.conv1.weight.dtype))  # [B, W, h, w]
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)  # [B, h*w, W]
        cls = self.visual.class_embedding.view(1, 1, -1).expand(x.shape[0], -1, -1).to(x.dtype)
        return torch.cat([cls, x], dim=1) + self.positional_embedding(grid).to(x.dtype), grid

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final norm and projection into the joint space: ``[..., W] -> [..., D]``."""
        return self.visual.ln_post(tokens) @ self.visual.proj

    def forward(
        self,
        images: torch.Tensor,
        use_prompts: bool = True,
        value_features: bool = False,
        keep_hidden_before: int | None = None,
        dense_recipe: str | None = None,
    ) -> dict:
        """Encodes images.

        Args:
            images: ``[B, 3, H, W]`` uint8 or float in 0..255; H and W are cut to whole patches.
            use_prompts: ``False`` runs the plain frozen CLIP (pseudo masks, region embeddings).
            value_features: also compute the value-path dense features (:func:`~splitmatch.clip.attention.value_path`).
            keep_hidden_before: also return the tokens entering this block (for region embeddings).
            dense_recipe: also compute a training-free recipe's dense features
                (:data:`splitmatch.clip.dense_recipes.RECIPES`), from the tokens without prompts.

        Returns:
            dict with ``cls_embedding [B, D]``, ``dense_tokens [B, D, h, w]``,
            ``layer_features`` (list of ``[B, W, h, w]`` for ``feature_layers``), ``grid (h, w)``,
            and when asked ``dense_values [B, D, h, w]``, ``dense_recipe [B, D, h, w]`` and
            ``hidden [B, 1 + h*w, W]``.
        """
        x, grid = self.embed(images)
        batch, num_patches = x.shape[0], grid[0] * grid[1]
        num_prompted = self.prompts.shape[0] if use_prompts else 0
        out: dict = {"grid": grid, "layer_features": []}
        if dense_recipe == "maskclip":  # a tower of its own numerics
            tokens, _ = maskclip_patch_tokens(self, images)
            out["dense_recipe"] = self._to_map(tokens @ self.visual.proj, grid)
        elif dense_recipe is not None:
            check_recipe(dense_recipe)
        block_outputs: list[torch.Tensor] = []
        last = self.num_layers - 1
        for index, block in enumerate(self.visual.transformer.resblocks):
            if index < num_prompted:
                prompts = self.prompts[index].unsqueeze(0).expand(batch, -1, -1).to(x.dtype)
                x = torch.cat([x[:, : 1 + num_patches], prompts], dim=1)
            if index == keep_hidden_before:
                out["hidden"] = x[:, : 1 + num_patches]
            if index == last and value_features:
                values = value_path(block, x)[:, 1 : 1 + num_patches]  # [B, h*w, W]
                out["dense_values"] = self._to_map(self.project(values), grid)
            if index == last and dense_recipe not in (None, "maskclip"):
                tokens = last_block_tokens(dense_recipe, block, x[:, : 1 + num_patches], block_outputs, grid)
                out["dense_recipe"] = self._to_map(self.project(tokens), grid)
            x = block_forward(block, x)
            if dense_recipe in NEEDS_BLOCK_OUTPUTS:
                block_outputs.append(x[:, : 1 + num_patches])
            if index in self.feature_layers:
                out["layer_features"].append(self._to_map(x[:, 1 : 1 + num_patches], grid))
        projected = self.project(x[:, : 1 + num_patches])  # [B, 1 + h*w, D]
        out["cls_embedding"] = projected[:, 0]
        out["dense_tokens"] = self._to_map(projected[:, 1:], grid)
        return out

    def recipe_features(self, images: torch.Tensor, recipe: str) -> torch.Tensor:
        """A training-free recipe's dense features alone (what ``forward(..., dense_recipe=recipe)``
        gives as ``dense_recipe``, without the rest): ``[B, 3, H, W]`` 0..255 -> ``[B, D, h, w]``."""
        if recipe == "maskclip":
            tokens, grid = maskclip_patch_tokens(self, images)
            return self._to_map(tokens @ self.visual.proj, grid)
        check_recipe(recipe)
        x, grid = self.embed(images)
        blocks = self.visual.transformer.resblocks
        outputs: list[torch.Tensor] = []
        for block in blocks[:-1]:
            x = block_forward(block, x)
            if recipe in NEEDS_BLOCK_OUTPUTS:
                outputs.append(x)
        return self._to_map(self.project(last_block_tokens(recipe, blocks[-1], x, outputs, grid)), grid)

    @staticmethod
    def _to_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``[B, h*w, C] -> [B, C, h, w]``."""
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], grid[0], grid[1])

    def region_embeddings_from_hidden(self, hidden: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Masked-CLS region embeddings from the tokens entering the last ``n`` blocks.

        ``K`` copies of the CLS token join the sequence; copy ``k`` may attend only to itself and
        to the patches inside mask ``k`` (an attention bias of ``-inf`` elsewhere), while CLS and
        patches attend among themselves as usual, so a full-image mask reproduces the ordinary
        CLS embedding.

        Args:
            hidden: ``[B, 1 + h*w, W]`` from ``forward(..., keep_hidden_before=L - n)``.
            masks: ``[B, K, h, w]`` bool on the patch grid.

        Returns:
            ``[B, K, D]`` region embeddings, not normalised.
        """
        batch, tokens, _ = hidden.shape
        num_regions = masks.shape[1]
        num_patches = tokens - 1
        allowed = torch.zeros(batch, tokens + num_regions, tokens + num_regions, dtype=torch.bool, device=hidden.device)
        allowed[:, :tokens, :tokens] = True
        allowed[:, tokens:, 1:tokens] = masks.reshape(batch, num_regions, num_patches)
        allowed[:, tokens:, tokens:] = torch.eye(num_regions, dtype=torch.bool, device=hidden.device)
        bias = torch.zeros(allowed.shape, dtype=hidden.dtype, device=hidden.device)
        bias.masked_fill_(~allowed, float("-inf")).unsqueeze_(1)  # [B, 1, T+K, T+K]
        x = torch.cat([hidden, hidden[:, :1].expand(-1, num_regions, -1)], dim=1)
        for block in self.visual.transformer.resblocks[self.region_start_layer :]:
            x = block_forward(block, x, bias)
        return self.project(x[:, tokens:])

    @property
    def region_start_layer(self) -> int:
        """Index of the first block the region tokens pass through."""
        return self.num_layers - self.region_layers

    def region_embeddings(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Frozen-CLIP region embeddings: ``images [B, 3, H, W]``, ``masks [B, K, h, w]`` -> ``[B, K, D]``."""
        hidden = self(images, use_prompts=False, keep_hidden_before=self.region_start_layer)["hidden"]
        return self.region_embeddings_from_hidden(hidden, masks)
