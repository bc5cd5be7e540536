"""Typed experiment configuration: dataclasses, YAML files and dotted command-line overrides.

A run's configuration is resolved in three layers: a named preset (``splitmatch.presets``), then
a YAML file, then ``key=value`` overrides such as ``train.lr=1e-4``. Unknown keys and values of
the wrong type are refused with the full dotted name. Relative paths are made absolute against
the current folder (:func:`resolve_paths`). The resolved config is written beside every run and
inside every checkpoint. docs/configuration.md describes the layers, paths and devices;
docs/method.md maps the paper's symbols to these keys.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration file, key or value is invalid."""


@dataclass
class ClipConfig:
    arch: str = "ViT-B-16-quickgelu"  # open_clip model config name, or a path to a model-config JSON
    # A file (.safetensors, open_clip .pt/.bin, OpenAI's TorchScript .pt), "packaged:NAME" for
    # weights shipped inside splitmatch (packaged:world-clip), or an open_clip pretrained tag.
    weights: str | None = None
    prompt_tokens: int = 10  # N_p deep visual prompt tokens per layer (0 disables prompts)
    prompt_layers: int = 11  # L_p: prompts are inserted at each of the first L_p layers
    decoder_layers: list[int] = field(default_factory=lambda: [5, 8, 11])  # ViT blocks fed to the decoder
    region_layers: int = 3  # masked-CLS region embeddings attend inside their mask in the last n blocks
    templates: str = "single"  # text prompts: "single" ("a photo of a {}.") or "ensemble" (80 templates)


@dataclass
class DecoderConfig:
    hidden_dim: int = 256  # d, width of pixel features and queries
    num_layers: int = 6  # L transformer decoder layers
    num_heads: int = 8
    ffn_dim: int = 1024
    num_seen_queries: int = 100  # N_s, matched to annotated seen-class masks
    num_candidate_queries: int = 20  # N_c, matched to pseudo masks of unannotated regions (split only)
    mfe: bool = True  # Multi-scale Feature Enhancement on the pixel features
    mfe_pool_factors: list[int] = field(default_factory=lambda: [1, 2, 4])  # r in F' = F + sum_r Up(phi(Pool_r F))
    fuse_intermediate: bool = True  # add projected intermediate ViT layers to the pixel features
    masked_attention: bool = True  # Mask2Former masked cross-attention
    mask_upsample: int = 1  # learned upsampling of pixel features before mask prediction (1, 2 or 4)
    logit_temperature: float = 0.07  # tau in cos(z, t_c) / tau
    group_embed_heads: bool = False  # candidates get their own projection into CLIP space (chosen here)


@dataclass
class PseudoMaskConfig:
    dense_features: str = "value"  # "value" (MaskCLIP last-block value path) or "tokens"
    input_size: int = 512  # frozen-CLIP input side for pseudo masks (square resize)
    window_sizes: list[int] = field(default_factory=lambda: [4, 8, 16])  # K-Means seed windows s
    iterations: int = 10  # T cosine K-Means iterations
    rho: float = 0.8  # keep a cluster when >= rho of its area is unannotated
    min_area: float = 0.01  # drop candidates smaller than this fraction of the grid
    dedup_iou: float = 0.7  # across scales, drop a candidate whose mask IoU with a kept one exceeds this
    max_masks: int = 40  # cap per image, largest first
    # Split every K-Means cluster into its connected pieces (8-neighbour, patch grid) before the
    # rho rule, so rho and min_area hold per piece (chosen here; docs/pseudo-masks.md measures it).
    components: bool = False
    # "masked_cls": a CLS copy attends inside the mask in CLIP's last blocks (the method);
    # "crop": CLIP's image embedding of a square crop around the mask (docs/pseudo-masks.md).
    region_embedding: str = "masked_cls"
    crop_context: float = 1.5  # crop side / the larger side of the mask's bounding box ("crop" only)
    # After augmentation a pseudo mask may be cut to a sliver whose region embedding still describes
    # the whole region: drop it below this fraction of the training crop (chosen here; 0 keeps any:
    # 0.01 cost seen classes 3.4 points in the world, docs/recipe.md).
    min_crop_area: float = 0.0
    cache_dir: str | None = None  # where pseudo masks are cached; None: <data.root>/pseudo_masks/<key>


