"""Several seeds of one config, and the mean and standard deviation of every metric."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from splitmatch.config import ConfigError, ExperimentConfig, merge
from splitmatch.evaluation.metrics import SUMMARY_KEYS
from splitmatch.storage.files import write_json
from splitmatch.train.trainer import check_run, train

SEEDS_FILE = "seeds.json"


def aggregate(results: dict[int, dict]) -> dict:
    """Mean and sample standard deviation (ddof=1; 0 for one seed) of each summary and per-class metric.

    Args:
        results: seed -> :func:`splitmatch.evaluation.metrics.summarize` dict.
    """

    def stats(values: list[float]) -> dict:
        finite = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
        if finite.size == 0:
            return {"mean": float("nan"), "std": float("nan"), "n": 0}
        std = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
        return {"mean": float(finite.mean()), "std": std, "n": int(finite.size)}

    runs = list(results.values())
    summary = {key: stats([r[key] for r in runs]) for key in SUMMARY_KEYS}
    classes = list(runs[0]["per_class_iou"])
    summary["per_class_iou"] = {name: stats([r["per_class_iou"][name] for r in runs]) for name in classes}
    summary["seeds"] = sorted(results)
    return summary


def seed_configs(config: ExperimentConfig, seeds: list[int], out: str | Path) -> dict[int, ExperimentConfig]:
    """Each seed's config, every one checked with its run folder ``out/seed_<s>`` before any trains
    (:func:`splitmatch.train.trainer.check_run`): a bad seed, or a folder holding another run, stops
    the command before the first seed has trained, not after.

    Raises:
        ConfigError: the seeds are not distinct, or a seed is out of ``train.seed``'s range.
        RunFolderError: a seed's folder holds a run of another config.
    """
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct and at least one, got {list(seeds)[:20]}")
    if config.train.seed != type(config.train)().seed:  # each run's seed replaces it: it would go unused
        raise ConfigError(
            f"seeds sets train.seed to each seed; the config sets train.seed={config.train.seed} itself "
            "(leave it unset)"
        )
    configs = {seed: merge(config, {"train": {"seed": seed}}).validate() for seed in seeds}
    for index, (seed, seed_config) in enumerate(configs.items()):
        # resume=True: an empty folder starts afresh, a run that was cut short continues.
        check_run(seed_config, Path(out) / f"seed_{seed}", resume=True, images=index == 0)
    return configs


def run_seeds(config: ExperimentConfig, seeds: list[int], out: str | Path, progress: bool = True) -> dict:
    """Trains ``config`` once per seed into ``out/seed_<s>`` (continuing unfinished runs) and
    aggregates; every seed and its folder is checked before the first trains (:func:`seed_configs`)."""
    out = Path(out)
    results = {}
    for seed, seed_config in seed_configs(config, seeds, out).items():
        results[seed] = train(seed_config, out / f"seed_{seed}", resume=True, progress=progress)
    summary = aggregate(results)
    write_json(out / SEEDS_FILE, {"summary": summary, "runs": {str(s): r for s, r in results.items()}})
    return summary


def format_seed_table(summary: dict) -> str:
    rows = [f"| {key} | {summary[key]['mean']:.2f} | {summary[key]['std']:.2f} |" for key in SUMMARY_KEYS]
    return "| metric | mean | std |\n|---|---|---|\n" + "\n".join(rows) + f"\n\nseeds: {summary['seeds']}\n"
