"""What the commands' parsers share: argument types, each refusing a bad value in one line (argparse's
exit 2), the options several commands take, and a help that shows every default."""

from __future__ import annotations

import argparse
import math

from splitmatch.data.names import printable


def integer_in(low: int, high: int, what: str):
    """An argparse type: an integer in ``low..high`` (argparse turns the refusal into one line, exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got '{printable(text, 40)}'") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {what}, got {printable(text, 40)}")
        return value

    parse.bounds = (low, high)  # what the option takes, for tests that try its edges
    return parse


positive_int = integer_in(1, 2**63 - 1, "a positive integer")
fold_number = integer_in(0, 1000, "a fold number")
# data.episode_lists.MAX_EPISODE_COUNT (not imported: `splitmatch --help` loads no array library).
episode_count = integer_in(1, 1_000_000, "an episode count in 1..1,000,000")
# More images in one forward pass than any GPU holds at the protocols' sizes: a typo, not a batch.
batch_size = integer_in(1, 1024, "a batch size in 1..1024")
steps = integer_in(1, 10**9, "a step count in 1..10**9")  # as train.iterations
seed = integer_in(0, 2**63 - 1, "an integer in 0..2**63-1")
port = integer_in(1, 65535, "a port number in 1..65535")


def nonempty_text(text: str) -> str:
    """The type of every option that takes text or a path: an empty value is refused, never read as
    "not given" (``--json ""`` would write nothing, ``--checkpoint ""`` would load the packaged model)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"must not be empty, got '{printable(text, 40)}'")
    return text


def refuse_empty_text(parser: argparse.ArgumentParser) -> None:
    """Gives every option and argument of ``parser`` that takes text as it is typed (no type of its
    own) the type :func:`nonempty_text`; called once per subcommand, so a new option is covered too."""
    for action in parser._actions:
        takes_text = action.nargs != 0 and not isinstance(action, argparse._SubParsersAction)
        if takes_text and action.type is None and action.option_strings != ["-h", "--help"]:
            action.type = nonempty_text


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got '{printable(text, 40)}'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {printable(text, 40)}")
    return value


def megapixels(text: str) -> float:
    from splitmatch.data.folder import MAX_IMAGE_PIXELS

    value = finite_float(text)
    if not 0 < value * 1e6 <= MAX_IMAGE_PIXELS:
        raise argparse.ArgumentTypeError(
            f"must be more than 0 and at most {MAX_IMAGE_PIXELS / 1e6:g} (the largest image decoded safely), got {text}"
        )
    return value


non_negative_int = integer_in(0, 2**63 - 1, "a non-negative integer")


def distinct_integers(kind, what: str):
    """An argparse type: comma-separated distinct integers, each of type ``kind`` (an :func:`integer_in`),
    at least one; ``what`` names them in the refusal."""

    def parse(text: str) -> list[int]:
        parts = [part.strip() for part in text.split(",")]
        try:  # an empty part ('0,,1', '0,') is refused with the rest: the text is parsed whole
            values = [kind(part) for part in parts]
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"must be comma-separated {what}, e.g. 0,1,2, got '{printable(text, 60)}'"
            ) from None
        if not values or len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"must be distinct comma-separated {what}, got '{printable(text, 60)}'")
        return values

    parse.bounds = kind.bounds  # each item's
    return parse


def episode_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(episode_count(part.strip()) for part in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be episode counts in 1..1,000,000 separated by commas, got '{printable(text, 60)}'"
        ) from None
    if len(set(counts)) != len(counts):  # one list per length: a repeat is a typo, not a second list
        raise argparse.ArgumentTypeError(f"must be distinct episode counts, got '{printable(text, 60)}'")
    return counts


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


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    from splitmatch.config.training_free import training_free_names

    choices = ["checkpoint", *training_free_names()]
    parser.add_argument("--model", default="checkpoint", choices=choices, metavar="MODEL", help=MODEL_HELP)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config (may name its base with 'preset: NAME')")
    parser.add_argument("--preset", help="base preset when no config file names one")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.lr=1e-4")


class HelpShowsDefaults(argparse.HelpFormatter):
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


def add_command(commands, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` starts with its one-line purpose and shows every default."""
    return commands.add_parser(name, help=help, description=help, formatter_class=HelpShowsDefaults)


def add_peer_scoring_options(parser: argparse.ArgumentParser, episode_file: bool) -> None:
    """``--episode-size`` (HSNet's 400 x 400) and, with ``episode_file``, ``--episode-file`` (a peer's list)."""
    from splitmatch.data.episode_lists import MAX_SCORE_SIDE

    parser.add_argument(
        "--episode-size",
        type=integer_in(1, MAX_SCORE_SIDE, f"a side in 1..{MAX_SCORE_SIDE} pixels"),
        help="score the episodes at N x N, as HSNet's test.py "
        "at 400 (default: at the label's size, HSNet's --use_original_imgsize)",
    )
    if episode_file:
        parser.add_argument(
            "--episode-file",
            help="with --episodes: score a peer's list as it stands instead of the "
            "stored one: HSNet's PASCAL-5i pairs (fold<i>.txt), its COCO-20i per-class lists "
            "(fold<i>.pkl, drawn as HSNet draws) or a <stem><TAB><class> list "
            "(docs/benchmarks.md)",
        )


def add_inference_arguments(parser: argparse.ArgumentParser, calibration_help: str) -> None:
    """``--mode`` and ``--seen-calibration``: the inference settings of a trained model that ``eval``
    and ``predict`` change (the checkpoint's, unless given)."""
    parser.add_argument(
        "--mode",
        choices=["slide", "whole"],
        help="sliding windows or the whole image at once (default: the checkpoint's inference.mode)",
    )
    parser.add_argument("--seen-calibration", type=finite_float, help=calibration_help)
