"""The commands of the built-in world: ``world``, ``toy-clip``, ``demo``, and ``presets`` (the list of
named presets)."""

from __future__ import annotations

import argparse
from pathlib import Path

from splitmatch.commands.arguments import add_command, seed, steps


def add_world_command(commands) -> None:
    p = add_command(commands, "world", help="generate the built-in zero-shot world dataset")
    p.add_argument("--out", required=True, help="folder to write the world into (folder format)")
    p.add_argument("--seed", type=seed, default=0, help="random seed of the world's images")
    p.add_argument(
        "--folds",
        action="store_true",
        help="also write folds.json and 1,000 test episodes per fold: "
        "the 12 object classes in 4 folds of 3, as PASCAL-5i (docs/protocols.md)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_world)


def add_toy_clip_command(commands) -> None:
    p = add_command(commands, "toy-clip", help="train the world's small CLIP on captions of world images")
    p.add_argument("--world", required=True, help="a folder made by `splitmatch world`")
    p.add_argument("--out", required=True, help="weights file to write (.safetensors)")
    p.add_argument("--steps", type=steps, help="training steps (default: ToyClipSpec's)")
    p.add_argument("--seed", type=seed, default=0, help="random seed of initialisation and batches")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_toy_clip)


def add_demo_command(commands) -> None:
    p = add_command(commands, "demo", help="Split Matching vs Hungarian matching in the built-in world, end to end")
    p.add_argument("--out", default="demo_out", help="folder for the world, runs, report.md and figures")
    p.add_argument("--quick", action="store_true", help="a tiny world and a few iterations (tests)")
    p.add_argument("--ablations", action="store_true", help="also train the ablations of the method")
    p.add_argument("--seed", type=seed, default=0, help="training seed of every run")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change the world preset in every run, e.g. train.iterations=1000 (runs go to runs-<changes>)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)


def add_presets_command(commands) -> None:
    p = add_command(commands, "presets", help="list the named presets: CLIP model, training crop, purpose")
    p.set_defaults(func=cmd_presets)


def cmd_world(args: argparse.Namespace) -> int:
    from splitmatch.world.generator import generate_world

    folder = generate_world(args.out, seed=args.seed, progress=not args.quiet)
    counts = {split: len(folder.stems(split)) for split in folder.split_names()}
    print(f"world in {folder.root}: {counts}; unseen classes: {', '.join(folder.classes.unseen)}")
    if args.folds:
        from splitmatch.world.fold_benchmark import WORLD_FOLD_SCHEME, write_world_folds

        lines = write_world_folds(folder)
        print(f"folds.json and episodes/{WORLD_FOLD_SCHEME.name}/ in {folder.root}:")
        for line in lines:
            print(line)
    return 0


def cmd_toy_clip(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from splitmatch.commands.common import dataset_inputs
    from splitmatch.storage.files import check_not_input, check_output_file
    from splitmatch.world.toy_clip import ToyClipSpec, train_toy_clip

    check_output_file(args.out, "--out")  # written after training
    check_not_input(args.out, dataset_inputs(args.world), "--out")  # never a file of the world it reads
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
