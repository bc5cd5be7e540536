"""Checkpoints: one safetensors file with the weights, the training state and a JSON record.

The record (safetensors metadata key ``splitmatch``) carries the resolved config, the class
split and the training classes, the step, optimizer hyper-parameters, the schedule state and
a digest of every tensor. Loading never unpickles: tensors come from safetensors, the rest is
JSON. Files are written to a temporary name and renamed, so a crash leaves the previous
checkpoint intact.

This module is the file format: writing, reading and checking a file, and loading its weights.
The training state a step checkpoint adds (optimizer, schedule, random generators) and the
step checkpoints of a run folder are :mod:`splitmatch.train.state`.

A model file may leave out the frozen CLIP tensors when they come from weights shipped with
splitmatch: its record then names them (``clip_from``: the ``packaged:`` name and a digest of
the tensors left out), and the loader refuses other CLIP tensors than those
(:mod:`splitmatch.predict.packaged_model`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from splitmatch.config import ConfigError, ExperimentConfig, from_dict, to_dict
from splitmatch.data.classes import ClassSplit, ClassSplitError
from splitmatch.errors import SplitmatchError
from splitmatch.packaged import PACKAGED_PREFIX
from splitmatch.storage.digest import add_tensor, tensor_digest
from splitmatch.storage.files import atomic_replace, parse_json

FORMAT_VERSION = 1


class CheckpointError(SplitmatchError, ValueError):
    """A checkpoint is unreadable, damaged, or does not fit what is asked of it."""


# safetensors dtype names (the file format's header) -> torch dtypes.
_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    config: ExperimentConfig,
    classes: ClassSplit,
    train_classes: list[str],
    step: int,
) -> Path:
    """Writes a weights-only model file atomically.

    A step checkpoint that can resume training is written by
    :func:`splitmatch.train.state.save_training_checkpoint`.
    """
    return write_checkpoint(path, *checkpoint_contents(model, config, classes, train_classes, step))


def checkpoint_contents(
    model: torch.nn.Module, config: ExperimentConfig, classes: ClassSplit, train_classes: list[str], step: int
) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors (``model.<key>``, on the CPU) and the record of a model file, before its digest."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    record: dict = {
        "format": FORMAT_VERSION,
        "config": to_dict(config),
        "classes": classes.to_dict(),
        "train_classes": list(train_classes),
        "step": int(step),
    }
    return tensors, record


def write_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], record: dict) -> Path:
    """Adds the tensors' digest to ``record`` and writes both to ``path`` atomically."""
    record["digest"] = tensor_digest(tensors)
    with atomic_replace(path) as tmp:
        try:
            save_file(tensors, tmp, metadata={"splitmatch": json.dumps(record)})
        except SafetensorError as error:  # e.g. a full disk, reported by the Rust writer
            raise OSError(f"could not write checkpoint {path}: {error}") from None
    return Path(path)


def _open(path: Path):
    if not path.is_file():
        what = "is a folder, not a checkpoint file" if path.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {path} {what}")
    try:
        return safe_open(str(path), framework="pt")
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"checkpoint {path} is not a readable safetensors file: {error}") from None


def _parse_record(metadata: dict, path: Path) -> dict:
    if "splitmatch" not in metadata:
        raise CheckpointError(f"{path} is a safetensors file but not a splitmatch checkpoint (no record)")
    try:
        record = parse_json(metadata["splitmatch"])
    except ValueError as error:  # InvalidJsonError, or a record that is not UTF-8
        raise CheckpointError(f"checkpoint {path} has a damaged record: {str(error)[:200]}") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"checkpoint {path} has a damaged record: a {type(record).__name__}, not an object")
    if record.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format {record.get('format')}, this version reads {FORMAT_VERSION}"
        )
    try:
        record["config"] = from_dict(record["config"])
        record["classes"] = ClassSplit.from_dict(record["classes"], where=f"classes of checkpoint {path}")
    except (ConfigError, ClassSplitError, KeyError, TypeError) as error:
        raise CheckpointError(f"checkpoint {path} carries an invalid config or class split: {error}") from None
    step, train_classes = record.get("step"), record.get("train_classes")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"checkpoint {path} has an invalid step {step!r} (expected an integer >= 0)")
    names = set(record["classes"].names)
    if not isinstance(train_classes, list) or not all(isinstance(n, str) and n in names for n in train_classes):
        raise CheckpointError(f"checkpoint {path} has invalid train_classes (expected names of its classes)")
    if not isinstance(record.get("digest"), str):
        raise CheckpointError(f"checkpoint {path} has no tensor digest")
    _check_clip_from(record, path)
    return record


def _check_clip_from(record: dict, path: Path) -> None:
    """A record that leaves the CLIP tensors out must name the packaged weights its config uses."""
    if "clip_from" not in record:
        return
    clip_from, weights = record["clip_from"], record["config"].clip.weights
    if (
        not isinstance(clip_from, dict)
        or not isinstance(weights, str)
        or not weights.startswith(PACKAGED_PREFIX)
        or clip_from.get("weights") != weights
        or not re.fullmatch(r"[0-9a-f]{64}", str(clip_from.get("digest")))
    ):
        raise CheckpointError(
            f"checkpoint {path} leaves its CLIP tensors out but its record does not name where they come "
            f"from (expected clip_from with the config's packaged clip.weights, got {clip_from!r} and {weights!r})"
        )


def read_record(path: str | Path) -> dict:
    """The checkpoint's record alone (config, classes, step...), checked; no tensor is read."""
    path = Path(path)
    with _open(path) as handle:
        return _parse_record(handle.metadata() or {}, path)


