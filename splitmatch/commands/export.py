"""The ``export`` command: a trained model as a file other runtimes read (ONNX)."""

from __future__ import annotations

import argparse

from splitmatch.commands.common import UsageError


def parse_size(texts: list[str] | None) -> int | tuple[int, int] | None:
    """``--size N`` or ``--size H W`` as typed -> ``N``, ``(H, W)`` or ``None`` (not given)."""
    if texts is None:
        return None
    if len(texts) not in (1, 2):
        raise UsageError(f"--size takes N or H W, got {len(texts)} values: {' '.join(texts)}")
    try:
        values = [int(text) for text in texts]
    except ValueError:
        raise UsageError(f"--size takes whole numbers of pixels, got '{' '.join(texts)}'") from None
    return values[0] if len(values) == 1 else (values[0], values[1])


def cmd_export(args: argparse.Namespace) -> int:
    from splitmatch.commands.prediction import _checkpoint_or_packaged
    from splitmatch.data.classes import parse_class_entries
    from splitmatch.export.onnx_file import export_onnx, require_onnx
    from splitmatch.storage.files import check_output_file

    require_onnx()  # before the model loads: a missing extra is the first thing to hear about
    entries = parse_class_entries(args.classes)
    size = parse_size(args.size)
    check_output_file(args.onnx)  # a read-only or misspelt destination fails before the export
    checkpoint = _checkpoint_or_packaged(args.checkpoint)
    done = export_onnx(args.onnx, entries, checkpoint, size, args.opset)
    height, width = done.size
    classes = len(done.class_texts)
    print(
        f"wrote {done.path} ({done.num_bytes / 1e6:.1f} MB, opset {done.opset}): images float32 "
        f"[batch, 3, {height}, {width}] RGB 0..255 -> scores [batch, {classes}, {height}, {width}], labels "
        f"[batch, {height}, {width}]; onnxruntime matches PyTorch within {done.max_score_difference:.1e}"
    )
    return 0
