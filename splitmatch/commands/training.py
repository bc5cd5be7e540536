"""The commands that train: ``train`` and ``seeds``."""

from __future__ import annotations

import argparse

from splitmatch.commands.common import UsageError, command_config


def cmd_train(args: argparse.Namespace) -> int:
    from splitmatch.distributed import is_main_process
    from splitmatch.train.trainer import train

    metrics = train(command_config(args), args.out, resume=args.resume, progress=not args.quiet)
    if is_main_process():  # under torchrun every rank has the same metrics: one table
        _print_metrics(metrics)
    return 0


def cmd_seeds(args: argparse.Namespace) -> int:
    from splitmatch.train.seeds import format_seed_table, run_seeds

    try:
        seeds = [int(part) for part in args.seeds.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--seeds must be comma-separated integers, got '{args.seeds}'") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UsageError(f"--seeds needs distinct non-negative seeds, got '{args.seeds}'")
    from splitmatch.storage.files import ensure_writable_folder

    config = command_config(args)
    ensure_writable_folder(args.out)  # seeds.json is written after every run has trained
    print(format_seed_table(run_seeds(config, seeds, args.out, progress=not args.quiet)))
    return 0


def _print_metrics(metrics: dict) -> None:
    from splitmatch.evaluation.metrics import format_table

    print(format_table({"validation": metrics}))
