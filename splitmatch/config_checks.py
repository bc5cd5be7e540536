"""What every configuration value may be: one rule per field, then the relations between fields.

:meth:`splitmatch.config.ExperimentConfig.validate` runs these checks whenever a config is
built (preset, YAML file, ``--set`` overrides, a checkpoint's record), so a value that is out of
range stops the command at once with a message naming the dotted key and what it may be,
instead of crashing (or silently misbehaving) hours later. Every field of the config has a rule
here; the test suite checks that none is missing.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

# Upper bounds on sizes are generous; they catch typos (an extra zero) before a huge allocation.
MAX_SIDE = 16384  # pixels of a crop, window or input side
MAX_WIDTH = 65536  # channels of a layer
MAX_COUNT = 100_000  # queries, prompt tokens, layers...


@dataclass(frozen=True)
class Range:
    """A number in ``[low, high]`` (either end open or absent); ``note`` explains a special value."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    note: str = ""

    def allows(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def describe(self, integer: bool) -> str:
        kind = "an integer" if integer else "a finite number"
        if self.low is not None and self.high is not None:
            if integer and not self.low_open and not self.high_open:
                text = f"{kind} in {self.low:g}..{self.high:g}"
            else:
                left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
                text = f"{kind} in {left}{self.low:g}, {self.high:g}{right}"
        elif self.low is not None:
            text = f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        elif self.high is not None:
            text = f"{kind} {'<' if self.high_open else '<='} {self.high:g}"
        else:
            text = kind
        return f"{text} ({self.note})" if self.note else text


@dataclass(frozen=True)
class Choice:
    values: tuple

    def allows(self, value: Any) -> bool:
        return value in self.values

    def describe(self, integer: bool) -> str:
        return f"one of {list(self.values)}"


@dataclass(frozen=True)
class Text:
    """A string (``optional``: or null); never empty, since an empty name or path means nothing."""

    optional: bool = False

    def allows(self, value: Any) -> bool:
        return (value is None and self.optional) or (isinstance(value, str) and value.strip() != "")

    def describe(self, integer: bool) -> str:
        return "a non-empty string" + (" or null" if self.optional else "")


@dataclass(frozen=True)
class TextMap:
    """A mapping of strings to strings (bookkeeping, e.g. paths as they were written)."""

    def allows(self, value: Any) -> bool:
        return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())

    def describe(self, integer: bool) -> str:
        return "a mapping of strings to strings"


@dataclass(frozen=True)
class Flag:
    def allows(self, value: Any) -> bool:
        return isinstance(value, bool)

    def describe(self, integer: bool) -> str:
        return "true or false"


@dataclass(frozen=True)
class Items:
    """A list whose every item follows ``item``, of ``min_len..max_len`` items."""

    item: Range
    min_len: int = 1
    max_len: int | None = None
    distinct: bool = False

    def length_ok(self, values: list) -> bool:
        return len(values) >= self.min_len and (self.max_len is None or len(values) <= self.max_len)

    def describe_length(self) -> str:
        if self.max_len == self.min_len:
            return f"exactly {self.min_len} items"
        return f"at least {self.min_len} item{'s' if self.min_len != 1 else ''}" + (
            f" and at most {self.max_len}" if self.max_len is not None else ""
        )


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
PROBABILITY = Range(0, 1)
WEIGHT = Range(0, note="0 turns the term off")
SIDE = Range(1, MAX_SIDE)

