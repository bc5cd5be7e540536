"""The ``splitmatch`` command line: a thin layer over the library.

Every command reports bad input as one line naming the file or value, and exits non-zero.
The parser and that error handling are here; what each command does is in
:mod:`splitmatch.commands`.
"""

from __future__ import annotations

import os

# With both cores busy, OpenMP's default spin-waiting makes every parallel op wait for a
# descheduled thread (measured here: 5x slower CLIP training). Passive waiting avoids that;
# it must be set before torch loads its OpenMP runtime, and an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402

from splitmatch.commands import data, evaluation, export, prediction, training  # noqa: E402
from splitmatch.commands.arguments import (  # noqa: E402
    episode_counts,
    integer_in,
    megapixels,
    non_negative_int,
    port,
    positive_int,
    seed,
)
from splitmatch.commands.common import UsageError  # noqa: E402
from splitmatch.data.names import printable  # noqa: E402

MESSAGE_CHARS = 2000  # the longest error line shown; a message is never a dump of the input
PACKAGED_HELP = "packaged:world-model, a model of the built-in world's shapes and textures, not of photos"
PROXY_HELP = (
    "a pseudo-unseen proxy instead of the benchmark (data.proxy.enabled=true): seen classes held out as "
    "unseen, part of the training images as its validation set; the legal place to compare settings "
    "(docs/protocols.md)"
)


MODEL_HELP = (
    "checkpoint: the trained model --checkpoint names; or a training-free model (no training, photos from the "
    "first minute): a recipe, maskclip, clearclip, sclip, naclip, scclip or value-path, reading OpenAI's CLIP "
    "ViT-B/16 (open_clip downloads it once; --set clip.weights=FILE for a local copy) under the benchmarks' "
    "512 protocol; RECIPE-authors under its authors' protocol; RECIPE-world on the built-in world's packaged "
    "CLIP (docs/training-free.md)"
)


def _add_model_argument(parser: argparse.ArgumentParser) -> None:
    from splitmatch.config.training_free import training_free_names

    choices = ["checkpoint", *training_free_names()]
    parser.add_argument("--model", default="checkpoint", choices=choices, metavar="MODEL", help=MODEL_HELP)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the input's fault: shown as one line, not a traceback."""
    from splitmatch.app.segment import AppError
    from splitmatch.clip.loading import ClipWeightsError
    from splitmatch.config import ConfigError
    from splitmatch.data.classes import ClassSplitError
    from splitmatch.data.folder import DatasetFormatError
    from splitmatch.export import ExportError
    from splitmatch.predict.outputs import OutputClashError, PredictInputError
    from splitmatch.pseudo.cache import PseudoMaskCacheError
    from splitmatch.storage.checkpoint import CheckpointError
    from splitmatch.train.run_folder import RunFolderError
    from splitmatch.train.step import NonFiniteLossError
    from splitmatch.world.generator import WorldMismatchError

    return (
        UsageError, AppError, ConfigError, ClassSplitError, DatasetFormatError, ClipWeightsError, CheckpointError,
        PseudoMaskCacheError, NonFiniteLossError, RunFolderError, OutputClashError, PredictInputError,
        WorldMismatchError, FloatingPointError, ExportError,
    )  # fmt: skip


def describe_os_error(error: OSError) -> str:
    """An operating-system error in one line that names the path: ``Permission denied: /x/y``."""
    if error.filename is None or not error.strerror:
        return str(error)
    target = f"{error.filename}" + (f" -> {error.filename2}" if error.filename2 is not None else "")
    return f"{error.strerror}: {target}"


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config (may name its base with 'preset: NAME')")
    parser.add_argument("--preset", help="base preset when no config file names one")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.lr=1e-4")


