"""``train.compile`` on the CPU: the world's training step eagerly and through ``torch.compile``.

Why: ``train.compile`` (``torch.compile`` of the segmentor, off by default) should be on by
default only if a measurement says it pays. This script measures it where this project can:
on the CPU, one thread, with the world preset's step as ``bench_world_step.py`` builds it (a
small world, its packaged CLIP, cached pseudo masks, the real loader) and, with ``--vitb16``,
CLIP ViT-B/16 at 512 (random weights, batch 1; the forward and backward only, minutes to
compile). On a GPU, ``benchmarks/gpu_check.py`` reports the compiled step beside the eager one.

Method: two identical models (same seed); one is wrapped by ``torch.compile``. The first calls
of the compiled step compile it (its time is printed as the compilation cost); then both steps
run on the same batch, interleaved (``common.time_interleaved``), and the ratio is the median of
the paired ratios. Reference: the eager step, measured in the same run. Target (for turning it
on by default): compiled / eager <= 0.9 with the compilation paid back within 5% of a world
demo run (2,000 steps).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_world_step import WorldStep, make_world
from common import Result, paired_ratio, parse_args, print_results, time_interleaved

from splitmatch.config import merge, preset
from splitmatch.train.data import build_loader
from splitmatch.train.sampler import StepBatchSampler

DEMO_STEPS = 2000


def compiled_world_step(config, seen_ids, texts) -> WorldStep:
    step = WorldStep(config, seen_ids, texts)
    step.model = torch.compile(step.model)  # the optimizer keeps the same parameters
    return step


def world_figures(args) -> tuple[list[Result], dict]:
    config = preset("world")
    if args.quick:
        config = merge(config, {"train": {"batch_size": 2}})
    with tempfile.TemporaryDirectory() as scratch:
        world, dataset = make_world(Path(scratch) / "world", 8 if args.quick else 32, config)
        classes = world.classes
        texts = [classes.texts[i] for i in classes.seen_ids]
        sampler = StepBatchSampler(len(dataset), config.train.batch_size, 0, 1, 0, 0, 1)
        batch = next(iter(build_loader(dataset, sampler, 0, torch.device("cpu"))))
        eager = WorldStep(config, list(classes.seen_ids), texts)
        compiled = compiled_world_step(config, list(classes.seen_ids), texts)
        targets = eager.targets(batch)
        started = time.perf_counter()
        for _ in range(2):  # the first call compiles; a second settles recompilation for the backward
            compiled.run(batch, targets)
        compile_seconds = time.perf_counter() - started
        timings = time_interleaved(
            {"eager": lambda: eager.run(batch, targets), "compiled": lambda: compiled.run(batch, targets)},
            repeats=args.repeats,
        )
    ratio = paired_ratio(timings["compiled"], timings["eager"])
    saved = (timings["eager"].median - timings["compiled"].median) * DEMO_STEPS
    results = [
        Result(
            "world step, compiled",
            timings["compiled"].median,
            "s",
            timings["eager"].median,
            "eager step",
            target="<= 0.9",
            passed=ratio <= 0.9,
            ratio=ratio,
        ),
        Result(
            f"compilation / time saved over {DEMO_STEPS} steps",
            compile_seconds,
            "s",
            max(saved, 1e-9),
            "saved",
            target="<= 0.05",
            passed=saved > 0 and compile_seconds / saved <= 0.05,
        ),
    ]
    return results, {
        "world_ratio": ratio,
        "world_compile_s": compile_seconds,
        "world_eager_step_s": timings["eager"].median,
    }


def vitb16_figures(repeats: int) -> tuple[list[Result], dict]:
    """Forward and backward of the ViT-B/16 preset's segmentor at 512, batch 1, random weights."""
    from splitmatch.model.build import build_segmentor

    config = merge(preset("voc-vitb16"), {"clip": {"weights": None}})
    # The world's step compiled the same forward code at 96 px in this process; without a reset
    # dynamo would recompile it with symbolic image sizes, which is not what a training run
    # (one crop size per process) compiles, and which inductor 2.14 fails to lower on the CPU.
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = build_segmentor(config.clip, config.decoder).train()
    torch.manual_seed(0)
    compiled = torch.compile(build_segmentor(config.clip, config.decoder).train())
    images = torch.rand(1, 3, 512, 512) * 255
    embeddings = eager.encode_classes([f"class {i}" for i in range(15)])

    def run(model) -> None:
        outputs = model(images, embeddings)
        (outputs["pred_masks"].float().mean() + outputs["pred_logits"].float().mean()).backward()

    started = time.perf_counter()
    for _ in range(2):
        run(compiled)
    compile_seconds = time.perf_counter() - started
    timings = time_interleaved({"eager": lambda: run(eager), "compiled": lambda: run(compiled)}, repeats=repeats)
    ratio = paired_ratio(timings["compiled"], timings["eager"])
    results = [
        Result(
            "ViT-B/16 at 512, forward + backward, compiled",
            timings["compiled"].median,
            "s",
            timings["eager"].median,
            "eager",
            ratio=ratio,
        ),
        Result("ViT-B/16 compilation", compile_seconds, "s"),
    ]
    return results, {"vitb16_ratio": ratio, "vitb16_compile_s": compile_seconds}


def main() -> None:
    vitb16 = "--vitb16" in sys.argv  # the common options are --quick and --repeats
    if vitb16:
        sys.argv.remove("--vitb16")
    args = parse_args(__doc__, repeats=10)
    torch.set_num_threads(1)
    results, figures = world_figures(args)
    if vitb16:
        more, extra = vitb16_figures(max(2, args.repeats // 3))
        results += more
        figures.update(extra)
    notes = ["one thread; train.compile stays off by default unless both world targets pass"]
    print_results("bench_compile: torch.compile of the training step on the CPU", results, notes)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
