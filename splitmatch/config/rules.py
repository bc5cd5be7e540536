"""What every configuration value may be: the rule beside each field, then the relations between fields.

A field of the schema (:mod:`splitmatch.config.schema`) is declared with :func:`setting`, which
records its rule in the field's metadata, so a field cannot exist without one. :func:`check_config`
checks every value against its rule and then the relations between fields (divisibility, sizes
that must fit the CLIP architecture), so a value that is out of range stops the command at once
with a message naming the dotted key and what it may be, instead of crashing (or silently
misbehaving) hours later.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any

from splitmatch.config.architectures import ArchitectureError, clip_geometry
from splitmatch.config.errors import ConfigError, shown
from splitmatch.config.templates import load_templates

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
class Either:
    """A value that follows one of two rules (``data.num_workers``: a count, or ``"auto"``)."""

    first: Any
    second: Any

    def allows(self, value: Any) -> bool:
        return any(_follows(rule, value) for rule in (self.first, self.second))

    def describe(self, integer: bool) -> str:
        return f"{self.first.describe(integer)} or {self.second.describe(integer)}"


def _follows(rule: Any, value: Any) -> bool:
    """Whether ``value`` follows ``rule`` (a range takes numbers only)."""
    if isinstance(rule, Range) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return False
    return rule.allows(value)


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


@dataclass(frozen=True)
class Names:
    """A list of distinct, non-empty names (class names); ``optional``: or null."""

    optional: bool = False

    def allows(self, value: Any) -> bool:
        if value is None:
            return self.optional
        names = [name.strip() for name in value if isinstance(name, str)]
        return len(names) == len(value) and all(names) and len(set(names)) == len(names)

    def describe(self, integer: bool) -> str:
        return "a list of distinct, non-empty names" + (" or null" if self.optional else "")


@dataclass(frozen=True)
class OrNull:
    """What ``rule`` allows, or null (the key then means what its comment says)."""

    rule: Range

    def allows(self, value: Any) -> bool:
        return value is None or self.rule.allows(value)

    def describe(self, integer: bool) -> str:
        return f"{self.rule.describe(integer)} or null"


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
PROBABILITY = Range(0, 1)
WEIGHT = Range(0, note="0 turns the term off")
SIDE = Range(1, MAX_SIDE)


def setting(default: Any, rule: Any, compare: bool = True) -> Any:
    """A config field: its default and the rule its value must follow (lists and dicts are copied per instance)."""
    metadata = {"rule": rule}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), compare=compare, metadata=metadata)
    return dataclasses.field(default=default, compare=compare, metadata=metadata)


def config_fields(config: Any, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Every leaf field of a config dataclass: dotted key -> (value, annotation)."""
    return {key: (value, annotation) for key, (value, annotation, _) in _leaves(config, prefix).items()}


def field_rules(config: Any) -> dict[str, Any]:
    """Every leaf field of a config dataclass: dotted key -> its rule (``None`` for a field declared without one)."""
    return {key: rule for key, (_, _, rule) in _leaves(config).items()}


def _leaves(config: Any, prefix: str = "") -> dict[str, tuple[Any, Any, Any]]:
    hints = typing.get_type_hints(type(config))
    leaves = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        key = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(value):
            leaves.update(_leaves(value, f"{key}."))
        else:
            leaves[key] = (value, hints[field.name], field.metadata.get("rule"))
    return leaves


def check_config(config: Any) -> None:
    """Checks every field against its rule, then the relations between fields.

    Raises:
        ConfigError: naming the dotted key, what it may be and the value.
    """
    for key, (value, annotation, rule) in _leaves(config).items():
        if rule is None:
            raise ConfigError(f"config field '{key}' has no rule: declare it with setting(default, rule)")
        _check_value(key, value, rule, "int" in str(annotation), ConfigError)  # the type was checked when set
    _check_relations(config, ConfigError)


def check_field(key: str, value: Any, rule: Any, integer: bool) -> None:
    """One field against its rule (lists item by item); a :class:`ConfigError` naming ``key`` otherwise."""
    _check_value(key, value, rule, integer, ConfigError)


def _check_value(key: str, value: Any, rule: Any, integer: bool, error: type[Exception]) -> None:
    if isinstance(rule, Items):
        if not rule.length_ok(value):
            raise error(f"{key} must be a list of {rule.describe_length()}, got {shown(value)}")
        for index, item in enumerate(value):
            if not rule.item.allows(item):
                raise error(f"{key}[{index}] must be {rule.item.describe(integer)}, got {shown(item)}")
        if rule.distinct and len(set(value)) != len(value):
            raise error(f"{key} must not repeat a value, got {shown(value)}")
    elif not rule.allows(value):
        raise error(f"{key} must be {rule.describe(integer)}, got {shown(value)}")


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
    _check_class_selection(data, error)
    check_inference_relations(inference, error)
    pseudo = config.pseudo
    if pseudo.min_area_per_scale and len(pseudo.min_area_per_scale) != len(pseudo.window_sizes):
        raise error(
            f"pseudo.min_area_per_scale needs one value per window size {pseudo.window_sizes} (or none: "
            f"pseudo.min_area at every scale), got {pseudo.min_area_per_scale}"
        )
    if train.min_lr > train.lr:
        raise error(f"train.min_lr ({train.min_lr:g}) must not exceed train.lr ({train.lr:g})")
    if train.batch_size % train.accumulate_steps:
        raise error(
            f"train.batch_size ({train.batch_size}) must split evenly into train.accumulate_steps "
            f"({train.accumulate_steps}) micro-batches"
        )
    _check_transductive(config, error)
    _check_against_clip(config, error)
    load_templates(config.clip.templates)  # a named set or a readable .json list: ConfigError names the problem


