"""Check, then do: each command resolves and checks every input, option combination and per-item
value before its first write or its first step, so a bad value anywhere leaves its output folder as
it was; no output replaces a file the command reads; an option that does not apply is refused
(docs/robustness.md). The generated cases are in test_hostile_options.py; these are the cases
found by hand, one per surface."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from command_lines import predict_args, tiny_options
from fabricate import fabricate_voc
from refusals import files_of, refused

from splitmatch.cli import main


def tiny(root: Path, *extra) -> list:
    return [*tiny_options(root, iterations=1), *extra]


def test_train_refuses_a_split_without_seen_classes_before_the_run_folder(tiny_dataset, tmp_path, capsys):
    every = ",".join(tiny_dataset.classes.names)
    line = refused(
        capsys, ["train", *tiny(tiny_dataset.root, "--set", f"data.unseen=[{every}]"), "--out", tmp_path / "run"]
    )
    assert "leaves no seen class to train on" in line
    assert not (tmp_path / "run").exists()  # no config.yaml, no split.json: the folder is not "holding a run"


def test_seeds_checks_every_seed_before_the_first_trains(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "seeds"
    (out / "seed_1").mkdir(parents=True)
    (out / "seed_1" / "metrics.jsonl").write_text("[" * 100_000 + "\n{}\n")  # damaged, deeper than the parser goes
    line = refused(capsys, ["seeds", *tiny(tiny_dataset.root), "--seeds", "0,1", "--out", out])
    assert "seed_1/metrics.jsonl line 1 is not a JSON object" in line
    assert sorted(p.name for p in out.iterdir()) == ["seed_1"]  # seed 0 was not trained first
    with pytest.raises(SystemExit):
        main(["seeds", *tiny(tiny_dataset.root), "--seeds", f"0,{2**64}", "--out", str(out)])
    assert "--seeds: must be comma-separated seeds in 0..2**63-1" in capsys.readouterr().err


def test_an_output_is_never_a_file_the_command_reads(tiny_dataset, untrained_checkpoint, tmp_path, capsys):
    checkpoint, classes = untrained_checkpoint, tiny_dataset.root / "classes.json"
    link = tmp_path / "model-link.onnx"
    link.hardlink_to(checkpoint)  # the same file under another name
    cases = [
        ["export", "--onnx", checkpoint, "--classes", "a,b", "--checkpoint", checkpoint],
        ["export", "--onnx", link, "--classes", "a,b", "--checkpoint", checkpoint],
        ["eval", "--checkpoint", checkpoint, "--data-root", tiny_dataset.root, "--json", checkpoint],
        ["eval", "--predictions", tiny_dataset.root / "labels", "--data-root", tiny_dataset.root, "--json", classes],
        ["package-model", "--checkpoint", checkpoint, "--out", checkpoint],
        ["convert-clip", checkpoint, checkpoint, "--arch", "tiny-test"],
        ["pseudo-masks", *tiny(tiny_dataset.root), "--evaluate", "--json", classes],
        ["pseudo-masks", *tiny(tiny_dataset.root), "--evaluate", "--figure", tiny_dataset.root / "images" / "x.png"],
        ["toy-clip", "--world", tiny_dataset.root, "--out", classes],
    ]
    before = files_of(tmp_path)
    for args in cases:
        line = refused(capsys, args)
        assert "which this command reads" in line or "lies inside" in line, (args, line)
    assert files_of(tmp_path) == before


def test_predict_never_writes_over_an_input_image(untrained_checkpoint, tiny_dataset, tmp_path, capsys):
    image = tiny_dataset.root / "images" / "val_000.png"
    shutil.copy(image, tmp_path / "x.png")
    shutil.copy(image, tmp_path / "x_labels.png")  # what predicting x.png into this folder would write
    before = files_of(tmp_path)
    line = refused(
        capsys, predict_args(untrained_checkpoint, "a,b", tmp_path, tmp_path / "x.png", tmp_path / "x_labels.png")
    )
    assert "x_labels.png" in line and "which this command reads" in line
    assert files_of(tmp_path) == before


def test_options_that_do_not_apply_are_refused(tiny_dataset, tmp_path, capsys):
    labels = tiny_dataset.root / "labels"
    for extra, message in (
        (["--mode", "whole"], "--mode does not apply"),
        (["--max-images", "1"], "--max-images does not apply"),
        (["--device", "cpu"], "--device does not apply"),
        (["--set", "inference.mode=whole"], "--set does not apply"),
    ):
        line = refused(capsys, ["eval", "--predictions", labels, "--data-root", tiny_dataset.root, *extra])
        assert message in line, line
    line = refused(capsys, ["eval", "--model", "maskclip-world", "--episodes", "--data-root", tiny_dataset.root])
    assert "--episodes scores a checkpoint" in line
    image = tiny_dataset.root / "images" / "val_000.png"
    line = refused(
        capsys,
        [
            "predict",
            "--model",
            "maskclip-world",
            "--set",
            "clip.weights=null",
            "--classes",
            "a,b",
            "--out",
            tmp_path / "out",
            image,
        ],
    )
    assert "clip.weights of a training-free model must name weights" in line
    assert not (tmp_path / "out").exists()


def test_an_empty_option_is_refused_not_read_as_missing(untrained_checkpoint, tiny_dataset, tmp_path, capsys):
    image = tiny_dataset.root / "images" / "val_000.png"
    for args in (
        ["predict", "--checkpoint", "", "--classes", "a", "--out", tmp_path / "o", image],  # not the packaged model
        ["eval", "--checkpoint", untrained_checkpoint, "--json", ""],  # not "no --json"
        ["eval", "--checkpoint", untrained_checkpoint, "--split", ""],  # not the default split
    ):
        with pytest.raises(SystemExit) as stop:
            main([str(arg) for arg in args])
        assert stop.value.code == 2 and "must not be empty" in capsys.readouterr().err


def test_export_sizes_are_bounded_before_the_model_loads(untrained_checkpoint, tmp_path, capsys):
    for size in ("1000000000", "4104", "-32"):
        line = refused(
            capsys,
            [
                "export",
                "--onnx",
                tmp_path / "m.onnx",
                "--classes",
                "a,b",
                "--checkpoint",
                untrained_checkpoint,
                "--size",
                size,
            ],
        )
        assert "--size takes sides of 1..4096 pixels" in line
    assert not list(tmp_path.glob("*.onnx"))


def test_pseudo_masks_checks_the_split_before_the_cache_is_made(tiny_dataset, tmp_path, capsys):
    cache = tmp_path / "cache"
    line = refused(
        capsys,
        [
            "pseudo-masks",
            *tiny(tiny_dataset.root, "--set", f"pseudo.cache_dir={cache}"),
            "--split",
            "nosuch",
            "--device",
            "cpu",
        ],
    )
    assert "nosuch.txt does not exist" in line and not cache.exists()


def test_prepare_context459_labels_that_are_not_utf8(context459_src, tmp_path, capsys):
    (context459_src / "labels.txt").write_bytes(b"1: accordion\n2: \xff\xfeplane\n")
    line = refused(
        capsys,
        ["prepare", "context-459", "--src", context459_src, "--dst", tmp_path / "out", "--allow-partial", "--quiet"],
    )
    assert "labels.txt is not UTF-8 text (line 2: byte 0xff)" in line
    assert not (tmp_path / "out").exists()


def test_pascal5i_writes_no_episode_list_until_every_fold_is_drawn(tmp_path, capsys):
    fabricate_voc(tmp_path / "voc")  # six images: fold 2 has no object large enough
    assert (
        main(
            [
                "prepare",
                "pascal-5i",
                "--src",
                str(tmp_path / "voc"),
                "--dst",
                str(tmp_path / "out"),
                "--allow-partial",
                "--quiet",
                "--min-object-pixels",
                "10",
            ]
        )
        == 2
    )
    lines = capsys.readouterr().err.strip().splitlines()  # the partial-dataset warnings, then the error
    assert [line for line in lines if "error" in line] == lines[-1:] and "fold 2: no val image holds 10" in lines[-1]
    assert not (tmp_path / "out" / "episodes").exists() and not (tmp_path / "out" / "folds.json").exists()


def test_a_setting_given_twice_is_refused(untrained_checkpoint, tiny_dataset, tmp_path, capsys):
    image = tiny_dataset.root / "images" / "val_000.png"
    line = refused(
        capsys,
        [
            "predict",
            "--checkpoint",
            untrained_checkpoint,
            "--mode",
            "whole",
            "--set",
            "inference.mode=slide",
            "--classes",
            "a",
            "--out",
            tmp_path / "out",
            image,
        ],
    )
    assert "inference.mode is set twice, by --set 'inference.mode=slide' and by mode='whole' (--mode)" in line
    line = refused(
        capsys,
        [
            "eval",
            "--model",
            "maskclip-world",
            "--mode",
            "whole",
            "--set",
            "inference.mode=slide",
            "--data-root",
            tiny_dataset.root,
        ],
    )
    assert "inference.mode is set twice" in line and not (tmp_path / "out").exists()


def test_counts_that_would_not_fit_in_memory_are_bounded(tmp_path, capsys):
    from splitmatch.commands.arguments import episode_count
    from splitmatch.data.episode_lists import MAX_EPISODE_COUNT

    assert episode_count.bounds == (1, MAX_EPISODE_COUNT)  # the parser's bound is the library's
    fabricate_voc(tmp_path / "voc")
    source, out = ["--src", tmp_path / "voc", "--dst", tmp_path / "out"], tmp_path / "p"
    for args in (
        ["prepare", "pascal-5i", *source, "--episodes", "10**18"],
        ["prepare", "pascal-5i", *source, "--episodes", str(10**18)],
        ["predict", "--classes", "a", "--out", out, "--batch-size", str(10**6), "x.png"],
        ["toy-clip", "--world", tmp_path, "--out", tmp_path / "t.safetensors", "--steps", str(10**12)],
    ):
        with pytest.raises(SystemExit) as stop:
            main([str(arg) for arg in args])
        assert stop.value.code == 2 and ": error: argument " in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "p").exists()
