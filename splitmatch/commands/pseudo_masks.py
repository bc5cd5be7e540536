"""The ``pseudo-masks`` command: compute and cache the pseudo masks of a split; with ``--evaluate``,
score them against the full labels, or with ``--proxy`` against a proxy's held-out seen classes."""

from __future__ import annotations

import argparse
from pathlib import Path

from splitmatch.commands.arguments import PROXY_HELP, add_command, add_config_arguments, batch_size
from splitmatch.commands.common import UsageError, command_config, command_device, config_inputs


def add_pseudo_masks_command(commands) -> None:
    from splitmatch.device import DEVICE_HELP

    p = add_command(
        commands, "pseudo-masks", help="compute and cache pseudo masks for the training split; --evaluate scores them"
    )
    add_config_arguments(p)
    p.add_argument("--split", help="split to compute (default: the config's training split)")
    p.add_argument(
        "--evaluate",
        action="store_true",
        help="score the pseudo masks against the full labels (unseen classes included: a diagnostic, not a way to "
        "choose settings; with --proxy: against the proxy's held-out seen classes)",
    )
    p.add_argument("--proxy", action="store_true", help=PROXY_HELP)
    p.add_argument("--json", help="with --evaluate: also write the scores to this JSON file")
    p.add_argument("--figure", help="with --evaluate: draw the worst misses into this PNG file")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--batch-size", type=batch_size, default=8, help="images per frozen-CLIP forward pass")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_pseudo_masks)


def cmd_pseudo_masks(args: argparse.Namespace) -> int:
    import torch

    from splitmatch import distributed as dist
    from splitmatch.data.experiment_folder import open_dataset
    from splitmatch.model.build import build_segmentor
    from splitmatch.pseudo.build_cache import check_cache_folder, fill_cache, open_cache
    from splitmatch.train.reproducibility import seed_everything

    if (args.json or args.figure) and not args.evaluate:
        raise UsageError("--json and --figure need --evaluate")
    config = command_config(args)
    proxy = config.data.proxy.enabled
    split = args.split or config.data.train_split
    if proxy and split == config.data.val_split:
        raise UsageError(
            f"--proxy scores pseudo masks of the training split's images; split '{split}' is the benchmark's "
            "validation (test) split, which never chooses a setting"
        )
    if proxy and args.figure:
        raise UsageError("--figure draws the full labels, the benchmark's unseen classes included: not with --proxy")
    _check_report_outputs(args, config)
    folder = open_dataset(config.data)  # with --proxy: the held-out seen classes are unannotated too
    check_cache_folder(config.pseudo, folder.root)
    folder.samples(split)  # the split's list and files, before the cache folder is made
    # Under torchrun the ranks share the work, each on its own device, as training does.
    device = dist.setup_from_environment() if dist.launched_by_torchrun() else command_device(args)
    seed_everything(config.train.seed)  # as training does: a random-init CLIP (tests) is then the same one
    model = build_segmentor(config.clip, config.decoder).to(device)
    cache = open_cache(config.pseudo, config.clip, folder, model.image_encoder)
    count = fill_cache(
        cache, model.image_encoder, config.pseudo, folder, split, args.batch_size, progress=not args.quiet
    )
    where = f" on rank {dist.rank()} of {dist.world_size()}" if dist.is_distributed() else ""
    print(f"pseudo masks: computed {count}{where}, cache {cache.directory}")
    if dist.is_distributed():
        torch.distributed.barrier()  # every entry is written before anyone reads them back
    if args.evaluate and dist.is_main_process():
        _evaluate_pseudo_masks(args, config, folder, cache, model, split)
    return 0


def _check_report_outputs(args: argparse.Namespace, config) -> None:
    """``--json`` and ``--figure``, written after the masks are computed, are checked now: writable,
    and none of the files the command reads (the config, the CLIP, the dataset, the cache)."""
    from splitmatch.storage.files import InputPaths, check_output_file

    reads = InputPaths([*config_inputs(config), args.config, config.pseudo.cache_dir])
    for option, path in (("--json", args.json), ("--figure", args.figure)):
        if path:
            check_output_file(path)
            reads.check(path, option)
    if args.json and args.figure and Path(args.json).resolve() == Path(args.figure).resolve():
        raise UsageError(f"--json and --figure name the same file, {args.json}")


def _evaluate_pseudo_masks(args, config, folder, cache, model, split: str) -> None:
    """Scores the masks: a proxy's against its held-out seen classes, else against the full labels."""
    from splitmatch.pseudo.quality import evaluate_pseudo_masks, format_quality
    from splitmatch.pseudo.quality_figure import worst_misses_figure
    from splitmatch.storage.files import write_json

    vocabulary = folder.evaluation_vocabulary()  # a proxy's classes: the benchmark's unseen ones left out
    names = vocabulary.classes.names if vocabulary is not None else folder.classes.names
    text = model.encode_classes(list(names))  # the names the masks are scored against
    report = evaluate_pseudo_masks(
        folder,
        cache,
        split,
        text,
        config.pseudo.window_sizes,
        config.pseudo.min_area,
        progress=not args.quiet,
        proxy=folder.proxy,
        clip_to_unannotated=config.pseudo.clip_to_unannotated,
    )
    if folder.proxy is not None:
        held = ", ".join(folder.proxy.held_out)
        print(
            f"\npseudo masks of split '{split}' ({report['images']} images) against the proxy's held-out seen "
            f"classes ({held}), percent:"
        )
    else:
        print(f"\npseudo masks of split '{split}' ({report['images']} images) against its full labels, percent:")
    print(format_quality(report))
    print(report["note"])
    if args.json:
        write_json(Path(args.json), report)
        print(f"wrote {args.json}")
    if args.figure:
        rows = worst_misses_figure(folder, cache, report, args.figure)
        print(f"wrote {args.figure} ({rows} images)" if rows else "no unseen pixel was missed: no figure")
