"""Paths work from any folder: relative paths resolve against the current folder when a config
is built, checkpoints hold absolute paths, and packaged weights have a name of their own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from command_lines import tiny_train_args
from safetensors import safe_open
from safetensors.torch import save_file

from splitmatch.cli import main
from splitmatch.clip.loading import ClipWeightsError, build_clip, packaged_weights
from splitmatch.config import ExperimentConfig, describe_path, merge, resolve_paths
from splitmatch.config.presets import load_config
from splitmatch.model.checkpoint import read_record

REPO = Path(__file__).resolve().parents[2]


def test_relative_paths_resolve_against_the_current_folder_and_are_kept_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(
        None, "tiny", ["data.root=data/voc", "clip.weights=weights/w.safetensors", "pseudo.cache_dir=../cache"]
    )
    assert config.data.root == str(tmp_path / "data" / "voc")
    assert config.clip.weights == str(tmp_path / "weights" / "w.safetensors")
    assert config.pseudo.cache_dir == str(tmp_path.parent / "cache")
    assert config.given_paths == {
        "data.root": "data/voc",
        "clip.weights": "weights/w.safetensors",
        "pseudo.cache_dir": "../cache",
    }
    assert describe_path(config, "data.root") == f"{tmp_path / 'data' / 'voc'} (given as data/voc)"
    assert resolve_paths(config) == config and resolve_paths(config).given_paths == config.given_paths


def test_names_that_are_not_paths_stay_as_they_are(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = merge(ExperimentConfig(), {"data": {"root": "/abs/data"}})
    for weights in ("openai", "laion2b_s34b_b88k", "packaged:world-clip"):
        config = resolve_paths(merge(base, {"clip": {"weights": weights}}))
        assert config.clip.weights == weights and config.data.root == "/abs/data" and config.given_paths == {}
    assert resolve_paths(base).clip.arch == "ViT-B-16-quickgelu"  # a model-config name, not a file
    config = resolve_paths(merge(base, {"clip": {"arch": "archs/my-clip.json", "weights": "~/w.pt"}}))
    assert config.clip.arch == str(tmp_path / "archs" / "my-clip.json")
    assert config.clip.weights == str(Path.home() / "w.pt")


def test_a_config_file_means_the_same_paths_as_the_command_line(tmp_path, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    config_file = tmp_path / "elsewhere" / "my.yaml"
    config_file.write_text("preset: tiny\ndata:\n  root: data/mine\n")
    monkeypatch.chdir(tmp_path)
    from_file = load_config(config_file)
    from_command_line = load_config(None, "tiny", ["data.root=data/mine"])
    assert from_file.data.root == from_command_line.data.root == str(tmp_path / "data" / "mine")


def test_a_saved_config_reloads_without_its_old_spelling(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from splitmatch.config import save_yaml

    save_yaml(load_config(None, "tiny", ["data.root=data/voc"]), tmp_path / "config.yaml")
    reloaded = load_config(tmp_path / "config.yaml")
    assert reloaded.data.root == str(tmp_path / "data" / "voc") and reloaded.given_paths == {}


def test_world_config_works_from_any_folder_with_the_packaged_clip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(REPO / "configs" / "world.yaml")
    assert config.data.root == str(tmp_path / "demo_out" / "world")
    assert config.clip.weights == "packaged:world-clip" == load_config(None, "world").clip.weights
    assert packaged_weights("packaged:world-clip").is_file()
    clip = build_clip(config.clip.arch, config.clip.weights)  # the file inside the package
    assert clip.visual.conv1.weight.abs().sum() > 0


def test_unknown_packaged_weights_are_named():
    with pytest.raises(ClipWeightsError, match=r"unknown packaged weights 'packaged:nope'.*packaged:world-clip"):
        packaged_weights("packaged:nope")


def test_benchmark_configs_point_at_the_converted_safetensors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("voc", "coco-stuff", "context"):
        config = load_config(REPO / "configs" / f"{name}.yaml")
        assert config.clip.weights == str(tmp_path / "weights" / "ViT-B-16.safetensors"), name
        assert config.given_paths["clip.weights"] == "weights/ViT-B-16.safetensors"


@pytest.fixture
def run_made_elsewhere(tiny_dataset, tmp_path, monkeypatch):
    """A tiny run trained in folder A with relative paths; returns (A, run folder)."""
    first = tmp_path / "A"
    first.mkdir()
    (first / "data").symlink_to(tiny_dataset.root, target_is_directory=True)
    monkeypatch.chdir(first)
    assert main(tiny_train_args("data", "run", "loss.matching=hungarian")) == 0
    return first, first / "run"


def test_a_checkpoint_evaluates_from_another_folder(run_made_elsewhere, tmp_path, monkeypatch, capsys):
    first, run = run_made_elsewhere
    record = read_record(run / "model.safetensors")
    assert record["config"].data.root == str(first / "data")
    assert record["config"].given_paths["data.root"] == "data"
    assert f"root: {first / 'data'}" in (run / "config.yaml").read_text()
    other = tmp_path / "B"
    other.mkdir()
    monkeypatch.chdir(other)
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run / "model.safetensors"), "--quiet", "--json", "m.json"]) == 0
    assert json.loads((other / "m.json").read_text())["per_class_iou"]


def test_a_moved_dataset_is_named_and_data_root_overrides(run_made_elsewhere, tiny_dataset, tmp_path, capsys):
    first, run = run_made_elsewhere
    (first / "data").unlink()  # the dataset is no longer where the checkpoint says
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run / "model.safetensors"), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert f"{first / 'data'} (given as data)" in error and "--data-root" in error
    assert (
        main(["eval", "--checkpoint", str(run / "model.safetensors"), "--quiet", "--data-root", str(tiny_dataset.root)])
        == 0
    )


def test_checkpoints_from_before_absolute_paths_still_load(run_made_elsewhere, tiny_dataset, tmp_path, capsys):
    _, run = run_made_elsewhere
    with safe_open(str(run / "model.safetensors"), framework="pt") as handle:
        record = json.loads(handle.metadata()["splitmatch"])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
    del record["config"]["given_paths"]
    record["config"]["data"]["root"] = "data"  # relative, as such checkpoints stored it
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata={"splitmatch": json.dumps(record)})
    loaded = read_record(old)
    assert loaded["config"].data.root == "data" and loaded["config"].given_paths == {}
    assert main(["eval", "--checkpoint", str(old), "--quiet", "--data-root", str(tiny_dataset.root)]) == 0
