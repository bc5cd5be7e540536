"""The one-shot GPU check runs on the CPU at tiny sizes (``--smoke``) and ends with its JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
KEYS = {
    "mode",
    "ok",
    "device",
    "torch",
    "cuda",
    "open_clip",
    "anchors",
    "cuda_tests",
    "train_batch",
    "train_crop",
    "train_step_split_s",
    "train_step_hungarian_s",
    "train_peak_memory_split_gb",
    "train_peak_memory_hungarian_gb",
    "criterion_share_split",
    "matching_share_split",
    "criterion_share_hungarian",
    "matching_share_hungarian",
    "voc_run_hours_one_gpu_estimate",
    "predict_whole_images_per_s",
    "predict_slide_images_per_s",
    "pseudo_masks_images_per_s",
    "seconds",
    "host_share_split",
    "host_share_hungarian",
    "targets_s",
    "assignment_s_split",
    "train_step_split_compiled_s",
}


def test_gpu_check_smoke_runs_the_same_code_and_prints_every_figure():
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")  # the CPU, even on a GPU machine
    env["PYTHONPATH"] = os.pathsep.join([str(SCRIPT.parent.parent), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke"], capture_output=True, text=True, env=env, timeout=600
    )
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    figures = json.loads(lines[-1])
    assert set(figures) == KEYS
    assert figures["mode"] == "smoke" and figures["ok"] is True and figures["device"] == "cpu"
    assert figures["cuda_tests"]["failed"] == 0 and figures["cuda_tests"]["skipped"] >= 5  # they skip on the CPU
    for key in (
        "train_step_split_s",
        "train_step_hungarian_s",
        "predict_whole_images_per_s",
        "predict_slide_images_per_s",
        "pseudo_masks_images_per_s",
    ):
        assert figures[key] > 0, key
    assert figures["matching_share_split"] > 0 and figures["criterion_share_split"] > 0
    assert 0 < figures["host_share_split"] < 1 and figures["targets_s"] > 0 and figures["assignment_s_split"] > 0
    assert figures["train_step_split_compiled_s"] is None  # compiled on the GPU only
    assert figures["anchors"]["zegclip_fps_512_gtx1080ti"] == 9.0
