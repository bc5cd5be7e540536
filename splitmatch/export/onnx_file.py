"""``splitmatch export --onnx``: a trained segmentor as one ONNX file, for a fixed vocabulary.

The graph is :class:`~splitmatch.export.fixed_vocabulary.FixedVocabularySegmentation` traced
by ``torch.onnx.export`` (the ``torch.export`` based exporter, which needs ``onnxscript``),
with a dynamic batch dimension. Before anything is written, onnxruntime runs the graph on two
seeded images and its scores are compared with PyTorch's on the same images; the file is then
written atomically, with its metadata (:mod:`splitmatch.export.metadata`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from splitmatch.data.classes import ClassEntry
from splitmatch.data.names import printable
from splitmatch.export import ExportError
from splitmatch.export.fixed_vocabulary import FixedVocabularySegmentation
from splitmatch.export.metadata import INPUT_NAME, OUTPUT_NAMES, PREFIX, export_metadata
from splitmatch.model.checkpoint import read_record
from splitmatch.packaged import PACKAGED_PREFIX
from splitmatch.predict.packaged_model import PACKAGED_MODEL_NAME, checkpoint_file
from splitmatch.predict.predictor import Predictor
from splitmatch.storage.files import atomic_write_bytes, check_not_input

EXTRA_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
INSTALL_HINT = "pip install -e '.[onnx]' from a checkout, or pip install 'splitmatch[onnx]'"
# torch's exporter implements opsets from this one on; it silently writes 18 when asked for less.
MIN_OPSET = 18
# Largest |onnxruntime - PyTorch| score accepted at export; float32 reordering gives ~1e-5.
SCORE_TOLERANCE = 1e-3
PROTOBUF_LIMIT = 2**31 - 1  # bytes: one ONNX file without external data
# Largest export side: 8 times the benchmarks' 512. The export runs the model on two check images of
# the size, with [batch, C, H, W] scores; a larger side would ask for memory no machine has.
MAX_EXPORT_SIDE = 4096


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote."""

    path: Path
    num_bytes: int
    size: tuple[int, int]
    class_texts: tuple[tuple[str, ...], ...]
    opset: int
    max_score_difference: float  # onnxruntime against PyTorch, on the check images
    metadata: dict[str, str]


def require_onnx() -> None:
    """Refuses at once, in one line, when the ``onnx`` extra is not installed."""
    missing = [name for name in EXTRA_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(f"ONNX export needs the onnx extra ({', '.join(missing)} missing): {INSTALL_HINT}")


def check_size(size: int | Sequence[int], patch_size: tuple[int, int]) -> tuple[int, int]:
    """``N`` or ``(H, W)`` -> ``(H, W)``, refused unless positive whole multiples of the patch size."""
    values = (size, size) if isinstance(size, int) else tuple(size)
    if len(values) != 2 or not all(isinstance(value, int) and not isinstance(value, bool) for value in values):
        raise ExportError(f"the export size is N or H W, whole numbers, got {printable(repr(size), 80)}")
    for value, axis in zip(values, ("height", "width")):
        if value > MAX_EXPORT_SIDE:
            raise ExportError(
                f"export size {values[0]} x {values[1]}: the {axis} {value} is over the largest "
                f"exported side, {MAX_EXPORT_SIDE}"
            )
    for value, patch, axis in zip(values, patch_size, ("height", "width")):
        if value <= 0 or value % patch:
            raise ExportError(
                f"export size {values[0]} x {values[1]}: the {axis} {value} must be a positive multiple of "
                f"{patch}, the model's patch size (e.g. {max(patch, round(value / patch) * patch)})"
            )
    return values


def check_opset(opset: int | None) -> None:
    from onnx.defs import onnx_opset_version

    newest = onnx_opset_version()
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int)):
        raise ExportError(f"opset must be an integer ({MIN_OPSET} to {newest}), got {printable(repr(opset), 40)}")
    if opset is not None and not MIN_OPSET <= opset <= newest:
        raise ExportError(f"opset {opset}: the exporter writes opsets {MIN_OPSET} to {newest}")


