"""Every command and option of the CLI explains itself in ``--help``, with its default."""

from __future__ import annotations

import argparse

import pytest

from splitmatch.cli import build_parser


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(subparsers.choices)


COMMANDS = _commands()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_a_help_line_and_shows_its_default(name):
    command = COMMANDS[name]
    help_text = " ".join(command.format_help().split())
    assert command.description, f"`splitmatch {name} --help` has no description"
    for action in command._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        label = "/".join(action.option_strings) or action.dest
        assert action.help, f"splitmatch {name} {label} has no help line"
        if action.default not in (None, False, [], argparse.SUPPRESS):
            # argparse wraps lines: compare with whitespace collapsed.
            shown = " ".join(str(action.default).split())
            assert f"default: {shown}" in help_text or "default:" in " ".join(action.help.split()), (
                f"splitmatch {name} {label}: default {action.default!r} is not shown in --help"
            )


def test_help_of_every_command_prints_without_error(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args([name, "--help"])
        assert exit_info.value.code == 0
        assert name in capsys.readouterr().out
