"""The ``splitmatch`` command line: a thin layer over the library.

Every command reports bad input as one line naming the file or value, and exits non-zero.
"""

from __future__ import annotations

import os

# With both cores busy, OpenMP's default spin-waiting makes every parallel op wait for a
# descheduled thread (measured here: 5x slower CLIP training). Passive waiting avoids that;
# it must be set before torch loads its OpenMP runtime, and an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the input's fault: shown as one line, not a traceback."""
    from splitmatch.app.segment import AppError
    from splitmatch.clip.loading import ClipWeightsError
    from splitmatch.config import ConfigError
    from splitmatch.data.classes import ClassSplitError
    from splitmatch.data.folder import DatasetFormatError
    from splitmatch.engine.checkpoint import CheckpointError
    from splitmatch.engine.trainer import NonFiniteLossError
    from splitmatch.pseudo.cache import PseudoMaskCacheError

    return (
        AppError, ConfigError, ClassSplitError, DatasetFormatError, ClipWeightsError, CheckpointError,
        PseudoMaskCacheError, NonFiniteLossError, FileExistsError, FileNotFoundError,
    )  # fmt: skip


def _config(args: argparse.Namespace):
    from splitmatch.presets import load_config

    if args.config is None and args.preset is None:
        raise SystemExit("splitmatch: error: give --config FILE or --preset NAME (see `splitmatch presets`)")
    return load_config(args.config, args.preset, args.set)


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config (may name its base with 'preset: NAME')")
    parser.add_argument("--preset", help="base preset when no config file names one")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.lr=1e-4")


def _device(args: argparse.Namespace):
    """The device ``--device`` names, resolved (``auto``: the first GPU if any) and printed."""
    from splitmatch.device import resolve_device

    device = resolve_device(args.device)
    print(f"device: {device}")
    return device


def _checkpoint_dataset(args: argparse.Namespace, config):
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


def cmd_train(args: argparse.Namespace) -> int:
    from splitmatch.engine.trainer import train

    metrics = train(_config(args), args.out, resume=args.resume, progress=not args.quiet)
    _print_metrics(metrics)
    return 0


