"""The commands that make datasets and weights: ``prepare`` (official layouts -> the folder format)
and ``convert-clip``."""

from __future__ import annotations

import argparse
import sys

from splitmatch.commands.arguments import add_command, episode_counts, non_negative_int, positive_int
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


def add_prepare_command(commands) -> None:
    p = add_command(commands, "prepare", help="convert an official dataset into the folder format")
    p.add_argument(
        "dataset",
        choices=["voc", "coco-stuff", "context", "ade20k", "context-459", "pascal-5i", "coco-20i"],
        help="which official layout --src holds (docs/datasets.md)",
    )
    p.add_argument("--src", required=True, help="the official download, unpacked (never modified)")
    p.add_argument("--dst", required=True, help="folder to write in the folder format (not inside --src)")
    p.add_argument("--background", action="store_true", help="voc: keep background as a class (21 classes, 'voc21')")
    p.add_argument(
        "--sbd",
        help="voc, pascal-5i: SBD's benchmark_RELEASE/dataset folder, whose cls/*.mat labels "
        "are read directly (default: the SegmentationClassAug PNGs in --src)",
    )
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="prepare splits whose sizes are not the protocol's "
        "(a partial download, a test tree) with a warning (default: refuse, exit 2)",
    )
    p.add_argument(
        "--episodes",
        type=episode_counts,
        help="pascal-5i, coco-20i: test episode lists per fold, "
        "comma-separated lengths, e.g. 1000,5000 (default: 1000)",
    )
    p.add_argument(
        "--min-object-pixels",
        type=positive_int,
        help="pascal-5i, coco-20i: smallest object a test "
        "episode may ask for, in pixels (default: 2048, PFENet's 2 x 32 x 32)",
    )
    p.add_argument(
        "--episode-seed",
        type=non_negative_int,
        help="coco-20i: seed of the drawing of the test episodes (default: 0, as HSNet)",
    )
    p.add_argument(
        "--crowd",
        choices=["background", "ignore"],
        help="coco-20i: what a crowd pixel no object covers becomes (default: background, as in HSNet's masks)",
    )
    p.add_argument("--object-order", choices=["annotation", "largest-first"], help="coco-20i: object painting order")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_prepare)


def add_convert_clip_command(commands) -> None:
    p = add_command(commands, "convert-clip", help="convert CLIP weights (e.g. OpenAI's TorchScript) to safetensors")
    p.add_argument("src", help="CLIP weights: OpenAI's TorchScript .pt or an open_clip checkpoint")
    p.add_argument("dst", help=".safetensors file to write")
    p.add_argument(
        "--arch",
        default="ViT-B-16-quickgelu",
        help="open_clip model config the weights belong to (default: %(default)s, OpenAI's ViT-B/16; "
        "e.g. ViT-L-14-quickgelu for OpenAI's ViT-L/14), or a model-config JSON file",
    )
    p.set_defaults(func=cmd_convert_clip)


def cmd_prepare(args: argparse.Namespace) -> int:
    import warnings

    from splitmatch.data.fold_schemes import FOLDS_FILE
    from splitmatch.prepare import PREPARERS, PartialDatasetWarning
    from splitmatch.prepare.fold_files import describe_folds
    from splitmatch.prepare.readback import describe_prepared
    from splitmatch.storage.files import check_not_input

    options = {"allow_partial": args.allow_partial}
    for option, (keyword, datasets) in PREPARE_OPTIONS.items():
        value = getattr(args, option)
        if value in (None, False):
            continue
        if args.dataset not in datasets:
            flag = "--" + option.replace("_", "-")
            raise UsageError(f"{flag} is an option of 'prepare {' / '.join(datasets)}', not of '{args.dataset}'")
        options[keyword] = value
    if args.sbd:  # --dst inside --src is the preparer's to refuse; inside SBD's folder, this command's
        check_not_input(args.dst, [args.sbd], "--dst")
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
        from splitmatch.prepare.coco20i import describe_conversion

        lines += describe_conversion(folder)
    for line in lines:
        print(line)
    for message in partial:  # again at the end, where it is not lost among progress bars
        print(f"splitmatch: WARNING: {message}", file=sys.stderr)
    return 0


def cmd_convert_clip(args: argparse.Namespace) -> int:
    from splitmatch.clip.loading import build_clip, save_clip_safetensors
    from splitmatch.storage.files import check_not_input, check_output_file

    check_output_file(args.dst, "DST")
    check_not_input(args.dst, [args.src, args.arch], "DST")  # never the weights (or architecture file) it reads
    save_clip_safetensors(build_clip(args.arch, args.src), args.dst)
    print(f"wrote {args.dst}")
    return 0
