"""What several commands share: the config they run, the device they run on, the dataset a
checkpoint names, and the pieces of the "check, then do" shape every command has.

A command resolves and checks all it was given (files, options, their combinations, every
per-item value) before its first write or its first step: options that do not apply to what was
asked are refused (:func:`refuse_options`), and no output may be a file the command reads
(:func:`dataset_inputs`, :func:`config_inputs`, :func:`splitmatch.storage.files.check_not_input`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from splitmatch.errors import SplitmatchError

# Said beside every number of a model trained with train.transductive (docs/protocols.md).
TRANSDUCTIVE_NOTE = "transductive: unseen names were used in training"


class UsageError(SplitmatchError, ValueError):
    """The command line itself is wrong (a missing or contradictory option)."""


def command_config(args: argparse.Namespace):
    """The config ``--config``, ``--preset`` and ``--set`` describe; ``--proxy`` is ``data.proxy.enabled=true``."""
    from splitmatch.config.loading import refuse_set_twice
    from splitmatch.config.presets import load_config

    if args.config is None and args.preset is None:
        raise UsageError("give --config FILE or --preset NAME (see `splitmatch presets`)")
    proxy = ["data.proxy.enabled=true"] if getattr(args, "proxy", False) else []
    if proxy:
        refuse_set_twice(args.set, {"data.proxy": {"enabled": True}}, options={"data.proxy.enabled": "--proxy"})
    return load_config(args.config, args.preset, [*args.set, *proxy])


def command_device(args: argparse.Namespace):
    """The device ``--device`` names, resolved (``auto``: the first GPU if any) and printed."""
    from splitmatch.device import resolve_device

    device = resolve_device(args.device)
    print(f"device: {device}")
    return device


def inference_overrides(args: argparse.Namespace) -> dict:
    """The inference settings ``--mode`` and ``--seen-calibration`` change (those given)."""
    overrides = {"mode": args.mode} if args.mode else {}
    if args.seen_calibration is not None:
        overrides["seen_calibration"] = args.seen_calibration
    return overrides


def checkpoint_dataset(args: argparse.Namespace, config):
    """``--data-root``, else the dataset folder the checkpoint was trained on."""
    from splitmatch.config import describe_path
    from splitmatch.data.folder import DatasetFolder, DatasetFormatError

    if args.data_root:
        return DatasetFolder(args.data_root)
    if not Path(config.data.root).is_dir():
        raise DatasetFormatError(
            f"the dataset folder this checkpoint was trained on, {describe_path(config, 'data.root')}, "
            "does not exist here; pass --data-root"
        )
    return DatasetFolder(config.data.root)


def refuse_options(args: argparse.Namespace, names, why: str, defaults: dict | None = None) -> None:
    """Refuses, in one line, the first of the options ``names`` (argparse dests) that was given:
    an option that does not apply is an error, never silently ignored. ``why`` ends the sentence
    (``"scores stored label maps: no model runs"``); ``defaults`` names the values of options
    that mean "not given" besides None (``{"device": "auto"}``)."""
    for name in names:
        value = getattr(args, name, None)
        if value not in (None, False, []) and value != (defaults or {}).get(name):
            raise UsageError(f"--{name.replace('_', '-')} does not apply: {why}")


# What a command reads of a dataset folder (docs/datasets.md); an output must not replace any of it.
DATASET_READS = ("classes.json", "splits", "images", "labels", "folds.json", "episodes", "world.json", "pseudo_masks")


def dataset_inputs(root: str | Path | None) -> list[Path]:
    """The files and folders of the dataset folder ``root`` that commands read."""
    return [] if root is None else [Path(root) / name for name in DATASET_READS]


def config_inputs(config) -> list[Path]:
    """What a config makes a command read: its dataset folder and the CLIP weights, architecture and
    template files it names (open_clip tags and ``packaged:`` names are not files)."""
    clip = config.clip
    named = [getattr(clip, key, None) for key in ("weights", "arch", "templates")]
    files = [Path(value) for value in named if isinstance(value, str) and Path(value).is_file()]
    data = getattr(config, "data", None)
    return files + dataset_inputs(data.root if data is not None else None)
