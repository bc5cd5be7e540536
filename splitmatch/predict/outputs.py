"""What ``splitmatch predict`` reads and where it writes each input's outputs: a place of its own.

Inputs are image files and folders; a folder stands for the images below it, found recursively.
"""

from __future__ import annotations

import os
from pathlib import Path

from splitmatch.data.names import output_stem
from splitmatch.errors import SplitmatchError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # any case: .JPG from cameras too


class OutputClashError(SplitmatchError, ValueError):
    """Two inputs would write the same output files."""


class PredictInputError(SplitmatchError, ValueError):
    """A folder given to ``predict`` cannot be used (no images in it, or it is the output folder)."""


def images_below(folder: Path, skip: Path | None = None) -> list[Path]:
    """The ``.jpg``, ``.jpeg`` and ``.png`` files (any case) below ``folder``, in sorted order.

    Hidden files and folders (names starting with ``.``) are skipped, and so is the folder
    ``skip`` (``predict``'s ``--out`` when it lies inside), so that earlier results are not read
    as images. Symbolic links to folders are not followed; links to files are kept.
    """
    found = []
    for directory, subfolders, files in os.walk(folder):
        here = Path(directory)
        subfolders[:] = sorted(
            name for name in subfolders if not name.startswith(".") and (here / name).resolve() != skip
        )
        found += [
            here / name
            for name in sorted(files)
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES
        ]
    return found


def prediction_inputs(paths: list[str | Path], out: Path) -> list[tuple[Path, Path]]:
    """``(image, base)`` for every image the paths stand for, in the order given, each once.

    A file is an image whose base is its folder; a folder stands for the images below it
    (:func:`images_below`), with the folder as their base. A path that does not exist is kept
    as an image: reading it names it, and the other images are still done.

    Raises:
        PredictInputError: a folder without images, or the ``--out`` folder itself given as input.
    """
    skip = Path(out).resolve()
    inputs: dict[Path, Path] = {}
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            resolved = path.resolve()
            inputs.setdefault(resolved, resolved.parent)
            continue
        folder = path.resolve()
        if folder == skip:
            raise PredictInputError(
                f"folder {given} is also the --out folder: its label maps and overlays would be read as "
                "images by the next run; choose another --out"
            )
        found = images_below(folder, skip)
        if not found:
            raise PredictInputError(f"folder {given} holds no images (.jpg, .jpeg or .png; hidden files skipped)")
        for image in found:
            inputs.setdefault(image, folder)
    return list(inputs.items())


def prediction_outputs(paths: list[str | Path], out: Path) -> dict[Path, Path]:
    """Input image -> output path without suffix: ``out/<folder relative to the inputs' base>/<stem>``.

    ``predict`` adds ``_labels.png`` and ``_overlay.png``. Inputs keep their folder structure
    below the common base of what was given (a folder given is its images' base, a file's folder
    is its own), so that ``a/x.png`` and ``b/x.png`` both survive and a dataset's ``images/``
    folder gives ``out/<stem>_labels.png``, which ``splitmatch eval --predictions out`` reads.
    An image named twice is done once. A stem too long for ``<stem>_overlay.png`` (and the
    temporary file of its atomic write) to fit the file system's 255 bytes is shortened, the same
    way every time (:func:`splitmatch.data.names.output_stem`); ``summary.json`` lists each
    image's input and outputs, so the shortened names map back.

    Raises:
        OutputClashError: two images of one folder that differ only in suffix (``x.png``, ``x.jpg``).
        PredictInputError: see :func:`prediction_inputs`.
    """
    inputs = prediction_inputs(paths, out)
    common = Path(os.path.commonpath([base for _, base in inputs]))
    outputs: dict[Path, Path] = {}
    claimed: dict[Path, Path] = {}
    for path, _ in inputs:
        target = Path(out) / path.parent.relative_to(common) / output_stem(path.stem)
        if target in claimed:
            raise OutputClashError(
                f"{claimed[target]} and {path} would both be written to {target}_labels.png; "
                "rename one, or predict them into separate --out folders"
            )
        claimed[target] = path
        outputs[path] = target
    return outputs
