"""Each training-free recipe's dense features vs a plain CLIP forward, CLIP ViT-B/16 at 512 x 512.

Method: CLIP ViT-B/16 built from open_clip's ``ViT-B-16-quickgelu`` config with random weights
(speed does not depend on values), wrapped in the image encoder the training-free models use,
on one random 512 x 512 image (a 32 x 32 patch grid). Each recipe's row times
``ClipImageEncoder.recipe_features``, what a training-free model computes before it compares
patches with names; the reference is the plain frozen forward (``use_prompts=False``: the CLS
embedding and the output tokens), timed in turn with the recipes in the same run. Ratios are
paired per repeat (benchmarks/common.py). PAMR (NACLIP's default 10 steps at dilations 8 and
16) is timed alone on 20 classes' scores of a 512 x 512 image, for context: it runs at the
image's size, once per image, after the windows.

No target: the figures say what each recipe costs. ``--quick`` runs 224 x 224, one repeat.
"""

from __future__ import annotations

import torch
from common import Result, describe_samples, paired_ratio, parse_args, print_results, time_interleaved

from splitmatch.clip.dense_recipes import RECIPES
from splitmatch.clip.image_encoder import ClipImageEncoder
from splitmatch.clip.loading import build_clip
from splitmatch.inference.pamr import pamr


def main() -> None:
    args = parse_args(__doc__, repeats=3)
    size = 224 if args.quick else 512
    torch.manual_seed(0)
    encoder = ClipImageEncoder(build_clip("ViT-B-16-quickgelu").visual, region_layers=1)
    images = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 255
    scores = torch.randn(1, 20, size, size)
    normalised = encoder.normalize(images)

    @torch.no_grad()
    def reference():
        return encoder(images, use_prompts=False)["dense_tokens"]

    def recipe_call(recipe: str):
        return torch.no_grad()(lambda: encoder.recipe_features(images, recipe))

    calls = {"plain": reference, **{recipe: recipe_call(recipe) for recipe in RECIPES}}
    calls["pamr"] = torch.no_grad()(lambda: pamr(normalised, scores, 10, (8, 16)))
    timings = time_interleaved(calls, args.repeats, warmup=1)
    plain = timings["plain"]
    name = f"plain CLIP forward {size}px"
    results = [
        Result(
            f"{recipe} dense features",
            timings[recipe].median,
            "s",
            plain.median,
            name,
            ratio=paired_ratio(timings[recipe], plain),
        )
        for recipe in RECIPES
    ]
    results.append(
        Result(
            f"PAMR, 10 steps, 20 classes, {size}x{size}",
            timings["pamr"].median,
            "s",
            plain.median,
            name,
            ratio=paired_ratio(timings["pamr"], plain),
        )
    )
    notes = [
        f"{size}x{size} image ({size // 16}x{size // 16} patches), torch threads {torch.get_num_threads()}, "
        f"{args.repeats} repeats (median); samples (s): " + describe_samples(timings),
    ]
    print_results("bench_training_free: recipe dense features / plain CLIP forward", results, notes)


if __name__ == "__main__":
    main()
