"""The names of the training-free MaskCLIP configuration in version 0.2, kept for code that uses them.

MaskCLIP is now one recipe among the training-free models of
:mod:`splitmatch.config.training_free`; ``maskclip`` means MaskCLIP's own reading of CLIP's last
block (residual and feed-forward kept, its 85 templates), and this project's earlier reading
(values alone) is the ``value-path`` recipe.
"""

from __future__ import annotations

from collections.abc import Sequence

from splitmatch.config.training_free import (
    TRAINING_FREE_PRESETS,
    FrozenClipConfig,
    TrainingFreeConfig,
    recipe_preset,
    training_free_config,
)

MaskClipConfig = TrainingFreeConfig
MASKCLIP_PRESETS = {name: make for name, make in TRAINING_FREE_PRESETS.items() if name.startswith("maskclip-")}
MASKCLIP_ALIASES = {"maskclip": "maskclip-vitb16"}

__all__ = ["FrozenClipConfig", "MaskClipConfig", "MASKCLIP_ALIASES", "MASKCLIP_PRESETS", "maskclip_config"]


def maskclip_vitb16() -> TrainingFreeConfig:
    """MaskCLIP on OpenAI's CLIP ViT-B/16 under the benchmarks' protocol (the ``maskclip-vitb16`` preset)."""
    return recipe_preset("maskclip", "vitb16")


def maskclip_world() -> TrainingFreeConfig:
    """MaskCLIP on the built-in world's packaged CLIP (the ``maskclip-world`` preset)."""
    return recipe_preset("maskclip", "world")


def maskclip_config(
    name: str = "maskclip-vitb16", overrides: Sequence[str] = (), source: str = "--set"
) -> TrainingFreeConfig:
    """Any training-free preset by name (:func:`splitmatch.config.training_free.training_free_config`)."""
    return training_free_config(name, overrides, source)
