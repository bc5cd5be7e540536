"""The ``export`` command: a trained model as a file other runtimes read (ONNX)."""

from __future__ import annotations

import argparse

from splitmatch.commands.arguments import PACKAGED_HELP, add_command, positive_int
from splitmatch.commands.common import UsageError
from splitmatch.data.names import printable


def add_export_command(commands) -> None:
    p = add_command(
        commands,
        "export",
        help="write a model for a fixed class list as an ONNX file (extra: splitmatch[onnx]; docs/export.md)",
    )
    p.add_argument("--onnx", required=True, metavar="FILE", help="ONNX file to write")
    p.add_argument(
        "--classes",
        required=True,
        help='comma-separated names, a class\'s synonyms joined by "|"; '
        "their text embeddings are computed now and built into the file",
    )
    p.add_argument("--checkpoint", help=f"model.safetensors (or a checkpoint) to export (default: {PACKAGED_HELP})")
    p.add_argument(
        "--size",
        nargs="+",
        metavar="N",
        help="input size, N (square) or H W, multiples of the "
        "model's patch size (default: the checkpoint's inference.short_side, square)",
    )
    p.add_argument("--opset", type=positive_int, help="ONNX opset to write, 18 or later (default: the exporter's)")
    p.set_defaults(func=cmd_export)


def parse_size(texts: list[str] | None) -> int | tuple[int, int] | None:
    """``--size N`` or ``--size H W`` as typed -> ``N``, ``(H, W)`` or ``None`` (not given)."""
    if texts is None:
        return None
    if len(texts) not in (1, 2):
        raise UsageError(f"--size takes N or H W, got {len(texts)} values: {printable(' '.join(texts), 60)}")
    from splitmatch.export.onnx_file import MAX_EXPORT_SIDE

    shown = printable(" ".join(texts), 60)
    try:
        values = [int(text) for text in texts]
    except ValueError:
        raise UsageError(f"--size takes whole numbers of pixels, got '{shown}'") from None
    if not all(0 < value <= MAX_EXPORT_SIDE for value in values):
        raise UsageError(
            f"--size takes sides of 1..{MAX_EXPORT_SIDE} pixels (multiples of the patch size), got {shown}"
        )
    return values[0] if len(values) == 1 else (values[0], values[1])


def cmd_export(args: argparse.Namespace) -> int:
    from splitmatch.commands.prediction import _checkpoint_or_packaged
    from splitmatch.data.classes import parse_class_entries
    from splitmatch.export.onnx_file import export_onnx, require_onnx
    from splitmatch.predict.packaged_model import checkpoint_file
    from splitmatch.storage.files import check_not_input, check_output_file

    require_onnx()  # before the model loads: a missing extra is the first thing to hear about
    entries = parse_class_entries(args.classes)
    size = parse_size(args.size)
    check_output_file(args.onnx, "--onnx")  # a read-only or misspelt destination fails before the export
    checkpoint = _checkpoint_or_packaged(args.checkpoint)
    check_not_input(args.onnx, [checkpoint_file(checkpoint)], "--onnx")  # never the checkpoint it reads
    done = export_onnx(args.onnx, entries, checkpoint, size, args.opset)
    height, width = done.size
    classes = len(done.class_texts)
    print(
        f"wrote {done.path} ({done.num_bytes / 1e6:.1f} MB, opset {done.opset}): images float32 "
        f"[batch, 3, {height}, {width}] RGB 0..255 -> scores [batch, {classes}, {height}, {width}], labels "
        f"[batch, {height}, {width}]; onnxruntime matches PyTorch within {done.max_score_difference:.1e}"
    )
    return 0
