"""Writing files safely: atomically, with the usual permissions, into folders checked first.

Everything splitmatch writes (checkpoints, label maps, records, caches, reports) goes through
:func:`atomic_write_bytes`, so a crash or a full disk leaves the previous file or none, never
half of one. Commands that end in a write check their destination first
(:func:`ensure_writable_folder`, :func:`check_output_file`), so a read-only or misspelt path
fails before the work, not after it. JSON that splitmatch reads back from files a user or a
hostile source may have made goes through :func:`parse_json`, whose every failure is one
:class:`InvalidJsonError`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from splitmatch.errors import SplitmatchError


def default_file_mode() -> int:
    """``0o666`` minus the process umask: what ``open(path, "w")`` would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def naming_path(error: OSError, path: str | Path) -> OSError:
    """``error`` as an OS error that names ``path`` when it names no file itself (a full disk's
    ``[Errno 28]`` says nothing of where), of the same class so that callers still catch it."""
    if error.filename is not None or str(path) in str(error):
        return error
    if error.errno is None or not error.strerror:
        return OSError(f"could not write {path}: {error}")
    return type(error)(error.errno, error.strerror, str(path))


@contextlib.contextmanager
def atomic_replace(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path`` to write the new file to; when the block ends
    without an error the file is given the usual permissions, flushed to disk and renamed to
    ``path``, so a reader never sees half a file and a crash leaves the previous one.

    The temporary file is ``.<name>.<random>.tmp`` (hidden; :func:`remove_stale_temporaries`
    clears what a killed process left). An OS error (a full disk, a read-only folder) is raised
    naming ``path``; the temporary file never outlives a failure.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
    except OSError as error:
        raise naming_path(error, path) from None
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, default_file_mode())  # mkstemp makes 0600; give the file the usual permissions
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except OSError as error:
        raise naming_path(error, path) from None
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Writes a file so that a reader never sees it half-written (:func:`atomic_replace`)."""
    with atomic_replace(path) as tmp:
        tmp.write_bytes(data)


def remove_stale_temporaries(*folders: str | Path) -> list[Path]:
    """Removes the temporary files (``.<name>.<random>.tmp``) that killed atomic writes left in
    ``folders`` (not their subfolders); returns them, sorted. Safe only while no other process
    writes there (a run folder's lock held, a prepare that owns its destination)."""
    stale = []
    for folder in map(Path, folders):
        if folder.is_dir():
            with os.scandir(folder) as entries:
                stale += [Path(entry.path) for entry in entries if _is_temporary(entry.name) and entry.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return sorted(stale)


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def json_ready(value):
    """Replaces NaN by ``None`` (JSON has no NaN) throughout nested dicts and lists."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


class InvalidJsonError(SplitmatchError, ValueError):
    """JSON text that cannot be parsed: invalid, a number beyond Python's digit limit, or nested
    deeper than Python's parser goes. Its message is one line of at most 200 characters."""


def parse_json(text: str | bytes) -> object:
    """``json.loads`` for text from files: each way it fails on hostile text (``JSONDecodeError``,
    the integer digit limit's ``ValueError``, ``RecursionError`` from deep nesting) is one
    :class:`InvalidJsonError`, so a reader that catches it never shows a traceback.
    Bytes that are not UTF-8 raise ``UnicodeDecodeError`` as they are (the caller names the byte)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise InvalidJsonError("it is nested deeper than the JSON parser can follow") from None
    except UnicodeDecodeError:
        raise
    except ValueError as error:
        raise InvalidJsonError(str(error)[:200]) from None


def write_json(path: str | Path, data, sort_keys: bool = False) -> None:
    """Writes ``data`` as indented JSON with a final newline, atomically; NaN becomes ``null``."""
    text = json.dumps(json_ready(data), indent=2, sort_keys=sort_keys) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


# Folders ensure_writable_folder made in this process, innermost first: a command that fails
# removes those still empty (remove_empty_made_folders), so a failure leaves nothing behind.
MADE_FOLDERS: list[Path] = []


def ensure_writable_folder(folder: str | Path) -> Path:
    """Creates ``folder`` (with its parents) and checks that a file can be made in it.

    Commands that end in a write call this before they compute, so that a read-only or
    misspelt destination fails at once, not after the work.

    Raises:
        OSError: naming the path (a file in the way, no permission, a read-only file system).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", str(folder))
    MADE_FOLDERS[:0] = [path for path in (folder, *folder.parents) if not path.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".write-check.", suffix=".tmp")
    except OSError as error:  # name the folder, not the probe's random name
        raise type(error)(error.errno, error.strerror, str(folder)) from None
    os.close(handle)
    os.unlink(probe)
    return folder


def check_output_file(path: str | Path) -> None:
    """Checks that the file ``path`` can be written (its folder made and writable, not a folder itself)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    ensure_writable_folder(path.parent)


def remove_empty_made_folders() -> None:
    """Removes the folders :func:`ensure_writable_folder` made that are still empty (after a failure)."""
    while MADE_FOLDERS:
        with contextlib.suppress(OSError):  # not empty, or gone: it stays as it is
            MADE_FOLDERS.pop(0).rmdir()