def _check_class_selection(data: Any, error: type[Exception]) -> None:
    """The keys that choose the seen / unseen split and the proxy: one way each, consistent."""
    if data.unseen is not None and data.unseen_fraction is not None:
        raise error(
            f"data.unseen ({data.unseen}) and data.unseen_fraction ({data.unseen_fraction:g}) both choose the "
            "unseen classes; set one of them (the other null)"
        )
    proxy = data.proxy
    if proxy.classes is not None and proxy.count is not None and proxy.count != len(proxy.classes):
        raise error(
            f"data.proxy.count ({proxy.count}) differs from the {len(proxy.classes)} classes data.proxy.classes "
            f"lists ({proxy.classes}); set one of them (the other null)"
        )
    if proxy.classes == []:
        raise error("data.proxy.classes is empty: a proxy holds out at least one seen class (null: data.proxy.count)")


def _check_transductive(config: Any, error: type[Exception]) -> None:
    """Self-training needs ignored unseen pixels to label, and no proxy (whose rule is that the
    benchmark's unseen names never reach the model)."""
    if not config.train.transductive:
        return
    if config.data.unseen_pixels != "ignore":
        raise error(
            f"train.transductive labels unseen pixels, but data.unseen_pixels={config.data.unseen_pixels!r} makes "
            "unseen pixels background; set data.unseen_pixels=ignore"
        )
    if config.data.proxy.enabled:
        raise error(
            "train.transductive would name the benchmark's unseen classes to a proxy run (data.proxy.enabled), "
            "which never uses them; train the proxy inductively"
        )


def check_switched_off(config: Any, error: type[Exception] = ConfigError) -> None:
    """Settings that act only under a switch (``train.transductive_*``, ``data.proxy.*``) are refused
    away from their default while it is off: a run would ignore them without a word. Checked where a
    user's config is built (:func:`~splitmatch.config.presets.load_config`), not where a stored one is
    read, so a checkpoint or run recorded with such a setting still loads."""
    groups = (
        ("train.transductive", config.train.transductive, config.train, "train.", "transductive_"),
        ("data.proxy.enabled", config.data.proxy.enabled, config.data.proxy, "data.proxy.", ""),
    )
    for switch, on, section, prefix, start in groups:
        if on:
            continue
        defaults = type(section)()  # the dataclass's own defaults, what "not set" means
        for field in dataclasses.fields(section):
            name, value = field.name, getattr(section, field.name)
            if name.startswith(start) and f"{prefix}{name}" != switch and value != getattr(defaults, name):
                raise error(
                    f"{prefix}{name}={shown(value)} applies only with {switch}=true, which is off: it would be "
                    f"ignored; set {switch}=true or leave {prefix}{name} out"
                )


def check_inference_relations(inference: Any, error: type[Exception]) -> None:
    """The ``inference`` section's values against each other: windows that cover every pixel, a
    long-side bound no shorter than the short side (a trained model's and a training-free one's)."""
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


def check_patch_multiples(sides: dict[str, int], arch: str, error: type[Exception]) -> int:
    """Refuses a side (dotted key -> pixels) that is no multiple of the CLIP ``arch``'s patch, naming
    the nearest that are; returns the number of blocks of ``arch``."""
    try:
        patch, layers = clip_geometry(arch)
    except ArchitectureError as problem:
        raise error(f"clip.arch: {problem}") from None
    for key, side in sides.items():
        if side % patch:
            lower, upper = max(patch, side // patch * patch), (side // patch + 1) * patch
            raise error(
                f"{key} must be a multiple of the CLIP patch size {patch} ({arch}), got {side} "
                f"(nearest: {lower} or {upper})"
            )
    return layers


def _check_against_clip(config: Any, error: type[Exception]) -> None:
    """Sizes that must fit the CLIP architecture: whole patches, existing blocks."""
    sides = {
        "data.crop_size": config.data.crop_size,
        "inference.window": config.inference.window,
        "inference.short_side": config.inference.short_side,
        "pseudo.input_size": config.pseudo.input_size,
    }
    layers = check_patch_multiples(sides, config.clip.arch, error)
    clip = config.clip
    if clip.prompt_layers > layers:
        raise error(
            f"clip.prompt_layers must be an integer in 0..{layers} ({clip.arch} has {layers} blocks), "
            f"got {clip.prompt_layers}"
        )
    if clip.region_layers > layers:
        raise error(
            f"clip.region_layers must be an integer in 1..{layers} ({clip.arch} has {layers} blocks), "
            f"got {clip.region_layers}"
        )
    outside = [i for i in clip.decoder_layers if i >= layers]
    if outside and config.decoder.fuse_intermediate:
        raise error(
            f"clip.decoder_layers must be block indices in 0..{layers - 1} ({clip.arch} has {layers} "
            f"blocks), got {clip.decoder_layers}"
        )
