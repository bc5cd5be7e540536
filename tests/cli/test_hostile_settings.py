"""Settings a careless user gives that a run would have ignored or contradicted, found by hand: a
setting of a switch that is off, a switch given twice, a recipe named against ``--model``, names of
the none-of-these rule, a folder given as CLIP weights and a pseudo-mask cache among the dataset's
files. Each ends in one line, exit 2, before anything is written (docs/robustness.md)."""

from __future__ import annotations

import pytest
from command_lines import tiny_options
from refusals import files_of, refused

from splitmatch.cli import main


@pytest.mark.parametrize(
    ("setting", "switch"),
    [
        ("train.transductive_start=0.3", "train.transductive=true"),
        ("train.transductive_pixels=ignored", "train.transductive=true"),
        ("train.transductive_threshold=0.5", "train.transductive=true"),
        ("data.proxy.count=1", "data.proxy.enabled=true"),
        ("data.proxy.val_fraction=0.5", "data.proxy.enabled=true"),
    ],
)
def test_a_setting_of_a_switch_that_is_off_is_refused_not_ignored(tiny_dataset, tmp_path, capsys, setting, switch):
    run = tmp_path / "run"
    line = refused(capsys, ["train", *tiny_options(tiny_dataset.root, setting), "--out", run])
    assert f"{setting.split('=')[0]}=" in line and f"applies only with {switch}, which is off" in line, line
    assert not run.exists()


def test_a_stored_config_with_such_a_setting_still_loads() -> None:
    """The rule is the command line's and load_config's: a checkpoint or run recorded before it,
    with a setting of a switch that was off, still reads."""
    import dataclasses

    from splitmatch.config import from_dict, to_dict
    from splitmatch.config.presets import preset

    config = preset("tiny")
    stored = dataclasses.replace(config, train=dataclasses.replace(config.train, transductive_start=0.3))
    assert from_dict(to_dict(stored)).train.transductive_start == 0.3


def test_proxy_given_twice_is_refused(tiny_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", *tiny_options(tiny_dataset.root, "data.proxy.enabled=false"), "--proxy", "--out", run]
    line = refused(capsys, args)  # --proxy won, silently
    assert "data.proxy.enabled is set twice, by --set 'data.proxy.enabled=false' and by --proxy" in line
    assert not run.exists()


def test_a_recipe_named_against_the_model_is_refused(tiny_dataset, tmp_path, capsys):
    """``--model maskclip-world --set recipe.name=sclip`` ran SCLIP's reading with MaskCLIP's
    templates and scale, under the name maskclip-world."""
    image, out = tiny_dataset.root / "images" / "val_000.png", tmp_path / "out"
    predict = ["predict", "--model", "maskclip-world", "--classes", "red,blue", "--out", out, image]
    line = refused(capsys, [*predict, "--set", "recipe.name=sclip", "--device", "cpu"])
    assert "recipe.name='sclip' in --set contradicts the model 'maskclip-world'" in line and "sclip-world" in line
    assert not out.exists()
    evaluate = ["eval", "--model", "naclip-world", "--data-root", tiny_dataset.root, "--set", "recipe.name=maskclip"]
    assert "contradicts the model 'naclip-world'" in refused(capsys, evaluate)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--none-label", "none\x1b[31m", "--none-below", "0.5"], "the none-of-these label: class 0's name"),
        (["--none-label", "n" * 300, "--none-below", "0.5"], "300 characters long; at most 256"),
        (["--none-label", "none", "--background", "sky,w\x07all"], "background prompts: class 1's name"),
        (["--none-label", "none", "--background", "sky|air,wall"], "give them separated by commas ('sky,air')"),
    ],
)
def test_none_of_these_names_keep_the_class_name_rules(tiny_dataset, tmp_path, capsys, options, message):
    image, out = tiny_dataset.root / "images" / "val_000.png", tmp_path / "out"
    args = ["predict", "--model", "maskclip-world", "--classes", "red,blue", "--out", out, *options, image]
    line = refused(capsys, args)
    assert message in line and "\x1b" not in line and "\x07" not in line, line
    assert not out.exists()


def test_clip_weights_that_are_a_folder_are_named_as_a_folder(tiny_dataset, tmp_path, capsys):
    args = ["eval", "--model", "maskclip-world", "--data-root", tiny_dataset.root, "--set", f"clip.weights={tmp_path}"]
    assert f"CLIP weights file {tmp_path} is a folder" in refused(capsys, args)  # was "does not exist"


def test_a_pseudo_mask_cache_among_the_dataset_files_is_refused(tiny_dataset, tmp_path, capsys):
    """A cache in the dataset folder itself, its images or its labels wrote thousands of entries
    (and meta.json) among the dataset's files."""
    root = tiny_dataset.root
    before = files_of(root)
    for cache, message in (
        (root, f"holds the dataset folder {root}"),
        (tmp_path, f"holds the dataset folder {root}"),
        (root / "images", "which this command reads"),
        (root / "labels" / "cache", f"lies inside {root / 'labels'}"),
    ):
        options = tiny_options(root, f"pseudo.cache_dir={cache}")
        assert message in refused(capsys, ["pseudo-masks", *options, "--device", "cpu"])
        assert message in refused(capsys, ["train", *options, "--out", tmp_path / "run"])
    assert files_of(root) == before and not (tmp_path / "run").exists()


def test_eval_help_names_every_training_free_recipe(capsys):
    from splitmatch.config.training_free import RECIPE_TITLES

    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    line = text[text.index("eval evaluate") : text.index("predict segment")]
    assert all(title in line for title in RECIPE_TITLES.values()), line


def test_seeds_refuses_a_seed_of_the_config_and_empty_items(tiny_dataset, tmp_path, capsys):
    """--set train.seed=5 was replaced by each seed without a word; '0,,1' was read as 0,1."""
    out = tmp_path / "seeds"
    args = ["seeds", *tiny_options(tiny_dataset.root, "train.seed=5"), "--seeds", "0,1", "--out", out]
    assert "the config sets train.seed=5 itself (leave it unset)" in refused(capsys, args)
    for seeds in ("0,,1", "0,", ",1"):
        with pytest.raises(SystemExit):
            main(["seeds", *tiny_options(tiny_dataset.root), "--seeds", seeds, "--out", str(out)])
        assert f"--seeds: must be comma-separated seeds in 0..2**63-1, e.g. 0,1,2, got '{seeds}'" in (
            capsys.readouterr().err
        )
    assert not out.exists()


@pytest.mark.parametrize(
    ("command", "option"),
    [
        (["eval", "--model", "maskclip-world", "--data-root", "missing", "--json"], "--json"),
        (["package-model", "--checkpoint", "packaged:world-model", "--out"], "--out"),
        (["convert-clip", "missing.pt"], "DST"),
    ],
)
def test_an_output_file_that_is_a_folder_names_its_option(tmp_path, capsys, command, option):
    folder = tmp_path / "out"
    folder.mkdir()
    line = refused(capsys, [*command, folder])
    assert f"is a folder, not a file ({option} names a file to write): {folder}" in line, line
    assert not any(folder.iterdir())
