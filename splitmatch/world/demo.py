"""``splitmatch demo``: Split Matching against the Hungarian baseline in the built-in world.

Builds (or reuses) the world and its small CLIP, caches pseudo masks, trains both matchings
with everything else identical, evaluates them on the validation split and writes
``metrics.json``, ``report.md`` and figures into the output folder. Every stage is cached, so a
second run only redoes what changed.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from splitmatch import packaged
from splitmatch.config import ConfigError, ExperimentConfig, merge, parse_override, resolve_paths, to_dict
from splitmatch.config.presets import preset
from splitmatch.data.folder import DatasetFolder
from splitmatch.evaluation.metrics import SUMMARY_KEYS, format_table
from splitmatch.model.build import build_segmentor
from splitmatch.predict.predictor import Predictor
from splitmatch.pseudo.build_cache import fill_cache, open_cache
from splitmatch.pseudo.quality import METRICS, evaluate_pseudo_masks
from splitmatch.pseudo.quality_figure import worst_misses_figure
from splitmatch.storage.files import atomic_write_bytes, json_ready, read_json, read_stored_result, write_json
from splitmatch.train.trainer import train
from splitmatch.world.figures import prediction_figure, pseudo_mask_figure
from splitmatch.world.generator import WORLD_FILE, WORLD_VERSION, WorldSpec, generate_world, world_class_split
from splitmatch.world.toy_clip import ToyClipSpec, read_toy_clip_record, train_toy_clip

PACKAGED_CLIP_NAME = packaged.WORLD_CLIP  # a name that holds wherever the package is installed
PACKAGED_CLIP = packaged.PACKAGED_WEIGHTS / "world-clip.safetensors"

# Ablations of the method: what each part earns (run with --ablations).
ABLATIONS: dict[str, dict] = {
    "without MFE": {"decoder": {"mfe": False}},
    "without alignment term": {"loss": {"weight_embed": 0.0, "cost_embed": 0.0}},
    "one K-Means scale": {"pseudo": {"window_sizes": [4]}},
    "token dense features": {"pseudo": {"dense_features": "tokens"}},
    "shared embedding head": {"decoder": {"group_embed_heads": False}},
}


@dataclass(frozen=True)
class DemoSettings:
    world: WorldSpec = field(default_factory=WorldSpec)
    clip: ToyClipSpec = field(default_factory=ToyClipSpec)
    overrides: dict = field(default_factory=dict)  # applied to the 'world' preset


QUICK = DemoSettings(
    world=WorldSpec(num_train=160, num_val=40, num_captions=300),
    clip=ToyClipSpec(steps=40, batch_size=32),
    overrides={"train": {"iterations": 30, "batch_size": 4, "checkpoint_every": 30}},
)


def clip_compatible(path: Path, class_names: list[str], spec: ToyClipSpec | None) -> bool:
    """A small-CLIP file fits a world of the same classes and drawing version, made by ``spec``
    (``None``: by any spec)."""
    record = read_toy_clip_record(path) if path.is_file() else None
    if record is None:
        return False
    made_for = record.get("world", {})
    return (
        (spec is None or record.get("spec") == json.loads(json.dumps(asdict(spec))))
        and made_for.get("version") == WORLD_VERSION
        and made_for.get("classes") == list(class_names)
    )


def world_spec(folder: Path, spec: WorldSpec) -> WorldSpec:
    """The world the demo needs: without the ``captions`` split when the packaged small CLIP fits
    (those images only train a small CLIP), unless ``folder`` already holds them."""
    if not clip_compatible(PACKAGED_CLIP, list(world_class_split(spec.unseen).names), None):
        return spec
    try:
        made = read_json(folder / WORLD_FILE, "world record")["spec"]["num_captions"]
    except (OSError, ValueError, KeyError, TypeError):  # not a world (ValueError: not JSON): generate_world says so
        made = 0
    return replace(spec, num_captions=made if isinstance(made, int) and made >= 0 else 0)


def small_clip(out: Path, world: DatasetFolder, spec: ToyClipSpec, progress: bool) -> tuple[str, dict]:
    """The packaged small CLIP (made by ``splitmatch toy-clip`` with the default spec) when it fits
    the world, else one trained here with ``spec`` and cached in ``out``.

    Returns:
        the ``clip.weights`` value (``packaged:world-clip`` or a file path) and the CLIP's record.
    """
    names = list(world.classes.names)
    if clip_compatible(PACKAGED_CLIP, names, None):
        return PACKAGED_CLIP_NAME, read_toy_clip_record(PACKAGED_CLIP)
    path = out / "world-clip.safetensors"
    if clip_compatible(path, names, spec):
        return str(path), read_toy_clip_record(path)
    return str(path), train_toy_clip(world.root, path, spec, progress)


def _finished_metrics(config: ExperimentConfig, run_dir: Path) -> dict | None:
    """The ``eval.json`` of a run that finished with exactly ``config``; ``None`` to train (or resume)
    it, also when a record was damaged outside the program (said on stderr)."""
    resolved = read_stored_result(run_dir / "resolved.json", (), "the run is checked again")
    if resolved != json_ready(to_dict(config)):
        return None
    return read_stored_result(run_dir / "eval.json", SUMMARY_KEYS, "the run is scored again")


def train_or_reuse(config: ExperimentConfig, run_dir: Path, progress: bool, threads: int = 0, position: int = 0):
    """Trains a run (resuming an unfinished one), or returns its metrics when the folder already
    holds this exact config's result. ``threads`` > 0 sets torch's thread count (worker processes)."""
    if threads:
        torch.set_num_threads(threads)
    finished = _finished_metrics(config, run_dir)
    if finished is not None:
        return finished
    # resume=True starts an empty folder afresh and continues a run that was cut short.
    metrics = train(config, run_dir, resume=True, progress=progress, progress_position=position)
    write_json(run_dir / "resolved.json", to_dict(config))
    return metrics


def train_side_by_side(configs: dict[str, ExperimentConfig], runs: Path, progress: bool) -> dict[str, dict]:
    """Trains several runs at once, one process and thread per core, each in ``runs/<name>``.

    The world's model is small: most of a step is many small ops that one thread runs about as
    fast as two, so two runs side by side finish in about the time of one run on both cores.
    """
    workers = max(1, min(len(configs), os.cpu_count() or 1))
    threads = max(1, (os.cpu_count() or 1) // workers)
    run_dirs = {name: runs / name.replace(", ", "__").replace(" ", "-") for name in configs}
    if workers == 1:
        return {name: train_or_reuse(c, run_dirs[name], progress) for name, c in configs.items()}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {
            name: pool.submit(train_or_reuse, config, run_dirs[name], progress, threads, index % workers)
            for index, (name, config) in enumerate(configs.items())
        }
        return {name: future.result() for name, future in futures.items()}


def fill_pseudo_masks(configs: dict[str, ExperimentConfig], world: DatasetFolder, progress: bool) -> None:
    """Computes the pseudo-mask caches the split runs need, once each, before the runs start."""
    done = set()
    for config in configs.values():
        if config.loss.matching != "split":
            continue
        encoder = build_segmentor(config.clip, config.decoder).image_encoder
        cache = open_cache(config.pseudo, config.clip, world, encoder)
        if cache.directory not in done:
            fill_cache(cache, encoder, config.pseudo, world, config.data.train_split, progress=progress)
            done.add(cache.directory)


# What the demo itself sets in every run: a --set may not change these.
DEMO_KEYS = ("data.root", "clip.weights", "train.seed", "loss.matching", "name")


def apply_demo_overrides(config: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """``config`` with the ``--set KEY=VALUE`` items applied in order, as ``load_config`` applies them.

    Raises:
        ConfigError: an item is malformed or sets a key the demo sets itself (named).
    """
    for text in overrides:
        key = text.split("=", 1)[0].strip()
        if key in DEMO_KEYS:
            what = "--seed" if key == "train.seed" else "the demo (its runs differ only in loss.matching)"
            raise ConfigError(f"demo --set {text}: {key} is set by {what}")
        config = merge(config, parse_override(text))
    return config


def runs_folder(out: Path, overrides: list[str]) -> Path:
    """``out/runs``, or with overrides ``out/runs-<the overrides>``: runs of other settings never
    continue (or overwrite) the default ones."""
    if not overrides:
        return out / "runs"
    return out / ("runs-" + "-".join(re.sub(r"[^A-Za-z0-9._=+-]", "_", text) for text in overrides))


def results_folder(out: Path, overrides: list[str]) -> Path:
    """Where the demo writes ``report.md``, ``metrics.json`` and figures: ``out``, or with
    overrides their runs folder, so that the default demo's stay as they were."""
    return runs_folder(out, overrides) if overrides else out


