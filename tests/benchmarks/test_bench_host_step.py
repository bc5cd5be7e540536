"""The host-step benchmark runs side by side with the code before and reports every figure (--quick)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_host_step.py"


@pytest.mark.slow
def test_quick_run_reports_every_figure_before_and_after():
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=600)
    if done.returncode != 0 and "which is not in the git history" in done.stderr:
        pytest.skip(done.stderr.strip().splitlines()[-1])  # a shallow clone: the "before" cannot be rebuilt
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    keys = ("targets_ms", "device_mib", "sample_ms", "host_syncs")
    assert set(figures) == {*keys, *(f"{k}_before" for k in keys)}
    assert all(figures[k] > 0 for k in figures)
    assert figures["host_syncs"] == 2  # --quick: two micro-batches, one synchronisation each
    assert figures["host_syncs_before"] > figures["host_syncs"]
    assert "largest relative loss difference: 0.0e+00" in done.stdout  # the same losses as before