@dataclass
class LossConfig:
    matching: str = "split"  # "split" (the method) or "hungarian" (the baseline)
    cost_class: float = 2.0  # l_cls
    cost_bce: float = 5.0  # l_bce
    cost_dice: float = 5.0  # l_dice
    cost_embed: float = 2.0  # l_sim, candidate matching (chosen here)
    weight_class: float = 2.0
    weight_bce: float = 5.0
    weight_dice: float = 5.0
    weight_embed: float = 2.0  # l_emb, candidate alignment 1 - cos(z_i, e_k) (chosen here)
    candidate_weight: float = 1.0  # lambda_u
    no_object_weight: float = 0.1
    num_points: int = 12544  # sampled points for matching costs and mask losses
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    deep_supervision: bool = True
    # Candidate mask loss points (chosen here): pseudo masks are only as sharp as the CLIP patch
    # grid, so PointRend's focus on uncertain boundaries buys little there; "importance" restores it.
    candidate_sampling: str = "uniform"


@dataclass
class DataConfig:
    root: str = "data/voc"  # a dataset folder (docs/datasets.md)
    train_split: str = "train"
    val_split: str = "val"
    crop_size: int = 512
    resize_scale: list[int] = field(default_factory=lambda: [2048, 512])  # mmseg RandomResize base scale
    ratio_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    cat_max_ratio: float = 0.75
    flip_prob: float = 0.5
    photometric: bool = True
    # Colour of the padding around crops smaller than crop_size (chosen here): "mean" is the CLIP
    # normalisation's mean colour, zero after normalising as mmseg pads (the ViT-B/16 presets');
    # "black" is 0. Equal within the seed spread in the world (docs/recipe.md).
    pad_fill: str = "black"
    num_workers: int = 4


@dataclass
class TrainConfig:
    iterations: int = 20000
    # The global batch: under torchrun each of the N processes takes batch_size / N images per step.
    batch_size: int = 16
    # Each step's batch is cut into accumulate_steps x processes micro-batches, forwarded one after
    # the other; the step (loss normalisers, clipping, optimizer, schedule, log) is still that of
    # the whole batch. The recipe's batch 16 on one GPU: accumulate_steps 2, 4 or 8 as memory needs.
    accumulate_steps: int = 1
    lr: float = 2e-5
    head_lr_multiplier: float = 10.0  # prompts and decoder heads
    weight_decay: float = 0.01
    decay_prompts: bool = False  # apply weight_decay to the visual prompts too (ZegCLIP does; chosen here)
    poly_power: float = 0.9
    warmup_iterations: int = 1500
    warmup_ratio: float = 1e-6
    min_lr: float = 1e-6
    grad_clip: float = 0.01  # max gradient norm; 0 disables
    seed: int = 0
    # torch.use_deterministic_algorithms for the process (and the library's deterministic kernels
    # where CUDA's are not): bitwise repeatable CUDA training, somewhat slower (docs/reproducibility.md).
    deterministic: bool = False
    amp: str = "bf16"  # "none", "bf16" or "fp16"; CUDA only, CPU always runs float32
    log_every: int = 50
    checkpoint_every: int = 2000
    keep_checkpoints: int = 3
    eval_every: int = 0  # 0: evaluate once at the end only
    tensorboard: bool = False  # also write TensorBoard scalars (needs the 'tensorboard' extra)


