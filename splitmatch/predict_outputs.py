"""Where ``splitmatch predict`` writes each input's outputs: a place of its own, never shared."""

from __future__ import annotations

import os
from pathlib import Path


class OutputClashError(ValueError):
    """Two inputs would write the same output files."""


def prediction_outputs(images: list[str | Path], out: Path) -> dict[Path, Path]:
    """Input path -> output path without suffix: ``out/<relative folder>/<stem>``.

    ``predict`` adds ``_labels.png`` and ``_overlay.png``. Inputs keep their folder structure
    below their common parent, so that ``a/x.png`` and ``b/x.png`` both survive; an input named
    twice is done once.

    Raises:
        OutputClashError: two inputs of one folder that differ only in suffix (``x.png``, ``x.jpg``).
    """
    resolved = list(dict.fromkeys(Path(image).resolve() for image in images))
    common = Path(os.path.commonpath([path.parent for path in resolved]))
    outputs: dict[Path, Path] = {}
    claimed: dict[Path, Path] = {}
    for path in resolved:
        target = Path(out) / path.parent.relative_to(common) / path.stem
        if target in claimed:
            raise OutputClashError(
                f"{claimed[target]} and {path} would both be written to {target}_labels.png; "
                "predict them into separate --out folders"
            )
        claimed[target] = path
        outputs[path] = target
    return outputs
