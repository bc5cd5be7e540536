"""What every converter checks before it writes anything: where it writes, the names it will
write, and that no file it opens is too large to decode.

* ``--dst`` equal to ``--src`` or inside it is refused: the source is never modified, and a
  converter writing ``images/`` and ``labels/`` into the source tree would be.
* Image names (stems) become file names and lines of the split lists. A name the folder format
  cannot hold faithfully is refused up front, all of them named in one line: a name that is not
  valid UTF-8 (the split lists are UTF-8), holds a path separator or a control character or line
  separator, as the readers judge them (data/names.py; a
  stem ``../x`` would write outside ``--dst``; a tab or a newline would split a line), starts
  with ``.`` (hidden, and the converters' own temporary files are ``.<name>.tmp``), or has
  leading or trailing white space (list lines are stripped when read). Spaces inside a name are
  fine.
* Images and labels are opened with :func:`splitmatch.data.folder.open_image`: a header claiming more pixels
  than :data:`splitmatch.data.folder.MAX_IMAGE_PIXELS` (the limit ``predict`` and training use)
  is refused with one line naming the file, before anything is decoded.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from splitmatch.data.folder import DatasetFormatError, list_some
from splitmatch.data.names import bad_character


def check_destination(src: Path, dst: Path) -> None:
    """Refuses a ``dst`` that is ``src`` or lies inside it (after resolving links and ``..``)."""
    source, destination = Path(src).resolve(), Path(dst).resolve()
    if destination == source:
        raise DatasetFormatError(f"--dst {dst} is the --src folder; the source is never modified: choose another --dst")
    if source in destination.parents:
        raise DatasetFormatError(
            f"--dst {dst} is inside --src {src}; the source is never modified: choose a --dst outside it"
        )


def stem_problem(stem: str) -> str | None:
    """Why ``stem`` cannot be an image name of the folder format, or ``None`` when it can."""
    if not stem:
        return "an empty name"
    try:
        stem.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid UTF-8"
    if "/" in stem or "\\" in stem:
        return "a path separator"
    if bad_character(stem) is not None:  # the readers' rule: they refuse these in split lists
        return "a control character (tab, newline, ...)"
    if stem.startswith("."):
        return "a leading '.' (hidden file)"
    if stem != stem.strip():
        return "leading or trailing white space"
    return None


def check_stems(stems: Iterable[str], where: str) -> None:
    """Refuses, in one line naming every offender (the first few), names the folder format cannot hold.

    Args:
        stems: image names as they will be written (file names without suffix, split-list lines).
        where: where the names come from, e.g. ``"the split lists of VOC2012"``.
    """
    problems = [(stem, problem) for stem in stems if (problem := stem_problem(stem)) is not None]
    if problems:
        shown = [f"{ascii(stem)} ({problem})" for stem, problem in problems]
        raise DatasetFormatError(
            f"{len(problems)} image name(s) in {where} cannot be written to the folder format: {list_some(shown)}; "
            "rename them (names must be UTF-8 without path separators, control characters, a leading '.' "
            "or surrounding spaces)"
        )
