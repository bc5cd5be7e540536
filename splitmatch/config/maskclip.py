"""The configuration of the training-free MaskCLIP model: which CLIP, which prompts, how images are run.

A MaskCLIP model (:mod:`splitmatch.model.maskclip`) is a frozen CLIP and nothing else, so its
configuration is two sections: ``clip`` (``arch``, ``weights``, ``templates``) and
``inference`` (the same section a trained model has). Two presets describe it:

* ``maskclip-vitb16`` (``--model maskclip``): OpenAI's CLIP ViT-B/16, the photo model, run under
  the benchmarks' protocol (short side 512, sliding 512 windows at stride 426);
* ``maskclip-world``: the built-in world's packaged CLIP, run as the world preset runs its model.

``key=value`` overrides change them (``clip.weights=weights/ViT-B-16.safetensors``); keys of
the other sections of a training config (prompts, decoder, losses) mean nothing here and are
refused by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from splitmatch.config.architectures import ArchitectureError, clip_geometry
from splitmatch.config.errors import ConfigError
from splitmatch.config.loading import merge, parse_override
from splitmatch.config.rules import Choice, Text, config_fields, field_rules, setting
from splitmatch.config.schema import InferenceConfig
from splitmatch.packaged import WORLD_CLIP


@dataclass
class FrozenClipConfig:
    arch: str = setting("ViT-B-16-quickgelu", Text())  # open_clip model config name, or a model-config JSON
    # A file (.safetensors, open_clip .pt/.bin, OpenAI's TorchScript .pt), "packaged:NAME", or an
    # open_clip pretrained tag ("openai": downloaded once by open_clip into its cache).
    weights: str | None = setting("openai", Text(optional=True))
    # text prompts: "single" ("a photo of a {}.") or "ensemble" (CLIP's 80 ImageNet templates)
    templates: str = setting("ensemble", Choice(("single", "ensemble")))


@dataclass
class MaskClipConfig:
    name: str = setting("maskclip-vitb16", Text())
    clip: FrozenClipConfig = field(default_factory=FrozenClipConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    def validate(self) -> MaskClipConfig:
        """Checks every value against its rule and the sizes against the CLIP's patch; returns self."""
        values = config_fields(self)
        for key, rule in field_rules(self).items():
            value, annotation = values[key]
            if not rule.allows(value):
                raise ConfigError(f"{key} must be {rule.describe('int' in str(annotation))}, got {value!r}")
        if self.clip.weights is None:  # random weights would give labels that look like a result
            raise ConfigError(
                "clip.weights of a training-free model must name weights (a file, packaged:NAME or an open_clip "
                "tag such as openai), got null: it would run on random weights nobody chose"
            )
        inference = self.inference
        if inference.stride > inference.window:
            raise ConfigError(f"inference.stride ({inference.stride}) must not exceed inference.window "
                              f"({inference.window}): windows would leave pixels out")  # fmt: skip
        if inference.max_long_side < inference.short_side:
            raise ConfigError(f"inference.max_long_side ({inference.max_long_side}) must be at least "
                              f"inference.short_side ({inference.short_side})")  # fmt: skip
        try:
            patch, _ = clip_geometry(self.clip.arch)
        except ArchitectureError as problem:
            raise ConfigError(f"clip.arch: {problem}") from None
        for key in ("window", "short_side"):
            if getattr(inference, key) % patch:
                raise ConfigError(f"inference.{key} must be a multiple of the CLIP patch size {patch} "
                                  f"({self.clip.arch}), got {getattr(inference, key)}")  # fmt: skip
        return self


def maskclip_vitb16() -> MaskClipConfig:
    """OpenAI's CLIP ViT-B/16 (open_clip downloads it once), 80 prompt templates as CLIP's zero-shot
    classifier and MaskCLIP use them, the benchmarks' sliding-window protocol."""
    return MaskClipConfig(
        name="maskclip-vitb16",
        clip=FrozenClipConfig(arch="ViT-B-16-quickgelu", weights="openai", templates="ensemble"),
        inference=InferenceConfig(mode="slide", short_side=512, window=512, stride=426),
    )


def maskclip_world() -> MaskClipConfig:
    """The built-in world's packaged CLIP, with the one template its captions were written in and the
    world preset's inference settings, so that its numbers stand beside the trained world model's."""
    return MaskClipConfig(
        name="maskclip-world",
        clip=FrozenClipConfig(arch="world-clip", weights=WORLD_CLIP, templates="single"),
        inference=InferenceConfig(mode="whole", short_side=96, max_long_side=192, window=96, stride=64, amp="none"),
    )


MASKCLIP_PRESETS: dict[str, Callable[[], MaskClipConfig]] = {
    "maskclip-vitb16": maskclip_vitb16,
    "maskclip-world": maskclip_world,
}
MASKCLIP_ALIASES = {"maskclip": "maskclip-vitb16"}  # what `--model maskclip` means


def maskclip_config(
    name: str = "maskclip-vitb16", overrides: Sequence[str] = (), source: str = "--set"
) -> MaskClipConfig:
    """A MaskCLIP preset (or ``maskclip``, the ViT-B/16 one) with ``key=value`` overrides applied in
    order (``source`` names where they were typed), validated."""
    preset_name = MASKCLIP_ALIASES.get(name, name)
    if preset_name not in MASKCLIP_PRESETS:
        known = ", ".join([*MASKCLIP_ALIASES, *MASKCLIP_PRESETS])
        raise ConfigError(f"unknown MaskCLIP model '{name}' (known: {known})")
    config = MASKCLIP_PRESETS[preset_name]()
    for text in overrides:
        if not text.startswith(("clip.", "inference.")):
            raise ConfigError(f"{source} of a MaskCLIP model takes clip.arch, clip.weights, clip.templates and "
                              f"inference.* keys, got '{text}'")  # fmt: skip
        config = merge(config, parse_override(text))
    return config.validate()