RULES: dict[str, Any] = {
    "name": Text(),
    "clip.arch": Text(),
    "clip.weights": Text(optional=True),
    "clip.prompt_tokens": Range(0, MAX_COUNT, note="0 disables prompts"),
    "clip.prompt_layers": Range(0, MAX_COUNT),
    "clip.decoder_layers": Items(Range(0, MAX_COUNT), min_len=0, distinct=True),
    "clip.region_layers": Range(1, MAX_COUNT),
    "clip.templates": Choice(("single", "ensemble")),
    "decoder.hidden_dim": Range(1, MAX_WIDTH),
    "decoder.num_layers": Range(1, MAX_COUNT),
    "decoder.num_heads": Range(1, MAX_WIDTH),
    "decoder.ffn_dim": Range(1, MAX_WIDTH),
    "decoder.num_seen_queries": Range(1, MAX_COUNT),
    "decoder.num_candidate_queries": Range(0, MAX_COUNT),
    "decoder.mfe": Flag(),
    "decoder.mfe_pool_factors": Items(Range(1, MAX_SIDE), distinct=True),
    "decoder.fuse_intermediate": Flag(),
    "decoder.masked_attention": Flag(),
    "decoder.mask_upsample": Choice((1, 2, 4)),
    "decoder.logit_temperature": POSITIVE,
    "decoder.group_embed_heads": Flag(),
    "pseudo.dense_features": Choice(("value", "tokens")),
    "pseudo.input_size": SIDE,
    "pseudo.window_sizes": Items(Range(1, MAX_SIDE), distinct=True),
    "pseudo.iterations": Range(1, MAX_COUNT),
    "pseudo.rho": Range(0, 1, low_open=True),
    "pseudo.min_area": Range(0, 1, high_open=True),
    "pseudo.min_crop_area": Range(0, 1, high_open=True, note="0 keeps every target"),
    "pseudo.dedup_iou": Range(0, 1, low_open=True),
    "pseudo.max_masks": Range(1, 254, note="the cache's index maps are 8-bit, 0 meaning none"),
    "pseudo.components": Flag(),
    "pseudo.region_embedding": Choice(("masked_cls", "crop")),
    "pseudo.crop_context": Range(1, 100, note="1 is the mask's own bounding box"),
    "pseudo.cache_dir": Text(optional=True),
    "loss.matching": Choice(("split", "hungarian")),
    "loss.cost_class": WEIGHT,
    "loss.cost_bce": WEIGHT,
    "loss.cost_dice": WEIGHT,
    "loss.cost_embed": WEIGHT,
    "loss.weight_class": WEIGHT,
    "loss.weight_bce": WEIGHT,
    "loss.weight_dice": WEIGHT,
    "loss.weight_embed": WEIGHT,
    "loss.candidate_weight": WEIGHT,
    "loss.no_object_weight": WEIGHT,
    "loss.num_points": Range(1, 10_000_000),
    "loss.oversample_ratio": Range(1, 100),
    "loss.importance_sample_ratio": PROBABILITY,
    "loss.deep_supervision": Flag(),
    "loss.candidate_sampling": Choice(("uniform", "importance")),
    "data.root": Text(),
    "data.train_split": Text(),
    "data.val_split": Text(),
    "data.crop_size": SIDE,
    "data.resize_scale": Items(Range(1, 4 * MAX_SIDE), min_len=2, max_len=2),
    "data.ratio_range": Items(Range(0, 100, low_open=True), min_len=2, max_len=2),
    "data.cat_max_ratio": Range(0, 1, low_open=True, note="1 turns the check off"),
    "data.flip_prob": PROBABILITY,
    "data.photometric": Flag(),
    "data.num_workers": Range(0, 1024),
    "data.pad_fill": Choice(("mean", "black")),
    "train.iterations": Range(1, 10**9),
    "train.batch_size": Range(1, MAX_COUNT),
    "train.accumulate_steps": Range(1, MAX_COUNT, note="micro-batches per step"),
    "train.lr": POSITIVE,
    "train.head_lr_multiplier": POSITIVE,
    "train.weight_decay": NON_NEGATIVE,
    "train.decay_prompts": Flag(),
    "train.poly_power": NON_NEGATIVE,
    "train.warmup_iterations": Range(0, 10**9, note="0 disables warm-up"),
    "train.warmup_ratio": Range(0, 1, low_open=True),
    "train.min_lr": NON_NEGATIVE,
    "train.grad_clip": Range(0, note="0 disables clipping"),
    "train.seed": Range(0, 2**63 - 1),
    "train.amp": Choice(("none", "bf16", "fp16")),
    "train.deterministic": Flag(),
    "train.log_every": Range(1, 10**9),
    "train.checkpoint_every": Range(1, 10**9),
    "train.keep_checkpoints": Range(0, 10**6, note="0 keeps every checkpoint"),
    "train.eval_every": Range(0, 10**9, note="0 evaluates once at the end"),
    "train.tensorboard": Flag(),
    "inference.mode": Choice(("slide", "whole")),
    "inference.short_side": SIDE,
    "inference.max_long_side": Range(1, 4 * MAX_SIDE),
    "inference.window": SIDE,
    "inference.stride": SIDE,
    "inference.seen_calibration": Range(0, 1, note="ZegCLIP uses 0.1"),
    "inference.amp": Choice(("none", "bf16", "fp16")),
    "inference.candidate_scoring": Choice(("classes", "no_object", "excluded")),
    "inference.candidate_temperature": Range(0, note="0: decoder.logit_temperature"),
    "inference.candidate_weight": Range(0, note="0 leaves the candidates' class scores out"),
    "inference.candidate_mask_confidence": Flag(),
    "given_paths": TextMap(),
}


