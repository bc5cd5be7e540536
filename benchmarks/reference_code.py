"""The training step's host side as it was before the host-step rework, rebuilt from the git history.

``bench_host_step.py`` times the library against it, and ``record_host_step_fixture.py`` records
what it computes on the tests' inputs (``tests/fixtures/``). It is no longer in the tree: the
folder ``benchmarks/reference_host_step`` (the code of commit da96a8c, verbatim but for imports
within the folder) is read from commit :data:`COMMIT`, one that holds it, with ``git show`` into
a temporary folder and imported from there as the package ``reference_host_step``. Its modules:
``targets`` (full-resolution bool masks per image), ``matcher`` and ``criterion`` (one solve and
one device-to-host copy per read-out, group and image), ``point_sampling``, ``colour`` (float64
HSV), ``transforms`` and ``dataset`` (the pseudo-index map resized twice, int64 labels). It
imports today's ``splitmatch`` for what the rework left as it was (the cost and loss functions,
the folder format).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

COMMIT = "b853b298993ac92689e827efc5c8448ac63544b8"
FOLDER = "benchmarks/reference_host_step"
PACKAGE = "reference_host_step"
MODULES = ("targets", "matcher", "criterion", "point_sampling", "colour", "transforms", "dataset")
REPOSITORY = Path(__file__).resolve().parent.parent


def _git(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", "-C", str(REPOSITORY), *args], capture_output=True, check=False)
    except FileNotFoundError:
        raise SystemExit(
            f"the reference code ({FOLDER} at commit {COMMIT[:7]}) is rebuilt from the git history, "
            "but git is not installed (not found on PATH)"
        ) from None


def write_reference(destination: Path) -> Path:
    """Writes the reference package into ``destination`` (a folder on the import path); returns its folder.

    Raises:
        SystemExit: with one line, where git, the repository or the commit is missing (a shallow clone).
    """
    if _git("cat-file", "-e", f"{COMMIT}^{{commit}}").returncode != 0:
        raise SystemExit(
            f"the reference code ({FOLDER}) is rebuilt from commit {COMMIT[:7]}, which is not in the git history "
            f"of {REPOSITORY} (a shallow clone, or not a git checkout): run `git fetch --unshallow` there, "
            "or clone the repository without --depth"
        )
    listing = _git("ls-tree", "--name-only", COMMIT, f"{FOLDER}/")
    names = listing.stdout.decode().split()
    if listing.returncode != 0 or f"{FOLDER}/__init__.py" not in names:
        raise SystemExit(f"commit {COMMIT[:7]} has no {FOLDER}/__init__.py: {listing.stderr.decode().strip()}")
    package = destination / PACKAGE
    package.mkdir()
    for name in names:
        shown = _git("show", f"{COMMIT}:{name}")
        if shown.returncode != 0:
            raise SystemExit(f"git show {COMMIT[:7]}:{name} failed: {shown.stderr.decode().strip()}")
        (package / Path(name).name).write_bytes(shown.stdout)
    return package


@contextmanager
def reference_modules() -> Iterator[SimpleNamespace]:
    """``with reference_modules() as reference:`` gives ``reference.targets``, ``reference.matcher``, ...

    The package lives in a temporary folder for the block's duration and is forgotten after it.
    """
    with tempfile.TemporaryDirectory(prefix="reference_host_step_") as scratch:
        write_reference(Path(scratch))
        sys.path.insert(0, scratch)
        try:
            importlib.invalidate_caches()
            try:
                modules = {name: importlib.import_module(f"{PACKAGE}.{name}") for name in MODULES}
            except ImportError as error:  # today's splitmatch moved something the reference imports
                raise SystemExit(f"the reference code of commit {COMMIT[:7]} no longer imports: {error}") from None
            yield SimpleNamespace(**modules)
        finally:
            sys.path.remove(scratch)
            for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
                del sys.modules[name]
