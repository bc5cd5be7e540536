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

PACKAGED_HELP = "packaged:world-model, a model of the built-in world's shapes and textures, not of photos"


class UsageError(ValueError):
    """The command line itself is wrong (a missing or contradictory option)."""


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the input's fault: shown as one line, not a traceback."""
    from splitmatch.app.segment import AppError
    from splitmatch.clip.loading import ClipWeightsError
    from splitmatch.config import ConfigError
    from splitmatch.data.classes import ClassSplitError
    from splitmatch.data.folder import DatasetFormatError
    from splitmatch.engine.checkpoint import CheckpointError
    from splitmatch.engine.run_folder import RunFolderError
    from splitmatch.engine.trainer import NonFiniteLossError
    from splitmatch.predict_outputs import OutputClashError, PredictInputError
    from splitmatch.pseudo.cache import PseudoMaskCacheError

    return (
        UsageError, AppError, ConfigError, ClassSplitError, DatasetFormatError, ClipWeightsError, CheckpointError,
        PseudoMaskCacheError, NonFiniteLossError, RunFolderError, OutputClashError, PredictInputError,
        FloatingPointError,
    )  # fmt: skip


def describe_os_error(error: OSError) -> str:
    """An operating-system error in one line that names the path: ``Permission denied: /x/y``."""
    if error.filename is None or not error.strerror:
        return str(error)
    target = f"{error.filename}" + (f" -> {error.filename2}" if error.filename2 is not None else "")
    return f"{error.strerror}: {target}"


def _config(args: argparse.Namespace):
    from splitmatch.presets import load_config

    if args.config is None and args.preset is None:
        raise UsageError("give --config FILE or --preset NAME (see `splitmatch presets`)")
    return load_config(args.config, args.preset, args.set)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


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

    if (args.json or args.figure) and not args.evaluate:
        raise SystemExit("splitmatch: error: --json and --figure need --evaluate")
    config = _config(args)
    folder = DatasetFolder(config.data.root)
    split = args.split or config.data.train_split
    device = _device(args)
    seed_everything(config.train.seed)  # as training does: a random-init CLIP (tests) is then the same one
    model = build_segmentor(config).to(device)
    cache = open_cache(config, folder, model.image_encoder)
    count = fill_cache(cache, model.image_encoder, config, folder, split, args.batch_size, progress=not args.quiet)
    print(f"pseudo masks: computed {count}, cache {cache.directory}")
    if args.evaluate:
        _evaluate_pseudo_masks(args, config, folder, cache, model, split)
    return 0


def _evaluate_pseudo_masks(args, config, folder, cache, model, split: str) -> None:
    from splitmatch.engine.run_record import write_json
    from splitmatch.pseudo.quality import evaluate_pseudo_masks, format_quality
    from splitmatch.pseudo.quality_figure import worst_misses_figure

    text = model.encode_classes(list(folder.classes.names))  # unseen names too: for scoring only
    report = evaluate_pseudo_masks(
        folder, cache, split, text, config.pseudo.window_sizes, config.pseudo.min_area, progress=not args.quiet
    )
    print(f"\npseudo masks of split '{split}' ({report['images']} images) against its full labels, percent:")
    print(format_quality(report))
    print(report["note"])
    if args.json:
        write_json(Path(args.json), report)
        print(f"wrote {args.json}")
    if args.figure:
        rows = worst_misses_figure(folder, cache, report, args.figure)
        print(f"wrote {args.figure} ({rows} images)" if rows else "no unseen pixel was missed: no figure")


