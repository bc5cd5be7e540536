"""The training-free benchmark times every recipe against the plain forward (its --quick smoke run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from splitmatch.clip.dense_recipes import RECIPES

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_training_free.py"


@pytest.mark.slow
def test_quick_run_reports_every_recipe_against_the_plain_forward():
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.split()[1:3] == ["dense", "features"]]
    assert [row.split()[0] for row in rows] == list(RECIPES)
    assert all("plain CLIP forward 224px" in row for row in rows)
    ratios = [float(row.split("px)")[1].split()[0]) for row in rows]
    assert all(ratio > 0.3 for ratio in ratios)  # each recipe runs (at least) most of CLIP's tower
    assert any(line.startswith("PAMR, 10 steps") for line in done.stdout.splitlines())
