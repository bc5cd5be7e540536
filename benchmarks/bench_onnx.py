"""An exported ONNX file under onnxruntime vs the same computation in PyTorch, on the CPU.

Method: for each size, ``export_onnx`` writes the model (default: the packaged world model,
its 13 classes) at that size into a temporary folder; a batch of world images rendered at that
size is then scored by onnxruntime (``CPUExecutionProvider``) and by the PyTorch module the
file was traced from (:class:`splitmatch.export.fixed_vocabulary.FixedVocabularySegmentation`,
what ``Predictor`` computes for one window), both with ``--threads`` threads, on the same
float32 input. After a warm-up the two run in turn (``common.time_interleaved``); the medians
are reported per image, with the paired ratio onnxruntime / PyTorch (below 1: onnxruntime is
faster). The argmax agreement is the share of pixels whose label is the same; pixels where
PyTorch's two best scores are within 1e-4 (ties) are counted apart. No target: the figures
are for docs/export.md. The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from common import Result, paired_ratio, print_results, time_interleaved

from splitmatch.export.fixed_vocabulary import FixedVocabularySegmentation
from splitmatch.export.onnx_file import export_onnx
from splitmatch.predict.packaged_model import PACKAGED_MODEL_NAME
from splitmatch.predict.predictor import Predictor
from splitmatch.world.generator import DEFAULT_SPEC, image_rng, render_image

TIE_TOLERANCE = 1e-4


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=PACKAGED_MODEL_NAME, help="model to export (default: %(default)s)")
    parser.add_argument("--classes", help="comma-separated class names (default: the checkpoint's own classes)")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        help="square sizes (default: the checkpoint's inference.short_side and 512; quick: the short side alone)",
    )
    parser.add_argument("--batch", type=int, default=4, help="images per run (default: %(default)s, quick 2)")
    parser.add_argument("--opset", type=int, help="ONNX opset of the export (default: the exporter's)")
    parser.add_argument("--threads", type=int, default=1, help="threads of both runtimes (default: %(default)s)")
    parser.add_argument("--repeats", type=int, help="timed repeats (default 10, quick 1)")
    parser.add_argument("--profile", action="store_true", help="also onnxruntime's time by op type, one image")
    parser.add_argument("--quick", action="store_true", help="smoke run: the short side only, batch 2, one repeat")
    args = parser.parse_args()
    if args.quick:
        args.batch = 2
    args.repeats = args.repeats or (1 if args.quick else 10)
    return args


def world_batch(size: int, count: int) -> np.ndarray:
    """``float32 [count, 3, size, size]`` validation images of the world drawn at ``size``, 0..255."""
    spec = dataclasses.replace(DEFAULT_SPEC, size_range=(size, size), size_mode=size)
    images = np.stack([render_image(image_rng(0, "val", index), spec)[0] for index in range(count)])
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)


def session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def op_time_shares(path: Path, image: np.ndarray, threads: int, runs: int = 3) -> dict[str, float]:
    """onnxruntime's own profile of ``runs`` runs on one image: share of kernel time per op type."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    runtime = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        runtime.run(None, {"images": image[None]})
    events = json.loads(Path(runtime.end_profiling()).read_text())
    per_op: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    total = sum(per_op.values())
    return {op: round(time / total, 3) for op, time in per_op.most_common(5)}


def measure(args, predictor: Predictor, names: list[str], size: int, folder: Path) -> dict:
    started = time.perf_counter()
    written = export_onnx(folder / f"model-{size}.onnx", names, args.checkpoint, size, args.opset)
    export_seconds = time.perf_counter() - started
    runtime = session(folder / f"model-{size}.onnx", args.threads)
    module = FixedVocabularySegmentation(predictor, names)
    images = world_batch(size, args.batch)
    tensor = torch.from_numpy(images)

    def with_onnxruntime():
        return runtime.run(None, {"images": images})

    @torch.no_grad()
    def with_pytorch():
        return module(tensor)

    (_, onnx_labels), (scores, torch_labels) = with_onnxruntime(), with_pytorch()
    best = scores.topk(2, dim=1).values  # [B, 2, H, W]
    ties = (best[:, 0] - best[:, 1] <= TIE_TOLERANCE).numpy()
    same = onnx_labels == torch_labels.numpy()
    timings = time_interleaved({"pytorch": with_pytorch, "onnxruntime": with_onnxruntime}, args.repeats, warmup=2)
    figure = {
        "size": [size, size],
        "batch": args.batch,
        "opset": written.opset,
        "pytorch_ms_per_image": round(timings["pytorch"].median * 1e3 / args.batch, 3),
        "onnxruntime_ms_per_image": round(timings["onnxruntime"].median * 1e3 / args.batch, 3),
        "ratio": round(paired_ratio(timings["onnxruntime"], timings["pytorch"]), 4),
        "argmax_agreement": round(float(same.mean()), 6),
        "differing_pixels_off_ties": int((~same & ~ties).sum()),
        "tie_pixels": int(ties.sum()),
        "export_seconds": round(export_seconds, 2),
    }
    if args.profile:
        figure["onnxruntime_op_shares"] = op_time_shares(folder / f"model-{size}.onnx", images[0], args.threads)
    return figure


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    predictor = Predictor.from_checkpoint(args.checkpoint, "cpu")
    names = args.classes.split(",") if args.classes else list(predictor.classes.names)
    short_side = predictor.config.short_side
    sizes = args.sizes or ([short_side] if args.quick else [short_side, 512])
    with tempfile.TemporaryDirectory() as folder:
        figures = [measure(args, predictor, names, size, Path(folder)) for size in sizes]
    results, notes = [], []
    for figure in figures:
        size = figure["size"][0]
        results.append(
            Result(
                f"onnxruntime, {size}x{size}, per image",
                figure["onnxruntime_ms_per_image"] / 1e3,
                "s",
                figure["pytorch_ms_per_image"] / 1e3,
                "PyTorch",
                ratio=figure["ratio"],
            )
        )
        notes.append(
            f"{size}x{size}: argmax agreement {figure['argmax_agreement']:.6f} of {args.batch * size * size} pixels, "
            f"{figure['differing_pixels_off_ties']} differing off ties, {figure['tie_pixels']} ties; "
            f"opset {figure['opset']}, export {figure['export_seconds']:.1f} s"
        )
        if "onnxruntime_op_shares" in figure:
            shares = ", ".join(f"{op} {share:.0%}" for op, share in figure["onnxruntime_op_shares"].items())
            notes.append(f"{size}x{size}: onnxruntime's kernel time by op type (one image): {shares}")
    notes.append(
        f"{args.checkpoint}, {len(names)} classes, batch {args.batch}, {args.threads} thread(s), "
        f"{args.repeats} repeats (median); torch {torch.__version__}, onnxruntime {onnxruntime.__version__}"
    )
    print_results("bench_onnx: onnxruntime / PyTorch, one window", results, notes)
    summary = {
        "benchmark": "bench_onnx",
        "checkpoint": args.checkpoint,
        "classes": len(names),
        "threads": args.threads,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "sizes": figures,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