class _HelpShowsDefaults(argparse.HelpFormatter):
    """Appends ``(default: X)`` to every option whose help does not already say its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        default = action.default
        # Identity, not equality: a default of 0 (== False) is still shown.
        if (
            default is None
            or default is False
            or default == []
            or default is argparse.SUPPRESS
            or "default" in help_text
        ):
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
    p.add_argument("--proxy", action="store_true", help=PROXY_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=training.cmd_train)

    p = _add_command(commands, "seeds", help="train one config with several seeds; mean and std of every metric")
    _add_config_arguments(p)
    p.add_argument("--seeds", required=True, help="comma-separated, e.g. 0,1,2")
    p.add_argument("--out", required=True, help="folder for seed_<s> runs and seeds.json")
    p.add_argument("--proxy", action="store_true", help=PROXY_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=training.cmd_seeds)

    p = _add_command(commands, "folds", help="train and score the four folds of a fold benchmark (PASCAL-5i, "
                     "COCO-20i, the world's): episodes and the generalized form, per fold and their mean")  # fmt: skip
    _add_config_arguments(p)
    p.add_argument("--out", required=True, help="folder for fold_<i> runs and folds.json (a finished fold is "
                   "not trained again)")  # fmt: skip
    p.add_argument("--folds", help="comma-separated fold numbers, e.g. 0,2 (default: every fold)")
    p.add_argument("--fold-scheme", help="fold scheme of data.root's folds.json, e.g. coco-20i-consecutive "
                   "(default: the folder's)")  # fmt: skip
    p.add_argument("--episode-count", type=positive_int, default=1000, help="which stored episode list per fold, "
                   "by length (5000 when prepared with --episodes 1000,5000)")  # fmt: skip
    p.add_argument("--background-name", default="background", help="the name given beside each episode's class")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=training.cmd_folds)

    p = _add_command(
        commands, "pseudo-masks", help="compute and cache pseudo masks for the training split; --evaluate scores them"
    )
    _add_config_arguments(p)
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
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per frozen-CLIP forward pass")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=evaluation.cmd_pseudo_masks)

    p = _add_command(
        commands, "eval", help="evaluate a checkpoint or the training-free MaskCLIP, or score prediction PNGs"
    )
    p.add_argument("--checkpoint", help="model.safetensors (or a checkpoint) to evaluate")
    _add_model_argument(p)
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
    p.add_argument("--max-images", type=positive_int, help="score only the first N images of the split")
    p.add_argument("--episodes", action="store_true", help="score a fold's binary test episodes (PASCAL-5i, "
                   "COCO-20i protocol: episode mIoU, FB-IoU) instead of a split (docs/benchmarks.md)")  # fmt: skip
    p.add_argument("--fold", type=integer_in(0, 1000, "a fold number"), help="with --episodes: the fold whose "
                   "episodes to score (default: the fold whose classes the checkpoint held out)")  # fmt: skip
    p.add_argument("--fold-scheme", help="with --episodes: the fold scheme of the folder's folds.json "
                   "(default: the folder's)")  # fmt: skip
    p.add_argument("--episode-count", type=positive_int, help="with --episodes: which stored list, by length "
                   "(default: 1000; 5000 when prepared)")  # fmt: skip
    p.add_argument("--background-name", help="with --episodes: the name given beside the episode's class "
                   "(default: background)")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an inference setting, repeatable, e.g. inference.candidate_scoring=classes; with a "
                   "training-free --model also clip.* and recipe.* (clip.weights=FILE)")  # fmt: skip
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--json", help="also write the metrics to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=evaluation.cmd_eval)

    p = _add_command(commands, "predict", help="segment images and folders of images with any class names")
    p.add_argument("--checkpoint", help=f"model.safetensors (or a checkpoint) to use (default: {PACKAGED_HELP})")
    _add_model_argument(p)
    p.add_argument("--classes", required=True, help='comma-separated names, a class\'s synonyms joined by "|", '
                   'e.g. "cat,sofa,tv monitor|television"')  # fmt: skip
    p.add_argument("--out", required=True, help="folder for <stem>_labels.png and <stem>_overlay.png per image, "
                   "in the inputs' folder structure, and summary.json")  # fmt: skip
    p.add_argument("--mode", choices=["slide", "whole"], help="sliding windows or the whole image at once "
                   "(default: the checkpoint's inference.mode)")  # fmt: skip
    p.add_argument("--seen-calibration", type=float, help="amount taken off the scores of the model's seen classes "
                   "(default: the checkpoint's)")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an inference setting, repeatable, e.g. inference.short_side=640; with a training-free "
                   "--model also clip.* and recipe.* (clip.weights=FILE, recipe.pamr_steps=0)")  # fmt: skip
    prediction.add_none_of_these_arguments(p)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--batch-size", type=positive_int, default=8, help="images run through the model together "
                   "(the same labels as one by one)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("images", nargs="+", metavar="PATH", help="image files (JPEG, PNG, ...), and folders searched for "
                   ".jpg, .jpeg and .png files (hidden ones and --out skipped)")  # fmt: skip
    p.set_defaults(func=prediction.cmd_predict)

    p = _add_command(commands, "app", help="a local web page to try a model on your images (needs the app extra)")
    _add_model_argument(p)
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
    p.set_defaults(func=prediction.cmd_app)

    p = _add_command(commands, "export", help="write a model for a fixed class list as an ONNX file "
                     "(extra: splitmatch[onnx]; docs/export.md)")  # fmt: skip
    p.add_argument("--onnx", required=True, metavar="FILE", help="ONNX file to write")
    p.add_argument("--classes", required=True, help='comma-separated names, a class\'s synonyms joined by "|"; '
                   "their text embeddings are computed now and built into the file")  # fmt: skip
    p.add_argument("--checkpoint", help=f"model.safetensors (or a checkpoint) to export (default: {PACKAGED_HELP})")
    p.add_argument("--size", nargs="+", metavar="N", help="input size, N (square) or H W, multiples of the "
                   "model's patch size (default: the checkpoint's inference.short_side, square)")  # fmt: skip
    p.add_argument("--opset", type=positive_int, help="ONNX opset to write, 18 or later (default: the exporter's)")
    p.set_defaults(func=export.cmd_export)

    p = _add_command(commands, "prepare", help="convert an official dataset into the folder format")
    p.add_argument("dataset", choices=["voc", "coco-stuff", "context", "ade20k", "context-459", "pascal-5i",
                   "coco-20i"], help="which official layout --src holds (docs/datasets.md)")  # fmt: skip
    p.add_argument("--src", required=True, help="the official download, unpacked (never modified)")
    p.add_argument("--dst", required=True, help="folder to write in the folder format (not inside --src)")
    p.add_argument("--background", action="store_true", help="voc: keep background as a class (21 classes, 'voc21')")
    p.add_argument("--sbd", help="voc, pascal-5i: SBD's benchmark_RELEASE/dataset folder, whose cls/*.mat labels "
                   "are read directly (default: the SegmentationClassAug PNGs in --src)")  # fmt: skip
    p.add_argument("--allow-partial", action="store_true", help="prepare splits whose sizes are not the protocol's "
                   "(a partial download, a test tree) with a warning (default: refuse, exit 2)")  # fmt: skip
    p.add_argument("--episodes", type=episode_counts, help="pascal-5i, coco-20i: test episode lists per fold, "
                   "comma-separated lengths, e.g. 1000,5000 (default: 1000)")  # fmt: skip
    p.add_argument("--min-object-pixels", type=positive_int, help="pascal-5i, coco-20i: smallest object a test "
                   "episode may ask for, in pixels (default: 2048, PFENet's 2 x 32 x 32)")  # fmt: skip
    p.add_argument("--episode-seed", type=non_negative_int, help="coco-20i: seed of the drawing of the test "
                   "episodes (default: 0, as HSNet)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=data.cmd_prepare)

    p = _add_command(commands, "convert-clip", help="convert CLIP weights (e.g. OpenAI's TorchScript) to safetensors")
    p.add_argument("src", help="CLIP weights: OpenAI's TorchScript .pt or an open_clip checkpoint")
    p.add_argument("dst", help=".safetensors file to write")
    p.add_argument(
        "--arch",
        default="ViT-B-16-quickgelu",
        help="open_clip model config the weights belong to (default: %(default)s, OpenAI's ViT-B/16; "
        "e.g. ViT-L-14-quickgelu for OpenAI's ViT-L/14), or a model-config JSON file",
    )
    p.set_defaults(func=data.cmd_convert_clip)

    p = _add_command(commands, "world", help="generate the built-in zero-shot world dataset")
    p.add_argument("--out", required=True, help="folder to write the world into (folder format)")
    p.add_argument("--seed", type=seed, default=0, help="random seed of the world's images")
    p.add_argument("--folds", action="store_true", help="also write folds.json and 1,000 test episodes per fold: "
                   "the 12 object classes in 4 folds of 3, as PASCAL-5i (docs/protocols.md)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=data.cmd_world)

    p = _add_command(commands, "toy-clip", help="train the world's small CLIP on captions of world images")
    p.add_argument("--world", required=True, help="a folder made by `splitmatch world`")
    p.add_argument("--out", required=True, help="weights file to write (.safetensors)")
    p.add_argument("--steps", type=positive_int, help="training steps (default: ToyClipSpec's)")
    p.add_argument("--seed", type=seed, default=0, help="random seed of initialisation and batches")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=data.cmd_toy_clip)

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
    p.set_defaults(func=prediction.cmd_package_model)

    p = _add_command(commands, "demo", help="Split Matching vs Hungarian matching in the built-in world, end to end")
    p.add_argument("--out", default="demo_out", help="folder for the world, runs, report.md and figures")
    p.add_argument("--quick", action="store_true", help="a tiny world and a few iterations (tests)")
    p.add_argument("--ablations", action="store_true", help="also train the ablations of the method")
    p.add_argument("--seed", type=seed, default=0, help="training seed of every run")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="change the world preset in every run, e.g. train.iterations=1000 (runs go to runs-<changes>)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=data.cmd_demo)

    p = _add_command(commands, "presets", help="list the named presets: CLIP model, training crop, purpose")
    p.set_defaults(func=data.cmd_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.debug:
        return args.func(args)
    from splitmatch import distributed

    # Imported before the command runs: an except clause that imports could itself be interrupted.
    user_errors = _user_errors()
    distributed.raise_on_termination()  # under torchrun: a rank stopped because another failed says so
    try:
        return _run(args)
    except user_errors as error:
        distributed.ignore_termination()
        message = one_line(str(error))
    except OSError as error:  # a read-only folder, a full disk, a path under a file...
        message = one_line(describe_os_error(error))
    except KeyboardInterrupt:
        print("splitmatch: interrupted", file=sys.stderr)
        return 130
    except (distributed.Terminated, RuntimeError) as error:
        # Under torchrun, another rank's failure reaches this one as SIGTERM or a broken collective.
        distributed.ignore_termination()
        peer = distributed.peer_failure()
        if peer is None:
            if isinstance(error, distributed.Terminated):
                print("splitmatch: terminated", file=sys.stderr)
                return 143
            distributed.publish_failure(one_line(f"{type(error).__name__}: {error}"))
            raise
        print(f"splitmatch: error: stopped because {peer}", file=sys.stderr)
        return 2
    except Exception as error:  # a bug: the traceback follows, and the other ranks hear of it
        distributed.publish_failure(one_line(f"{type(error).__name__}: {error}"))
        raise
    distributed.publish_failure(message)  # the other ranks stop with this line too
    print(f"splitmatch: error: {message}", file=sys.stderr)  # one line, always
    return 2


def _run(args: argparse.Namespace) -> int:
    """The command; when it fails, the output folders it made and left empty are removed."""
    from splitmatch.storage import files

    files.MADE_FOLDERS.clear()
    try:
        status = args.func(args)
    except BaseException:
        files.remove_empty_made_folders()
        raise
    if status:
        files.remove_empty_made_folders()
    return status


def one_line(message: str) -> str:
    """An error message as one line (a DataLoader worker's traceback reduced to its last line)."""
    if "Original Traceback" in message:  # raised in a DataLoader worker: its own message is the last line
        message = message.strip().splitlines()[-1].split(": ", 1)[-1]
    # One line, always, of a bounded length, with no control character that could steer the terminal.
    return printable(" ".join(message[:MESSAGE_CHARS].split()), MESSAGE_CHARS)
