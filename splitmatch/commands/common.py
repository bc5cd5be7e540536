"""What several commands share: the config they run, the device they run on, and the dataset a
checkpoint names.
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
    from splitmatch.config.presets import load_config

    if args.config is None and args.preset is None:
        raise UsageError("give --config FILE or --preset NAME (see `splitmatch presets`)")
    proxy = ["data.proxy.enabled=true"] if getattr(args, "proxy", False) else []
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
