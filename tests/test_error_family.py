"""Every error splitmatch raises for bad input belongs to one family, so the command line turns
any of them into one line without a list kept by hand (splitmatch/errors.py)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from splitmatch.cli import main
from splitmatch.errors import SplitmatchError

PACKAGE = Path(__file__).resolve().parent.parent / "splitmatch"
# Not input errors: a signal turned into an exception so that DDP ranks stop together.
NOT_INPUT_ERRORS = {"splitmatch.distributed.Terminated"}


def defined_exceptions() -> list[type[BaseException]]:
    """Every exception class defined at the top level of a splitmatch module."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = [node.name for node in tree.body if isinstance(node, ast.ClassDef)]
        if not names:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module_name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if module_name == "splitmatch.predictor":
            continue  # a deprecated re-export that warns on import
        module = importlib.import_module(module_name)
        for name in names:
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, BaseException) and not issubclass(value, Warning):
                found.append(value)
    return found


def test_every_exception_of_the_package_is_an_input_error_of_the_family():
    classes = defined_exceptions()
    assert len(classes) > 15  # the scan found the package's errors
    outside = [
        f"{c.__module__}.{c.__name__}"
        for c in classes
        if not issubclass(c, SplitmatchError) and f"{c.__module__}.{c.__name__}" not in NOT_INPUT_ERRORS
    ]
    assert outside == []


def test_any_member_of_the_family_ends_in_one_line_and_exit_2(monkeypatch, capsys):
    import splitmatch.commands.world as world_commands

    class NewKindOfInputError(SplitmatchError):
        pass

    def fails(args):
        raise NewKindOfInputError("the value 7 of --thing must be\nat most 5")

    monkeypatch.setattr(world_commands, "cmd_presets", fails)
    assert main(["presets"]) == 2
    err = capsys.readouterr().err
    assert err == "splitmatch: error: the value 7 of --thing must be at most 5\n"
