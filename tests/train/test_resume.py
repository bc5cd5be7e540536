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
from command_lines import tiny_train_args
from safetensors.torch import load_file

from splitmatch.train.state import list_checkpoints

pytestmark = pytest.mark.slow


def train_command(data_root: Path, out: Path, *extra: str) -> list[str]:
    settings = ("train.checkpoint_every=4", "train.keep_checkpoints=2")
    return [sys.executable, "-m", "splitmatch", *tiny_train_args(data_root, out, *settings, iterations=16), *extra]


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
    process = subprocess.Popen(
        train_command(data_root, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
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

    from splitmatch.config.presets import preset
    from splitmatch.model.build import build_segmentor
    from splitmatch.model.checkpoint import CheckpointError, load_model_weights, read_record, save_checkpoint

    config = preset("tiny")
    classes = tiny_dataset.classes
    saved = build_segmentor(config.clip, config.decoder)
    path = save_checkpoint(tmp_path / "model.safetensors", saved, config, classes, classes.seen_names, 3)
    fresh = build_segmentor(config.clip, config.decoder)  # other random weights
    load_model_weights(fresh, path, read_record(path))
    for name, tensor in saved.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name

    half = build_segmentor(config.clip, config.decoder).half()  # a file in another dtype goes through a conversion
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


def test_every_process_resumes_its_own_random_state_and_the_scaler_its_scale(tmp_path):
    import torch
    from conftest import TINY_CLASSES

    from splitmatch.config.presets import preset
    from splitmatch.model.build import build_segmentor
    from splitmatch.model.checkpoint import read_checkpoint
    from splitmatch.train.optim import build_optimizer, build_schedule
    from splitmatch.train.state import restore_training_state, save_training_checkpoint

    config = preset("tiny")
    model = build_segmentor(config.clip, config.decoder)
    optimizer, schedule = build_optimizer(model, config.train), None
    schedule = build_schedule(optimizer, config.train)
    states = {}
    for rank in (0, 1):
        torch.manual_seed(100 + rank)
        states[f"rng.rank{rank}.cpu"] = torch.get_rng_state()
    scaler = torch.amp.GradScaler("cpu", init_scale=256.0, growth_interval=7)
    path = save_training_checkpoint(
        tmp_path / "step.safetensors",
        model,
        config,
        TINY_CLASSES,
        TINY_CLASSES.seen_names,
        5,
        optimizer,
        schedule,
        rng=states,
        grad_scaler=scaler.state_dict(),
    )
    tensors, record = read_checkpoint(path)

    for rank in (0, 1):
        torch.manual_seed(0)
        resumed = torch.amp.GradScaler("cpu")
        assert restore_training_state(tensors, record, optimizer, schedule, resumed, rank) == 5
        torch.manual_seed(100 + rank)
        expected = torch.rand(4)
        torch.set_rng_state(states[f"rng.rank{rank}.cpu"])
        assert torch.equal(torch.rand(4), expected)
        restore_training_state(tensors, record, optimizer, schedule, resumed, rank)
        assert torch.equal(torch.rand(4), expected), f"process {rank} did not get its own generator back"
        assert resumed.get_scale() == 256.0 and resumed.get_growth_interval() == 7

    torch.manual_seed(7)
    before = torch.get_rng_state()
    with pytest.warns(UserWarning, match="no random state for process 2"):
        restore_training_state(tensors, record, optimizer, schedule, None, rank=2)
    assert torch.equal(torch.get_rng_state(), before)  # left as seeded: the run goes on, differently

    legacy = dict(tensors)  # a checkpoint of the earlier format kept one state, under rng.torch
    legacy["rng.torch"] = legacy.pop("rng.rank0.cpu")
    del legacy["rng.rank1.cpu"]
    restore_training_state(legacy, record, optimizer, schedule, None, rank=0)
    assert torch.equal(torch.get_rng_state(), states["rng.rank0.cpu"])


def test_non_finite_loss_between_log_steps_stops_before_the_next_checkpoint(tiny_dataset, tmp_path, monkeypatch):
    import torch

    from splitmatch.config.presets import load_config
    from splitmatch.losses.criterion import SetCriterion
    from splitmatch.train.step import NonFiniteLossError
    from splitmatch.train.trainer import train

    calls = {"count": 0}
    forward = SetCriterion.forward

    def poisoned(self, outputs, targets, normalisers=None, class_embeddings=None):
        result = forward(self, outputs, targets, normalisers, class_embeddings)
        calls["count"] += 1
        if calls["count"] == 3:  # step 3's loss: NaN, then NaN gradients and weights
            result["loss"] = result["loss"] * torch.tensor(float("nan"))
        return result

    monkeypatch.setattr(SetCriterion, "forward", poisoned)
    overrides = [
        f"data.root={tiny_dataset.root}",
        "train.iterations=6",
        "train.log_every=100",
        "train.checkpoint_every=2",
        "train.keep_checkpoints=5",
    ]
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match="non-finite at step 3"):
        train(load_config(preset_name="tiny", overrides=overrides), out, progress=False)
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step_00000002.safetensors"]
    assert not (out / "model.safetensors").exists()


def test_interrupted_run_with_micro_batches_resumes_to_the_same_weights(tiny_dataset, tmp_path, monkeypatch):
    """In one process: every generator and the schedule come from the checkpoint, not from what
    the interrupted run left behind, and accumulation keeps the step exact across the resume."""
    import torch

    from splitmatch.config.presets import load_config
    from splitmatch.train import state as training_state
    from splitmatch.train.trainer import train

    overrides = [
        f"data.root={tiny_dataset.root}",
        "train.iterations=4",
        "train.checkpoint_every=2",
        "train.accumulate_steps=2",
        "train.eval_every=0",
    ]
    config = load_config(preset_name="tiny", overrides=overrides)
    train(config, tmp_path / "whole", progress=False)

    class Interrupted(Exception):
        pass

    prune = training_state.prune_checkpoints

    def interrupt_after_first_checkpoint(*args, **kwargs):
        prune(*args, **kwargs)
        raise Interrupted

    monkeypatch.setattr(training_state, "prune_checkpoints", interrupt_after_first_checkpoint)
    with pytest.raises(Interrupted):
        train(config, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(training_state, "prune_checkpoints", prune)
    torch.manual_seed(12345)  # whatever the process's generators hold now must not matter
    train(config, tmp_path / "resumed", resume=True, progress=False)

    expected = load_file(tmp_path / "whole" / "model.safetensors")
    got = load_file(tmp_path / "resumed" / "model.safetensors")
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
