"""Several seeds of one config, and the mean and standard deviation of every metric."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from splitmatch.config import ExperimentConfig, merge
from splitmatch.evaluation.metrics import SUMMARY_KEYS
from splitmatch.storage.files import write_json
from splitmatch.train.trainer import train


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


def run_seeds(config: ExperimentConfig, seeds: list[int], out: str | Path, progress: bool = True) -> dict:
    """Trains ``config`` once per seed into ``out/seed_<s>`` (continuing unfinished runs) and aggregates."""
    out = Path(out)
    results = {}
    for seed in seeds:
        # resume=True starts an empty folder afresh and continues a run that was cut short.
        results[seed] = train(merge(config, {"train": {"seed": seed}}), out / f"seed_{seed}", resume=True,
                              progress=progress)  # fmt: skip
    summary = aggregate(results)
    write_json(out / "seeds.json", {"summary": summary, "runs": {str(s): r for s, r in results.items()}})
    return summary


def format_seed_table(summary: dict) -> str:
    rows = [f"| {key} | {summary[key]['mean']:.2f} | {summary[key]['std']:.2f} |" for key in SUMMARY_KEYS]
    return "| metric | mean | std |\n|---|---|---|\n" + "\n".join(rows) + f"\n\nseeds: {summary['seeds']}\n"
