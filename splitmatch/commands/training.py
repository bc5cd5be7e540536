"""The commands that train: ``train``, ``seeds`` and ``folds``."""

from __future__ import annotations

import argparse

from splitmatch.commands.common import TRANSDUCTIVE_NOTE, UsageError, command_config


def cmd_train(args: argparse.Namespace) -> int:
    from splitmatch.distributed import is_main_process
    from splitmatch.train.trainer import train

    config = command_config(args)
    metrics = train(config, args.out, resume=args.resume, progress=not args.quiet)
    if is_main_process():  # under torchrun every rank has the same metrics: one table
        _print_metrics(metrics, config.train.transductive)
    return 0


def cmd_folds(args: argparse.Namespace) -> int:
    from splitmatch.storage.files import ensure_writable_folder
    from splitmatch.train.folds import format_folds_table, run_folds

    folds = None
    if args.folds is not None:
        try:
            folds = [int(part) for part in args.folds.split(",") if part.strip()]
        except ValueError:
            raise UsageError(f"--folds must be comma-separated fold numbers, got '{args.folds}'") from None
        if not folds or len(set(folds)) != len(folds):
            raise UsageError(f"--folds needs distinct fold numbers, got '{args.folds}'")
    config = command_config(args)
    ensure_writable_folder(args.out)  # folds.json is written after every fold has trained
    summary = run_folds(config, args.out, folds, args.fold_scheme, args.episode_count, args.background_name,
                        progress=not args.quiet, episode_size=args.episode_size)  # fmt: skip
    if summary["transductive"]:
        print(TRANSDUCTIVE_NOTE + "; these are not inductive zero-shot numbers")
    unseen = "background (HSNet's convention)" if summary["unseen_pixels"] == "background" else "ignore"
    size = summary["episode_size"]
    scored = f" scored at {size} x {size}," if size else ""
    print(
        f"unseen pixels in training: {unseen}; episodes: {summary['episode_count']} per fold,{scored} the model given "
        f"'{summary['background_name']}' and the class; mIoU(S), mIoU(U), hIoU: every class on the val split"
    )
    print(format_folds_table(summary))
    print(f"wrote {args.out}/folds.json")
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
    summary = run_seeds(config, seeds, args.out, progress=not args.quiet)
    if config.train.transductive:
        print(TRANSDUCTIVE_NOTE + "; these are not inductive zero-shot numbers")
    print(format_seed_table(summary))
    return 0


def _print_metrics(metrics: dict, transductive: bool = False) -> None:
    from splitmatch.evaluation.metrics import format_table

    proxy = metrics.get("proxy")
    if proxy is None:
        note = f" ({TRANSDUCTIVE_NOTE})" if transductive else ""
        print(format_table({f"validation{note}": metrics}))
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