def cmd_eval(args: argparse.Namespace) -> int:
    from splitmatch.config import DataConfig, merge
    from splitmatch.data.folder import DatasetFolder, check_output_file
    from splitmatch.data.vocabulary import Vocabulary, read_vocabulary
    from splitmatch.engine.evaluator import evaluate, evaluate_predictions
    from splitmatch.metrics import json_ready

    if args.json:
        check_output_file(args.json)  # before the evaluation, not after it
    record = None
    if args.predictions:
        if args.checkpoint:
            raise UsageError("give --checkpoint CKPT or --predictions DIR, not both")
        if not args.data_root:
            raise UsageError("--predictions needs --data-root")
        folder = DatasetFolder(args.data_root)
        vocabulary = read_vocabulary(args.vocabulary, folder.classes) if args.vocabulary else None
        split = args.split or DataConfig().val_split
        metrics = evaluate_predictions(args.predictions, folder, split, not args.quiet, vocabulary)
    else:
        if not args.checkpoint:
            raise UsageError("give --checkpoint CKPT or --predictions DIR")
        from splitmatch.config import ConfigError, parse_override
        from splitmatch.inference import candidate_scoring
        from splitmatch.predictor import load_segmentor, names_trained_on

        overrides = {"mode": args.mode} if args.mode else {}
        if args.seen_calibration is not None:
            overrides["seen_calibration"] = args.seen_calibration
        model, record = load_segmentor(args.checkpoint, _device(args))
        config = record["config"]
        for override in args.set:
            if not override.startswith("inference."):
                raise ConfigError(f"eval --set takes inference.* keys only, got '{override}'")
            config = merge(config, parse_override(override))
        config = merge(config, {"inference": overrides}).validate()
        # The dataset's classes may differ from the checkpoint's: they are scored by name.
        folder = _checkpoint_dataset(args, config)
        vocabulary = read_vocabulary(args.vocabulary, folder.classes) if args.vocabulary else None
        metrics = evaluate(
            model, folder, args.split or config.data.val_split, config.inference, vocabulary,
            names_trained_on(record), max_images=args.max_images, progress=not args.quiet,
            candidates=candidate_scoring(config),
        )  # fmt: skip
    vocabulary = vocabulary or Vocabulary.of_dataset(folder.classes)
    if args.vocabulary:
        metrics["vocabulary"] = {"file": str(args.vocabulary), "left_out": vocabulary.left_out}
    _print_evaluation(metrics, vocabulary, record)
    if args.json:
        from splitmatch.data.folder import atomic_write_bytes

        atomic_write_bytes(args.json, (json.dumps(json_ready(metrics), indent=2) + "\n").encode("utf-8"))
    return 0


def _print_evaluation(metrics: dict, vocabulary, record: dict | None) -> None:
    """The eval report: what was scored, the tables, per-class IoU, and the split by training names."""
    from splitmatch.data.folder import list_some
    from splitmatch.metrics import format_class_table, format_name_split_table, format_table

    classes = vocabulary.classes
    left_out = f" (left out, their pixels ignored: {list_some(vocabulary.left_out)})" if vocabulary.left_out else ""
    print(f"scored with the {classes.num_classes} classes of '{classes.dataset}'{left_out}")
    if not classes.unseen:
        print(f"'{classes.dataset}' defines no unseen classes: mIoU(S) is over all classes, mIoU(U) and hIoU are n/a")
    print(format_table({"result": metrics}))
    print(format_class_table(metrics, set(classes.unseen)))
    calibrations = metrics.get("seen_calibration", {})
    if calibrations:
        print("the same predictions under each seen-class calibration (amount taken off seen-class scores):")
        print(format_table({f"seen calibration {k}": v for k, v in calibrations.items()}))
    if record is None:
        return
    trained_from = record["classes"].dataset
    trained, others = metrics["trained_names"], metrics["other_names"]
    if trained == classes.seen_names:
        print(f"the checkpoint (trained on '{trained_from}') was trained on exactly the seen classes above")
        return
    # A checkpoint scored on classes other than the seen ones it was trained on: say which it knows.
    print(
        f"split by the checkpoint's training vocabulary ('{trained_from}'): {len(trained)} of these "
        f"{classes.num_classes} class names were trained on ({list_some(trained) or 'none'}), {len(others)} "
        f"were not ({list_some(others) or 'none'}); the seen-class calibration applies to the former:"
    )
    print(format_name_split_table({f"seen calibration {k}": v for k, v in calibrations.items()}))


