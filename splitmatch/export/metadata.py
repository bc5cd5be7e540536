"""What an exported file records about itself, in the ONNX model's ``metadata_props``.

Every key starts with ``splitmatch.``; values are text, JSON where :data:`JSON_KEYS` says so.
:func:`read_export_metadata` reads them back (onnxruntime shows the same map as
``session.get_modelmeta().custom_metadata_map``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from splitmatch import __version__
from splitmatch.config import InferenceConfig
from splitmatch.export import ExportError
from splitmatch.storage.files import InvalidJsonError, parse_json

PREFIX = "splitmatch."
INPUT_NAME = "images"
OUTPUT_NAMES = ("scores", "labels")
# Keys whose values are JSON (the others are plain text).
JSON_KEYS = ("classes", "input_size", "normalisation", "inference", "seen_classes")
INPUT_TEXT = "images: float32 [batch, 3, H, W], RGB in 0..255 (not normalised: the graph normalises)"
OUTPUTS_TEXT = (
    "scores: float32 [batch, C, H, W], the class scores of one window (argmax = prediction); "
    "labels: int64 [batch, H, W], their argmax, indices into classes"
)


def export_metadata(
    class_texts: Sequence[Sequence[str]],
    size: tuple[int, int],
    pixel_mean: Sequence[float],
    pixel_std: Sequence[float],
    checkpoint: str,
    checkpoint_digest: str,
    inference: InferenceConfig,
    seen_classes: Sequence[str],
) -> dict[str, str]:
    """The metadata of one export, keys without :data:`PREFIX`, values as stored (text).

    Args:
        class_texts: per class, its names (name first, then synonyms), in output order.
        size: ``(H, W)`` of the input.
        pixel_mean, pixel_std: per RGB channel, in 0..255 units: the graph computes
            ``(images - mean) / std``.
        checkpoint: the checkpoint's name (``packaged:NAME``, or the file's name).
        checkpoint_digest: the checkpoint record's tensor digest (SHA-256).
        inference: the checkpoint's inference settings (calibration and candidate scoring are
            in the graph; ``short_side`` and ``max_long_side`` are the resizing Python does first).
        seen_classes: the first names of the classes the seen-class calibration applies to.
    """
    values = {
        "version": __version__,
        "classes": [list(names) for names in class_texts],
        "input_size": list(size),
        "input": INPUT_TEXT,
        "outputs": OUTPUTS_TEXT,
        "normalisation": {
            "mean": [round(float(v), 6) for v in pixel_mean],
            "std": [round(float(v), 6) for v in pixel_std],
        },
        "checkpoint": checkpoint,
        "checkpoint_digest": checkpoint_digest,
        "inference": dataclasses.asdict(inference),
        "seen_classes": list(seen_classes),
    }
    return {key: json.dumps(value) if key in JSON_KEYS else str(value) for key, value in values.items()}


def decode_metadata(stored: dict[str, str], where: str) -> dict:
    """``metadata_props`` as stored -> the splitmatch keys without prefix, JSON values decoded."""
    found = {key[len(PREFIX) :]: value for key, value in stored.items() if key.startswith(PREFIX)}
    if "classes" not in found or "input_size" not in found:
        raise ExportError(f"{where} is not a splitmatch export: its ONNX metadata has no {PREFIX}classes")
    try:
        return {key: parse_json(value) if key in JSON_KEYS else value for key, value in found.items()}
    except InvalidJsonError as error:
        raise ExportError(f"{where}: damaged splitmatch metadata ({error})") from None


def read_export_metadata(path: str | Path) -> dict:
    """What an exported file says it holds: ``classes``, ``input_size`` ``[H, W]``, ``normalisation``,
    ``checkpoint``, ``checkpoint_digest``, ``version``... (see :func:`export_metadata`).

    Parsed with the ``onnx`` package; no runtime session is made.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return decode_metadata({prop.key: prop.value for prop in model.metadata_props}, f"ONNX file {path}")
