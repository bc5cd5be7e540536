"""The ``splitmatch`` command line: a thin layer over the library.

Every command reports bad input as one line naming the file or value, and exits non-zero.
The error handling is here; each family of commands (:mod:`splitmatch.commands`) owns its
parsers beside its handlers.
"""

from __future__ import annotations

import os

# With both cores busy, OpenMP's default spin-waiting makes every parallel op wait for a
# descheduled thread (measured here: 5x slower CLIP training). Passive waiting avoids that;
# it must be set before torch loads its OpenMP runtime, and an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402

from splitmatch.commands import data, evaluation, export, prediction, pseudo_masks, training, world  # noqa: E402
from splitmatch.commands.arguments import refuse_empty_text  # noqa: E402
from splitmatch.data.names import printable  # noqa: E402
from splitmatch.errors import SplitmatchError  # noqa: E402

MESSAGE_CHARS = 2000  # the longest error line shown; a message is never a dump of the input


def describe_os_error(error: OSError) -> str:
    """An operating-system error in one line that names the path: ``Permission denied: /x/y``."""
    if error.filename is None or not error.strerror:
        return str(error)
    target = f"{error.filename}" + (f" -> {error.filename2}" if error.filename2 is not None else "")
    return f"{error.strerror}: {target}"


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand, in the order ``splitmatch --help`` lists them; each family of
    commands adds its own (:mod:`splitmatch.commands`)."""
    parser = argparse.ArgumentParser(prog="splitmatch", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors too")
    commands = parser.add_subparsers(dest="command", required=True)
    for add_command in (
        training.add_train_command,
        training.add_seeds_command,
        training.add_folds_command,
        pseudo_masks.add_pseudo_masks_command,
        evaluation.add_eval_command,
        prediction.add_predict_command,
        prediction.add_app_command,
        export.add_export_command,
        data.add_prepare_command,
        data.add_convert_clip_command,
        world.add_world_command,
        world.add_toy_clip_command,
        prediction.add_package_model_command,
        world.add_demo_command,
        world.add_presets_command,
    ):
        add_command(commands)
    for subcommand in commands.choices.values():
        refuse_empty_text(subcommand)  # "" is never "not given"
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.debug:
        return args.func(args)
    from splitmatch import distributed

    distributed.raise_on_termination()  # under torchrun: a rank stopped because another failed says so
    try:
        return _run(args)
    except SplitmatchError as error:
        distributed.ignore_termination()
        message = one_line(str(error))
    except BrokenPipeError:  # `splitmatch presets | head`: the reader has gone, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
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
