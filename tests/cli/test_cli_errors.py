"""Bad input: one clear line naming the file or value, a non-zero exit, no half-written output."""

from __future__ import annotations

import json

import numpy as np
import pytest
from command_lines import tiny_train_args
from PIL import Image

from splitmatch.cli import main
from splitmatch.train.state import list_checkpoints


def train_args(data_root, out, *extra):
    return [*tiny_train_args(data_root, out, iterations=None), *extra]


def run_cli(capsys, args) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def test_corrupt_image_is_named(tiny_dataset, tmp_path, capsys):
    path = tiny_dataset.root / "images" / "train_002.png"
    path.write_bytes(path.read_bytes()[:60])  # truncated
    code, err = run_cli(capsys, train_args(tiny_dataset.root, tmp_path / "run"))
    assert code == 2 and "train_002.png" in err and "corrupt or truncated" in err
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_label_values_outside_classes_are_named(tiny_dataset, tmp_path, capsys):
    path = tiny_dataset.root / "labels" / "train_001.png"
    label = np.array(Image.open(path))
    label[0, 0] = 17
    Image.fromarray(label).save(path)
    code, err = run_cli(capsys, train_args(tiny_dataset.root, tmp_path / "run"))
    assert code == 2 and "train_001.png" in err and "17" in err


def test_image_and_label_of_different_sizes(tiny_dataset, tmp_path, capsys):
    path = tiny_dataset.root / "labels" / "train_000.png"
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(path)
    code, err = run_cli(capsys, train_args(tiny_dataset.root, tmp_path / "run"))
    assert code == 2 and "train_000.png" in err and "12x10" in err


def test_split_list_naming_missing_files(tiny_dataset, tmp_path, capsys):
    (tiny_dataset.root / "splits" / "train.txt").write_text("train_000\nno_such_image\n")
    code, err = run_cli(capsys, train_args(tiny_dataset.root, tmp_path / "run"))
    assert code == 2 and "no_such_image" in err


@pytest.mark.parametrize(
    "classes, message",
    [
        ({"classes": [], "unseen": []}, "no class names"),
        ({"classes": ["a", "b", "a"], "unseen": []}, "appears twice"),
        ({"classes": ["a", " "], "unseen": []}, "empty name"),
        ({"classes": ["a", "b"], "seen": ["a", "b"], "unseen": ["b"]}, "both seen and unseen"),
        ({"classes": ["a", "b"], "unseen": ["c"]}, "not among"),
    ],
)
def test_bad_class_files(tiny_dataset, tmp_path, capsys, classes, message):
    (tiny_dataset.root / "classes.json").write_text(json.dumps(classes))
    code, err = run_cli(capsys, train_args(tiny_dataset.root, tmp_path / "run"))
    assert code == 2 and message in err and "classes.json" in err


def test_predict_with_bad_class_list(tiny_dataset, tmp_path, capsys):
    code, err = run_cli(
        capsys,
        [
            "predict",
            "--checkpoint",
            str(tmp_path / "x.safetensors"),
            "--classes",
            "cat,,dog",
            "--out",
            str(tmp_path / "p"),
            str(tiny_dataset.root / "images" / "val_000.png"),
        ],
    )
    assert code == 2 and "empty name" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "train.no_such_key=1"], "unknown config key 'train.no_such_key'"),
        (["--set", "train.lr=fast"], "train.lr must be a number"),
        (["--set", "loss.matching=greedy"], "loss.matching must be one of"),
        (["--set", "clip.weights=/nowhere/ViT-B-16.pt"], "/nowhere/ViT-B-16.pt does not exist"),
    ],
)
def test_bad_config_values(tiny_dataset, tmp_path, capsys, args, message):
    code, err = run_cli(capsys, train_args(tiny_dataset.root, tmp_path / "run", *args))
    assert code == 2 and message in err


def test_unknown_preset(tmp_path, capsys):
    code, err = run_cli(capsys, ["train", "--preset", "voc-vitl14", "--out", str(tmp_path / "run")])
    assert code == 2 and "unknown preset 'voc-vitl14'" in err


def test_wrong_clip_weights_file(tiny_dataset, tmp_path, capsys):
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"this is not a checkpoint")
    code, err = run_cli(capsys, train_args(tiny_dataset.root, tmp_path / "run", "--set", f"clip.weights={weights}"))
    assert code == 2 and "weights.pt" in err


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    code, err = run_cli(
        capsys,
        train_args(
            tiny_dataset.root,
            out,
            "--set",
            "train.lr=1e12",
            "--set",
            "train.checkpoint_every=1",
            "--set",
            "train.grad_clip=0",
        ),
    )
    assert code == 2 and "non-finite" in err
    kept = list_checkpoints(out / "checkpoints")
    assert kept, "the checkpoints written before the divergence must stay"
    assert not (out / "model.safetensors").exists()
    assert not list(out.rglob("*.tmp"))


def test_damaged_checkpoint_is_refused(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(tiny_dataset.root, out, "--set", "train.iterations=2")) == 0
    path = out / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # flip bits inside a tensor
    path.write_bytes(bytes(data))
    code, err = run_cli(capsys, ["eval", "--checkpoint", str(path)])
    assert code == 2 and "damaged" in err
    path.write_bytes(bytes(data[: len(data) // 2]))
    code, err = run_cli(capsys, ["eval", "--checkpoint", str(path)])
    assert code == 2 and "model.safetensors" in err


def test_failed_commands_leave_no_empty_folders_and_no_lock_file(tiny_dataset, tmp_path, capsys, untrained_checkpoint):
    image = tiny_dataset.samples("val")[0].image_path
    code, _ = run_cli(
        capsys,
        [
            "predict",
            "--checkpoint",
            str(tmp_path / "missing.safetensors"),
            "--classes",
            "a,b",
            "--out",
            str(tmp_path / "pred" / "deep"),
            str(image),
        ],
    )
    assert code == 2 and not (tmp_path / "pred").exists()
    code, _ = run_cli(
        capsys,
        [
            "eval",
            "--checkpoint",
            str(tmp_path / "missing.safetensors"),
            "--json",
            str(tmp_path / "scores" / "eval.json"),
        ],
    )
    assert code == 2 and not (tmp_path / "scores").exists()
    # A run that started and then failed keeps what it wrote (config, log) but not its lock file.
    label = tiny_dataset.root / "labels" / "train_001.png"
    values = np.array(Image.open(label))
    values[0, 0] = 17
    Image.fromarray(values).save(label)
    code, err = run_cli(capsys, train_args(tiny_dataset.root, tmp_path / "run"))
    assert code == 2 and "train_001.png" in err
    assert not (tmp_path / "run" / "run.lock").exists()