@dataclass
class InferenceConfig:
    mode: str = "slide"  # "slide" or "whole"
    short_side: int = 512  # evaluation resize (ZegCLIP protocol)
    max_long_side: int = 2048
    window: int = 512
    stride: int = 426
    seen_calibration: float = 0.0  # subtracted from seen-class scores (ZegCLIP uses 0.1)
    amp: str = "bf16"  # "none", "bf16" or "fp16" autocast of the model on CUDA; scores stay float32
    # How the candidate queries of a Split Matching model score pixels (chosen here, measured in
    # docs/recipe.md). They never get a class or no-object loss, so their no-object logit is
    # untrained: "classes" takes the softmax over the classes alone, "no_object" scores them as
    # seen queries are scored, "excluded" leaves them out. Hungarian models score every query alike.
    candidate_scoring: str = "no_object"
    candidate_temperature: float = 0.0  # tau of their softmax; 0: decoder.logit_temperature (0.01 is CLIP's 100)
    candidate_weight: float = 1.0  # factor on the candidates' share of the class scores
    candidate_mask_confidence: bool = False  # also weight each candidate by its mask's mean confidence


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    clip: ClipConfig = field(default_factory=ClipConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    pseudo: PseudoMaskConfig = field(default_factory=PseudoMaskConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    # Relative paths as they were written ({"data.root": "data/voc"}), recorded by resolve_paths
    # when it made them absolute; shown in messages, never used to find a file.
    given_paths: dict[str, str] = field(default_factory=dict, compare=False)

    def validate(self) -> ExperimentConfig:
        """Checks every value (type, range) and the relations between them; returns self.

        The rules live in :mod:`splitmatch.config_checks`; a violation raises :class:`ConfigError`
        naming the dotted key and what it may be.
        """
        from splitmatch.config_checks import check_config

        check_config(self)
        return self


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
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is dict:
        key_type, value_type = typing.get_args(annotation)
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return {_coerce(k, key_type, key): _coerce(v, value_type, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):
            # YAML 1.1 reads "1e-4" (no dot) as a string; accept any spelling Python reads as a number.
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{key} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported field type {annotation}")


def merge(config: Any, updates: dict, prefix: str = "") -> Any:
    """Returns a copy of a config dataclass with nested ``updates`` applied, refusing unknown keys."""
    if not isinstance(updates, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping of keys, got {updates!r}")
    hints = typing.get_type_hints(type(config))
    names = {f.name for f in dataclasses.fields(config)}
    changes = {}
    for key, value in updates.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key '{dotted}' (known: {', '.join(sorted(names))})")
        current = getattr(config, key)
        if dataclasses.is_dataclass(current):
            changes[key] = merge(current, value, prefix=f"{dotted}.")
        else:
            changes[key] = _coerce(value, hints[key], dotted)
    return dataclasses.replace(config, **changes)


def parse_override(text: str) -> dict:
    """``"train.lr=1e-4"`` -> ``{"train": {"lr": 0.0001}}``; the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.sub=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"override '{text}': the value is not valid YAML ({_yaml_problem(error)})") from None
    nested: dict = value
    for part in reversed(key.strip().split(".")):
        if not part:
            raise ConfigError(f"override '{text}' has an empty key part")
        nested = {part: nested}
    return nested


def _yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where (PyYAML's own text spans several lines)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or type(error).__name__
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def read_yaml(path: str | Path) -> dict:
    """A YAML config file's top-level mapping (empty for an empty file), or one-line ConfigError."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder, not a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not YAML text (it is not UTF-8; a binary file?)") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML ({_yaml_problem(error)})") from None
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
PATH_KEYS = ("data.root", "clip.weights", "clip.arch", "pseudo.cache_dir")
PACKAGED_PREFIX = "packaged:"  # clip.weights: a file shipped inside the installed package


def weights_name_is_path(weights: str, base: str | Path | None = None) -> bool:
    """Whether a ``clip.weights`` value names a file (rather than an open_clip pretrained tag
    such as ``openai``, or a ``packaged:`` name); relative names are looked up in ``base``."""
    if weights.startswith(PACKAGED_PREFIX):
        return False
    path = Path(weights).expanduser()
    exists = (Path(base) / path if base is not None else path).exists()
    return exists or path.suffix in (".pt", ".pth", ".bin", ".safetensors") or "/" in weights


def _names_a_path(key: str, value: str | None, base: Path) -> bool:
    if not value:
        return False
    if key == "clip.weights":
        return weights_name_is_path(value, base)
    if key == "clip.arch":  # a model-config name (ViT-B-16-quickgelu) or a JSON file
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
    from splitmatch.data.folder import atomic_write_bytes

    atomic_write_bytes(path, yaml.safe_dump(to_dict(config), sort_keys=False).encode("utf-8"))
