"""benchmarks/bench_onnx.py runs and ends with its JSON line (its --quick smoke run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_onnx.py"


@pytest.mark.slow
def test_quick_run_reports_both_runtimes_and_their_agreement():
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    (figure,) = summary["sizes"]
    assert figure["size"] == [96, 96] and figure["batch"] == 2
    assert figure["pytorch_ms_per_image"] > 0 and figure["onnxruntime_ms_per_image"] > 0 and figure["ratio"] > 0
    assert figure["differing_pixels_off_ties"] == 0 and figure["argmax_agreement"] > 0.999
    assert "onnxruntime, 96x96, per image" in done.stdout
