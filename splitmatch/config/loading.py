"""Building a config: YAML files, dotted command-line overrides, typed merging and paths.

A run's configuration is resolved in three layers (:func:`splitmatch.config.presets.load_config`):
a named preset, then a YAML file, then ``key=value`` overrides such as ``train.lr=1e-4``. Unknown
keys and values of the wrong type are refused with the full dotted name. Relative paths are made
absolute against the current folder (:func:`resolve_paths`). The resolved config is written beside
every run and inside every checkpoint. docs/configuration.md describes the layers, paths and devices.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from splitmatch.config.bounded_yaml import MAX_BYTES, load_bounded
from splitmatch.config.errors import ConfigError, shown
from splitmatch.config.schema import ExperimentConfig
from splitmatch.packaged import is_packaged_name
from splitmatch.storage.files import atomic_write_bytes


def to_dict(config: Any) -> dict:
    """The config as plain nested dicts and lists (YAML/JSON-ready)."""
    return dataclasses.asdict(config)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Checks and converts one value to a field's annotated type."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {shown(value)}")
    if origin is dict:
        key_type, value_type = typing.get_args(annotation)
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {shown(value)}")
        return {_coerce(k, key_type, key): _coerce(v, value_type, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {shown(value)}")
        return [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {shown(value)}")
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, int, float)):
        # a NumPy scalar (np.int64 read from an array, np.float32), as the Python number it stands for
        value = int(value) if isinstance(value, numbers.Integral) else float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key} must be an integer, got {shown(value)}")
        return value
    if annotation is float:
        if isinstance(value, str):
            # YAML 1.1 reads "1e-4" (no dot) as a string; accept any spelling Python reads as a number.
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{key} must be a number, got {shown(value)}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {shown(value)}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {shown(value)}")
        bad = next((char for char in value if _unwritable(char)), None)
        if bad is not None:  # a NUL cannot be part of a path, a lone surrogate cannot be written as UTF-8
            raise ConfigError(f"{key} holds the character {ascii(bad)}, which a config value cannot hold")
        return value
    raise ConfigError(f"{key}: unsupported field type {annotation}")


def _unwritable(char: str) -> bool:
    """A control character other than tab and line breaks, or half of a UTF-16 pair."""
    return (char < " " and char not in "\t\n\r") or char == "\x7f" or "\ud800" <= char <= "\udfff"


def merge(config: Any, updates: dict, prefix: str = "") -> Any:
    """Returns a copy of a config dataclass with nested ``updates`` applied, refusing unknown keys."""
    if not isinstance(updates, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping of keys, got {shown(updates)}")
    hints = typing.get_type_hints(type(config))
    names = {f.name for f in dataclasses.fields(config)}
    changes = {}
    for key, value in updates.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key {shown(dotted)} (known: {', '.join(sorted(names))})")
        current = getattr(config, key)
        if dataclasses.is_dataclass(current):
            changes[key] = merge(current, value, prefix=f"{dotted}.")
        else:
            changes[key] = _coerce(value, hints[key], dotted)
    return dataclasses.replace(config, **changes)


MAX_KEY_PARTS = 8  # the deepest config key is data.proxy.count, three parts; a longer one names nothing


def parse_override(text: str) -> dict:
    """``"train.lr=1e-4"`` -> ``{"train": {"lr": 0.0001}}``; the value is read as YAML, within
    the bounds of :mod:`splitmatch.config.bounded_yaml`."""
    quoted = shown(text)
    if "=" not in text:
        raise ConfigError(f"override {quoted} must look like key.sub=value")
    key, raw = text.split("=", 1)
    with _yaml_read_as(f"override {quoted}: the value"):
        value = load_bounded(raw, f"the value of override {quoted}") if raw.strip() else ""
    parts = key.strip().split(".")
    if len(parts) > MAX_KEY_PARTS:
        raise ConfigError(
            f"override {quoted} has a key of {len(parts)} parts; config keys have at most three (data.proxy.count)"
        )
    nested: dict = value
    for part in reversed(parts):
        if not part:
            raise ConfigError(f"override {quoted} has an empty key part")
        nested = {part: nested}
    return nested


@contextmanager
def _yaml_read_as(what: str) -> Iterator[None]:
    """Parsing errors of the YAML text named ``what`` as one-line ConfigErrors, for config files
    and ``--set`` values alike."""
    try:
        yield
    except yaml.YAMLError as error:
        raise ConfigError(f"{what} is not valid YAML ({_yaml_problem(error)})") from None
    except ConfigError:
        raise
    except (ValueError, RecursionError) as error:  # an integer beyond Python's digit limit
        raise ConfigError(f"{what} cannot be read ({shown(str(error))})") from None


def _yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where (PyYAML's own text spans several lines)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or type(error).__name__
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem[:200]}"  # a problem may quote the text (an undefined alias's name)


def read_yaml(path: str | Path) -> dict:
    """A YAML config file's top-level mapping (empty for an empty file), or one-line ConfigError."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:  # read no more than a config can be
            raw = handle.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise ConfigError(f"config file {path} is over {MAX_BYTES:,} bytes; a config is a few kilobytes of YAML")
        text = raw.decode("utf-8")
        with _yaml_read_as(f"config file {path}"):
            data = load_bounded(text, f"config file {path}")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder, not a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not YAML text (it is not UTF-8; a binary file?)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of sections (train:, data:, ...) at top level, "
            f"not a {type(data).__name__}"
        )
    return data


