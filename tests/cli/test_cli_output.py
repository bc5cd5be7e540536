"""What the command line tells its user: the device it chose, the presets, the eval report."""

from __future__ import annotations

import pytest
import torch
from command_lines import tiny_train_args

from splitmatch.cli import build_parser, main
from splitmatch.config import ConfigError
from splitmatch.config.presets import PRESETS, preset
from splitmatch.device import resolve_device
from splitmatch.evaluation.metrics import format_class_table


def test_auto_device_is_the_gpu_when_there_is_one():
    expected = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("auto") == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_asking_for_a_missing_gpu_is_refused():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")


@pytest.mark.parametrize("name", ["gpu", "mps", "cuda:x"])
def test_unknown_devices_are_refused(name):
    with pytest.raises(ConfigError, match=f"device '{name}'"):
        resolve_device(name)


@pytest.mark.parametrize("command", ["eval", "predict", "pseudo-masks"])
def test_device_defaults_to_auto(command):
    parser = build_parser()
    required = {
        "eval": [],
        "predict": ["--checkpoint", "c", "--classes", "a", "--out", "o", "x.jpg"],
        "pseudo-masks": [],
    }[command]
    assert parser.parse_args([command, *required]).device == "auto"


def test_commands_print_the_device_they_use(tiny_dataset, tmp_path, capsys):
    assert main(["pseudo-masks", "--preset", "tiny", "--quiet", "--set", f"data.root={tiny_dataset.root}"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"device: {resolve_device('auto')}"
    assert (
        main(
            [
                "pseudo-masks",
                "--preset",
                "tiny",
                "--quiet",
                "--device",
                "gpu",
                "--set",
                f"data.root={tiny_dataset.root}",
            ]
        )
        == 2
    )
    assert "splitmatch: error: device 'gpu'" in capsys.readouterr().err


def test_presets_one_line_each_with_model_and_size(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(PRESETS)
    for name, line in zip(PRESETS, lines[1:]):
        config = preset(name)
        assert line.split()[:3] == [name, config.clip.arch, str(config.data.crop_size)]
        assert len(line.split("px", 1)[1].strip()) > 20  # what it is for


def test_class_table_names_what_each_class_is_mistaken_for():
    metrics = {
        "per_class_iou": {"background": 90.0, "square": 41.25, "heart": float("nan"), "ring": None},
        "mistaken_for": {"background": {"square": 2.0}, "square": {"crescent": 16.4, "background": 11.6}},
    }
    lines = format_class_table(metrics, unseen={"square", "heart"}).splitlines()
    assert lines[2].split() == ["square", "unseen", "41.2", "crescent", "16%,", "background", "12%"]
    assert lines[1].split() == ["background", "seen", "90.0", "square", "2%"]
    assert lines[3].split() == ["heart", "unseen", "n/a", "-"] and lines[4].split() == ["ring", "seen", "n/a", "-"]


def test_eval_prints_per_class_iou_and_confusions_quietly(tiny_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(tiny_train_args(tiny_dataset.root, run, "loss.matching=hungarian")) == 0
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run / "model.safetensors"), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "evaluate" not in captured.err  # no progress bar
    out = captured.out
    assert "its pixels predicted as another class" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("background", "yellow"))]
    assert [row[:2] for row in rows] == [["background", "seen"], ["yellow", "unseen"]]


def test_convert_clip_explains_arch(capsys):
    with pytest.raises(SystemExit):
        main(["convert-clip", "--help"])
    assert "open_clip model config" in capsys.readouterr().out
