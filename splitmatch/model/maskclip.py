"""The names of the training-free MaskCLIP model in version 0.2, kept for code that uses them.

The model is :class:`splitmatch.model.training_free.TrainingFreeSegmentor`, which reads CLIP's last
block by any recipe of :mod:`splitmatch.clip.dense_recipes`; MaskCLIP's own reading is the
``maskclip`` recipe, this project's earlier one (values alone) ``value-path``.
"""

from __future__ import annotations

from splitmatch.config.training_free import FrozenClipConfig, RecipeConfig
from splitmatch.model.training_free import MAX_LOGIT_SCALE, TrainingFreeSegmentor, build_training_free

MaskClipSegmentor = TrainingFreeSegmentor

__all__ = ["MAX_LOGIT_SCALE", "MaskClipSegmentor", "build_maskclip"]


def build_maskclip(clip_cfg: FrozenClipConfig, recipe_cfg: RecipeConfig | None = None) -> TrainingFreeSegmentor:
    """A training-free segmentor from the ``clip`` section, MaskCLIP's recipe unless ``recipe_cfg`` says
    otherwise (:func:`splitmatch.model.training_free.build_training_free`)."""
    return build_training_free(clip_cfg, recipe_cfg)