def run_demo(
    out: str | Path,
    quick: bool = False,
    seed: int = 0,
    ablations: bool = False,
    progress: bool = True,
    overrides: list[str] | None = None,
):
    """Runs the whole demo; returns ``{"split": metrics, "hungarian": metrics, ...}``.

    Args:
        overrides: ``KEY=VALUE`` changes to the ``world`` preset for every run (``--set``), for
            example ``train.iterations=1000``; their runs, report and figures go to their own
            folder (:func:`runs_folder`, :func:`results_folder`), beside the default demo's.
    """
    settings = QUICK if quick else DemoSettings()
    overrides = list(overrides or [])
    world_preset = apply_demo_overrides(merge(preset("world"), settings.overrides), overrides)
    world_preset.validate()  # a bad value is refused before anything is made
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    started = time.time()
    world = generate_world(out / "world", seed=seed, spec=world_spec(out / "world", settings.world), progress=progress)
    times["world"] = time.time() - started

    mark = time.time()
    clip_weights, clip_record = small_clip(out, world, replace(settings.clip, seed=seed), progress)
    times["small CLIP"] = time.time() - mark

    demo_keys = {"data": {"root": str(world.root)}, "clip": {"weights": clip_weights}, "train": {"seed": seed}}
    base = resolve_paths(merge(world_preset, demo_keys))  # checkpoints that work from any folder
    changes = {"split": {"loss": {"matching": "split"}}, "hungarian": {"loss": {"matching": "hungarian"}}}
    if ablations:
        changes.update({f"split, {name}": {"loss": {"matching": "split"}} | c for name, c in ABLATIONS.items()})
    configs = {name: merge(merge(base, change), {"name": name}).validate() for name, change in changes.items()}

    mark = time.time()
    fill_pseudo_masks(configs, world, progress)
    times["pseudo masks"] = time.time() - mark
    mark = time.time()
    runs, results = runs_folder(out, overrides), results_folder(out, overrides)
    metrics = train_side_by_side(configs, runs, progress)
    times["train + evaluate"] = time.time() - mark

    mark = time.time()
    predictors = {
        "Hungarian": Predictor.from_checkpoint(runs / "hungarian" / "model.safetensors"),
        "Split Matching": Predictor.from_checkpoint(runs / "split" / "model.safetensors"),
    }
    prediction_figure(world, predictors, results / "figures" / "predictions.png")
    cache = open_cache(
        configs["split"].pseudo, configs["split"].clip, world, predictors["Split Matching"].model.image_encoder
    )
    all_classes = predictors["Split Matching"].model.encode_classes(list(world.classes.names))
    pseudo_mask_figure(world, cache, all_classes, results / "figures" / "pseudo_masks.png")
    pseudo = configs["split"].pseudo
    quality = evaluate_pseudo_masks(
        world, cache, configs["split"].data.train_split, all_classes, pseudo.window_sizes, pseudo.min_area, progress
    )
    write_json(results / "pseudo_masks.json", quality)
    worst_misses_figure(world, cache, quality, results / "figures" / "pseudo_mask_misses.png")
    times["figures, pseudo-mask scores"] = time.time() - mark
    times["total"] = time.time() - started
    write_json(results / "metrics.json", metrics)
    text = report(metrics, clip_record, times, quick, quality, overrides, list(world.classes.unseen), seed)
    atomic_write_bytes(results / "report.md", text.encode("utf-8"))
    return metrics


