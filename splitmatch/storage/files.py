"""Writing files safely: atomically, with the usual permissions, into folders checked first.

Everything splitmatch writes (checkpoints, label maps, records, caches, reports) goes through
:func:`atomic_write_bytes`, so a crash or a full disk leaves the previous file or none, never
half of one. Commands that end in a write check their destination first
(:func:`ensure_writable_folder`, :func:`check_output_file`), so a read-only or misspelt path
fails before the work, not after it, and an output that would replace a file the command reads
is refused (:func:`check_not_input`). Text files are read through :func:`read_text` (UTF-8 or
one :class:`TextFileError` naming the file, line and byte), JSON through :func:`parse_json` /
:func:`read_json`, whose every failure is one :class:`InvalidJsonError`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from splitmatch.errors import SplitmatchError


def default_file_mode() -> int:
    """``0o666`` minus the process umask: what ``open(path, "w")`` would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def naming_path(error: OSError, path: str | Path, temporary: str | Path | None = None) -> OSError:
    """``error`` as an OS error that names ``path`` when it names no file itself (a full disk's
    ``[Errno 28]`` says nothing of where) or names only ``temporary`` (the hidden file an atomic
    write makes), of the same class so that callers still catch it."""
    if temporary is not None and error.errno is not None:  # the user never named the temporary file
        names = (error.filename, error.filename2)
        first, second = (str(path) if str(name) == str(temporary) else name for name in names)
        if (first, second) != names:  # a copy names its source and the target
            return type(error)(error.errno, error.strerror, first, None, second)
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
        raise naming_path(error, path, tmp) from None
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Writes a file so that a reader never sees it half-written (:func:`atomic_replace`)."""
    with atomic_replace(path) as tmp:
        tmp.write_bytes(data)


def append_text(path: str | Path, text: str) -> None:
    """Appends ``text`` (UTF-8) to a log such as ``metrics.jsonl``; an OS error names ``path``. A
    line torn by a kill or a full disk is the reader's to drop (:func:`~splitmatch.train.run_folder.read_metrics`)."""
    try:
        with open(path, "a", encoding="utf-8") as out:
            out.write(text)
    except OSError as error:
        raise naming_path(error, path) from None


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


class TextFileError(SplitmatchError, ValueError):
    """A file that should hold UTF-8 text does not; the message names the file, line and byte."""


def read_text(path: str | Path, what: str = "file", expected: str = "", error: type[Exception] | None = None) -> str:
    """The text of ``path``, decoded as UTF-8: every text file splitmatch reads comes through here.

    Raises:
        TextFileError (or ``error``, a reader's own class of the family): the bytes are not UTF-8;
            the message names ``what`` and the path, the line and the byte, then ``expected``
            (what the file should hold), if given.
        OSError: the file cannot be read (missing, a folder, no permission), naming the path.
    """
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as problem:
        line = raw[: problem.start].count(b"\n") + 1
        hint = f"; {expected}" if expected else ""
        raise (error or TextFileError)(
            f"{what} {path} is not UTF-8 text (line {line}: byte {raw[problem.start]:#04x}); it is read as UTF-8{hint}"
        ) from None


def read_json(
    path: str | Path,
    what: str = "JSON file",
    error: type[Exception] | None = None,
    max_depth: int | None = None,
) -> object:
    """A JSON file's content (:func:`read_text`, then :func:`parse_json`): any failure to decode or
    parse is one :class:`InvalidJsonError` (or ``error``, a reader's own class of the family)
    naming ``what`` and the path; with ``max_depth``, so is JSON nested deeper (counted before
    parsing, :func:`json_depth`)."""
    text = read_text(path, what, "expected JSON", error)
    if max_depth is not None and (depth := json_depth(text)) > max_depth:
        raise (error or InvalidJsonError)(f"{what} {path} is nested {depth} levels deep; at most {max_depth} are read")
    try:
        return parse_json(text)
    except InvalidJsonError as problem:
        raise (error or InvalidJsonError)(f"{what} {path} is not valid JSON: {problem}") from None


