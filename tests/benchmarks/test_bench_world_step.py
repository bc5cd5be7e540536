"""The world-step benchmark runs and reports every phase and variant (its --quick smoke run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_world_step.py"


@pytest.mark.slow
def test_quick_run_reports_every_phase_and_variant():
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith(("phase ", "step "))]
    phases = [row.split()[1] for row in rows if row.startswith("phase ")]
    assert phases == ["data", "targets", "forward", "criterion", "backward", "optimizer"]
    shares = [int(row.split("(share ")[1].split("%")[0]) for row in rows if row.startswith("phase ")]
    assert 95 <= sum(shares) <= 105  # the phases are the whole step (each share rounded)
    assert len([row for row in rows if row.startswith("step ")]) == 4
