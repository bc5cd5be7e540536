"""Operating-system errors end in one line naming the path, and never cost an earlier checkpoint.

A full disk and a read-only file system are real where the tests may mount a small tmpfs (as
root on Linux); elsewhere the full disk is simulated at the checkpoint writer and a read-only
folder is made with chmod.
"""

from __future__ import annotations

from pathlib import Path

from command_lines import tiny_train_args
from safetensors import SafetensorError

from splitmatch.cli import main
from splitmatch.model.checkpoint import read_checkpoint
from splitmatch.train.state import list_checkpoints


def train_args(data_root: Path, out: Path, *extra: str) -> list[str]:
    settings = ("train.checkpoint_every=1", "train.keep_checkpoints=5", "loss.matching=hungarian")
    return [*tiny_train_args(data_root, out, *settings, iterations=3), *extra]


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("splitmatch: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_full_disk_during_a_checkpoint_keeps_the_earlier_ones(tiny_dataset, small_tmpfs, capsys):
    out = small_tmpfs("12m") / "run"  # room for one 7 MB checkpoint, not two
    assert main(train_args(tiny_dataset.root, out)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "No space left on device" in line and str(out) in line
    kept = list_checkpoints(out / "checkpoints")
    assert kept and read_checkpoint(kept[-1])[1]["step"] == 1  # whole: its digest checks
    assert not list(out.rglob("*.tmp"))


def test_full_disk_simulated_at_the_checkpoint_writer(tiny_dataset, tmp_path, capsys, monkeypatch):
    import splitmatch.model.checkpoint as checkpoint

    real_save = checkpoint.save_file
    calls = []

    def disk_fills_up(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 1:
            return real_save(tensors, filename, metadata=metadata)
        Path(filename).write_bytes(b"\0" * 1000)  # what got written before the disk filled
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(checkpoint, "save_file", disk_fills_up)
    out = tmp_path / "run"
    assert main(train_args(tiny_dataset.root, out)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "could not write checkpoint" in line and "step_00000002" in line and "No space left on device" in line
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step_00000001.safetensors"]
    assert not list(out.rglob("*.tmp"))


def test_read_only_destinations(tiny_dataset, small_tmpfs, tmp_path, capsys):
    read_only = small_tmpfs("1m", read_only=True)
    assert main(train_args(tiny_dataset.root, read_only / "run")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "Read-only file system" in line and str(read_only / "run") in line
    assert (
        main(
            [
                "eval",
                "--predictions",
                str(tmp_path),
                "--data-root",
                str(tiny_dataset.root),
                "--json",
                str(read_only / "m.json"),
            ]
        )
        == 2
    )
    assert "Read-only file system" in one_error_line(capsys.readouterr().err)