def cmd_pseudo_masks(args: argparse.Namespace) -> int:
    from splitmatch.data.folder import DatasetFolder
    from splitmatch.engine.trainer import seed_everything
    from splitmatch.model.build import build_segmentor
    from splitmatch.pseudo.build_cache import fill_cache, open_cache

    config = _config(args)
    folder = DatasetFolder(config.data.root)
    device = _device(args)
    seed_everything(config.train.seed)  # as training does: a random-init CLIP (tests) is then the same one
    encoder = build_segmentor(config).image_encoder.to(device)
    cache = open_cache(config, folder, encoder)
    count = fill_cache(
        cache, encoder, config, folder, config.data.train_split, args.batch_size, progress=not args.quiet
    )
    print(f"pseudo masks: computed {count}, cache {cache.directory}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from splitmatch.data.folder import DatasetFolder
    from splitmatch.engine.evaluator import evaluate, evaluate_predictions
    from splitmatch.metrics import format_class_table, format_table, json_ready

    if args.predictions:
        if not args.data_root:
            raise SystemExit("splitmatch: error: --predictions needs --data-root")
        folder = DatasetFolder(args.data_root)
        metrics = evaluate_predictions(args.predictions, folder, args.split, progress=not args.quiet)
    else:
        if not args.checkpoint:
            raise SystemExit("splitmatch: error: give --checkpoint CKPT or --predictions DIR")
        from splitmatch.config import ConfigError, merge, parse_override
        from splitmatch.predictor import load_segmentor

        model, record = load_segmentor(args.checkpoint, _device(args))
        config = record["config"]
        folder = _checkpoint_dataset(args, config)
        if folder.classes != record["classes"]:
            from splitmatch.engine.checkpoint import CheckpointError

            raise CheckpointError(
                f"checkpoint {args.checkpoint} was trained with classes {record['classes'].to_dict()} but "
                f"{folder.root}/classes.json describes {folder.classes.to_dict()}"
            )
        for override in args.set:
            if not override.startswith("inference."):
                raise ConfigError(f"eval --set takes inference.* keys only, got '{override}'")
            config = merge(config, parse_override(override)).validate()
        inference = config.inference
        if args.mode:
            inference.mode = args.mode
        if args.seen_calibration is not None:
            inference.seen_calibration = args.seen_calibration
        from splitmatch.inference import candidate_scoring

        metrics = evaluate(
            model, folder, args.split or config.data.val_split, inference, max_images=args.max_images,
            progress=not args.quiet, candidates=candidate_scoring(config),
        )  # fmt: skip
    print(format_table({"result": metrics}))
    print(format_class_table(metrics, set(folder.classes.unseen)))
    if "seen_calibration" in metrics:
        print("\nthe same predictions under each seen-class calibration (amount taken off seen-class scores):")
        print(format_table({f"seen calibration {k}": v for k, v in metrics["seen_calibration"].items()}))
    if args.json:
        Path(args.json).write_text(json.dumps(json_ready(metrics), indent=2) + "\n", encoding="utf-8")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from splitmatch.data.classes import parse_class_list
    from splitmatch.data.folder import atomic_write_bytes, read_image
    from splitmatch.predictor import Predictor
    from splitmatch.visualize import prediction_figure

    names = parse_class_list(args.classes)
    overrides = {"mode": args.mode} if args.mode else {}
    if args.seen_calibration is not None:
        overrides["seen_calibration"] = args.seen_calibration
    predictor = Predictor.from_checkpoint(args.checkpoint, _device(args), **overrides)
    out = Path(args.out)
    for path in args.images:
        image = read_image(path)
        labels = predictor.predict(image, names)
        stem = Path(path).stem
        _save_png(out / f"{stem}_labels.png", labels.astype(np.uint8), atomic_write_bytes)
        _save_png(out / f"{stem}_overlay.png", prediction_figure(image, labels, names), atomic_write_bytes)
        shares = np.bincount(labels.ravel(), minlength=len(names)) / labels.size
        found = ", ".join(f"{names[i]} {shares[i]:.0%}" for i in np.argsort(-shares) if shares[i] > 0.005)
        print(f"{path}: {found}")
    return 0


def _save_png(path: Path, array, writer) -> None:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    writer(path, buffer.getvalue())


def cmd_app(args: argparse.Namespace) -> int:
    from splitmatch.app.page import require_gradio, serve
    from splitmatch.app.segment import AppError

    require_gradio()  # before the model loads: a missing extra is the first thing to hear about
    if args.checkpoint is None:
        raise AppError(
            "give --checkpoint CKPT: a model.safetensors written by `splitmatch train` "
            "(`splitmatch demo` leaves one in demo_out/runs/split/)"
        )
    if args.max_megapixels <= 0:
        raise AppError(f"--max-megapixels must be positive, got {args.max_megapixels:g}")
    serve(args.checkpoint, args.host, args.port, args.device, round(args.max_megapixels * 1e6))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from splitmatch.data.prepare import PREPARERS

    folder = PREPARERS[args.dataset](args.src, args.dst, not args.quiet)
    print(f"prepared {args.dataset} in {folder.root}: splits {', '.join(folder.split_names())}")
    return 0


def cmd_convert_clip(args: argparse.Namespace) -> int:
    from splitmatch.clip.loading import build_clip, save_clip_safetensors

    save_clip_safetensors(build_clip(args.arch, args.src), args.dst)
    print(f"wrote {args.dst}")
    return 0


def cmd_seeds(args: argparse.Namespace) -> int:
    from splitmatch.engine.seeds import format_seed_table, run_seeds

    try:
        seeds = [int(part) for part in args.seeds.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"splitmatch: error: --seeds must be comma-separated integers, got '{args.seeds}'") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise SystemExit(f"splitmatch: error: --seeds needs distinct seeds, got '{args.seeds}'")
    print(format_seed_table(run_seeds(_config(args), seeds, args.out, progress=not args.quiet)))
    return 0


def cmd_world(args: argparse.Namespace) -> int:
    from splitmatch.world.generator import generate_world

    folder = generate_world(args.out, seed=args.seed, progress=not args.quiet)
    counts = {split: len(folder.stems(split)) for split in folder.split_names()}
    print(f"world in {folder.root}: {counts}; unseen classes: {', '.join(folder.classes.unseen)}")
    return 0


def cmd_toy_clip(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from splitmatch.world.toy_clip import ToyClipSpec, train_toy_clip

    spec = ToyClipSpec(seed=args.seed)
    if args.steps is not None:
        spec = replace(spec, steps=args.steps)
    record = train_toy_clip(args.world, args.out, spec, progress=not args.quiet)
    print(f"wrote {args.out} ({record['train_seconds']} s)")
    for kind, accuracy in record["zero_shot"].items():
        print(f"  zero-shot {kind:>12s}: seen {accuracy['seen']:.1f}%  unseen {accuracy['unseen']:.1f}%")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from splitmatch.metrics import format_table
    from splitmatch.world.demo import run_demo

    metrics = run_demo(args.out, quick=args.quick, seed=args.seed, ablations=args.ablations, progress=not args.quiet)
    print(format_table(metrics))
    print(f"report: {Path(args.out) / 'report.md'}, figures: {Path(args.out) / 'figures'}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from splitmatch.presets import PRESETS, describe_preset

    print(f"{'preset':<18} {'CLIP model':<19} {'crop':>7}  what it is for")
    for name in PRESETS:
        print(describe_preset(name))
    return 0


def _print_metrics(metrics: dict) -> None:
    from splitmatch.metrics import format_table

    print(format_table({"validation": metrics}))


def build_parser() -> argparse.ArgumentParser:
    from splitmatch.device import DEVICE_HELP

    parser = argparse.ArgumentParser(prog="splitmatch", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors too")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("train", help="train a model (single process or under torchrun)")
    _add_config_arguments(p)
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = commands.add_parser("seeds", help="train one config with several seeds; mean and std of every metric")
    _add_config_arguments(p)
    p.add_argument("--seeds", required=True, help="comma-separated, e.g. 0,1,2")
    p.add_argument("--out", required=True, help="folder for seed_<s> runs and seeds.json")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_seeds)

    p = commands.add_parser("pseudo-masks", help="compute and cache pseudo masks for the training split")
    _add_config_arguments(p)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_pseudo_masks)

    p = commands.add_parser("eval", help="evaluate a checkpoint, or score prediction PNGs")
    p.add_argument("--checkpoint")
    p.add_argument("--predictions", help="folder of <stem>.png label maps made by any method")
    p.add_argument("--data-root", help="dataset folder (default: the checkpoint's)")
    p.add_argument("--split", default=None, help="split to score (default: the config's val split)")
    p.add_argument("--mode", choices=["slide", "whole"])
    p.add_argument(
        "--seen-calibration",
        type=float,
        help="amount taken off seen-class scores for the headline numbers (default: the checkpoint's); "
        "0 and 0.1 are always reported as well",
    )
    p.add_argument("--max-images", type=int)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="inference setting, e.g. inference.candidate_scoring=excluded")  # fmt: skip
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--json", help="also write the metrics to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)

    p = commands.add_parser("predict", help="segment images with any class names")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--classes", required=True, help='comma-separated names, e.g. "cat,sofa,pottedplant"')
    p.add_argument("--out", required=True)
    p.add_argument("--mode", choices=["slide", "whole"])
    p.add_argument("--seen-calibration", type=float, help="amount taken off the scores of the model's seen classes")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("images", nargs="+")
    p.set_defaults(func=cmd_predict)

    p = commands.add_parser("app", help="a local web page to try a model on your images (extra: splitmatch[app])")
    p.add_argument("--checkpoint", help="model.safetensors to serve")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--device", default="cpu", help="cuda, cuda:N, cpu or auto (default: cpu)")
    p.add_argument("--max-megapixels", type=float, default=16.0, help="largest image accepted, in millions of pixels")
    p.set_defaults(func=cmd_app)

    p = commands.add_parser("prepare", help="convert an official dataset into the folder format")
    p.add_argument("dataset", choices=["voc", "coco-stuff", "context"])
    p.add_argument("--src", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_prepare)

    p = commands.add_parser("convert-clip", help="convert CLIP weights (e.g. OpenAI's TorchScript) to safetensors")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument(
        "--arch",
        default="ViT-B-16-quickgelu",
        help="open_clip model config the weights belong to (default: %(default)s, OpenAI's ViT-B/16; "
        "e.g. ViT-L-14-quickgelu for OpenAI's ViT-L/14), or a model-config JSON file",
    )
    p.set_defaults(func=cmd_convert_clip)

    p = commands.add_parser("world", help="generate the built-in zero-shot world dataset")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_world)

    p = commands.add_parser("toy-clip", help="train the world's small CLIP on captions of world images")
    p.add_argument("--world", required=True, help="a folder made by `splitmatch world`")
    p.add_argument("--out", required=True, help="weights file to write (.safetensors)")
    p.add_argument("--steps", type=int, help="training steps (default: ToyClipSpec's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_toy_clip)

    p = commands.add_parser("demo", help="Split Matching vs Hungarian matching in the built-in world, end to end")
    p.add_argument("--out", default="demo_out")
    p.add_argument("--quick", action="store_true", help="a tiny world and a few iterations (tests)")
    p.add_argument("--ablations", action="store_true", help="also train the ablations of the method")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = commands.add_parser("presets", help="list the named presets: CLIP model, training crop, purpose")
    p.set_defaults(func=cmd_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.debug:
        return args.func(args)
    try:
        return args.func(args)
    except _user_errors() as error:
        print(f"splitmatch: error: {error}", file=sys.stderr)
        return 2
