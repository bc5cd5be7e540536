"""A run killed with SIGKILL and resumed ends bitwise equal to an uninterrupted run (torn log and
temporaries included)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from splitmatch.engine.checkpoint import list_checkpoints

pytestmark = pytest.mark.slow


def train_command(data_root: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "splitmatch", "train", "--preset", "tiny", "--quiet",
        "--set", f"data.root={data_root}", "--set", "train.iterations=16", "--set", "train.checkpoint_every=4",
        "--set", "train.keep_checkpoints=2", "--out", str(out), *extra,
    ]  # fmt: skip


def run(command: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")  # one thread: identical reduction order in every run
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_sigkill_then_resume_gives_bitwise_equal_weights(tiny_dataset, tmp_path):
    data_root = tiny_dataset.root
    uninterrupted = tmp_path / "uninterrupted"
    result = run(train_command(data_root, uninterrupted))
    assert result.returncode == 0, result.stderr

    killed = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(train_command(data_root, killed), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline and not list_checkpoints(killed / "checkpoints"):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = list_checkpoints(killed / "checkpoints")
    assert saved and not (killed / "model.safetensors").exists(), "the run should have died mid-way"
    # What a kill can leave besides: a log line cut mid-way and a checkpoint's temporary file.
    with open(killed / "metrics.jsonl", "ab") as log:
        log.write(b'{"step": 99, "lr": 0.001, "grad_no')
    stale = killed / "checkpoints" / ".step_00000099.safetensors.k9x2.tmp"
    stale.write_bytes(b"\0" * 4096)

    result = run(train_command(data_root, killed, "--resume"))
    assert result.returncode == 0, result.stderr
    assert not stale.exists()
    expected = load_file(uninterrupted / "model.safetensors")
    got = load_file(killed / "model.safetensors")
    assert expected.keys() == got.keys()
    different = [k for k in expected if not (expected[k] == got[k]).all()]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"

    def logged_losses(run_dir: Path) -> list[tuple]:
        entries = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return [(e["step"], e["loss"]) for e in entries if "loss" in e]

    assert logged_losses(killed) == logged_losses(uninterrupted)  # the log has no duplicated or lost steps


def test_existing_run_is_not_overwritten_without_resume(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    assert run(train_command(tiny_dataset.root, out)).returncode == 0
    result = run(train_command(tiny_dataset.root, out))
    assert result.returncode == 2 and "--resume" in result.stderr


def test_model_weights_are_read_exactly_in_any_dtype_and_a_bad_header_is_named(tiny_dataset, tmp_path):
    import torch

    from splitmatch.engine.checkpoint import CheckpointError, load_model_weights, read_record, save_checkpoint
    from splitmatch.model.build import build_segmentor
    from splitmatch.presets import preset

    config = preset("tiny")
    classes = tiny_dataset.classes
    saved = build_segmentor(config)
    path = save_checkpoint(tmp_path / "model.safetensors", saved, config, classes, classes.seen_names, 3)
    fresh = build_segmentor(config)  # other random weights
    load_model_weights(fresh, path, read_record(path))
    for name, tensor in saved.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name

    half = build_segmentor(config).half()  # a file in another dtype goes through a conversion
    half_path = save_checkpoint(tmp_path / "half.safetensors", half, config, classes, classes.seen_names, 3)
    load_model_weights(fresh, half_path, read_record(half_path))
    for name, tensor in half.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor.to(fresh.state_dict()[name].dtype)), name

    data = bytearray(path.read_bytes())
    header = data[8 : 8 + int.from_bytes(data[:8], "little")]
    broken = header.replace(b'"dtype":"F32"', b'"dtype":"F99"', 1)
    path.write_bytes(bytes(data[:8] + broken + data[8 + len(header) :]))
    with pytest.raises(CheckpointError, match="model.safetensors.*header"):
        load_model_weights(fresh, path, read_record(path))
