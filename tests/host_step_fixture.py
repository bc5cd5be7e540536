"""What the training step's host side computed before its rework, recorded on the tests' own inputs.

The tests of the targets, the matcher, the criterion, the dataset and the transforms compare the
library with that code through these values: assignments, losses and gradients, targets,
augmentation draws and pixels, in ``fixtures/host_step_reference.safetensors``.
``benchmarks/record_host_step_fixture.py`` writes the file by running the code before the rework,
rebuilt from the git history, on the inputs these tests build; nothing here imports it.

Values are named ``part/case/.../field``; a list of per-image targets is ``prefix/<image>/<key>``.
Bool masks are stored packed eight to a byte, their shapes in the file's metadata.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "host_step_reference.safetensors"
RECORDER = "benchmarks/record_host_step_fixture.py"


def value_name(*parts: object) -> str:
    """The name of a recorded value: its parts joined by ``/`` (``value_name("losses", "split", 4)``)."""
    return "/".join(str(part) for part in parts)


def save_recorded(values: dict[str, torch.Tensor], about: dict[str, str], path: Path = FIXTURE) -> None:
    """Writes ``values`` (bool tensors packed) as one safetensors file, ``about`` (where they come
    from) and the bool shapes in its metadata as one JSON text, so that the same values give the
    same bytes."""
    shapes = {name: list(value.shape) for name, value in values.items() if value.dtype == torch.bool}
    stored = {
        name: torch.from_numpy(np.packbits(value.numpy().ravel())) if name in shapes else value.contiguous()
        for name, value in values.items()
    }
    save_file(stored, str(path), metadata={"recorded": json.dumps({**about, "bool_shapes": shapes}, sort_keys=True)})


@functools.cache
def _recorded() -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(str(FIXTURE), "pt") as opened:
        shapes = json.loads(opened.metadata()["recorded"])["bool_shapes"]
    values = load_file(str(FIXTURE))
    for name, shape in shapes.items():
        bits = np.unpackbits(values[name].numpy(), count=int(np.prod(shape)))
        values[name] = torch.from_numpy(bits.astype(bool).reshape(shape))
    return values


def recorded(name: str) -> torch.Tensor:
    """The recorded value ``name`` (a fresh tensor: tests may change it)."""
    values = _recorded()
    if name not in values:
        raise KeyError(f"{FIXTURE.name} holds no value {name!r}: rerun {RECORDER} after changing a test's cases")
    return values[name].clone()


def recorded_names(prefix: str) -> list[str]:
    """The last parts of the names recorded directly under ``prefix``, sorted."""
    names = sorted(name[len(prefix) + 1 :] for name in _recorded() if name.startswith(prefix + "/"))
    if not names:
        raise KeyError(f"{FIXTURE.name} holds nothing under {prefix!r}: rerun {RECORDER} after changing a test's cases")
    return [name for name in names if "/" not in name]


def recorded_targets(prefix: str) -> list[dict[str, torch.Tensor]]:
    """The per-image target dicts recorded under ``prefix`` (``prefix/<image>/<key>``), in image order."""
    images: dict[int, dict[str, torch.Tensor]] = {}
    for name in _recorded():
        if name.startswith(prefix + "/"):
            image, field = name[len(prefix) + 1 :].split("/")
            images.setdefault(int(image), {})[field] = recorded(name)
    if not images:
        raise KeyError(f"{FIXTURE.name} holds no targets {prefix!r}: rerun {RECORDER}")
    return [images[index] for index in range(len(images))]


def targets_values(prefix: str, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """``targets`` (per image, a dict of tensors) as named values for :func:`save_recorded`."""
    return {
        value_name(prefix, image, field): value
        for image, target in enumerate(targets)
        for field, value in target.items()
    }
