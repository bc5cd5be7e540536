"""Named experiment presets, from the tiny random-init test model to ViT-B/16 on the benchmarks.

Every number of a run is spelled out here or in a YAML file that starts from one of these
(``preset: voc-vitb16``); :func:`load_config` resolves preset, file and overrides. The first
line of each preset's docstring is what ``splitmatch presets`` says it is for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from splitmatch.config.errors import ConfigError, shown
from splitmatch.config.loading import merge, parse_override, read_yaml, resolve_paths
from splitmatch.config.rules import check_switched_off
from splitmatch.config.schema import (
    ClipConfig,
    DataConfig,
    DecoderConfig,
    ExperimentConfig,
    InferenceConfig,
    LossConfig,
    PseudoMaskConfig,
    TrainConfig,
)


def tiny() -> ExperimentConfig:
    """Unit tests and docs examples: random-init tiny CLIP, a training step well under a second."""
    return ExperimentConfig(
        name="tiny",
        clip=ClipConfig(arch="tiny-test", prompt_tokens=2, prompt_layers=2, decoder_layers=[0, 1], region_layers=2),
        decoder=DecoderConfig(
            hidden_dim=32,
            num_layers=2,
            num_heads=2,
            ffn_dim=64,
            num_seen_queries=6,
            num_candidate_queries=4,
            mfe_pool_factors=[1, 2],
            mask_upsample=1,
        ),
        pseudo=PseudoMaskConfig(input_size=64, window_sizes=[2, 4, 8], iterations=5, min_area=0.02, max_masks=8),
        loss=LossConfig(num_points=256),
        data=DataConfig(crop_size=64, resize_scale=[128, 64], num_workers=0),
        train=TrainConfig(
            iterations=20,
            batch_size=2,
            lr=1e-3,
            head_lr_multiplier=1.0,
            warmup_iterations=0,
            grad_clip=1.0,
            amp="none",
            log_every=5,
            checkpoint_every=10,
            keep_checkpoints=2,
        ),
        inference=InferenceConfig(mode="whole", short_side=64, max_long_side=256, window=64, stride=48),
    )


def world() -> ExperimentConfig:
    """The built-in world (docs/world.md): its small CLIP, minutes per model on a CPU."""
    return ExperimentConfig(
        name="world",
        clip=ClipConfig(
            arch="world-clip",
            weights="packaged:world-clip",  # made by `splitmatch toy-clip` (docs/world.md)
            prompt_tokens=4,
            prompt_layers=3,
            decoder_layers=[1, 2],
            region_layers=2,
            templates="single",
        ),
        decoder=DecoderConfig(
            hidden_dim=64,
            num_layers=3,
            num_heads=4,
            ffn_dim=256,
            num_seen_queries=16,
            num_candidate_queries=4,  # about one pseudo mask per image here: few idle candidates
            mfe=True,
            mfe_pool_factors=[1, 2, 4],
            mask_upsample=2,
            group_embed_heads=True,  # chosen on the world's own labels (docs/method.md, ablations)
        ),
        pseudo=PseudoMaskConfig(
            dense_features="value",
            input_size=96,
            window_sizes=[2, 4, 8],
            iterations=10,
            # rho and components chosen on the world's own labels, with train.lr below; what each
            # setting measured: docs/pseudo-masks.md.
            rho=0.5,
            min_area=0.02,
            dedup_iou=0.7,
            max_masks=12,
            components=True,
        ),
        loss=LossConfig(num_points=2048),
        data=DataConfig(
            root="demo_out/world",
            crop_size=96,
            resize_scale=[128, 96],
            ratio_range=[0.75, 1.5],
            cat_max_ratio=0.75,
            num_workers=0,
        ),
        train=TrainConfig(
            iterations=2000,
            batch_size=8,
            # Doubled with the pseudo-mask settings above (more candidate targets), chosen on the
            # world's own labels (docs/pseudo-masks.md).
            lr=2e-4,
            head_lr_multiplier=10.0,
            weight_decay=0.01,
            warmup_iterations=100,
            grad_clip=1.0,
            amp="none",
            log_every=50,
            checkpoint_every=500,
            keep_checkpoints=1,
        ),
        inference=InferenceConfig(mode="whole", short_side=96, max_long_side=192, window=96, stride=64),
    )


def _vitb16(name: str, root: str, prompt_tokens: int, iterations: int, templates: str) -> ExperimentConfig:
    """CLIP ViT-B/16 (OpenAI weights), ZegCLIP's recipe (docs/method.md#training-recipe), 512 crops,
    sliding-window evaluation (docs/method.md#evaluation-protocol)."""
    return ExperimentConfig(
        name=name,
        clip=ClipConfig(
            arch="ViT-B-16-quickgelu",
            weights="weights/ViT-B-16.safetensors",  # made once by `splitmatch convert-clip`
            prompt_tokens=prompt_tokens,
            prompt_layers=11,
            decoder_layers=[5, 8, 11],
            region_layers=3,
            templates=templates,
            # ZegCLIP resizes the 14 x 14 grid bilinearly (align_corners false, no antialias); its
            # numbers are the ones compared with (docs/method.md#choices-made-here).
            pos_interpolation="bilinear",
        ),
        decoder=DecoderConfig(
            hidden_dim=256,
            num_layers=6,
            num_heads=8,
            ffn_dim=1024,
            num_seen_queries=100,
            num_candidate_queries=20,
            group_embed_heads=True,
        ),
        pseudo=PseudoMaskConfig(
            # SC-CLIP's reading of CLIP's last block, chosen a priori: of the training-free recipes
            # implemented, the highest published mIoU with ViT-B/16 on each benchmark other than the one
            # trained (VOC-20 84.3, Context-59 40.1, COCO-Stuff 26.6; docs/training-free.md#pseudo-masks).
            dense_features="scclip",
            input_size=512,
            window_sizes=[4, 8, 16],
            iterations=10,
            rho=0.8,
            # Chosen a priori, to be tuned on a pseudo-unseen proxy (docs/pseudo-masks.md#at-real-scale):
            # images keep their shape, as the training crops show them to CLIP;
            resize="keep_aspect",
            # the method's 0.01, but at window 4, whose mean cluster on the 32 x 32 grid (1,024 patches /
            # 225 seeds = 4.6) is below 0.01 (10.2 patches): there about half its mean cluster;
            min_area_per_scale=[0.002, 0.01, 0.01],
            # a part mostly (rho's 0.8) inside a kept, larger mask is dropped: one target per region.
            dedup_containment=0.8,
        ),
        loss=LossConfig(matching="split"),
        # ZegCLIP (mmseg) pads crops after normalisation, i.e. with the mean colour: the recipe's
        # padding, so that the model never sees a black frame that no image has (docs/recipe.md).
        data=DataConfig(root=root, crop_size=512, pad_fill="mean"),
        train=TrainConfig(
            iterations=iterations, batch_size=16, lr=2e-5, head_lr_multiplier=10.0, warmup_iterations=1500
        ),
        # Candidates are trained towards CLIP image embeddings of regions, whose cosines with class
        # names are small (about 0.15-0.35): at tau 0.07, with a no-object column they were never
        # trained on, their class distribution is nearly flat. Chosen a priori: CLIP's own logit
        # scale (100, temperature 0.01) over the classes alone (docs/method.md#choices-made-here).
        inference=InferenceConfig(
            mode="slide",
            short_side=512,
            window=512,
            stride=426,
            candidate_scoring="classes",
            candidate_temperature=0.01,
        ),
    )


def voc_vitb16() -> ExperimentConfig:
    """PASCAL VOC 2012 + SBD, 15 seen / 5 unseen classes, 20k iterations (configs/voc.yaml)."""
    # ZegCLIP's VOC configs embed "a photo of a {}" (no full stop), one template.
    return _vitb16("voc-vitb16", "data/voc", prompt_tokens=10, iterations=20000, templates="zegclip-single")


def coco_stuff_vitb16() -> ExperimentConfig:
    """COCO-Stuff 164K, 156 seen / 15 unseen classes, 80k iterations (configs/coco-stuff.yaml)."""
    # ZegCLIP's COCO-Stuff configs embed the mean over its 15 templates (coco_multi.npy).
    return _vitb16(
        "coco-stuff-vitb16", "data/coco-stuff", prompt_tokens=100, iterations=80000, templates="zegclip-multi"
    )


def context_vitb16() -> ExperimentConfig:
    """PASCAL Context-59, 49 seen / 10 unseen classes, 40k iterations (configs/context.yaml)."""
    # ZegCLIP publishes no Context-59 zero-shot config; its Context embeddings (context_multi.npy, in
    # its cross-dataset config) are named as its 15-template COCO ones are: the same set here.
    return _vitb16("context-vitb16", "data/context", prompt_tokens=10, iterations=40000, templates="zegclip-multi")


PRESETS: dict[str, Callable[[], ExperimentConfig]] = {
    "tiny": tiny,
    "world": world,
    "voc-vitb16": voc_vitb16,
    "coco-stuff-vitb16": coco_stuff_vitb16,
    "context-vitb16": context_vitb16,
}


def register_preset(name: str, builder: Callable[[], ExperimentConfig]) -> None:
    PRESETS[name] = builder


def describe_preset(name: str) -> str:
    """One line for ``splitmatch presets``: name, CLIP model, training crop, what it is for."""
    config = preset(name)
    doc = (PRESETS[name].__doc__ or "").strip().splitlines()
    purpose = doc[0].rstrip(".") if doc else ""
    return f"{name:<18} {config.clip.arch:<19} {config.data.crop_size:>4} px  {purpose}"


def preset(name: str) -> ExperimentConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}' (known: {', '.join(sorted(PRESETS))})")
    return PRESETS[name]()


def load_config(
    path: str | Path | None = None, preset_name: str | None = None, overrides: list[str] | None = None
) -> ExperimentConfig:
    """Resolves a run's config: preset, then YAML file, then ``key=value`` overrides.

    A YAML file may name its base with a top-level ``preset:`` key; otherwise ``preset_name``
    (or the defaults of :class:`ExperimentConfig`) is the base. Relative paths, wherever they
    were written, are made absolute against the current folder (:func:`resolve_paths`).
    """
    data = read_yaml(path) if path is not None else {}
    base_name = data.pop("preset", None) or preset_name
    if base_name is not None and not isinstance(base_name, str):
        raise ConfigError(f"config file {path}: 'preset' must name a preset, got {shown(base_name)}")
    config = preset(base_name) if base_name else ExperimentConfig()
    config = merge(config, data)
    for override in overrides or []:
        config = merge(config, parse_override(override))
    # given_paths records how this build spelled its paths, not how an earlier one did.
    config = resolve_paths(dataclasses.replace(config, given_paths={})).validate()
    check_switched_off(config)
    return config
