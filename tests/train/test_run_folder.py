"""The run folder: never overwritten, locked while in use, every check before any write, torn files tolerated."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from command_lines import tiny_train_args
from conftest import make_tiny_dataset

from splitmatch.cli import main
from splitmatch.train.run_folder import LOCK_FILE, RunLock
from splitmatch.train.state import list_checkpoints


def train_args(data_root: Path, out: Path, *extra: str) -> list[str]:
    settings = ("train.checkpoint_every=2", "loss.matching=hungarian")
    return [*tiny_train_args(data_root, out, *settings, iterations=4), *extra]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` and the digest of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def refused(capsys, args: list[str]) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    return err


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory) -> Path:
    """One finished 4-step run (checkpoints at 2 and 4), trained once for the module."""
    root = tmp_path_factory.mktemp("trained")
    make_tiny_dataset(root / "data")
    assert main(train_args(root / "data", root / "run")) == 0
    return root / "run"


@pytest.fixture
def finished_run(trained_once, tiny_dataset, tmp_path) -> Path:
    """A copy of the finished run, next to this test's own copy of the dataset (``tiny_dataset``)."""
    return Path(shutil.copytree(trained_once, tmp_path / "run"))


def test_folder_holding_a_run_is_refused_without_resume_even_without_checkpoints(tiny_dataset, finished_run, capsys):
    for path in list_checkpoints(finished_run / "checkpoints"):
        path.unlink()
    before = snapshot(finished_run)
    err = refused(capsys, train_args(tiny_dataset.root, finished_run))
    assert "already holds a run (config.yaml" in err and "model.safetensors" in err and "--resume" in err
    assert snapshot(finished_run) == before
    err = refused(capsys, train_args(tiny_dataset.root, finished_run, "--resume"))  # nothing to continue from
    assert "no checkpoint to continue from" in err
    assert snapshot(finished_run) == before


@pytest.mark.parametrize(
    "change, message",
    [
        (["--set", "train.lr=0.5"], "train.lr: 0.001 -> 0.5"),
        (["--set", "train.iterations=2"], "train.iterations=2 is below step 4"),
        (["--set", "loss.matching=split"], "loss.matching: 'hungarian' -> 'split'"),
        ("damage", "is damaged"),
        ("classes", "was trained with classes"),
        ("log", "metrics.jsonl line 1 is not a JSON object"),
    ],
)
def test_refused_resume_leaves_the_folder_byte_identical(tiny_dataset, finished_run, capsys, change, message):
    extra = change if isinstance(change, list) else []
    if change == "damage":
        newest = list_checkpoints(finished_run / "checkpoints")[-1]
        data = bytearray(newest.read_bytes())
        data[-50] ^= 0xFF
        newest.write_bytes(bytes(data))
    elif change == "classes":
        classes = json.loads((tiny_dataset.root / "classes.json").read_text())
        classes["unseen"], classes["seen"] = ["green"], [n for n in classes["classes"] if n != "green"]
        (tiny_dataset.root / "classes.json").write_text(json.dumps(classes))
    elif change == "log":
        lines = (finished_run / "metrics.jsonl").read_text().splitlines()
        (finished_run / "metrics.jsonl").write_text("\n".join(["{oops", *lines[1:]]) + "\n")
    before = snapshot(finished_run)
    err = refused(capsys, train_args(tiny_dataset.root, finished_run, "--resume", *extra))
    assert message in err and len(err.strip().splitlines()) == 1
    assert snapshot(finished_run) == before  # run.lock included: its earlier bytes are put back


def test_resume_reads_up_to_a_torn_log_line_and_removes_stale_temporaries(tiny_dataset, finished_run, capsys):
    log = finished_run / "metrics.jsonl"
    steps_before = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    with open(log, "ab") as out:
        out.write(b'{"step": 5, "lr": 0.0009, "lo')  # a kill or a full disk during the append
    stale = [finished_run / "checkpoints" / ".step_00000006.safetensors.x1y2.tmp", finished_run / ".eval.json.abc.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 1000)
    assert main(train_args(tiny_dataset.root, finished_run, "--resume", "--set", "train.iterations=6")) == 0
    assert not any(path.exists() for path in stale)
    assert "left by an interrupted write" in capsys.readouterr().err
    entries = [json.loads(line) for line in log.read_text().splitlines()]  # every line whole
    steps = [entry["step"] for entry in entries]
    assert steps[: len(steps_before) - 1] == [s for s in steps_before if s <= 4][: len(steps_before) - 1]
    assert steps[-1] == 6 and "eval" in entries[-1]
    losses = [entry["step"] for entry in entries if "loss" in entry]
    assert losses == sorted(set(losses))  # no step logged twice


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_afresh(tiny_dataset, finished_run):
    for name in ("model.safetensors", "eval.json"):
        (finished_run / name).unlink()
    for path in list_checkpoints(finished_run / "checkpoints"):
        path.unlink()
    assert main(train_args(tiny_dataset.root, finished_run, "--resume")) == 0
    steps = [json.loads(line)["step"] for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps.count(4) == 2  # one loss line and one eval line for step 4


def test_a_run_in_progress_is_named_and_a_second_one_refused(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    with RunLock(out) as holder:
        holder.acquire()
        err = refused(capsys, train_args(tiny_dataset.root, out))
        assert f"is in use by pid {os.getpid()} on host" in err and "since" in err
        assert not (out / "config.yaml").exists()
        holder.commit()
    assert main(train_args(tiny_dataset.root, out, "--resume")) == 0  # released: the run goes ahead


def test_out_that_is_a_file_or_lies_under_a_file(tiny_dataset, tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    assert "exists and is not a folder" in refused(capsys, train_args(tiny_dataset.root, blocker))
    err = refused(capsys, train_args(tiny_dataset.root, blocker / "run"))
    assert "Not a directory" in err and "notes.txt" in err
    assert blocker.read_text() == "mine"


def test_checkpoints_get_the_usual_file_permissions(finished_run):
    umask = os.umask(0)
    os.umask(umask)
    for path in [*list_checkpoints(finished_run / "checkpoints"), finished_run / "model.safetensors"]:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


@pytest.mark.slow
def test_two_concurrent_runs_and_kill_9_release_the_lock(tiny_dataset, tmp_path):
    """A second `train` into a folder in use is refused by name; killing the first frees the folder."""
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "splitmatch", *train_args(tiny_dataset.root, out)]
    command[command.index("train.iterations=4")] = "train.iterations=100000"
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (out / "config.yaml").exists():
            time.sleep(0.05)
        assert (out / "config.yaml").exists(), "the first run did not start"
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2 and f"in use by pid {first.pid}" in second.stderr, second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    held = json.loads((out / LOCK_FILE).read_text())
    assert held["pid"] == first.pid  # the dead holder is still named in the file, but holds nothing
    with RunLock(out) as lock:
        lock.acquire()  # the kernel released the lock with the killed process


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="no torchrun")
def test_under_torchrun_a_held_folder_stops_every_rank_without_a_hang(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    command = [
        torchrun,
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "splitmatch",
        *train_args(tiny_dataset.root, out),
    ]
    with RunLock(out) as holder:
        holder.acquire()
        env = dict(os.environ, OMP_NUM_THREADS="1")
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)  # a hang fails here
        holder.commit()
    assert result.returncode != 0
    assert f"is in use by pid {os.getpid()}" in result.stderr  # rank 0, which holds run folders
    assert "another process of this torchrun job could not start the run" in result.stderr  # rank 1
    assert not (out / "config.yaml").exists()