def read_checkpoint(path: str | Path, verify: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """Reads tensors and record, checking format, config, classes and (optionally) the digest."""
    path = Path(path)
    try:
        with _open(path) as handle:
            record = _parse_record(handle.metadata() or {}, path)
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"checkpoint {path} is not a readable safetensors file: {error}") from None
    if verify and tensor_digest(tensors) != record.get("digest"):
        raise CheckpointError(f"checkpoint {path} is damaged: its tensors do not match the recorded digest")
    return tensors, record


def load_model_weights(model: torch.nn.Module, path: str | Path, record: dict, left_out: Collection[str] = ()) -> None:
    """Reads a checkpoint's weights straight into ``model``'s tensors, checking the digest.

    The file is read, not memory-mapped, one tensor at a time into the parameter it belongs
    to: peak memory is the model alone, not the model plus the file (the model must be on the
    CPU and contiguous, as :func:`splitmatch.model.build.build_segmentor` makes it).

    Args:
        left_out: state-dict keys the file must not hold because the model already has them
            (the packaged CLIP tensors of a file whose record has ``clip_from``).
    """
    path = Path(path)
    left_out = set(left_out)
    expected = {k: v for k, v in model.state_dict().items() if k not in left_out}
    try:
        with open(path, "rb") as file:
            header, data_start = _read_header(file, path)
            entries = {k: v for k, v in header.items() if k != "__metadata__"}
            shapes = {k[len("model.") :]: tuple(v["shape"]) for k, v in entries.items() if k.startswith("model.")}
            _check_fit(expected, shapes, path)
            digest = hashlib.sha256()
            for key in sorted(entries):
                dtype, numel = _entry_layout(entries[key], key, path)
                target = expected.get(key[len("model.") :]) if key.startswith("model.") else None
                direct = target is not None and target.dtype == dtype and target.device.type == "cpu"
                direct = direct and target.is_contiguous()
                buffer = target if direct else torch.empty(numel, dtype=dtype)
                begin, end = entries[key]["data_offsets"]
                file.seek(data_start + begin)
                if numel and file.readinto(memoryview(buffer.reshape(-1).view(torch.uint8).numpy())) != end - begin:
                    raise CheckpointError(f"checkpoint {path} is truncated: tensor {key} is incomplete")
                add_tensor(digest, key, buffer)
                if target is not None and not direct:
                    target.copy_(buffer.view(target.shape))  # another dtype or device than the file's
    except CheckpointError:
        raise
    except (OSError, KeyError, TypeError, AttributeError, ValueError) as error:  # a malformed header entry too
        raise CheckpointError(f"checkpoint {path} is not a readable safetensors file: {error}") from None
    if digest.hexdigest() != record.get("digest"):
        raise CheckpointError(f"checkpoint {path} is damaged: its tensors do not match the recorded digest")


def _entry_layout(entry: dict, key: str, path: Path) -> tuple[torch.dtype, int]:
    """A header entry's torch dtype and element count, checked against its byte range."""
    dtype = _SAFETENSORS_DTYPES.get(entry.get("dtype"))
    numel = 1
    for size in entry.get("shape", []):
        numel *= size
    begin, end = entry.get("data_offsets", (0, -1))
    if dtype is None or end - begin != numel * dtype.itemsize:
        raise CheckpointError(f"checkpoint {path}: tensor {key} has a dtype or size its header cannot back")
    return dtype, numel


def _read_header(file, path: Path) -> tuple[dict, int]:
    """The safetensors header (8-byte little-endian length, then JSON) and where the data starts."""
    prefix = file.read(8)
    length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
    if length <= 0 or length > 100_000_000:
        raise CheckpointError(f"checkpoint {path} is not a readable safetensors file: bad header length")
    try:
        header = parse_json(file.read(length))
    except ValueError:  # InvalidJsonError, or a header that is not UTF-8
        raise CheckpointError(f"checkpoint {path} is not a readable safetensors file: bad header") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"checkpoint {path} is not a readable safetensors file: bad header")
    return header, 8 + length


def check_tensor_shapes(path: str | Path, expected: dict[str, tuple[int, ...]]) -> None:
    """Compares the model tensors a checkpoint's header declares with ``expected`` (name -> shape).

    Reads the header alone, so that a record edited to describe a larger model than the file
    holds is refused before that model is built.
    """
    path = Path(path)
    try:
        with open(path, "rb") as file:
            header, _ = _read_header(file, path)
    except OSError as error:
        raise CheckpointError(f"checkpoint {path} is not readable: {error}") from None
    try:
        shapes = {k[len("model.") :]: tuple(v["shape"]) for k, v in header.items() if k.startswith("model.")}
    except (KeyError, TypeError):
        raise CheckpointError(f"checkpoint {path} is not a readable safetensors file: bad header entry") from None
    _check_fit({k: _Shape(v) for k, v in expected.items()}, shapes, path)


class _Shape:
    """Stands in for a tensor where only its shape is compared."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(shape)


def _check_fit(expected: dict[str, torch.Tensor], shapes: dict[str, tuple], path: str | Path) -> None:
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong = [
        f"{k} {list(shapes[k])} in the file, {list(expected[k].shape)} in the model"
        for k in expected
        if k in shapes and tuple(expected[k].shape) != shapes[k]
    ]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"weights in {path} do not fit the model its config describes: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, shape mismatch {wrong[:3]}"
        )


def model_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}


def load_model_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """Loads weights strictly, explaining a mismatch with the architecture."""
    state = model_state(tensors)
    _check_fit(model.state_dict(), {k: tuple(v.shape) for k, v in state.items()}, path)
    model.load_state_dict(state)
