"""A model from a checkpoint file: built as its record describes, weights checked and loaded; or
a training-free model from its preset.

No file is unpickled: the record is JSON and the tensors are safetensors
(:mod:`splitmatch.model.checkpoint`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from splitmatch.config import ExperimentConfig, merge
from splitmatch.config.loading import refuse_set_twice
from splitmatch.config.training_free import TrainingFreeConfig, training_free_config
from splitmatch.device import resolve_device
from splitmatch.model import checkpoint as ckpt
from splitmatch.model.build import build_segmentor
from splitmatch.model.segmentor import SplitMatchSegmentor
from splitmatch.model.training_free import TrainingFreeSegmentor, build_training_free
from splitmatch.predict.packaged_model import check_packaged_clip, checkpoint_file


def load_segmentor(path: str | Path, device: str | torch.device = "auto") -> tuple[SplitMatchSegmentor, dict]:
    """Builds the model a checkpoint describes and loads its weights (no unpickling).

    ``path`` is a checkpoint file or ``packaged:world-model`` (the model shipped with splitmatch).
    A file without its CLIP tensors (record ``clip_from``) gets them from the packaged CLIP
    weights it names, after their digest is checked. ``device`` is a name
    :func:`splitmatch.device.resolve_device` accepts: ``auto`` (the first GPU when CUDA is
    available, else the CPU), ``cuda``, ``cuda:N`` or ``cpu``.

    Returns:
        the model in eval mode and the checkpoint record (``config``, ``classes``,
        ``train_classes``, ``step``...).
    """
    path = checkpoint_file(path)
    record = ckpt.read_record(path)
    config: ExperimentConfig = record["config"]
    clip_left_out = "clip_from" in record
    with torch.device("meta"):  # shapes only, no memory: a record that asks for more than the file holds
        described = build_segmentor(config.clip, config.decoder, load_clip_weights=False)
        left_out = set(described.clip_state_keys()) if clip_left_out else set()
        shapes = {name: tuple(t.shape) for name, t in described.state_dict().items() if name not in left_out}
    ckpt.check_tensor_shapes(path, shapes)
    model = build_segmentor(config.clip, config.decoder, load_clip_weights=clip_left_out)
    if clip_left_out:
        check_packaged_clip(model, record, path)
    ckpt.load_model_weights(model, path, record, left_out)
    return model.to(resolve_device(device)).eval(), record


def names_trained_on(record: dict) -> set[str]:
    """The class names a checkpoint was trained on, with their synonyms (from the checkpoint record)."""
    trained = set(record["train_classes"])
    synonyms = record["classes"].synonyms
    return trained | {more for name in trained for more in synonyms.get(name, ())}


def load_training_free(
    name: str = "maskclip-vitb16",
    device: str | torch.device = "auto",
    overrides: Sequence[str] = (),
    changes: Mapping[str, Mapping] | None = None,
    source: str = "--set",
) -> tuple[TrainingFreeSegmentor, TrainingFreeConfig]:
    """The training-free model a preset describes (:mod:`splitmatch.config.training_free`).

    Args:
        name: a preset (``sclip-vitb16``, ``naclip-authors``, ``maskclip-world``...) or a recipe's
            name (``sclip``: its ViT-B/16 preset).
        overrides: ``key=value`` texts (``clip.weights=...``, ``inference.mode=whole``), applied first;
            ``source`` names where they were typed, for messages.
        changes: then nested values by section, ``{"clip": {"weights": ...}, "inference": {...}}``.

    Returns:
        the model in eval mode on ``device`` and its resolved config.
    """
    config = training_free_config(name, overrides, source)
    refuse_set_twice(
        overrides,
        {section: {k: v for k, v in values.items() if v is not None} for section, values in (changes or {}).items()},
        source,
    )
    if changes:
        config = merge(config, {section: dict(values) for section, values in changes.items()}).validate()
    model = build_training_free(config.clip, config.recipe)
    return model.to(resolve_device(device)).eval(), config


load_maskclip = load_training_free  # its name in version 0.2