def export_onnx(
    path: str | Path,
    class_names: Sequence[ClassEntry],
    checkpoint: str | Path = PACKAGED_MODEL_NAME,
    size: int | Sequence[int] | None = None,
    opset: int | None = None,
) -> OnnxExport:
    """Writes ``checkpoint``'s segmentor for ``class_names`` as an ONNX file.

    Args:
        path: the ``.onnx`` file to write (atomically).
        class_names: the vocabulary, as :meth:`Predictor.predict` takes it.
        checkpoint: a checkpoint file or ``packaged:NAME``.
        size: ``N`` or ``(H, W)``, multiples of the patch size; default: the checkpoint's
            ``inference.short_side``, square.
        opset: ONNX opset (default: the exporter's).

    Returns:
        what was written. The graph's input is ``images [batch, 3, H, W]`` float32 RGB 0..255;
        its outputs ``scores [batch, C, H, W]`` float32 and ``labels [batch, H, W]`` int64.
    """
    require_onnx()
    check_opset(opset)
    check_not_input(path, [checkpoint_file(checkpoint)], "path")  # never the checkpoint it exports
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    record = read_record(checkpoint_file(checkpoint))  # the header again, for the digest
    model = predictor.model
    height, width = check_size(predictor.config.short_side if size is None else size, model.patch_size)
    module = FixedVocabularySegmentation(predictor, class_names)
    encoder = model.image_encoder
    metadata = export_metadata(
        module.class_texts,
        (height, width),
        encoder.pixel_mean.flatten().tolist(),
        encoder.pixel_std.flatten().tolist(),
        checkpoint if str(checkpoint).startswith(PACKAGED_PREFIX) else Path(checkpoint).name,
        record["digest"],
        predictor.config,
        [names[0] for names, seen in zip(module.class_texts, module.seen.tolist()) if seen],
    )
    proto = _trace(module, (height, width), opset)
    import onnx

    onnx.helper.set_model_props(proto, {f"{PREFIX}{key}": value for key, value in metadata.items()})
    if proto.ByteSize() > PROTOBUF_LIMIT:
        raise ExportError(f"the exported model takes {proto.ByteSize() / 1e9:.1f} GB, over ONNX's 2 GB for one file")
    data = proto.SerializeToString()
    difference = _compare_with_pytorch(module, data, (height, width))
    atomic_write_bytes(path, data)
    written_opset = next(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx"))
    return OnnxExport(Path(path), len(data), (height, width), module.class_texts, written_opset, difference, metadata)


def _trace(module: FixedVocabularySegmentation, size: tuple[int, int], opset: int | None):
    """The module as an ONNX ``ModelProto`` with a dynamic batch dimension."""
    example = _check_images(2, size)
    batch = torch.export.Dim("batch", min=1)
    # The optimizer warns for every fused attention projection it leaves unfolded (harmless).
    with _quiet_logger("onnxscript"), torch.no_grad():
        try:
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes={"images": {0: batch}},
                opset_version=opset,
                external_data=False,
                verbose=False,
            )
        except Exception as error:  # the exporter's report is pages long; --debug shows it whole
            summary = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
            raise ExportError(f"torch.onnx could not export the model: {summary}") from error
    proto = program.model_proto
    written = next(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx"))
    if opset is not None and written != opset:
        raise ExportError(f"opset {opset}: the exporter could only write opset {written}")
    return proto


def _check_images(batch: int, size: tuple[int, int]) -> torch.Tensor:
    """``[batch, 3, H, W]`` seeded images in 0..255: the same on every export."""
    generator = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, *size, generator=generator) * 255


def _compare_with_pytorch(module: FixedVocabularySegmentation, data: bytes, size: tuple[int, int]) -> float:
    """Largest |score difference| of onnxruntime against PyTorch on two check images; refuses a graph
    that computes something else."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    try:
        session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # e.g. an opset newer than this onnxruntime knows
        summary = " ".join(str(error).split())[:300]
        raise ExportError(
            f"onnxruntime {onnxruntime.__version__} cannot load the exported graph ({summary}); nothing was written"
        ) from error
    images = _check_images(2, size)
    scores, _ = session.run(None, {INPUT_NAME: images.numpy()})
    with torch.no_grad():
        expected, _ = module(images)
    difference = float(np.abs(scores - expected.numpy()).max())
    if not difference <= SCORE_TOLERANCE:  # NaN too
        raise ExportError(
            f"the exported graph's scores differ from PyTorch's by {difference:.3g} (more than {SCORE_TOLERANCE:g}); "
            "nothing was written"
        )
    return difference


@contextlib.contextmanager
def _quiet_logger(name: str):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
