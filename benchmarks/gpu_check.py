"""One-shot GPU check: the CUDA tests, then speed and memory at real shapes; ends with one JSON line.

Run from the repository root on a machine with one CUDA GPU (about 3-5 minutes, at most 8)::

    python benchmarks/gpu_check.py            # the real check (needs CUDA)
    python benchmarks/gpu_check.py --smoke    # the same code at tiny sizes on the CPU (CI runs it)

Needs: torch (a CUDA build for the real check), open_clip_torch >= 2.24, scipy, numpy, Pillow,
PyYAML, tqdm, safetensors, pytest, and splitmatch importable (``pip install -e .``, or
``PYTHONPATH=.`` from the repository root). CLIP ViT-B/16 is built from open_clip's
``ViT-B-16-quickgelu`` config with random weights: real shapes, nothing downloaded (speed
does not depend on the values).

What it runs, in order:

1. ``pytest -m cuda tests``: the tests of the CUDA code paths (bf16/fp16 training, resume with
   CUDA generator and gradient-scaler state, ``train.deterministic`` bitwise repeatability,
   evaluation under autocast, pinned loading, the attention fast path). They skip on the CPU.
2. The Split Matching training step of ``voc-vitb16`` at batch 16, crop 512, bf16 (the trainer's
   step: targets, forward, criterion, backward, clipping, AdamW): seconds per step and peak
   GPU memory; the same step with Hungarian matching; the share of the criterion (matching and
   losses, forward only) and of the matching alone in a step.
3. ``Predictor.predict`` at 512: images per second, whole image (512 x 512) and sliding windows
   (512 x 683, VOC's evaluation shape: two windows).
4. Pseudo-mask caching (``fill_cache`` on 512 x 512 images): images per second.

Beside the figures it prints the anchors they can be read against: ZegCLIP reports 9.0 FPS at
512 on a GTX 1080 Ti; a ZegCLIP-style VOC run (20k iterations, batch 16) takes about 3 hours on
four RTX 3090.

``--smoke`` uses the ``tiny`` preset (random-init small CLIP, batch 2, crop 64) on the CPU and
prints the same JSON keys; its figures mean nothing beyond "it runs".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REQUIREMENTS = (
    "torch (a CUDA build for the real check), open_clip_torch>=2.24, scipy, numpy, Pillow, PyYAML, tqdm, "
    "safetensors, pytest; and splitmatch importable (pip install -e . or PYTHONPATH=. from the repository root)"
)
ANCHORS = {
    "zegclip_fps_512_gtx1080ti": 9.0,
    "zegclip_voc_run_hours_4x_rtx3090": 3.0,
    "zegclip_voc_run": "20k iterations, batch 16 (4 per GPU)",
}
REPOSITORY = Path(__file__).resolve().parent.parent


def check_requirements() -> str | None:
    """The missing requirements as one line, or ``None``."""
    missing = []
    for module in ("torch", "open_clip", "scipy", "numpy", "PIL", "yaml", "tqdm", "safetensors", "pytest"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    try:
        import splitmatch  # noqa: F401
    except ImportError:
        missing.append("splitmatch")
    return f"missing {', '.join(missing)}; gpu_check needs {REQUIREMENTS}" if missing else None


def run_cuda_tests() -> dict:
    """``pytest -m cuda tests`` in a subprocess (on the CPU they all skip); counts from its summary line."""
    command = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests"]
    started = time.time()
    result = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, timeout=300)
    lines = (result.stdout + result.stderr).strip().splitlines()
    summary = lines[-1].strip("= ") if lines else ""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    for number, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)\b", summary):
        counts["errors" if word.startswith("error") else word] += int(number)
    failures = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    print(f"cuda tests ({time.time() - started:.0f} s): {summary}")
    for line in failures:
        print(f"  {line}")
    return {**counts, "returncode": result.returncode, "summary": summary, "failures": failures[:10]}


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device, repeats: int, warmup: int) -> float:
    """Median seconds of ``function()`` over ``repeats`` calls after ``warmup`` calls."""
    import statistics

    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        function()
        synchronize(device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def training_step_figures(config, device, repeats: int) -> dict:
    """Seconds per step, peak memory and criterion/matching shares, for split and hungarian matching."""
    import torch
    from bench_train_step import make_batch

    from splitmatch.model.build import build_segmentor
    from splitmatch.train.optim import build_optimizer

    torch.manual_seed(0)
    model = build_segmentor(config.clip, config.decoder).to(device).train()
    seen_ids = list(range(15))
    data = make_batch(config.train.batch_size, config.data.crop_size, seen_ids, model.image_encoder.embed_dim)
    if device.type == "cuda":
        data["image"] = data["image"].pin_memory()
    optimizer = build_optimizer(model, config.train)
    # torch.compile (train.compile) on the GPU only: on the CPU compiling takes minutes.
    compiled = torch.compile(model) if device.type == "cuda" else None
    return {
        matching: measure_step(model, optimizer, data, seen_ids, config, matching, device, repeats, compiled)
        for matching in ("split", "hungarian")
    }


def measure_step(
    model, optimizer, data: dict, seen_ids: list[int], config, matching: str, device, repeats: int, compiled=None
):
    """The trainer's step (targets, forward, criterion, backward, clipping, AdamW) with one matching.

    Also the host-side share of the step: building the targets and solving the assignments on the
    host, the two pieces of the step the device waits for. With ``compiled`` (``torch.compile``
    of ``model``), the same step through it.
    """
    import torch

    import splitmatch.matching.assignment as assignment
    from splitmatch.config import merge
    from splitmatch.device import mixed_precision
    from splitmatch.matching.matcher import pad_targets
    from splitmatch.train.step import build_criterion
    from splitmatch.train.targets import build_targets, move_targets

    criterion = build_criterion(merge(config, {"loss": {"matching": matching}}).loss)
    class_embeddings = model.encode_classes([f"class {i}" for i in seen_ids])
    trainable = [p for p in model.parameters() if p.requires_grad]
    query_group = model.query_decoder.query_group.cpu()
    pseudo = matching == "split"

    def targets() -> list[dict]:
        built = build_targets(
            data["label"],
            seen_ids,
            data["pseudo_index"] if pseudo else None,
            data["pseudo_embeddings"] if pseudo else None,
        )
        return move_targets(built, device)

    def step(network=model) -> None:
        step_targets = targets()
        normalisers = criterion.normalisers(step_targets, query_group, device)
        with mixed_precision(device, config.train.amp):
            outputs = network(data["image"].to(device, non_blocking=True), class_embeddings)
        losses = criterion(outputs, step_targets, normalisers)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(trainable, config.train.grad_clip or float("inf"))
        optimizer.step()

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    seconds = timed(step, device, repeats, warmup=2)
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
    with torch.no_grad(), mixed_precision(device, config.train.amp):
        outputs = model(data["image"].to(device), class_embeddings)
    fixed = targets()
    readouts = [outputs, *outputs["aux_outputs"]]
    criterion_seconds = timed(lambda: criterion(outputs, fixed), device, repeats, warmup=1)
    padded = pad_targets(fixed, criterion.matcher.random_points(len(fixed), device))  # as the criterion does, once
    matching_seconds = timed(lambda: [criterion.matcher(r, fixed, padded=padded) for r in readouts], device, repeats, 1)
    shares = criterion_seconds / seconds, matching_seconds / seconds
    targets_seconds = timed(targets, device, repeats, warmup=1)
    solving = {"seconds": 0.0, "calls": 0}
    real_solve = assignment.solve

    def timed_solve(*args, **kwargs):
        mark = time.perf_counter()
        try:
            return real_solve(*args, **kwargs)
        finally:
            solving["seconds"] += time.perf_counter() - mark

    assignment.solve = timed_solve  # solve_blocks looks it up at each call
    try:
        for _ in range(repeats):
            step()
    finally:
        assignment.solve = real_solve
    host_share = (targets_seconds + solving["seconds"] / repeats) / seconds
    compiled_seconds = None
    if compiled is not None:
        compiled_seconds = timed(lambda: step(compiled), device, repeats, warmup=3)  # the first calls compile
    shown = "n/a" if peak is None else f"{peak:.2f} GB"
    print(
        f"train step {matching}: {seconds:.3f} s, peak {shown}, criterion {shares[0]:.0%}, matching {shares[1]:.0%}, "
        f"host side {host_share:.0%} (targets {targets_seconds * 1e3:.1f} ms, assignments "
        f"{solving['seconds'] / repeats * 1e3:.1f} ms)"
        + ("" if compiled_seconds is None else f", compiled {compiled_seconds:.3f} s")
    )
    return {
        "step_s": seconds,
        "peak_memory_gb": peak,
        "criterion_share": shares[0],
        "matching_share": shares[1],
        "host_share": host_share,
        "targets_s": targets_seconds,
        "assignment_s": solving["seconds"] / repeats,
        "compiled_step_s": compiled_seconds,
    }


def predict_figures(config, device, size: int, repeats: int) -> dict:
    """Images per second of ``Predictor.predict``, whole image and sliding windows."""
    import numpy as np
    import torch

    from splitmatch.data.class_lists import BUILTIN_SPLITS
    from splitmatch.inference.segmentation import candidate_scoring
    from splitmatch.model.build import build_segmentor
    from splitmatch.predict.predictor import Predictor

    torch.manual_seed(0)
    model = build_segmentor(config.clip, config.decoder).to(device).eval()
    classes = BUILTIN_SPLITS["voc"]
    rng = np.random.default_rng(0)
    figures = {}
    for mode, width in (("whole", size), ("slide", size * 4 // 3)):
        inference = config.inference
        inference.mode, inference.short_side, inference.window = mode, size, size
        inference.stride = size * 426 // 512
        predictor = Predictor(model, inference, classes.seen_names, candidate_scoring(config))
        image = rng.integers(0, 256, (size, width, 3), dtype=np.uint8)
        seconds = timed(lambda: predictor.predict(image, list(classes.names)), device, repeats, warmup=2)  # noqa: B023
        figures[mode] = 1.0 / seconds
        print(f"predict {mode} {size}x{width}: {1.0 / seconds:.1f} images/s")
    return figures


def pseudo_mask_figures(config, device, size: int, count: int) -> float:
    """Images per second of ``fill_cache`` on ``count`` fabricated ``size`` x ``size`` images."""
    import numpy as np
    import torch

    from splitmatch.data.classes import ClassSplit
    from splitmatch.data.folder import DatasetFolder, write_sample, write_split
    from splitmatch.model.build import build_segmentor
    from splitmatch.pseudo.build_cache import fill_cache, open_cache

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as root:
        classes = ClassSplit(("background", "a", "b", "c"), ("c",), dataset="gpu-check")
        classes.write(Path(root) / "classes.json")
        stems = []
        for i in range(count):
            image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            label = np.zeros((size, size), np.uint8)
            label[: size // 3, : size // 3] = 1
            label[size // 2 :, size // 2 :] = 3  # unseen: becomes unannotated
            write_sample(root, f"img{i:03d}", image, label)
            stems.append(f"img{i:03d}")
        write_split(root, "train", stems)
        folder = DatasetFolder(root)
        torch.manual_seed(0)
        encoder = build_segmentor(config.clip, config.decoder).image_encoder.to(device).eval()
        warm = open_cache(config.pseudo, config.clip, folder, encoder)  # a first pass compiles kernels and fills caches
        fill_cache(warm, encoder, config.pseudo, folder, "train", batch_size=8, progress=False)
        config.pseudo.cache_dir = str(Path(root) / "timed")
        cache = open_cache(config.pseudo, config.clip, folder, encoder)
        synchronize(device)
        started = time.perf_counter()
        fill_cache(cache, encoder, config.pseudo, folder, "train", batch_size=8, progress=False)
        synchronize(device)
        rate = count / (time.perf_counter() - started)
    print(f"pseudo masks {size}x{size}: {rate:.1f} images/s")
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (same code, same JSON keys)")
    parser.add_argument("--skip-tests", action="store_true", help="do not run pytest -m cuda")
    args = parser.parse_args()
    started = time.time()
    result: dict = {"mode": "smoke" if args.smoke else "gpu", "ok": False}
    missing = check_requirements()
    if missing:
        print(f"gpu_check: {missing}")
        print(json.dumps({**result, "error": missing}))
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_train_step's synthetic batch
    import open_clip
    import torch

    from splitmatch.config.presets import load_config

    if not args.smoke and not torch.cuda.is_available():
        message = "no CUDA device is visible to torch; run with --smoke for the CPU check"
        print(f"gpu_check: {message}")
        print(json.dumps({**result, "error": message}))
        return 2
    device = torch.device("cuda" if not args.smoke else "cpu")
    result.update(
        {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "open_clip": open_clip.__version__,
            "anchors": ANCHORS,
        }
    )
    print(f"gpu_check ({result['mode']}) on {result['device']}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    try:
        result["cuda_tests"] = {"not run": "--skip-tests"} if args.skip_tests else run_cuda_tests()
        if args.smoke:
            config = load_config(preset_name="tiny", overrides=["train.batch_size=2", "loss.num_points=256"])
            size, repeats, images = 64, 1, 4
        else:
            overrides = ["clip.weights=null", "train.batch_size=16", "data.crop_size=512", "train.amp=bf16"]
            config = load_config(preset_name="voc-vitb16", overrides=overrides)
            size, repeats, images = 512, 5, 32
        train = training_step_figures(config, device, repeats)
        result.update(
            {
                "train_batch": config.train.batch_size,
                "train_crop": config.data.crop_size,
                "train_step_split_s": train["split"]["step_s"],
                "train_step_hungarian_s": train["hungarian"]["step_s"],
                "train_peak_memory_split_gb": train["split"]["peak_memory_gb"],
                "train_peak_memory_hungarian_gb": train["hungarian"]["peak_memory_gb"],
                "criterion_share_split": train["split"]["criterion_share"],
                "matching_share_split": train["split"]["matching_share"],
                "criterion_share_hungarian": train["hungarian"]["criterion_share"],
                "matching_share_hungarian": train["hungarian"]["matching_share"],
                "host_share_split": train["split"]["host_share"],
                "host_share_hungarian": train["hungarian"]["host_share"],
                "targets_s": train["split"]["targets_s"],
                "assignment_s_split": train["split"]["assignment_s"],
                "train_step_split_compiled_s": train["split"]["compiled_step_s"],
                "voc_run_hours_one_gpu_estimate": train["split"]["step_s"] * 20000 / 3600,
            }
        )
        predict = predict_figures(config, device, size, max(repeats * 4, 2))
        result["predict_whole_images_per_s"] = predict["whole"]
        result["predict_slide_images_per_s"] = predict["slide"]
        result["pseudo_masks_images_per_s"] = pseudo_mask_figures(config, device, size, images)
        tests = result["cuda_tests"]
        result["ok"] = tests.get("returncode", 0) == 0 and not tests.get("failed") and not tests.get("errors")
    except Exception as error:  # the JSON line still ends the output, naming what failed
        traceback.print_exc()
        result["error"] = f"{type(error).__name__}: {error}"
    result["seconds"] = round(time.time() - started, 1)
    print(
        f"anchors: ZegCLIP {ANCHORS['zegclip_fps_512_gtx1080ti']} FPS at 512 on a GTX 1080 Ti; a ZegCLIP-style VOC run "
        f"({ANCHORS['zegclip_voc_run']}) about {ANCHORS['zegclip_voc_run_hours_4x_rtx3090']} h on 4x RTX 3090"
    )
    print(json.dumps(result, default=float))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: the machine may be shared
    sys.exit(main())