def config_fields(config: Any, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Every leaf field of a config dataclass: dotted key -> (value, annotation)."""
    import typing

    hints = typing.get_type_hints(type(config))
    leaves = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        key = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(value):
            leaves.update(config_fields(value, f"{key}."))
        else:
            leaves[key] = (value, hints[field.name])
    return leaves


def check_config(config: Any) -> None:
    """Checks every field against its rule, then the relations between fields.

    Raises:
        splitmatch.config.ConfigError: naming the dotted key, what it may be and the value.
    """
    from splitmatch.config import ConfigError

    for key, (value, annotation) in config_fields(config).items():
        if key in RULES:  # every field has one (a test checks); the type was checked when it was set
            _check_value(key, value, RULES[key], "int" in str(annotation), ConfigError)
    _check_relations(config, ConfigError)


def _check_value(key: str, value: Any, rule: Any, integer: bool, error: type[Exception]) -> None:
    if isinstance(rule, Items):
        if not rule.length_ok(value):
            raise error(f"{key} must be a list of {rule.describe_length()}, got {value!r}")
        for index, item in enumerate(value):
            if not rule.item.allows(item):
                raise error(f"{key}[{index}] must be {rule.item.describe(integer)}, got {item!r}")
        if rule.distinct and len(set(value)) != len(value):
            raise error(f"{key} must not repeat a value, got {value!r}")
    elif not rule.allows(value):
        raise error(f"{key} must be {rule.describe(integer)}, got {value!r}")


def _check_relations(config: Any, error: type[Exception]) -> None:
    decoder, data, inference, train = config.decoder, config.data, config.inference, config.train
    if decoder.hidden_dim % decoder.num_heads:
        raise error(
            f"decoder.hidden_dim ({decoder.hidden_dim}) must be divisible by decoder.num_heads ({decoder.num_heads})"
        )
    if config.loss.matching == "split" and decoder.num_candidate_queries < 1:
        raise error("loss.matching=split needs decoder.num_candidate_queries >= 1 (the candidate queries)")
    if data.ratio_range[0] > data.ratio_range[1]:
        raise error(f"data.ratio_range must be [low, high] with low <= high, got {data.ratio_range}")
    if inference.stride > inference.window:
        raise error(
            f"inference.stride ({inference.stride}) must not exceed inference.window ({inference.window}): "
            "windows would leave pixels out"
        )
    if inference.max_long_side < inference.short_side:
        raise error(
            f"inference.max_long_side ({inference.max_long_side}) must be at least inference.short_side "
            f"({inference.short_side})"
        )
    if train.min_lr > train.lr:
        raise error(f"train.min_lr ({train.min_lr:g}) must not exceed train.lr ({train.lr:g})")
    if train.batch_size % train.accumulate_steps:
        raise error(
            f"train.batch_size ({train.batch_size}) must split evenly into train.accumulate_steps "
            f"({train.accumulate_steps}) micro-batches"
        )
    _check_against_clip(config, error)


def clip_geometry(arch: str) -> tuple[int, int]:
    """``(patch size, number of ViT blocks)`` of a CLIP architecture, from its config alone.

    Raises:
        splitmatch.clip.loading.ClipWeightsError: the architecture is unknown or unreadable.
    """
    from splitmatch.clip.loading import ClipWeightsError, clip_model_config

    vision = clip_model_config(arch).get("vision_cfg", {})
    patch, layers = vision.get("patch_size"), vision.get("layers")
    if isinstance(patch, (list, tuple)) and len(set(patch)) == 1:
        patch = patch[0]
    if not isinstance(patch, int) or not isinstance(layers, int) or patch < 1 or layers < 1:
        raise ClipWeightsError(
            f"CLIP architecture '{arch}' needs a square integer vision_cfg.patch_size and integer "
            f"vision_cfg.layers (a plain ViT); got patch_size {patch!r}, layers {layers!r}"
        )
    return patch, layers


def _check_against_clip(config: Any, error: type[Exception]) -> None:
    """Sizes that must fit the CLIP architecture: whole patches, existing blocks."""
    from splitmatch.clip.loading import ClipWeightsError

    try:
        patch, layers = clip_geometry(config.clip.arch)
    except ClipWeightsError as problem:
        raise error(f"clip.arch: {problem}") from None
    sides = {
        "data.crop_size": config.data.crop_size,
        "inference.window": config.inference.window,
        "inference.short_side": config.inference.short_side,
        "pseudo.input_size": config.pseudo.input_size,
    }
    for key, side in sides.items():
        if side % patch:
            lower, upper = max(patch, side // patch * patch), (side // patch + 1) * patch
            raise error(
                f"{key} must be a multiple of the CLIP patch size {patch} ({config.clip.arch}), got {side} "
                f"(nearest: {lower} or {upper})"
            )
    clip = config.clip
    if clip.prompt_layers > layers:
        raise error(f"clip.prompt_layers must be an integer in 0..{layers} ({clip.arch} has {layers} blocks), "
                    f"got {clip.prompt_layers}")  # fmt: skip
    if clip.region_layers > layers:
        raise error(f"clip.region_layers must be an integer in 1..{layers} ({clip.arch} has {layers} blocks), "
                    f"got {clip.region_layers}")  # fmt: skip
    outside = [i for i in clip.decoder_layers if i >= layers]
    if outside and config.decoder.fuse_intermediate:
        raise error(f"clip.decoder_layers must be block indices in 0..{layers - 1} ({clip.arch} has {layers} "
                    f"blocks), got {clip.decoder_layers}")  # fmt: skip