def from_dict(data: dict) -> ExperimentConfig:
    """Rebuilds a config from :func:`to_dict`'s form (e.g. out of a checkpoint), strictly."""
    return merge(ExperimentConfig(), data).validate()


# Keys whose values name files or folders; resolve_paths makes relative ones absolute.
PATH_KEYS = ("data.root", "clip.weights", "clip.arch", "clip.templates", "pseudo.cache_dir")


def weights_name_is_path(weights: str, base: str | Path | None = None) -> bool:
    """Whether a ``clip.weights`` value names a file (rather than an open_clip pretrained tag
    such as ``openai``, or a ``packaged:`` name); relative names are looked up in ``base``."""
    if is_packaged_name(weights):
        return False
    path = Path(weights).expanduser()
    exists = (Path(base) / path if base is not None else path).exists()
    return exists or path.suffix in (".pt", ".pth", ".bin", ".safetensors") or "/" in weights


def _names_a_path(key: str, value: str | None, base: Path) -> bool:
    if not value:
        return False
    if key == "clip.weights":
        return weights_name_is_path(value, base)
    if key in ("clip.arch", "clip.templates"):  # a name (ViT-B-16-quickgelu, zegclip-multi) or a JSON file
        return value.endswith(".json")
    return True


def resolve_paths(config: ExperimentConfig, base: str | Path | None = None) -> ExperimentConfig:
    """A copy of ``config`` whose relative paths (:data:`PATH_KEYS`) are absolute.

    Every relative path, whether it comes from a preset, a YAML file or ``--set``, means a path
    relative to ``base`` (default: the current folder), as the paths typed in the same command
    do; ``~`` is expanded. The values as written are kept in ``given_paths`` for messages.
    Absolute paths, open_clip tags and ``packaged:`` names are left as they are, so calling
    this twice changes nothing.
    """
    base = Path(os.getcwd() if base is None else base)
    given = dict(config.given_paths)
    changes: dict[str, dict] = {}
    for key in PATH_KEYS:
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if not _names_a_path(key, value, base) or Path(value).is_absolute():
            continue
        absolute = Path(value).expanduser()
        absolute = Path(os.path.normpath(absolute if absolute.is_absolute() else base / absolute))
        changes.setdefault(section, {})[name] = str(absolute)
        given[key] = value
    resolved = merge(config, changes) if changes else config
    return dataclasses.replace(resolved, given_paths=given)


def describe_path(config: ExperimentConfig, key: str) -> str:
    """A path key's value for messages: ``/abs/data/voc (given as data/voc)``."""
    section, name = key.split(".")
    value = getattr(getattr(config, section), name)
    given = config.given_paths.get(key)
    return f"{value} (given as {given})" if given and given != value else f"{value}"


def save_yaml(config: ExperimentConfig, path: str | Path) -> None:
    """Writes the resolved config as YAML, atomically (the ``config.yaml`` of every run)."""
    atomic_write_bytes(path, yaml.safe_dump(to_dict(config), sort_keys=False).encode("utf-8"))


def with_inference_overrides(
    config: ExperimentConfig,
    overrides: Mapping[str, Any] | None = None,
    dotted: Sequence[str] = (),
    source: str = "--set",
) -> ExperimentConfig:
    """A checkpoint's config with its inference settings changed, validated like any config.

    The one place where ``eval``, ``predict``, the app and :class:`~splitmatch.predict.Predictor`
    change how a trained model is run: ``dotted`` texts (``inference.mode=whole``, ``source``
    names where they were typed) apply first, then ``overrides`` by field name (``mode="whole"``).
    Other sections describe the trained model and cannot change.
    """
    for text in dotted:
        if not text.startswith("inference."):
            raise ConfigError(f"{source} takes inference.* keys only, got '{text}'")
        config = merge(config, parse_override(text))
    refuse_set_twice(dotted, {"inference": dict(overrides or {})}, source)
    return merge(config, {"inference": dict(overrides or {})}).validate()


def refuse_set_twice(
    dotted: Sequence[str],
    changes: Mapping[str, Mapping[str, Any]],
    source: str = "--set",
    options: Mapping[str, str] | None = None,
) -> None:
    """Refuses a key that ``dotted`` texts and ``changes`` (by section and name) both set: which would
    win is not for the reader of a command (``--mode whole --set inference.mode=slide``) to guess.
    ``options``: the option that made a change, by dotted key (``{"data.proxy.enabled": "--proxy"}``);
    otherwise ``name=value (--name)``."""
    typed = {str(text).split("=", 1)[0].strip(): text for text in dotted}
    for section, values in changes.items():
        for key, value in values.items():
            dotted_key = f"{section}.{key}"
            if dotted_key in typed:
                given = (options or {}).get(dotted_key, f"{key}={value!r} (--{key.replace('_', '-')})")
                raise ConfigError(
                    f"{dotted_key} is set twice, by {source} '{typed[dotted_key]}' and by {given}: give it once"
                )
