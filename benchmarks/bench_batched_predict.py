"""`Predictor.predict` on a list of images, batched, vs the same images one by one.

Method: two models, each asked to label a list of images of mixed sizes, both ways, timed in
turn (A, B, A, B...); medians of the repeats, the ratio judged being the median of the
per-repeat ratios (common.py). Before timing, the labels of both ways are checked identical.

* world: the packaged world model (``Predictor.packaged``, whole-image mode as it ships) on the
  first 64 validation images of the built-in world (sides 64-128 px, resized to a short side of
  96: many small forward passes, where per-call overhead counts);
* vitb16: the ``voc-vitb16`` preset with random CLIP ViT-B/16 weights (speed does not depend on
  values), sliding 512 windows at stride 426, on 4 images of 384x512 and 2 of 480x640 (each
  resized to 512x683: two windows), 20 VOC names.

Batched: ``predictor.predict(images, names, batch_size=8)``; one by one:
``[predictor.predict(image, names) for image in images]``. Text embeddings are cached in both.
Target: batched is no slower (time ratio <= 1.0) for both models. The last line printed is one
JSON object with every figure.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from common import Result, paired_ratio, parse_args, print_results, time_interleaved, vitb16_config

from splitmatch.data.class_lists import BUILTIN_SPLITS
from splitmatch.model.build import build_segmentor
from splitmatch.predict.predictor import Predictor
from splitmatch.world.generator import DEFAULT_SPEC, image_rng, render_image, world_class_split

TARGET = 1.0
BATCH_SIZE = 8


def world_case(count: int) -> tuple[Predictor, list[np.ndarray], list[str]]:
    images = [render_image(image_rng(0, "val", index), DEFAULT_SPEC)[0] for index in range(count)]
    return Predictor.packaged(device="cpu"), images, list(world_class_split().names)


def vitb16_case(quick: bool) -> tuple[Predictor, list[np.ndarray], list[str]]:
    torch.manual_seed(0)
    side = 224 if quick else 512
    window = [f"inference.short_side={side}", f"inference.window={side}", f"inference.stride={side * 426 // 512}"]
    config = vitb16_config([*window, "inference.mode=slide"])
    classes = BUILTIN_SPLITS["voc"]
    predictor = Predictor(build_segmentor(config.clip, config.decoder).eval(), config.inference, classes.seen_names)
    rng = np.random.default_rng(0)
    sizes = [(384, 512)] * (1 if quick else 4) + [(480, 640)] * (1 if quick else 2)
    images = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for size in sizes]
    return predictor, images, list(classes.names)


def measure(name: str, case: tuple[Predictor, list[np.ndarray], list[str]], repeats: int) -> tuple[Result, dict]:
    predictor, images, names = case

    def batched() -> list[np.ndarray]:
        return predictor.predict(images, names, batch_size=BATCH_SIZE)

    def one_by_one() -> list[np.ndarray]:
        return [predictor.predict(image, names) for image in images]

    assert all(np.array_equal(a, b) for a, b in zip(batched(), one_by_one())), f"{name}: labels differ"
    timings = time_interleaved({"one_by_one": one_by_one, "batched": batched}, repeats, warmup=1)
    ratio = paired_ratio(timings["batched"], timings["one_by_one"])
    per_image = {key: len(images) / timing.median for key, timing in timings.items()}
    result = Result(
        f"{name}: {len(images)} images, batched ({BATCH_SIZE})",
        timings["batched"].median,
        "s",
        timings["one_by_one"].median,
        "one by one",
        f"<= {TARGET}",
        ratio <= TARGET,
        ratio,
    )
    figures = {
        "images": len(images),
        "images_per_s_batched": round(per_image["batched"], 3),
        "images_per_s_one_by_one": round(per_image["one_by_one"], 3),
        "time_ratio": round(ratio, 3),
        "speedup": round(1 / ratio, 3),
        "samples_s": {key: [round(x, 4) for x in timing.samples] for key, timing in timings.items()},
    }
    return result, figures


def main() -> None:
    args = parse_args(__doc__, repeats=3)
    results, report = [], {"batch_size": BATCH_SIZE, "threads": torch.get_num_threads()}
    for name, case in (("world", world_case(8 if args.quick else 64)), ("vitb16", vitb16_case(args.quick))):
        result, figures = measure(name, case, args.repeats)
        results.append(result)
        report[name] = figures
    notes = [
        f"{key}: {report[key]['images_per_s_batched']:.2f} images/s batched, "
        f"{report[key]['images_per_s_one_by_one']:.2f} one by one (x{report[key]['speedup']:.2f})"
        for key in ("world", "vitb16")
    ]
    print_results("bench_batched_predict: Predictor.predict on a list / one by one", results, notes)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
