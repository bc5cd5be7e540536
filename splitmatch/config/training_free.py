"""The configuration of the training-free models: which CLIP, which recipe, which prompts, how images run.

A training-free model (:mod:`splitmatch.model.training_free`) is a frozen CLIP read by a
recipe and nothing else, so its configuration is three sections: ``clip`` (``arch``,
``weights``, ``templates``, ``pos_interpolation``), ``recipe`` (``name``, ``logit_scale``,
PAMR) and ``inference`` (the same section a trained model has). For each recipe ``R`` of
:data:`RECIPE_NAMES` three presets describe it (docs/training-free.md):

* ``R-vitb16`` (``--model R``): OpenAI's CLIP ViT-B/16 under the benchmarks' protocol (short
  side 512, sliding 512 windows at stride 426), so that its numbers stand beside a trained model's;
* ``R-authors``: the same model under the protocol of the recipe's authors (their configs' short
  side, window and stride), to reproduce their table's row (not for ``value-path``, which is ours);
* ``R-world``: the built-in world's packaged CLIP, run as the world preset runs its model.

Each recipe's templates, positional-embedding resize, logit scale and PAMR are its authors'
(:data:`RECIPE_DEFAULTS`). ``key=value`` overrides change them (``clip.weights=weights/ViT-B-16.safetensors``);
keys of the other sections of a training config mean nothing here and are refused by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from splitmatch.config.errors import ConfigError
from splitmatch.config.loading import merge, parse_override
from splitmatch.config.rules import (
    MAX_SIDE,
    Choice,
    Items,
    Range,
    Text,
    check_field,
    check_inference_relations,
    check_patch_multiples,
    config_fields,
    field_rules,
    setting,
)
from splitmatch.config.schema import InferenceConfig
from splitmatch.config.templates import TemplateChoice
from splitmatch.packaged import WORLD_CLIP

# The recipes of splitmatch.clip.dense_recipes.RECIPES (the config floor imports no CLIP code).
RECIPE_NAMES = ("value-path", "maskclip", "clearclip", "sclip", "naclip", "scclip")
# How messages and pages name each recipe.
RECIPE_TITLES = {
    "value-path": "value path",
    "maskclip": "MaskCLIP",
    "clearclip": "ClearCLIP",
    "sclip": "SCLIP",
    "naclip": "NACLIP",
    "scclip": "SC-CLIP",
}
POS_INTERPOLATIONS = ("bicubic", "bilinear", "bicubic_antialias", "bicubic_scale")


@dataclass
class FrozenClipConfig:
    arch: str = setting("ViT-B-16-quickgelu", Text())  # open_clip model config name, or a model-config JSON
    # A file (.safetensors, open_clip .pt/.bin, OpenAI's TorchScript .pt), "packaged:NAME", or an
    # open_clip pretrained tag ("openai": downloaded once by open_clip into its cache).
    weights: str | None = setting("openai", Text(optional=True))
    # text prompts: a shipped set ("single", "ensemble": CLIP's 80, "maskclip": MaskCLIP's 85...) or a .json file
    templates: str = setting("ensemble", TemplateChoice())
    # how the positional embedding is resized to another grid (splitmatch.clip.image_encoder.POS_INTERPOLATION)
    pos_interpolation: str = setting("bicubic", Choice(POS_INTERPOLATIONS))


@dataclass
class RecipeConfig:
    name: str = setting("maskclip", Choice(RECIPE_NAMES))  # which reading of CLIP's last block
    # s in softmax(s * cos(feature, text)); 0: CLIP's own learned scale, at most 100
    logit_scale: float = setting(0.0, Range(0, 1000, note="0: CLIP's own"))
    # PAMR refinement of the scores at the image's size (0 steps: off), dilations in pixels
    pamr_steps: int = setting(0, Range(0, 100, note="0 turns PAMR off"))
    pamr_dilations: list[int] = setting([8, 16], Items(Range(1, MAX_SIDE)))


@dataclass
class TrainingFreeConfig:
    name: str = setting("maskclip-vitb16", Text())
    clip: FrozenClipConfig = field(default_factory=FrozenClipConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    def validate(self) -> TrainingFreeConfig:
        """Checks every value against its rule and the sizes against the CLIP's patch; returns self."""
        values = config_fields(self)
        for key, rule in field_rules(self).items():
            value, annotation = values[key]
            check_field(key, value, rule, "int" in str(annotation))
        if self.clip.weights is None:  # random weights would give labels that look like a result
            raise ConfigError(
                "clip.weights of a training-free model must name weights (a file, packaged:NAME or an open_clip "
                "tag such as openai), got null: it would run on random weights nobody chose"
            )
        check_inference_relations(self.inference, ConfigError)
        sides = {f"inference.{key}": getattr(self.inference, key) for key in ("window", "short_side")}
        check_patch_multiples(sides, self.clip.arch, ConfigError)
        return self


@dataclass(frozen=True)
class RecipeDefaults:
    """What a recipe's authors' code uses (docs/training-free.md names the lines)."""

    templates: str  # their prompt templates
    pos_interpolation: str  # how their code resizes the positional embedding
    logit_scale: float  # their softmax scale (0: CLIP's own)
    pamr_steps: int  # their default PAMR iterations (0: none)
    authors_protocol: dict | None  # their configs' inference: short side, mode, window, stride


