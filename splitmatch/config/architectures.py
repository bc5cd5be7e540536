"""CLIP architectures as data: open_clip model configs, by name or as JSON files.

An architecture is an open_clip model-config name (``ViT-B-16-quickgelu``), a config shipped
with splitmatch (``splitmatch/configs/clip/*.json``) or a path to such a JSON file. The config
floor reads them to check sizes against the architecture (patch size, number of blocks) without
building a model; :mod:`splitmatch.clip.loading` builds models from them.
"""

from __future__ import annotations

import json
from pathlib import Path

import open_clip

from splitmatch import packaged
from splitmatch.config.errors import ConfigError


class ArchitectureError(ConfigError):
    """A CLIP architecture name or file cannot be used."""


def clip_model_config(arch: str) -> dict:
    """The open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``...) for ``arch``."""
    path = Path(arch)
    if path.suffix == ".json":
        if not path.is_file():
            raise ArchitectureError(f"CLIP architecture file {path} does not exist")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ArchitectureError(f"CLIP architecture file {path} is not valid JSON: {error}") from None
    shipped = packaged.CLIP_ARCHITECTURES / f"{arch}.json"
    if shipped.is_file():
        return json.loads(shipped.read_text(encoding="utf-8"))
    config = open_clip.get_model_config(arch)
    if config is None:
        ours = sorted(p.stem for p in packaged.CLIP_ARCHITECTURES.glob("*.json"))
        raise ArchitectureError(
            f"unknown CLIP architecture '{arch}': not a JSON file, not one of splitmatch's ({', '.join(ours)}) "
            f"and not an open_clip model config (see open_clip.list_models())"
        )
    return config


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
            f"CLIP architecture '{arch}' needs a square integer vision_cfg.patch_size and integer "
            f"vision_cfg.layers (a plain ViT); got patch_size {patch!r}, layers {layers!r}"
        )
    return patch, layers
