"""What ships inside the installed package, and the ``packaged:NAME`` names that stand for it.

A ``packaged:`` name means a file inside splitmatch wherever it is installed, never a path of
the machine a config or checkpoint was made on:

* ``clip.weights: packaged:world-clip`` -> ``world/assets/world-clip.safetensors``, the built-in
  world's small CLIP (:func:`splitmatch.clip.loading.packaged_weights`);
* ``--checkpoint packaged:world-model`` -> ``world/assets/models/world-model.safetensors``, the Split
  Matching model of the world that ``predict`` and ``app`` use by default
  (:func:`splitmatch.predict.packaged_model.packaged_model_path`);
* ``clip.arch: world-clip`` / ``tiny-test`` -> ``configs/clip/<name>.json``, CLIP architectures
  shipped as data (:func:`splitmatch.config.architectures.clip_model_config`).

The folders are read through this module's attributes at call time, so a test can point them
at a folder of its own.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
PACKAGED_PREFIX = "packaged:"
CLIP_ARCHITECTURES = PACKAGE_ROOT / "configs" / "clip"  # <arch>.json
PACKAGED_WEIGHTS = PACKAGE_ROOT / "world" / "assets"  # packaged:NAME weights -> NAME.safetensors
PACKAGED_MODELS = PACKAGED_WEIGHTS / "models"  # packaged:NAME models -> models/NAME.safetensors

WORLD_CLIP = "packaged:world-clip"  # the built-in world's CLIP (docs/world.md)
WORLD_MODEL = "packaged:world-model"  # the default model of `predict` and `app`


def is_packaged_name(value: object) -> bool:
    """Whether ``value`` is a ``packaged:NAME`` string (rather than a path or an open_clip tag)."""
    return isinstance(value, str) and value.startswith(PACKAGED_PREFIX)


def packaged_file(name: str, folder: Path) -> Path | None:
    """The ``.safetensors`` file ``packaged:NAME`` stands for in ``folder``; ``None`` when there is none.

    ``NAME`` is a file stem, never a path: a name with a separator is unknown.
    """
    stem = name[len(PACKAGED_PREFIX) :] if name.startswith(PACKAGED_PREFIX) else name
    if not stem or "/" in stem or "\\" in stem or stem in (".", ".."):
        return None
    path = folder / f"{stem}.safetensors"
    return path if path.is_file() else None


def packaged_names(folder: Path) -> str:
    """The ``packaged:`` names ``folder`` holds, for messages (``none`` when empty)."""
    names = [f"{PACKAGED_PREFIX}{path.stem}" for path in sorted(folder.glob("*.safetensors"))]
    return ", ".join(names) or "none"


def require_packaged_file(name: str, folder: Path, kind: str, error: type[Exception]) -> Path:
    """:func:`packaged_file`, or ``error`` saying that the ``kind`` (``weights``, ``model``) named
    ``name`` is unknown and which names this installation has."""
    path = packaged_file(name, folder)
    if path is None:
        raise error(f"unknown packaged {kind} '{name}' (this installation has: {packaged_names(folder)})")
    return path


def install_hint(extra: str) -> str:
    """How to install an optional extra (``app``, ``onnx``, ``tensorboard``): splitmatch is installed
    from its source folder, not from a package index."""
    return f"pip install -e '.[{extra}]' in the splitmatch folder (or pip install <that folder>[{extra}])"
