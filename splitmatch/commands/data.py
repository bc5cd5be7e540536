"""The commands that make data and weights: ``prepare``, ``convert-clip``, ``world``, ``toy-clip``,
``demo``, and ``presets`` (the list of named presets)."""

from __future__ import annotations

import argparse
from pathlib import Path

from splitmatch.commands.common import UsageError


def cmd_prepare(args: argparse.Namespace) -> int:
    from splitmatch.data.prepare import PREPARERS

    options = {}
    if args.background:
        if args.dataset != "voc":
            raise UsageError(f"--background is an option of 'prepare voc', not of '{args.dataset}'")
        options["background"] = True
    folder = PREPARERS[args.dataset](args.src, args.dst, not args.quiet, **options)
    print(f"prepared {args.dataset} in {folder.root}: splits {', '.join(folder.split_names())}")
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
