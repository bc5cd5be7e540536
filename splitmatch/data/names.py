"""Names that come from data and become parts of paths: stems, split names, uploaded file names.

A dataset's split lists, a pseudo-mask cache, ``eval --predictions``, ``predict`` and the app all
turn names they read into file paths. A name is not a path: whoever wrote the split list (or
the upload, or the folder of images) must not be able to make splitmatch read or write outside
the folder the name is looked up in. Two checks, used wherever such a path is built:

* :func:`stem_problem` / :func:`file_name_problem`: what is wrong with a name as written (an
  absolute path, ``..``, an empty part, a backslash, a control character, a part too long for
  the file system). A **stem** may name a file in a sub-folder with ``/`` (``city/frame_001``,
  as Cityscapes-like datasets are laid out); every part is a plain file name. A split name or a
  file name has no ``/`` at all.
* :func:`outside`: whether a path, once symbolic links are followed, leaves its folder. The
  folder itself may be a link (``images -> /disk/images``); a file in it that links elsewhere is
  outside.

:func:`output_stem` shortens a stem whose output names (``<stem>_overlay.png`` and the hidden
temporary file an atomic write makes beside it) would pass the file system's 255-byte limit,
deterministically, so that ``predict`` writes and ``eval --predictions`` finds the same name.
:func:`printable` shows a name in a terminal line without letting it steer the terminal.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from pathlib import Path

NAME_BYTES = 255  # the longest file name (one path part) common file systems take, in bytes
# The longest suffix splitmatch adds to a stem read from data: images/<stem>.jpeg, <stem>.npz, ...
STEM_PART_BYTES = NAME_BYTES - len(".jpeg")
# An atomic write makes ".<name>.<8 random characters>.tmp" beside its target: 14 bytes more.
TEMPORARY_NAME_OVERHEAD = len("..") + 8 + len(".tmp")
OUTPUT_SUFFIXES = ("_labels.png", "_overlay.png")  # what predict adds to an image's stem
_DIGEST_CHARS = 12


def bad_character(text: str) -> str | None:
    """The first character of ``text`` no name may hold, shown as an escape, or ``None``."""
    for char in text:
        category = unicodedata.category(char)
        # Cc: control characters (NUL, newline, escape...); Cs: lone surrogates (bytes that were
        # not UTF-8); Zl/Zp: line and paragraph separators, which end a line of a split list.
        if category in ("Cc", "Cs", "Zl", "Zp"):
            return ascii(char)[1:-1]
    return None


def _part_problem(part: str) -> str | None:
    if part == "":
        return "it has an empty part (two '/' in a row, or a '/' at an end)"
    if part in (".", ".."):
        return f"it has a '{part}' part, which would leave its folder or name the folder itself"
    if "\\" in part:
        return "it holds a backslash (use '/' between sub-folders)"
    if len(part.encode("utf-8", "surrogatepass")) > STEM_PART_BYTES:
        return f"a part of it is longer than {STEM_PART_BYTES} bytes, more than a file name can hold with its suffix"
    return None


def name_problem(name: object, subfolders: bool) -> str | None:
    """Why ``name`` cannot stand for a file inside a folder, or ``None`` when it can.

    Args:
        subfolders: whether ``/`` may separate sub-folders (stems) or not (split and file names).
    """
    if not isinstance(name, str):
        return f"it is a {type(name).__name__}, not text"
    if name == "":
        return "it is empty"
    bad = bad_character(name)
    if bad is not None:
        return f"it holds the control character {bad}"
    if name.startswith("/") or os.path.isabs(name):
        return "it is an absolute path"
    if not subfolders and "/" in name:
        return "it holds a '/'"
    for part in name.split("/"):
        problem = _part_problem(part)
        if problem:
            return problem
    return None


def stem_problem(stem: object) -> str | None:
    """Why a stem (a split list's line, a cache entry's name) is unusable, or ``None``."""
    return name_problem(stem, subfolders=True)


def file_name_problem(name: object) -> str | None:
    """Why a split name or a single file name is unusable, or ``None``."""
    return name_problem(name, subfolders=False)


def outside(folder: str | Path, path: str | Path) -> bool:
    """Whether ``path``, with symbolic links followed, lies outside ``folder`` (itself resolved).

    A path that does not exist yet is judged by the part of it that does.
    """
    base = Path(folder).resolve()
    return not Path(path).resolve().is_relative_to(base)


def output_stem(stem: str) -> str:
    """``stem``, or a shortened form when ``<stem>_overlay.png`` or the temporary file of its
    atomic write would pass :data:`NAME_BYTES`: a UTF-8-safe prefix, ``~`` and 12 hex digits
    of the SHA-256 of the whole stem (deterministic, and distinct for distinct stems)."""
    longest = max(len(suffix) for suffix in OUTPUT_SUFFIXES) + TEMPORARY_NAME_OVERHEAD
    budget = NAME_BYTES - longest
    encoded = stem.encode("utf-8", "surrogateescape")
    if len(encoded) <= budget:
        return stem
    digest = hashlib.sha256(encoded).hexdigest()[:_DIGEST_CHARS]
    prefix = encoded[: budget - 1 - _DIGEST_CHARS].decode("utf-8", "ignore")  # never half a character
    return f"{prefix}~{digest}"


def download_stem(file_name: str | None, fallback: str = "image") -> str:
    """The stem to name a result after, from a file name a visitor sent (which may be anything):
    its last part (``/`` or ``\\``), suffix dropped, control characters removed, no leading
    dot (a hidden file), shortened by :func:`output_stem`; ``fallback`` when nothing is left."""
    last = (file_name or "").replace("\\", "/").rsplit("/", 1)[-1]
    stem = last.rsplit(".", 1)[0] if "." in last.lstrip(".") else last
    stem = "".join(char for char in stem if bad_character(char) is None).strip().lstrip(".").strip()
    return output_stem(stem) if stem else fallback


def printable(text: str, limit: int = 300) -> str:
    """``text`` for one line of a terminal: control characters and undecodable bytes escaped
    (an escape sequence in a file name cannot move the cursor or retitle the window), at most
    ``limit`` characters."""
    shown = "".join(
        ascii(char)[1:-1] if unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") else char
        for char in text[: limit + 1]  # the rest is not shown: not looked at either
    )
    return shown if len(shown) <= limit else f"{shown[: limit - 3]}..."
