"""CLIP architectures as data: open_clip model configs, by name or as JSON files.

An architecture is an open_clip model-config name (``ViT-B-16-quickgelu``), a config shipped
with splitmatch (``splitmatch/configs/clip/*.json``) or a path to such a JSON file. The config
floor reads them to check sizes against the architecture (patch size, number of blocks) without
building a model; :mod:`splitmatch.clip.loading` builds models from them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import open_clip

from splitmatch import packaged
from splitmatch.config.errors import ConfigError, shown
from splitmatch.storage.files import InvalidJsonError, parse_json


class ArchitectureError(ConfigError):
    """A CLIP architecture name or file cannot be used."""


MAX_FILE_BYTES = 1 << 20  # an architecture is a few hundred bytes of JSON
# Generous ceilings (ViT-bigG has width 1664, 48 blocks): an architecture file beyond them asks for
# a model no machine builds, and a file from elsewhere should not make splitmatch try.
_SIZE_FIELDS = {
    "vision_cfg": {"layers": 256, "width": 16384, "head_width": 16384, "patch_size": 1024, "image_size": 8192},
    "text_cfg": {"context_length": 4096, "vocab_size": 10_000_000, "width": 16384, "heads": 1024, "layers": 256},
}
_TOWERS = {"vision_cfg": open_clip.model.CLIPVisionCfg, "text_cfg": open_clip.model.CLIPTextCfg}


def clip_model_config(arch: str) -> dict:
    """The open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``...) for ``arch``,
    checked to be one open_clip can build (:func:`check_model_config`)."""
    path = Path(arch)
    if path.suffix == ".json":
        return check_model_config(_read_json(path), f"CLIP architecture file {path}")
    # A shipped config is looked up by name only: 'x/../../y' names no file of splitmatch's.
    shipped = packaged.CLIP_ARCHITECTURES / f"{arch}.json"
    if _plain_name(arch) and shipped.is_file():
        return check_model_config(_read_json(shipped), f"CLIP architecture file {shipped}")
    config = open_clip.get_model_config(arch)
    if config is None:
        ours = sorted(p.stem for p in packaged.CLIP_ARCHITECTURES.glob("*.json"))
        raise ArchitectureError(
            f"unknown CLIP architecture {shown(arch)}: not a JSON file, not one of splitmatch's ({', '.join(ours)}) "
            f"and not an open_clip model config (see open_clip.list_models())"
        )
    return config


def _plain_name(arch: str) -> bool:
    return arch not in ("", ".", "..") and not any(char in arch for char in "/\\\0")


def _read_json(path: Path) -> object:
    if "\0" in str(path):
        raise ArchitectureError(f"CLIP architecture file {shown(str(path))} holds a NUL character; no file has one")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ArchitectureError(f"CLIP architecture file {path} does not exist") from None
    except IsADirectoryError:
        raise ArchitectureError(f"CLIP architecture file {path} is a folder, not a JSON file") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ArchitectureError(f"CLIP architecture file {path} is over {MAX_FILE_BYTES:,} bytes; it is not one")
    try:
        return parse_json(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ArchitectureError(
            f"CLIP architecture file {path} is not UTF-8 text (byte {raw[error.start]:#04x} at offset {error.start})"
        ) from None
    except InvalidJsonError as error:
        raise ArchitectureError(f"CLIP architecture file {path} is not valid JSON: {shown(str(error))[1:-1]}") from None


def check_model_config(config: object, where: str) -> dict:
    """Refuses a model config open_clip could not build, or should not: not an object, without
    ``embed_dim``, ``vision_cfg`` or ``text_cfg``, a key open_clip does not know, or a size that is
    not a positive integer within :data:`_SIZE_FIELDS`' ceilings. Returns ``config``."""
    if not isinstance(config, dict):
        raise ArchitectureError(
            f"{where} must hold a JSON object (embed_dim, vision_cfg, text_cfg), not a {type(config).__name__}"
        )
    missing = [key for key in ("embed_dim", "vision_cfg", "text_cfg") if key not in config]
    if missing:
        raise ArchitectureError(f"{where} lacks {', '.join(missing)} (an open_clip model config has all three)")
    _check_size(config["embed_dim"], f"{where}: embed_dim", 16384)
    if "quick_gelu" in config and not isinstance(config["quick_gelu"], bool):
        raise ArchitectureError(f"{where}: quick_gelu must be true or false, got {shown(config['quick_gelu'])}")
    for tower, fields in _TOWERS.items():
        section = config[tower]
        if not isinstance(section, dict):
            raise ArchitectureError(f"{where}: {tower} must be a JSON object, not a {type(section).__name__}")
        known = {field.name for field in dataclasses.fields(fields)}
        unknown = sorted(str(key) for key in section if key not in known)
        if unknown:
            raise ArchitectureError(f"{where}: {tower} has keys open_clip does not know: {shown(unknown)}")
        for key, ceiling in _SIZE_FIELDS[tower].items():
            if key in section:
                value = section[key]  # a size, or one per side ([H, W]) or stage (a ResNet's layers)
                for size in value if isinstance(value, list) and 1 <= len(value) <= 4 else [value]:
                    _check_size(size, f"{where}: {tower}.{key}", ceiling)
    return config


def _check_size(value: object, key: str, ceiling: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= ceiling:
        raise ArchitectureError(f"{key} must be an integer in 1..{ceiling:,}, got {shown(value)}")


def clip_geometry(arch: str) -> tuple[int, int]:
    """``(patch size, number of ViT blocks)`` of a CLIP architecture, from its config alone.

    Raises:
        ArchitectureError: the architecture is unknown or unreadable, or not a plain ViT.
    """
    vision = clip_model_config(arch).get("vision_cfg", {})
    patch, layers = vision.get("patch_size"), vision.get("layers")
    if isinstance(patch, (list, tuple)) and len(set(patch)) == 1:
        patch = patch[0]
    if not isinstance(patch, int) or not isinstance(layers, int) or patch < 1 or layers < 1:
        raise ArchitectureError(
            f"CLIP architecture {shown(arch)} needs a square integer vision_cfg.patch_size and integer "
            f"vision_cfg.layers (a plain ViT); got patch_size {shown(patch)}, layers {shown(layers)}"
        )
    return patch, layers