def cmd_predict(args: argparse.Namespace) -> int:
    from splitmatch.data.classes import parse_class_entries
    from splitmatch.data.folder import ensure_writable_folder
    from splitmatch.predict_outputs import prediction_outputs
    from splitmatch.predict_run import SUMMARY_NAME, predict_images
    from splitmatch.predictor import Predictor

    entries = parse_class_entries(args.classes)
    outputs = prediction_outputs(args.images, Path(args.out))
    ensure_writable_folder(Path(args.out))  # before the model is loaded and any image is done
    overrides = {"mode": args.mode} if args.mode else {}
    if args.seen_calibration is not None:
        overrides["seen_calibration"] = args.seen_calibration
    checkpoint = _checkpoint_or_packaged(args.checkpoint)
    predictor = Predictor.from_checkpoint(checkpoint, _device(args), **overrides)
    summary = predict_images(predictor, outputs, entries, Path(args.out), checkpoint, progress=not args.quiet)
    failures = [failure["error"] for failure in summary["failed"]]
    for failure in failures:
        print(f"splitmatch: error: {failure}", file=sys.stderr)
    if failures:
        print(f"splitmatch: error: {len(failures)} of {len(outputs)} images failed; the other "
              f"{len(outputs) - len(failures)} were written to {args.out}", file=sys.stderr)  # fmt: skip
        return 2
    print(f"{len(outputs)} image{'s' * (len(outputs) != 1)}: label maps, overlays and {SUMMARY_NAME} in {args.out}")
    return 0


def _checkpoint_or_packaged(checkpoint: str | None) -> str:
    """``--checkpoint``, else the model shipped with splitmatch; says what that model is for."""
    from splitmatch.engine.packaged_model import PACKAGED_MODEL_NAME, WORLD_MODEL_NOTE

    checkpoint = checkpoint or PACKAGED_MODEL_NAME
    if checkpoint == PACKAGED_MODEL_NAME:
        print(f"model: {PACKAGED_MODEL_NAME}, {WORLD_MODEL_NOTE}", flush=True)
    return checkpoint


def cmd_app(args: argparse.Namespace) -> int:
    from splitmatch.app.page import require_gradio, serve
    from splitmatch.app.segment import AppError

    require_gradio()  # before the model loads: a missing extra is the first thing to hear about
    if args.max_megapixels <= 0:
        raise AppError(f"--max-megapixels must be positive, got {args.max_megapixels:g}")
    checkpoint = _checkpoint_or_packaged(args.checkpoint)
    serve(checkpoint, args.host, args.port, args.device, round(args.max_megapixels * 1e6))
    return 0


def cmd_package_model(args: argparse.Namespace) -> int:
    from splitmatch.data.folder import check_output_file
    from splitmatch.engine.packaged_model import package_model

    check_output_file(args.out)
    record = package_model(args.checkpoint, args.out, args.data_root, args.clip)
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out} ({size / 1e6:.2f} MB, step {record['step']}, CLIP from {record['clip_from']['weights']})")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from splitmatch.data.prepare import PREPARERS

    options = {}
    if args.background:
        if args.dataset != "voc":
            raise SystemExit(f"splitmatch: error: --background is an option of 'prepare voc', not of '{args.dataset}'")
        options["background"] = True
    folder = PREPARERS[args.dataset](args.src, args.dst, not args.quiet, **options)
    print(f"prepared {args.dataset} in {folder.root}: splits {', '.join(folder.split_names())}")
    return 0


def cmd_convert_clip(args: argparse.Namespace) -> int:
    from splitmatch.clip.loading import build_clip, save_clip_safetensors
    from splitmatch.data.folder import check_output_file

    check_output_file(args.dst)
    save_clip_safetensors(build_clip(args.arch, args.src), args.dst)
    print(f"wrote {args.dst}")
    return 0