def json_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` in a JSON text, brackets inside strings not counted;
    linear in the text's length and without recursion, so it can be asked before parsing."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def read_stored_result(path: Path, number_keys: Sequence[str], remedy: str) -> dict | None:
    """A result this command stored earlier (``eval.json``, episode scores), or ``None`` when it is
    missing or was damaged outside the program (not JSON, not an object, a number that is not one),
    which is said on stderr with ``remedy``: results are recomputed, never shown from a damaged file.
    Each of ``number_keys`` must be there, a number or ``null``."""
    if not path.is_file():
        return None
    try:
        result = read_json(path, "stored result")
        problem = "" if isinstance(result, dict) else "not a JSON object"
        for key in number_keys if not problem else ():
            value = result.get(key, "missing")
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                problem = f"'{key}' is not a number (null for none)"
    except (InvalidJsonError, TextFileError) as error:
        problem = str(error)
    if not problem:
        return result
    print(f"splitmatch: {path} is damaged ({problem[:200]}); {remedy}", file=sys.stderr)
    return None


class OutputIsInputError(SplitmatchError, ValueError):
    """An output path that would replace (or lie inside) something the command reads."""


class InputPaths:
    """The files and folders a command reads, to refuse outputs that would replace them.

    Files are compared by resolved path and by inode (a hard link or a symbolic link to an input
    is that input); an output inside an input folder is refused too. Built once, so that checking
    many outputs (``predict``'s) costs one ``stat`` each.
    """

    def __init__(self, paths) -> None:
        self.by_path: dict[str, Path] = {}
        self.by_inode: dict[tuple[int, int], Path] = {}
        self.folders: list[tuple[Path, Path]] = []
        for given in paths:
            if given is None:
                continue
            given = Path(given)
            self.by_path[os.path.realpath(given)] = given
            with contextlib.suppress(OSError):  # not there (yet): compared by path alone
                status = given.stat()
                self.by_inode[(status.st_dev, status.st_ino)] = given
                if given.is_dir():
                    self.folders.append((Path(os.path.realpath(given)), given))

    def check(self, output: str | Path, option: str = "output") -> None:
        """Raises :class:`OutputIsInputError` when ``output`` (named ``option``, e.g. ``--json``) is
        or lies inside one of the inputs."""
        output = Path(output)
        real = os.path.realpath(output)
        same = self.by_path.get(real)
        if same is None:
            with contextlib.suppress(OSError):
                status = output.stat()
                same = self.by_inode.get((status.st_dev, status.st_ino))
        if same is not None:
            raise OutputIsInputError(
                f"{option} {output} is {same}, which this command reads: writing it would destroy an input; "
                "choose another path"
            )
        for folder, given in self.folders:
            if Path(real).is_relative_to(folder):
                raise OutputIsInputError(
                    f"{option} {output} lies inside {given}, which this command reads; choose a path outside it"
                )


def check_not_input(output: str | Path, inputs, option: str = "output") -> None:
    """Refuses an ``output`` that is one of ``inputs`` or lies inside one of them (:class:`InputPaths`).
    Commands call this for each file they will write, with every file and folder they read, before
    the work."""
    InputPaths(inputs).check(output, option)


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


def check_output_file(path: str | Path, option: str | None = None) -> None:
    """Checks that the file ``path`` can be written (its folder made and writable, not a folder itself);
    ``option``, the command-line option that named it, is said in the refusal."""
    path = Path(path)
    if path.is_dir():
        given = f" ({option} names a file to write)" if option else ""
        raise IsADirectoryError(errno.EISDIR, f"is a folder, not a file{given}", str(path))
    ensure_writable_folder(path.parent)


def remove_empty_made_folders() -> None:
    """Removes the folders :func:`ensure_writable_folder` made that are still empty (after a failure)."""
    while MADE_FOLDERS:
        with contextlib.suppress(OSError):  # not empty, or gone: it stays as it is
            MADE_FOLDERS.pop(0).rmdir()
