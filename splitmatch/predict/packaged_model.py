"""Model files that leave out a packaged CLIP, and the model shipped with splitmatch.

A model trained on packaged CLIP weights (``clip.weights: packaged:world-clip``) need not carry
those frozen tensors again: :func:`package_model` keeps the prompts, decoders and heads, and
records where the CLIP comes from with a digest of its tensors (``clip_from``). Loading builds
the CLIP from the packaged weights, refuses them when their digest differs (a changed packaged
CLIP is never silently paired with decoders trained on another), and reads the stored tensors
through the same checks as every checkpoint (:func:`splitmatch.predict.loading.load_segmentor`).

``packaged:world-model`` names the Split Matching model of the built-in world that ships with
splitmatch, so that ``splitmatch predict`` and ``splitmatch app`` work without training first.
The file is made by ``splitmatch package-model`` and is the same byte for byte whenever the
same checkpoint is packaged: no timestamps, no paths of the machine it was made on, sorted keys.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import save

from splitmatch import packaged
from splitmatch.config import merge, to_dict
from splitmatch.model.build import build_segmentor
from splitmatch.model.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    load_model_state,
    model_state,
    read_checkpoint,
)
from splitmatch.packaged import PACKAGED_PREFIX
from splitmatch.storage.digest import tensor_digest
from splitmatch.storage.files import atomic_write_bytes, check_not_input

PACKAGED_MODEL_NAME = packaged.WORLD_MODEL  # the default of `predict` and `app`
# Where `splitmatch demo` writes the world: the packaged model's data.root, relative to the folder
# a command runs in, so that `eval --checkpoint packaged:world-model` finds a demo's world.
PORTABLE_DATA_ROOT = "demo_out/world"
WORLD_MODEL_NOTE = (
    "a model of splitmatch's built-in world (shapes and textures, docs/world.md), not of photos; "
    "for photos, train on a benchmark or pass --checkpoint"
)


def packaged_model_path(name: str) -> Path:
    """The file a ``packaged:NAME`` model name stands for, inside the installed package."""
    return packaged.require_packaged_file(name, packaged.PACKAGED_MODELS, "model", CheckpointError)


def checkpoint_file(checkpoint: str | Path) -> Path:
    """A checkpoint argument as a file: ``packaged:NAME`` is looked up in the package, a path is a path."""
    if packaged.is_packaged_name(checkpoint):
        return packaged_model_path(checkpoint)
    if isinstance(checkpoint, str) and not checkpoint.strip():  # Path("") is ".", the working folder
        raise CheckpointError(f"checkpoint {checkpoint!r}: an empty path; expected a checkpoint file or packaged:NAME")
    return Path(checkpoint)


def clip_digest(state: dict[str, torch.Tensor], keys: list[str]) -> str:
    """The digest of a model's CLIP tensors (``keys`` of its state dict), as file keys ``model.<key>``."""
    return tensor_digest({f"model.{key}": state[key] for key in keys})


def check_packaged_clip(model, record: dict, path: str | Path) -> None:
    """Refuses a model whose packaged CLIP (just built from this installation) is not the one the
    file was made with; ``record`` is the file's record, with ``clip_from``."""
    clip_from = record["clip_from"]
    if clip_digest(model.state_dict(), model.clip_state_keys()) != clip_from["digest"]:
        raise CheckpointError(
            f"model {path} was made with other {clip_from['weights']} weights than this installation's: its "
            "decoders would meet a CLIP they were not trained with; re-make it with `splitmatch package-model` "
            "(docs/world.md) from a checkpoint trained on this installation's CLIP"
        )


def package_model(
    checkpoint: str | Path, out: str | Path, data_root: str = PORTABLE_DATA_ROOT, clip: str | None = None
) -> dict:
    """Writes a checkpoint's model without its packaged CLIP tensors; returns the new record.

    Only the model tensors are kept (not the optimizer or random state), in the dtype trained.
    The config keeps every setting but ``data.root`` (set to ``data_root``) and
    ``pseudo.cache_dir`` (unset): paths of the machine that trained it mean nothing elsewhere,
    and leaving them out makes the file the same wherever the checkpoint lies.

    Args:
        clip: the ``packaged:NAME`` CLIP the checkpoint was trained on, when its config names
            that file by its path instead (``clip.weights: .../world-clip.safetensors``); the
            tensors are compared either way.

    Raises:
        CheckpointError: the checkpoint is damaged, was not trained on packaged CLIP weights, or
            its CLIP tensors differ from those weights as this installation ships them.
        OutputIsInputError: ``out`` is the checkpoint.
    """
    source = Path(checkpoint)
    check_not_input(out, [source], "out")  # never the checkpoint it reads
    tensors, record = read_checkpoint(source)  # the digest checked: a damaged file is not packaged
    if "clip_from" in record:
        raise CheckpointError(f"checkpoint {source} is already a model file without its CLIP tensors")
    weights = clip or record["config"].clip.weights
    if not (weights or "").startswith(PACKAGED_PREFIX):
        raise CheckpointError(
            f"checkpoint {source} was trained with clip.weights {weights!r}; only a model of packaged CLIP "
            f"weights (e.g. {PACKAGED_PREFIX}world-clip, given with --clip when the config names its file) "
            "can be stored without them"
        )
    config = merge(record["config"], {"clip": {"weights": weights}}).validate()
    if config.clip.arch.endswith(".json"):
        raise CheckpointError(
            f"checkpoint {source} names its CLIP architecture by a file ({config.clip.arch}); a packaged model "
            "needs one shipped with splitmatch"
        )
    model = build_segmentor(config.clip, config.decoder)  # its CLIP from the packaged weights, as loading will build it
    keys = model.clip_state_keys()
    packaged_digest = clip_digest(model.state_dict(), keys)
    load_model_state(model, tensors, source)  # every tensor fits the architecture
    state = model_state(tensors)
    if clip_digest(state, keys) != packaged_digest:
        raise CheckpointError(
            f"the CLIP tensors of checkpoint {source} differ from {weights} as this installation ships it; "
            "leaving them out would pair its decoders with another CLIP"
        )
    left_out = set(keys)
    kept = {f"model.{key}": value.contiguous() for key, value in state.items() if key not in left_out}
    portable = merge(config, {"data": {"root": data_root}, "pseudo": {"cache_dir": None}}).validate()
    packaged = {
        "format": FORMAT_VERSION,
        "config": to_dict(dataclasses.replace(portable, given_paths={})),
        "classes": record["classes"].to_dict(),
        "train_classes": list(record["train_classes"]),
        "step": record["step"],
        "digest": tensor_digest(kept),
        "clip_from": {"weights": weights, "digest": packaged_digest},
        "made_from": {"digest": record["digest"]},  # the source checkpoint's tensor digest
    }
    atomic_write_bytes(out, save(kept, metadata={"splitmatch": json.dumps(packaged, sort_keys=True)}))
    return packaged