def cmd_seeds(args: argparse.Namespace) -> int:
    from splitmatch.engine.seeds import format_seed_table, run_seeds

    try:
        seeds = [int(part) for part in args.seeds.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--seeds must be comma-separated integers, got '{args.seeds}'") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UsageError(f"--seeds needs distinct non-negative seeds, got '{args.seeds}'")
    from splitmatch.data.folder import ensure_writable_folder

    config = _config(args)
    ensure_writable_folder(args.out)  # seeds.json is written after every run has trained
    print(format_seed_table(run_seeds(config, seeds, args.out, progress=not args.quiet)))
    return 0


def cmd_world(args: argparse.Namespace) -> int:
    from splitmatch.world.generator import generate_world

    folder = generate_world(args.out, seed=args.seed, progress=not args.quiet)
    counts = {split: len(folder.stems(split)) for split in folder.split_names()}
    print(f"world in {folder.root}: {counts}; unseen classes: {', '.join(folder.classes.unseen)}")
    return 0


def cmd_toy_clip(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from splitmatch.data.folder import check_output_file
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


class _HelpShowsDefaults(argparse.HelpFormatter):
    """Appends ``(default: X)`` to every option whose help does not already say its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        default = action.default
        if default in (None, False, [], argparse.SUPPRESS) or "default" in help_text:
            return help_text
        return f"{help_text} (default: %(default)s)"


def _add_command(commands, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` starts with its one-line purpose and shows every default."""
    return commands.add_parser(name, help=help, description=help, formatter_class=_HelpShowsDefaults)


def build_parser() -> argparse.ArgumentParser:
    from splitmatch.device import DEVICE_HELP

    parser = argparse.ArgumentParser(prog="splitmatch", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors too")
    commands = parser.add_subparsers(dest="command", required=True)

    p = _add_command(commands, "train", help="train a model (single process or under torchrun)")
    _add_config_arguments(p)
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = _add_command(commands, "seeds", help="train one config with several seeds; mean and std of every metric")
    _add_config_arguments(p)
    p.add_argument("--seeds", required=True, help="comma-separated, e.g. 0,1,2")
    p.add_argument("--out", required=True, help="folder for seed_<s> runs and seeds.json")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_seeds)

    p = _add_command(
        commands, "pseudo-masks", help="compute and cache pseudo masks for the training split; --evaluate scores them"
    )
    _add_config_arguments(p)
    p.add_argument("--split", help="split to compute (default: the config's training split)")
    p.add_argument(
        "--evaluate",
        action="store_true",
        help="score the pseudo masks against the full labels (unseen classes included; used for this score only)",
    )
    p.add_argument("--json", help="with --evaluate: also write the scores to this JSON file")
    p.add_argument("--figure", help="with --evaluate: draw the worst misses into this PNG file")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--batch-size", type=_positive_int, default=8, help="images per frozen-CLIP forward pass")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_pseudo_masks)

    p = _add_command(commands, "eval", help="evaluate a checkpoint, or score prediction PNGs")
    p.add_argument("--checkpoint", help="model.safetensors (or a checkpoint) to evaluate")
    p.add_argument("--predictions", help="folder of <stem>.png label maps made by any method")
    p.add_argument("--data-root", help="dataset folder (default: the checkpoint's); its classes may differ from "
                   "the checkpoint's: they are scored by name")  # fmt: skip
    p.add_argument("--vocabulary", metavar="JSON", help="score with this class list instead of the dataset's: "
                   "reordered, renamed, a subset or with synonyms, tied to the dataset's classes by name "
                   "(docs/open-vocabulary.md)")  # fmt: skip
    p.add_argument("--split", default=None, help="split to score (default: the config's val split)")
    p.add_argument("--mode", choices=["slide", "whole"], help="sliding windows or the whole image at once "
                   "(default: the checkpoint's inference.mode)")  # fmt: skip
    p.add_argument(
        "--seen-calibration",
        type=float,
        help="amount taken off seen-class scores for the headline numbers (default: the checkpoint's); "
        "0 and 0.1 are always reported as well",
    )
    p.add_argument("--max-images", type=_positive_int, help="score only the first N images of the split")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an inference setting, repeatable, e.g. inference.candidate_scoring=classes")  # fmt: skip
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--json", help="also write the metrics to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)

    p = _add_command(commands, "predict", help="segment images and folders of images with any class names")
    p.add_argument("--checkpoint", help=f"model.safetensors (or a checkpoint) to use (default: {PACKAGED_HELP})")
    p.add_argument("--classes", required=True, help='comma-separated names, a class\'s synonyms joined by "|", '
                   'e.g. "cat,sofa,tv monitor|television"')  # fmt: skip
    p.add_argument("--out", required=True, help="folder for <stem>_labels.png and <stem>_overlay.png per image, "
                   "in the inputs' folder structure, and summary.json")  # fmt: skip
    p.add_argument("--mode", choices=["slide", "whole"], help="sliding windows or the whole image at once "
                   "(default: the checkpoint's inference.mode)")  # fmt: skip
    p.add_argument("--seen-calibration", type=float, help="amount taken off the scores of the model's seen classes "
                   "(default: the checkpoint's)")  # fmt: skip
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("images", nargs="+", metavar="PATH", help="image files (JPEG, PNG, ...), and folders searched for "
                   ".jpg, .jpeg and .png files (hidden ones and --out skipped)")  # fmt: skip
    p.set_defaults(func=cmd_predict)

    p = _add_command(commands, "app", help="a local web page to try a model on your images (extra: splitmatch[app])")
    p.add_argument("--checkpoint", help=f"model.safetensors to serve (default: {PACKAGED_HELP})")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port to listen on")
    p.add_argument("--device", default="cpu", help="cuda, cuda:N, cpu or auto (default: cpu)")
    p.add_argument("--max-megapixels", type=float, default=16.0, help="largest image accepted, in millions of pixels")
    p.set_defaults(func=cmd_app)

    p = _add_command(commands, "prepare", help="convert an official dataset into the folder format")
    p.add_argument("dataset", choices=["voc", "coco-stuff", "context", "ade20k", "context-459"],
                   help="which official layout --src holds (docs/datasets.md)")  # fmt: skip
    p.add_argument("--src", required=True, help="the official download, unpacked (never modified)")
    p.add_argument("--dst", required=True, help="folder to write in the folder format")
    p.add_argument("--background", action="store_true", help="voc: keep background as a class (21 classes, 'voc21')")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_prepare)

    p = _add_command(commands, "convert-clip", help="convert CLIP weights (e.g. OpenAI's TorchScript) to safetensors")
    p.add_argument("src", help="CLIP weights: OpenAI's TorchScript .pt or an open_clip checkpoint")
    p.add_argument("dst", help=".safetensors file to write")
    p.add_argument(
        "--arch",
        default="ViT-B-16-quickgelu",
        help="open_clip model config the weights belong to (default: %(default)s, OpenAI's ViT-B/16; "
        "e.g. ViT-L-14-quickgelu for OpenAI's ViT-L/14), or a model-config JSON file",
    )
    p.set_defaults(func=cmd_convert_clip)

    p = _add_command(commands, "world", help="generate the built-in zero-shot world dataset")
    p.add_argument("--out", required=True, help="folder to write the world into (folder format)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the world's images")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_world)

    p = _add_command(commands, "toy-clip", help="train the world's small CLIP on captions of world images")
    p.add_argument("--world", required=True, help="a folder made by `splitmatch world`")
    p.add_argument("--out", required=True, help="weights file to write (.safetensors)")
    p.add_argument("--steps", type=_positive_int, help="training steps (default: ToyClipSpec's)")
    p.add_argument("--seed", type=int, default=0, help="random seed of initialisation and batches")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_toy_clip)

    p = _add_command(commands, "package-model", help="a model file without its packaged CLIP's tensors, made "
                     "the same byte for byte from the same checkpoint (docs/world.md)")  # fmt: skip
    p.add_argument("--checkpoint", required=True, help="a checkpoint trained with clip.weights packaged:NAME")
    p.add_argument("--out", required=True, help="model file to write (.safetensors)")
    p.add_argument("--clip", metavar="packaged:NAME", help="the packaged CLIP the checkpoint was trained on, "
                   "when its config names the file instead (its tensors are compared)")  # fmt: skip
    p.add_argument(
        "--data-root",
        default="demo_out/world",
        help="the dataset folder its config names, relative to where a command runs "
        "(default: %(default)s, where `splitmatch demo` writes the world)",
    )
    p.set_defaults(func=cmd_package_model)

    p = _add_command(commands, "demo", help="Split Matching vs Hungarian matching in the built-in world, end to end")
    p.add_argument("--out", default="demo_out", help="folder for the world, runs, report.md and figures")
    p.add_argument("--quick", action="store_true", help="a tiny world and a few iterations (tests)")
    p.add_argument("--ablations", action="store_true", help="also train the ablations of the method")
    p.add_argument("--seed", type=int, default=0, help="training seed of every run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = _add_command(commands, "presets", help="list the named presets: CLIP model, training crop, purpose")
    p.set_defaults(func=cmd_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.debug:
        return args.func(args)
    try:
        return args.func(args)
    except _user_errors() as error:
        message = str(error)
    except OSError as error:  # a read-only folder, a full disk, a path under a file...
        message = describe_os_error(error)
    except KeyboardInterrupt:
        print("splitmatch: interrupted", file=sys.stderr)
        return 130
    if "Original Traceback" in message:  # raised in a DataLoader worker: its own message is the last line
        message = message.strip().splitlines()[-1].split(": ", 1)[-1]
    print(f"splitmatch: error: {' '.join(message.split())}", file=sys.stderr)  # one line, always
    return 2
