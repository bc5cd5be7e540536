"""What a refused command leaves: exit 2, one line on stderr, and the files it must not have touched."""

from __future__ import annotations

from pathlib import Path

from splitmatch.cli import main


def refused(capsys, args: list) -> str:
    """Runs the command line on ``args`` (paths turned into text), expects exit 2 and returns its one
    error line."""
    code = main([str(arg) for arg in args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("splitmatch: error: "), err
    return lines[0]


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
