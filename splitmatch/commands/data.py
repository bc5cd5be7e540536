"""The commands that make data and weights: ``prepare``, ``convert-clip``, ``world``, ``toy-clip``,
``demo``, and ``presets`` (the list of named presets)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from splitmatch.commands.common import UsageError

# Options of `prepare` that only some datasets take: option -> (keyword of the preparer, datasets).
PREPARE_OPTIONS = {
    "background": ("background", ("voc",)),
    "sbd": ("sbd", ("voc", "pascal-5i")),
    "episodes": ("episode_counts", ("pascal-5i", "coco-20i")),
    "min_object_pixels": ("min_object_pixels", ("pascal-5i", "coco-20i")),
    "episode_seed": ("episode_seed", ("coco-20i",)),
    "crowd": ("crowd", ("coco-20i",)),
    "object_order": ("object_order", ("coco-20i",)),
}


def cmd_prepare(args: argparse.Namespace) -> int:
    import warnings

    from splitmatch.data.folds import FOLDS_FILE
    from splitmatch.data.prepare import PREPARERS, PartialDatasetWarning
    from splitmatch.data.prepare.fold_episodes import describe_folds
    from splitmatch.data.prepare.readback import describe_prepared

    options = {"allow_partial": args.allow_partial}
    for option, (keyword, datasets) in PREPARE_OPTIONS.items():
        value = getattr(args, option)
        if value in (None, False):
            continue
        if args.dataset not in datasets:
            flag = "--" + option.replace("_", "-")
            raise UsageError(f"{flag} is an option of 'prepare {' / '.join(datasets)}', not of '{args.dataset}'")
        options[keyword] = value
    partial = []

    def say_partial(message, category, filename, lineno, file=None, line=None) -> None:
        if not issubclass(category, PartialDatasetWarning):
            return default_show(message, category, filename, lineno, file, line)
        partial.append(str(message))
        print(f"splitmatch: WARNING: {message}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        default_show = warnings.showwarning
        warnings.simplefilter("always", PartialDatasetWarning)
        warnings.showwarning = say_partial
        folder = PREPARERS[args.dataset](args.src, args.dst, not args.quiet, **options)
    print(f"prepared {args.dataset} in {folder.root}:")
    lines = describe_prepared(folder)
    if (folder.root / FOLDS_FILE).is_file():  # PASCAL-5i, COCO-20i: each fold's classes and episode lists
        lines += describe_folds(folder)
    if args.dataset == "coco-20i":
        from splitmatch.data.prepare.coco20i import describe_conversion

        lines += describe_conversion(folder)
    for line in lines:
        print(line)
    for message in partial:  # again at the end, where it is not lost among progress bars
        print(f"splitmatch: WARNING: {message}", file=sys.stderr)
    return 0


def cmd_convert_clip(args: argparse.Namespace) -> int:
    from splitmatch.clip.loading import build_clip, save_clip_safetensors
    from splitmatch.storage.files import check_output_file

    check_output_file(args.dst)
    save_clip_safetensors(build_clip(args.arch, args.src), args.dst)
    print(f"wrote {args.dst}")
    return 0


def cmd_world(args: argparse.Namespace) -> int:
    from splitmatch.world.generator import generate_world

    folder = generate_world(args.out, seed=args.seed, progress=not args.quiet)
    counts = {split: len(folder.stems(split)) for split in folder.split_names()}
    print(f"world in {folder.root}: {counts}; unseen classes: {', '.join(folder.classes.unseen)}")
    if args.folds:
        from splitmatch.world.folds import WORLD_FOLD_SCHEME, write_world_folds

        lines = write_world_folds(folder)
        print(f"folds.json and episodes/{WORLD_FOLD_SCHEME.name}/ in {folder.root}:")
        for line in lines:
            print(line)
    return 0


def cmd_toy_clip(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from splitmatch.storage.files import check_output_file
    from splitmatch.world.toy_clip import ToyClipSpec, train_toy_clip

    check_output_file(args.out)  # written after training
    spec = ToyClipSpec(seed=args.seed)
    if args.steps is not None:
        spec = replace(spec, steps=args.steps)
    record = train_toy_clip(args.world, args.out, spec, progress=not args.quiet)
    print(f"wrote {args.out} ({record['train_seconds']} s)")
    for kind, accuracy in record["zero_shot"].items():
        print(f"  zero-shot {kind:>12s}: seen {accuracy['seen']:.1f}%  unseen {accuracy['unseen']:.1f}%")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from splitmatch.evaluation.metrics import format_table
    from splitmatch.world.demo import results_folder, run_demo

    metrics = run_demo(
        args.out,
        quick=args.quick,
        seed=args.seed,
        ablations=args.ablations,
        progress=not args.quiet,
        overrides=args.set,
    )
    print(format_table(metrics))
    results = results_folder(Path(args.out), args.set)
    print(f"report: {results / 'report.md'}, figures: {results / 'figures'}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from splitmatch.config.presets import PRESETS, describe_preset

    print(f"{'preset':<18} {'CLIP model':<19} {'crop':>7}  what it is for")
    for name in PRESETS:
        print(describe_preset(name))
    return 0
