"""A full disk, for real: every command that writes ends in one line naming the file it could not
write, exit 2, and leaves no temporary file (storage/files.py: every write goes through
atomic_replace or names its path). Runs where the tests may mount a small tmpfs (root on Linux)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from command_lines import cpu_eval_args, predict_args, tiny_folds_args, tiny_options
from fabricate import fabricate_voc
from fold_folder import make_fold_folder

from splitmatch.cli import main

WORLD_CLIP = Path(__file__).resolve().parents[2] / "splitmatch" / "world" / "assets" / "world-clip.safetensors"


def fill(folder: Path) -> None:
    """Fills the file system of ``folder`` to the last byte."""
    handle = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 16, 1):
            while True:
                try:
                    os.write(handle, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(handle)


@pytest.fixture
def full_disk(small_tmpfs) -> Path:
    folder = small_tmpfs("1m")
    fill(folder)
    return folder


def commands(data: Path, checkpoint: Path, voc: Path, folds: Path, out: Path) -> dict[str, list]:
    tiny = tiny_options(data, iterations=1)
    image = data / "images" / "val_000.png"
    return {
        "train": ["train", *tiny, "--out", out / "run"],
        "seeds": ["seeds", *tiny, "--seeds", "0,1", "--out", out / "seeds"],
        "folds": tiny_folds_args(folds, out / "folds", iterations=1),
        "pseudo-masks": ["pseudo-masks", *tiny, "--device", "cpu", "--set", f"pseudo.cache_dir={out / 'cache'}"],
        "predict": predict_args(checkpoint, "a,b", out / "pred", "--device", "cpu", "--quiet", image),
        "eval --json": cpu_eval_args(checkpoint, "--data-root", data, "--max-images", "1", "--json", out / "eval.json"),
        "export": ["export", "--onnx", out / "m.onnx", "--classes", "a,b", "--checkpoint", checkpoint, "--size", "32"],
        "prepare voc": ["prepare", "voc", "--src", voc, "--dst", out / "voc", "--quiet", "--allow-partial"],
        "convert-clip": ["convert-clip", WORLD_CLIP, out / "clip.safetensors", "--arch", "world-clip"],
        "world": ["world", "--out", out / "world", "--quiet"],
    }


@pytest.mark.parametrize(
    "command",
    [
        "train",
        "seeds",
        "folds",
        "pseudo-masks",
        "predict",
        "eval --json",
        "export",
        "prepare voc",
        "convert-clip",
        "world",
    ],
)
def test_a_full_disk_is_one_line_naming_the_file(
    command, tiny_dataset, untrained_checkpoint, full_disk, tmp_path, capsys
):
    if command == "export" and importlib.util.find_spec("onnxscript") is None:
        pytest.skip("the onnx extra is not installed")
    fabricate_voc(tmp_path / "voc")
    folds = make_fold_folder(tmp_path / "folds").root
    argv = commands(tiny_dataset.root, untrained_checkpoint, tmp_path / "voc", folds, full_disk / "out")[command]
    assert main([str(part) for part in argv]) == 2
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("splitmatch: error")]
    assert len(lines) == 1 and "No space left on device" in lines[0], lines
    named = lines[0].rsplit(": ", 1)[-1].split(" -> ")[-1]
    assert named.startswith(str(full_disk / "out")) and ".tmp" not in named, lines[0]  # the file, not a temporary
    assert not list(full_disk.rglob("*.tmp"))
