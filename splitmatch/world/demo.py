"""``splitmatch demo``: Split Matching against the Hungarian baseline in the built-in world.

Builds (or reuses) the world and its small CLIP, caches pseudo masks, trains both matchings
with everything else identical, evaluates them on the validation split and writes
``metrics.json``, ``report.md`` and figures into the output folder. Every stage is cached, so a
second run only redoes what changed.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from splitmatch.config import ExperimentConfig, merge, to_dict
from splitmatch.data.folder import DatasetFolder
from splitmatch.engine.run_record import write_json
from splitmatch.engine.trainer import train
from splitmatch.metrics import format_table, json_ready
from splitmatch.predictor import Predictor
from splitmatch.presets import preset
from splitmatch.pseudo.build_cache import open_cache
from splitmatch.world.figures import prediction_figure, pseudo_mask_figure
from splitmatch.world.generator import WORLD_VERSION, WorldSpec, generate_world
from splitmatch.world.toy_clip import ToyClipSpec, read_toy_clip_record, train_toy_clip

PACKAGED_CLIP = Path(__file__).resolve().parent / "assets" / "world-clip.safetensors"

# Ablations of the method: what each part earns (run with --ablations).
ABLATIONS: dict[str, dict] = {
    "without MFE": {"decoder": {"mfe": False}},
    "without alignment term": {"loss": {"weight_embed": 0.0, "cost_embed": 0.0}},
    "one K-Means scale": {"pseudo": {"window_sizes": [4]}},
    "token dense features": {"pseudo": {"dense_features": "tokens"}},
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


def clip_compatible(path: Path, world: DatasetFolder, spec: ToyClipSpec | None) -> bool:
    """A small-CLIP file fits a world of the same classes and drawing version, made by ``spec``
    (``None``: by any spec)."""
    record = read_toy_clip_record(path) if path.is_file() else None
    if record is None:
        return False
    made_for = record.get("world", {})
    return (
        (spec is None or record.get("spec") == json.loads(json.dumps(asdict(spec))))
        and made_for.get("version") == WORLD_VERSION
        and made_for.get("classes") == list(world.classes.names)
    )


def small_clip(out: Path, world: DatasetFolder, spec: ToyClipSpec, progress: bool) -> tuple[Path, dict]:
    """The packaged small CLIP (made by ``splitmatch toy-clip`` with the default spec) when it fits
    the world, else one trained here with ``spec`` and cached in ``out``."""
    if clip_compatible(PACKAGED_CLIP, world, None):
        return PACKAGED_CLIP, read_toy_clip_record(PACKAGED_CLIP)
    path = out / "world-clip.safetensors"
    if clip_compatible(path, world, spec):
        return path, read_toy_clip_record(path)
    return path, train_toy_clip(world.root, path, spec, progress)


def train_or_reuse(config: ExperimentConfig, run_dir: Path, progress: bool) -> dict:
    """Trains a run, or returns its metrics when the folder already holds this exact config's result."""
    done = run_dir / "eval.json"
    resolved = run_dir / "resolved.json"
    if done.is_file() and resolved.is_file() and json.loads(resolved.read_text()) == json_ready(to_dict(config)):
        return json.loads(done.read_text())
    resume = (run_dir / "checkpoints").is_dir()
    metrics = train(config, run_dir, resume=resume, progress=progress)
    write_json(run_dir / "resolved.json", to_dict(config))
    return metrics


def run_demo(out: str | Path, quick: bool = False, seed: int = 0, ablations: bool = False, progress: bool = True):
    """Runs the whole demo; returns ``{"split": metrics, "hungarian": metrics, ...}``."""
    settings = QUICK if quick else DemoSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    started = time.time()
    world = generate_world(out / "world", seed=seed, spec=settings.world, progress=progress)
    times["world"] = time.time() - started

    mark = time.time()
    clip_path, clip_record = small_clip(out, world, replace(settings.clip, seed=seed), progress)
    times["small CLIP"] = time.time() - mark

    base = merge(preset("world"), settings.overrides)
    base = merge(
        base, {"data": {"root": str(world.root)}, "clip": {"weights": str(clip_path)}, "train": {"seed": seed}}
    )
    runs = {"split": {"loss": {"matching": "split"}}, "hungarian": {"loss": {"matching": "hungarian"}}}
    if ablations:
        runs.update({f"split, {name}": {"loss": {"matching": "split"}} | change for name, change in ABLATIONS.items()})
    metrics, configs = {}, {}
    for name, change in runs.items():
        mark = time.time()
        configs[name] = merge(merge(base, change), {"name": f"demo {name}"}).validate()
        folder_name = name.replace(", ", "__").replace(" ", "-")
        metrics[name] = train_or_reuse(configs[name], out / "runs" / folder_name, progress)
        times[f"train+eval {name}"] = time.time() - mark

    mark = time.time()
    predictors = {
        "Hungarian": Predictor.from_checkpoint(out / "runs" / "hungarian" / "model.safetensors"),
        "Split Matching": Predictor.from_checkpoint(out / "runs" / "split" / "model.safetensors"),
    }
    prediction_figure(world, predictors, out / "figures" / "predictions.png")
    cache = open_cache(configs["split"], world, predictors["Split Matching"].model.image_encoder)
    all_classes = predictors["Split Matching"].model.encode_classes(list(world.classes.names))
    pseudo_mask_figure(world, cache, all_classes, out / "figures" / "pseudo_masks.png")
    times["figures"] = time.time() - mark
    times["total"] = time.time() - started
    write_json(out / "metrics.json", metrics)
    (out / "report.md").write_text(report(metrics, clip_record, times, quick), encoding="utf-8")
    return metrics


def report(metrics: dict, clip_record: dict, times: dict, quick: bool) -> str:
    """The demo's Markdown report: result table, per-class IoU, small-CLIP accuracy, timings."""
    lines = ["# splitmatch demo: Split Matching vs Hungarian matching in the built-in world", ""]
    if quick:
        lines += ["**Quick mode**: a tiny world and a few iterations; the numbers only show that it runs.", ""]
    lines += ["Validation split, every class scored by name (unseen classes never named in training).", ""]
    lines += [format_table(metrics)]
    if "split" in metrics and "hungarian" in metrics:
        gain = metrics["split"]["miou_unseen"] - metrics["hungarian"]["miou_unseen"]
        lines += [f"Split Matching changes mIoU(U) by {gain:+.1f} points over the baseline.", ""]
    names = list(next(iter(metrics.values()))["per_class_iou"])
    lines += ["## Per-class IoU", "", "| class | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for name in names:
        cells = [metrics[run]["per_class_iou"][name] for run in metrics]
        lines.append(f"| {name} | " + " | ".join("n/a" if v is None else f"{v:.1f}" for v in cells) + " |")
    zero_shot = clip_record.get("zero_shot", {})
    lines += ["", "## The small CLIP", "", "Zero-shot accuracy (percent) on validation objects:", ""]
    lines += ["| kind | seen | unseen |", "|---|---|---|"]
    lines += [f"| {kind} | {v['seen']} | {v['unseen']} |" for kind, v in zero_shot.items()]
    lines += ["", "## Time (seconds)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {stage} | {seconds:.0f} |" for stage, seconds in times.items()]
    lines += [
        "",
        "Figures: `figures/predictions.png` (image, ground truth, Hungarian, Split Matching) and",
        "`figures/pseudo_masks.png` (training label with unseen pixels ignored, and the pseudo masks).",
        "",
    ]
    return "\n".join(lines)
