"""The same training script under torchrun (2 CPU processes, gloo) follows the single-process loss."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from command_lines import tiny_train_args

pytestmark = pytest.mark.slow


def losses(run_dir: Path) -> list[float]:
    entries = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [e["loss"] for e in entries if "loss" in e]


def train_args(data_root: Path, out: Path) -> list[str]:
    """Eight steps of the tiny preset, the loss logged at each: one run, as one process or under torchrun."""
    settings = [
        "train.batch_size=4",
        "train.log_every=1",
        "train.checkpoint_every=8",
        "loss.num_points=4096",
        "train.lr=1e-4",
    ]
    return tiny_train_args(data_root, out, *settings, iterations=8)


def torchrun(*args: str) -> list[str]:
    """``args`` under torchrun as two processes on this machine."""
    return [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--standalone", "--nproc_per_node", "2", *args]


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="no torchrun")
def test_two_process_loss_trajectory_matches_one_process(tiny_dataset, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = tmp_path / "single"
    command = [sys.executable, "-m", "splitmatch", *train_args(tiny_dataset.root, single)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr

    double = tmp_path / "double"
    command = torchrun("-m", "splitmatch", *train_args(tiny_dataset.root, double))
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    one, two = losses(single), losses(double)
    assert len(one) == len(two) == 8
    for step, (a, b) in enumerate(zip(one, two)):
        assert abs(a - b) <= 0.03 * abs(a), f"step {step + 1}: single {a:.4f} vs torchrun {b:.4f}"
    assert (double / "model.safetensors").is_file() and (double / "eval.json").is_file()
    assert result.stdout.count("| validation |") == 1  # the result table once, not once per rank


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="no torchrun")
def test_two_processes_with_micro_batches_resume_bitwise_from_a_checkpoint(tiny_dataset, tmp_path):
    from safetensors.torch import load_file

    env = dict(os.environ, OMP_NUM_THREADS="1")
    settings = [
        "train.batch_size=4",
        "train.accumulate_steps=2",
        "train.log_every=1",
        "train.checkpoint_every=3",
        "train.keep_checkpoints=2",
        "loss.num_points=1024",
    ]

    def launch(out: Path, *extra: str) -> None:
        command = torchrun(
            "-m", "splitmatch", *tiny_train_args(tiny_dataset.root, out, *settings, iterations=6), *extra
        )
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]

    full = tmp_path / "full"
    launch(full)
    resumed = tmp_path / "resumed"
    shutil.copytree(full, resumed)
    for name in ("checkpoints/step_00000006.safetensors", "model.safetensors", "eval.json"):
        (resumed / name).unlink()
    launch(resumed, "--resume")  # from step 3: every process must get its own random state back

    expected, got = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not different, f"{len(different)} tensors differ after resuming, e.g. {different[:3]}"
    assert losses(resumed) == losses(full) and len(losses(full)) == 6


INJECT_ON_RANK_1 = """
import os, sys
from splitmatch.losses.criterion import SetCriterion

if os.environ["RANK"] == "1":
    calls = []
    def refuse(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second step, after both ranks have stepped together once
            raise FloatingPointError("injected: a non-finite cost on rank 1 only")
        return real(self, *args, **kwargs)
    real, SetCriterion.forward = SetCriterion.forward, refuse

from splitmatch.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="no torchrun")
def test_a_failure_on_one_rank_ends_every_rank_with_its_one_line(tiny_dataset, tmp_path):
    script = tmp_path / "inject.py"
    script.write_text(INJECT_ON_RANK_1)
    command = torchrun(str(script), *train_args(tiny_dataset.root, tmp_path / "run"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("splitmatch: error:")]
    assert any("training diverged at step 2: injected: a non-finite cost on rank 1 only" in line for line in lines)
    # rank 0 was inside a collective when rank 1 stopped: it ends with rank 1's line, not a traceback of its own
    assert any(line.startswith("splitmatch: error: stopped because rank 1: training diverged") for line in lines), (
        result.stderr[-3000:]
    )


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="no torchrun")
def test_a_half_filled_cache_is_shared_out_evenly_between_ranks(tiny_dataset, tmp_path):
    """Entries are checked first, then what is missing is split: each rank computes half of the rest."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [
        sys.executable,
        "-m",
        "splitmatch",
        "pseudo-masks",
        "--preset",
        "tiny",
        "--quiet",
        "--set",
        f"data.root={tiny_dataset.root}",
    ]
    cache_root = tiny_dataset.root / "pseudo_masks"
    train = (tiny_dataset.root / "splits" / "train.txt").read_text().split()
    # Fill the cache for the even-numbered training images only: the share rank 0 would have had if
    # the images were split before the cache was read, which would then leave rank 0 with nothing.
    half = tmp_path / "half"
    (half / "splits").mkdir(parents=True)
    for name in ("images", "labels", "classes.json"):
        (half / name).symlink_to(tiny_dataset.root / name)
    (half / "splits" / "train.txt").write_text("\n".join(train[0::2]) + "\n")
    (half / "splits" / "val.txt").write_text((tiny_dataset.root / "splits" / "val.txt").read_text())
    result = subprocess.run(
        command[:-1] + [f"data.root={half}", "--set", f"pseudo.cache_dir={cache_root}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list(cache_root.glob("*.npz"))) == len(train[0::2])

    result = subprocess.run(
        torchrun("-m", *command[1:], "--set", f"pseudo.cache_dir={cache_root}"),
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    counts = sorted(
        int(line.split("computed ")[1].split(" ")[0])
        for line in result.stdout.splitlines()
        if line.startswith("pseudo masks: computed")
    )
    left = len(train) - len(train[0::2])
    assert counts == [left // 2, left - left // 2], result.stdout
    assert len(list(cache_root.glob("*.npz"))) == len(train)