_AUTHORS_336 = {"mode": "slide", "short_side": 336, "window": 224, "stride": 112}
RECIPE_DEFAULTS = {
    "value-path": RecipeDefaults("ensemble", "bicubic", 0.0, 0, None),
    "maskclip": RecipeDefaults("maskclip", "bicubic", 0.0, 0, {"mode": "whole", "short_side": 512}),
    "clearclip": RecipeDefaults(
        "ensemble", "bicubic_scale", 50.0, 0, {"mode": "slide", "short_side": 448, "window": 448, "stride": 224}
    ),
    "sclip": RecipeDefaults("ensemble", "bicubic_scale", 40.0, 0, _AUTHORS_336),
    "naclip": RecipeDefaults("ensemble", "bicubic_scale", 40.0, 10, _AUTHORS_336),
    "scclip": RecipeDefaults("ensemble", "bicubic_scale", 40.0, 0, _AUTHORS_336),
}
BENCHMARK_PROTOCOL = {"mode": "slide", "short_side": 512, "window": 512, "stride": 426}
WORLD_PROTOCOL = {"mode": "whole", "short_side": 96, "max_long_side": 192, "window": 96, "stride": 64, "amp": "none"}


def recipe_preset(recipe: str, where: str) -> TrainingFreeConfig:
    """A recipe's preset: ``where`` is ``vitb16`` (the benchmarks' protocol), ``authors`` (its authors'
    protocol) or ``world`` (the built-in world's CLIP, with the one template its captions were
    written in and the world preset's inference settings)."""
    defaults = RECIPE_DEFAULTS[recipe]
    recipe_cfg = RecipeConfig(recipe, defaults.logit_scale, defaults.pamr_steps)
    if where == "world":
        clip = FrozenClipConfig("world-clip", WORLD_CLIP, "single", defaults.pos_interpolation)
        return TrainingFreeConfig(f"{recipe}-world", clip, recipe_cfg, InferenceConfig(**WORLD_PROTOCOL))
    protocol = defaults.authors_protocol if where == "authors" else BENCHMARK_PROTOCOL
    clip = FrozenClipConfig("ViT-B-16-quickgelu", "openai", defaults.templates, defaults.pos_interpolation)
    return TrainingFreeConfig(f"{recipe}-{where}", clip, recipe_cfg, InferenceConfig(**protocol))


TRAINING_FREE_PRESETS: dict[str, Callable[[], TrainingFreeConfig]] = {
    f"{recipe}-{where}": partial(recipe_preset, recipe, where)
    for recipe in RECIPE_NAMES
    for where in ("vitb16", "authors", "world")
    if where != "authors" or RECIPE_DEFAULTS[recipe].authors_protocol is not None
}
TRAINING_FREE_ALIASES = {recipe: f"{recipe}-vitb16" for recipe in RECIPE_NAMES}  # what `--model sclip` means
OVERRIDE_SECTIONS = ("clip.", "recipe.", "inference.")


def describe_training_free(config: TrainingFreeConfig) -> str:
    """One line saying what a training-free model is, for the commands' first line of output."""
    title = RECIPE_TITLES[config.recipe.name]
    return f"{config.name}, training-free {title} on CLIP {config.clip.arch} (weights {config.clip.weights})"


def training_free_names() -> list[str]:
    """Every name ``--model`` takes for a training-free model: the aliases, then the presets."""
    return [*TRAINING_FREE_ALIASES, *TRAINING_FREE_PRESETS]


def training_free_config(
    name: str = "maskclip-vitb16", overrides: Sequence[str] = (), source: str = "--set"
) -> TrainingFreeConfig:
    """A training-free preset (or a recipe's name, its ViT-B/16 preset) with ``key=value`` overrides
    applied in order (``source`` names where they were typed), validated."""
    preset_name = TRAINING_FREE_ALIASES.get(name, name)
    if preset_name not in TRAINING_FREE_PRESETS:
        raise ConfigError(f"unknown training-free model {name!r} (known: {', '.join(training_free_names())})")
    config = TRAINING_FREE_PRESETS[preset_name]()
    for text in overrides:
        if not text.startswith(OVERRIDE_SECTIONS):
            raise ConfigError(
                f"{source} of a training-free model takes clip.*, recipe.* and inference.* keys "
                f"(clip: arch, weights, templates, pos_interpolation), got '{text}'"
            )
        config = merge(config, parse_override(text))
    config.validate()
    chosen = TRAINING_FREE_PRESETS[preset_name]().recipe.name
    if config.recipe.name != chosen:  # the preset's templates, scale and protocol are the chosen recipe's
        instead = preset_name.replace(chosen, config.recipe.name, 1)
        raise ConfigError(
            f"recipe.name={config.recipe.name!r} in {source} contradicts the model {name!r}, whose recipe is "
            f"{chosen!r}: choose the recipe by the model's name (e.g. {instead}), not by {source}"
        )
    return config
