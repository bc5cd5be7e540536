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

    proxy = metrics.get("proxy")
    if proxy is None:
        print(format_table({"validation": metrics}))
        return
    print(proxy_banner(proxy))
    print(format_table({"proxy validation": metrics}))


def proxy_banner(proxy: dict, split: str | None = None) -> str:
    """What a proxy run's scores are, in two lines (``train`` and ``eval`` print it); ``split``: the
    split scored (default: the proxy's validation images)."""
    from splitmatch.data.folder import list_some

    split = split or proxy["val_split"]
    images = proxy["val_images"]
    scored = f"scored on split '{split}'" + (
        f" ({images} image{'s' * (images != 1)} of '{proxy['train_split']}' kept out of training)"
        if split == proxy["val_split"]
        else ""
    )
    left_out = proxy["left_out"]
    return (
        f"proxy run: seen classes {', '.join(proxy['held_out'])} held out as pseudo-unseen (U); S is the other "
        f"{len(proxy['proxy_seen'])} seen classes; {scored}\n"
        f"not a benchmark model: the benchmark's unseen classes ({len(left_out)}: {list_some(left_out) or 'none'}) "
        "were left out of this scoring, their pixels ignored"
    )