def pseudo_mask_section(quality: dict) -> list[str]:
    """Report lines: the pseudo-mask diagnostic's table (``splitmatch pseudo-masks --evaluate``)."""
    lines = [
        "## Pseudo masks",
        "",
        f"Scored against the full labels of the `{quality['split']}` split "
        f"({quality['images']} images), percent; the same as `splitmatch pseudo-masks --evaluate`. "
        f"{quality['note']}",
        "",
    ]
    lines += ["| | " + " | ".join(METRICS) + " | masks | objects |", "|---" * (len(METRICS) + 3) + "|"]
    groups = {"overall": quality["overall"], **quality["per_class"], **quality["per_scale"]}
    for name, values in groups.items():
        cells = ["n/a" if values[m] is None else f"{values[m]:.1f}" for m in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {values['masks']} | {values['objects']} |")
    lines += ["", "Worst misses: `figures/pseudo_mask_misses.png`; every number: `pseudo_masks.json`."]
    return lines


def background_section(metrics: dict, unseen: list[str]) -> list[str]:
    """Report lines: the share of each unseen class's pixels that each model labels background."""
    runs = [run for run, result in metrics.items() if "taken_for_background" in result]
    present = [name for name in unseen if any(name in metrics[run]["taken_for_background"] for run in runs)]
    if not runs or not present:
        return []
    lines = [
        "## Unseen pixels labelled background",
        "",
        'What Hungarian matching teaches a query that finds an unseen object: "no object". Percent '
        "of each unseen class's pixels that the model labels background (lower is better):",
        "",
    ]
    lines += ["| run | " + " | ".join(present) + " |", "|---" * (len(present) + 1) + "|"]
    for run in runs:
        shares = metrics[run]["taken_for_background"]
        lines.append(
            f"| {run} | " + " | ".join(f"{shares[name]:.1f}" if name in shares else "n/a" for name in present) + " |"
        )
    return lines + [""]


def report(
    metrics: dict,
    clip_record: dict,
    times: dict,
    quick: bool,
    quality: dict | None = None,
    overrides: list[str] = (),
    unseen: list[str] = (),
    seed: int = 0,
) -> str:
    """The demo's Markdown report: result table, per-class IoU, pseudo masks, small-CLIP accuracy, timings."""
    lines = ["# splitmatch demo: Split Matching vs Hungarian matching in the built-in world", ""]
    if quick:
        lines += ["**Quick mode**: a tiny world and a few iterations; the numbers only show that it runs.", ""]
    if overrides:
        lines += ["Changed from the `world` preset in every run: " + ", ".join(f"`{o}`" for o in overrides) + ".", ""]
    lines += ["Validation split, every class scored by name (unseen classes never named in training).", ""]
    lines += [format_table(metrics)]
    lines += [
        "These are single runs (seed "
        f"{seed}"
        "): compare methods over seeds (`splitmatch seeds`; "
        "docs/world.md gives the spread of this demo), and expect the last digit to move with the "
        "CPU's float kernels and the number of threads.",
        "",
    ]
    if "split" in metrics and "hungarian" in metrics:
        gain = metrics["split"]["miou_unseen"] - metrics["hungarian"]["miou_unseen"]
        lines += [f"Split Matching changes mIoU(U) by {gain:+.1f} points over the baseline.", ""]
    calibrated = {
        f"{run}, seen calibration {amount}": summary
        for run, result in metrics.items()
        if run in ("split", "hungarian")
        for amount, summary in result.get("seen_calibration", {}).items()
    }
    if calibrated:
        lines += [
            "## Seen-class calibration",
            "",
            "The same two models; ZegCLIP takes 0.1 off seen-class scores (normalised per pixel) at test time.",
            "",
            format_table(calibrated),
        ]
    lines += background_section(metrics, unseen)
    names = list(next(iter(metrics.values()))["per_class_iou"])
    lines += ["## Per-class IoU", "", "Unseen classes in **bold**: their names were never given in training.", ""]
    lines += ["| class | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for name in names:
        cells = [metrics[run]["per_class_iou"][name] for run in metrics]
        shown = f"**{name}** (unseen)" if name in unseen else name
        lines.append(f"| {shown} | " + " | ".join("n/a" if v is None else f"{v:.1f}" for v in cells) + " |")
    if quality is not None:
        lines += [""] + pseudo_mask_section(quality)
    zero_shot = clip_record.get("zero_shot", {})
    lines += ["", "## The small CLIP", "", "Zero-shot accuracy (percent) on validation objects:", ""]
    lines += ["| kind | seen | unseen |", "|---|---|---|"]
    lines += [f"| {kind} | {v['seen']} | {v['unseen']} |" for kind, v in zero_shot.items()]
    lines += ["", "## Time (seconds)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {stage} | {seconds:.0f} |" for stage, seconds in times.items()]
    lines += [
        "",
        "Figures: `figures/predictions.png` (image, ground truth, Hungarian, Split Matching),",
        "`figures/pseudo_masks.png` (training label with unseen pixels ignored, and the pseudo masks) and",
        "`figures/pseudo_mask_misses.png` (the training images with the most unseen pixels outside every pseudo mask).",
        "",
    ]
    return "\n".join(lines)
