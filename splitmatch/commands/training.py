"""The commands that train: ``train``, ``seeds`` and ``folds``."""

from __future__ import annotations

import argparse
from pathlib import Path

from splitmatch.commands.arguments import (
    PROXY_HELP,
    add_command,
    add_config_arguments,
    add_peer_scoring_options,
    distinct_integers,
    episode_count,
    fold_number,
    seed,
)
from splitmatch.commands.common import TRANSDUCTIVE_NOTE, command_config, config_inputs

seed_list = distinct_integers(seed, "seeds in 0..2**63-1")
fold_list = distinct_integers(fold_number, "fold numbers in 0..1000")


def add_train_command(commands) -> None:
    p = add_command(commands, "train", help="train a model (single process or under torchrun)")
    add_config_arguments(p)
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--proxy", action="store_true", help=PROXY_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)


def add_seeds_command(commands) -> None:
    p = add_command(commands, "seeds", help="train one config with several seeds; mean and std of every metric")
    add_config_arguments(p)
    p.add_argument("--seeds", required=True, type=seed_list, help="comma-separated, e.g. 0,1,2")
    p.add_argument("--out", required=True, help="folder for seed_<s> runs and seeds.json")
    p.add_argument("--proxy", action="store_true", help=PROXY_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_seeds)


def add_folds_command(commands) -> None:
    p = add_command(
        commands,
        "folds",
        help="train and score the four folds of a fold benchmark (PASCAL-5i, "
        "COCO-20i, the world's): episodes and the generalized form, per fold and their mean",
    )
    add_config_arguments(p)
    p.add_argument(
        "--out", required=True, help="folder for fold_<i> runs and folds.json (a finished fold is not trained again)"
    )
    p.add_argument("--folds", type=fold_list, help="comma-separated fold numbers, e.g. 0,2 (default: every fold)")
    p.add_argument(
        "--fold-scheme", help="fold scheme of data.root's folds.json, e.g. coco-20i-consecutive (default: the folder's)"
    )
    p.add_argument(
        "--episode-count",
        type=episode_count,
        help="which stored episode list per fold, by length (5000 when prepared with --episodes 1000,5000); "
        "with --episode-files, how many episodes a pairs file or HSNet's pickle stands for (default: 1000)",
    )
    p.add_argument("--background-name", default="background", help="the name given beside each episode's class")
    add_peer_scoring_options(p, episode_file=False)
    p.add_argument(
        "--episode-files",
        help="score each fold on a peer's list instead of the stored one, read as eval's --episode-file "
        "reads it; {fold} stands for the fold number, e.g. hsnet/data/splits/pascal/val/fold{fold}.txt "
        "(docs/benchmarks.md)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_folds)


def cmd_train(args: argparse.Namespace) -> int:
    from splitmatch.distributed import is_main_process
    from splitmatch.train.trainer import train

    config = command_config(args)
    check_run_outputs(Path(args.out), config, args.config)
    metrics = train(config, args.out, resume=args.resume, progress=not args.quiet)
    if is_main_process():  # under torchrun every rank has the same metrics: one table
        _print_metrics(metrics, config.train.transductive)
    return 0


def check_run_outputs(
    out: Path, config, config_file: str | None, summary: str | None = None, more_inputs: tuple = ()
) -> None:
    """No file a run writes into ``out`` (nor the command's ``summary`` file beside the runs) may be
    a file the command reads: the config file, the CLIP weights, architecture and templates, the
    dataset, ``more_inputs``. A run's own ``config.yaml`` is left out: ``--resume`` reads it and
    writes it back."""
    from splitmatch.storage.files import InputPaths
    from splitmatch.train.run_folder import LOCK_FILE, RUN_FILES

    reads = InputPaths([*config_inputs(config), config_file, *more_inputs])
    for name in (*RUN_FILES, LOCK_FILE):
        if name != "config.yaml":
            reads.check(out / name, "--out")
    if summary is not None:
        reads.check(out / summary, "--out")


def cmd_folds(args: argparse.Namespace) -> int:
    from splitmatch.data.fold_schemes import read_fold_scheme
    from splitmatch.data.folder import DatasetFolder
    from splitmatch.storage.files import ensure_writable_folder
    from splitmatch.train.fold_runs import RESULTS_FILE, episode_files_of_folds, format_folds_table, run_folds

    config = command_config(args)
    scheme = read_fold_scheme(DatasetFolder(config.data.root), args.fold_scheme)
    episode_files = tuple(
        path for path in episode_files_of_folds(args.episode_files, scheme, args.folds).values() if path is not None
    )
    check_run_outputs(Path(args.out), config, args.config, RESULTS_FILE, episode_files)
    for fold in args.folds or range(len(scheme.folds)):
        check_run_outputs(Path(args.out) / f"fold_{fold}", config, args.config, more_inputs=episode_files)
    ensure_writable_folder(args.out)  # folds.json is written after every fold has trained
    summary = run_folds(
        config,
        args.out,
        args.folds,
        args.fold_scheme,
        args.episode_count,
        args.background_name,
        progress=not args.quiet,
        episode_size=args.episode_size,
        episode_files=args.episode_files,
    )
    if summary["transductive"]:
        print(TRANSDUCTIVE_NOTE + "; these are not inductive zero-shot numbers")
    unseen = "background (HSNet's convention)" if summary["unseen_pixels"] == "background" else "ignore"
    size = summary["episode_size"]
    scored = f" scored at {size} x {size}," if size else ""
    listed = f"{summary['episode_count']} per fold"
    if args.episode_files is not None:
        listed = "; ".join(
            f"fold {fold}: {result['episodes'].get('episode_source', args.episode_files)}"
            for fold, result in summary["per_fold"].items()
        )
    print(
        f"unseen pixels in training: {unseen}; episodes: {listed},{scored} the model given "
        f"'{summary['background_name']}' and the class; mIoU(S), mIoU(U), hIoU: every class on the val split"
    )
    print(format_folds_table(summary))
    print(f"wrote {args.out}/folds.json")
    return 0


def cmd_seeds(args: argparse.Namespace) -> int:
    from splitmatch.storage.files import ensure_writable_folder
    from splitmatch.train.seeds import SEEDS_FILE, format_seed_table, run_seeds

    config = command_config(args)
    check_run_outputs(Path(args.out), config, args.config, SEEDS_FILE)
    for seed_value in args.seeds:
        check_run_outputs(Path(args.out) / f"seed_{seed_value}", config, args.config)
    ensure_writable_folder(args.out)  # seeds.json is written after every run has trained
    summary = run_seeds(config, args.seeds, args.out, progress=not args.quiet)
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
