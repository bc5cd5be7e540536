"""The commands that use a trained model: ``predict``, ``app`` and ``package-model``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from splitmatch.commands.arguments import (
    PACKAGED_HELP,
    add_command,
    add_inference_arguments,
    add_model_argument,
    batch_size,
    finite_float,
    megapixels,
    port,
)
from splitmatch.commands.common import UsageError, command_device, inference_overrides


def add_predict_command(commands) -> None:
    from splitmatch.device import DEVICE_HELP

    p = add_command(commands, "predict", help="segment images and folders of images with any class names")
    p.add_argument("--checkpoint", help=f"model.safetensors (or a checkpoint) to use (default: {PACKAGED_HELP})")
    add_model_argument(p)
    p.add_argument(
        "--classes",
        required=True,
        help='comma-separated names, a class\'s synonyms joined by "|", e.g. "cat,sofa,tv monitor|television"',
    )
    p.add_argument(
        "--out",
        required=True,
        help="folder for <stem>_labels.png and <stem>_overlay.png per image, "
        "in the inputs' folder structure, and summary.json",
    )
    add_inference_arguments(
        p,
        "amount taken off the scores of the model's seen classes (default: the checkpoint's)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an inference setting, repeatable, e.g. inference.short_side=640; with a training-free "
        "--model also clip.* and recipe.* (clip.weights=FILE, recipe.pamr_steps=0)",
    )
    add_none_of_these_arguments(p)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument(
        "--batch-size",
        type=batch_size,
        default=8,
        help="images run through the model together (the same labels as one by one)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "images",
        nargs="+",
        metavar="PATH",
        help="image files (JPEG, PNG, ...), and folders searched for "
        ".jpg, .jpeg and .png files (hidden ones and --out skipped)",
    )
    p.set_defaults(func=cmd_predict)


def add_app_command(commands) -> None:
    p = add_command(commands, "app", help="a local web page to try a model on your images (needs the app extra)")
    add_model_argument(p)
    p.add_argument("--checkpoint", help=f"model.safetensors to serve (default: {PACKAGED_HELP})")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=port, default=7860, help="port to listen on")
    p.add_argument("--device", default="cpu", help="cuda, cuda:N, cpu or auto (default: cpu)")
    p.add_argument(
        "--max-megapixels",
        type=megapixels,
        default=16.0,
        help="largest image accepted, in millions of pixels",
    )
    p.set_defaults(func=cmd_app)


def add_package_model_command(commands) -> None:
    p = add_command(
        commands,
        "package-model",
        help="a model file without its packaged CLIP's tensors, made "
        "the same byte for byte from the same checkpoint (docs/world.md)",
    )
    p.add_argument("--checkpoint", required=True, help="a checkpoint trained with clip.weights packaged:NAME")
    p.add_argument("--out", required=True, help="model file to write (.safetensors)")
    p.add_argument(
        "--clip",
        metavar="packaged:NAME",
        help="the packaged CLIP the checkpoint was trained on, "
        "when its config names the file instead (its tensors are compared)",
    )
    p.add_argument(
        "--data-root",
        default="demo_out/world",
        help="the dataset folder its config names, relative to where a command runs "
        "(default: %(default)s, where `splitmatch demo` writes the world)",
    )
    p.set_defaults(func=cmd_package_model)


def cmd_predict(args: argparse.Namespace) -> int:
    from splitmatch.data.classes import parse_class_entries
    from splitmatch.data.names import printable
    from splitmatch.predict.batch import SUMMARY_NAME, predict_images
    from splitmatch.predict.outputs import prediction_outputs
    from splitmatch.storage.files import ensure_writable_folder

    entries = parse_class_entries(args.classes)
    none = none_of_these(args)
    if none is not None:
        none.check_names(entries)  # before any model loads
    outputs = prediction_outputs(args.images, Path(args.out))
    _check_outputs_are_not_inputs(args, outputs)
    ensure_writable_folder(Path(args.out))  # before the model is loaded and any image is done
    predictor, model_name = _predictor(args)
    summary = predict_images(
        predictor,
        outputs,
        entries,
        Path(args.out),
        model_name,
        progress=not args.quiet,
        batch_size=args.batch_size,
        none=none,
    )
    failures = [failure["error"] for failure in summary["failed"]]
    for failure in failures:
        print(f"splitmatch: error: {printable(failure, 2000)}", file=sys.stderr)
    if failures:
        print(
            f"splitmatch: error: {len(failures)} of {len(outputs)} images failed; the other "
            f"{len(outputs) - len(failures)} were written to {printable(args.out)}",
            file=sys.stderr,
        )
        return 2
    print(
        f"{len(outputs)} image{'s' * (len(outputs) != 1)}: label maps, overlays and {SUMMARY_NAME} in "
        f"{printable(args.out)}"
    )
    return 0


def add_none_of_these_arguments(parser: argparse.ArgumentParser) -> None:
    """``--none-label``, ``--none-below`` and ``--background``: the "none of these" rule of ``predict``."""

    parser.add_argument(
        "--none-label",
        metavar="NAME",
        help="give pixels that none of --classes fits this name "
        "(the last class of the label maps); with --none-below and/or --background",
    )
    parser.add_argument(
        "--none-below",
        type=finite_float,
        default=0.0,
        metavar="SHARE",
        help="with --none-label: "
        "a pixel whose best class holds less than this share of its scores (in [0, 1]) gets the "
        "label",
    )
    parser.add_argument(
        "--background",
        metavar="NAMES",
        help="with --none-label: comma-separated prompts scored "
        'beside --classes, e.g. "sky,wall,floor"; a pixel one of them wins gets the label',
    )


def none_of_these(args: argparse.Namespace):
    """The "none of these" rule ``--none-label``, ``--none-below`` and ``--background`` describe, or ``None``."""
    from splitmatch.inference.none_rule import NoneOfThese

    background = tuple(name.strip() for name in args.background.split(",")) if args.background else ()
    if args.none_label is None:
        if args.none_below or background:
            raise UsageError("--none-below and --background need --none-label: the name those pixels get")
        return None
    try:
        return NoneOfThese(args.none_label, args.none_below, background)
    except ValueError as problem:
        raise UsageError(str(problem)) from None


def _check_outputs_are_not_inputs(args: argparse.Namespace, outputs: dict[Path, Path]) -> None:
    """No label map, overlay or summary may replace an input image or the model file (an image
    named ``x_labels.png`` beside ``x.png``, ``--out`` the images' own folder)."""
    from splitmatch.predict.batch import SUMMARY_NAME
    from splitmatch.predict.packaged_model import checkpoint_file
    from splitmatch.storage.files import InputPaths

    model = [checkpoint_file(args.checkpoint)] if args.checkpoint else []
    reads = InputPaths([*outputs, *model])
    reads.check(Path(args.out) / SUMMARY_NAME, "--out")
    for target in outputs.values():
        for suffix in ("_labels.png", "_overlay.png"):
            reads.check(target.with_name(target.name + suffix), "--out")


def _predictor(args: argparse.Namespace):
    """The predictor ``--model`` (and ``--checkpoint``, ``--set``, ``--mode``...) describe, and its name
    for the summary: the checkpoint as given, or the training-free preset's name."""
    from splitmatch.config.training_free import describe_training_free
    from splitmatch.predict.predictor import Predictor

    if args.model == "checkpoint":
        checkpoint = _checkpoint_or_packaged(args.checkpoint)
        overrides = inference_overrides(args)
        predictor = Predictor.from_checkpoint(checkpoint, command_device(args), args.set, **overrides)
        proxy = predictor.trained_with.data.proxy
        if proxy.enabled:
            print(
                f"model: a pseudo-unseen proxy model (seen classes held out in training: "
                f"{', '.join(proxy.classes or [])}), not a benchmark model",
                flush=True,
            )
        return predictor, checkpoint
    if args.checkpoint:
        raise UsageError(f"--model {args.model} is training-free: --checkpoint goes with --model checkpoint only")
    if args.seen_calibration is not None:
        raise UsageError(f"--model {args.model} was trained on no class: --seen-calibration has nothing to act on")
    predictor = Predictor.training_free(
        args.model, command_device(args), settings=args.set, **inference_overrides(args)
    )
    print(f"model: {describe_training_free(predictor.training_free_config)}", flush=True)
    return predictor, predictor.name


def _checkpoint_or_packaged(checkpoint: str | None) -> str:
    """``--checkpoint``, else the model shipped with splitmatch; says what that model is for."""
    from splitmatch.predict.packaged_model import PACKAGED_MODEL_NAME, WORLD_MODEL_NOTE

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
    if args.model != "checkpoint" and args.checkpoint:
        raise UsageError(f"--model {args.model} is training-free: --checkpoint goes with --model checkpoint only")
    checkpoint = _checkpoint_or_packaged(args.checkpoint) if args.model == "checkpoint" else ""
    serve(checkpoint, args.host, args.port, args.device, round(args.max_megapixels * 1e6), args.model)
    return 0


def cmd_package_model(args: argparse.Namespace) -> int:
    from splitmatch.predict.packaged_model import checkpoint_file, package_model
    from splitmatch.storage.files import check_not_input, check_output_file

    check_output_file(args.out, "--out")
    check_not_input(args.out, [checkpoint_file(args.checkpoint)], "--out")  # never the checkpoint it reads
    record = package_model(args.checkpoint, args.out, args.data_root, args.clip)
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out} ({size / 1e6:.2f} MB, step {record['step']}, CLIP from {record['clip_from']['weights']})")
    return 0
