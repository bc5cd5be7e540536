"""Every subcommand, every option, hostile values generated from the option itself: its type's edges
(one past each bound, not a number, NaN, a 400-digit number), an empty value, a choice that is not
one, text that would steer the terminal, and for each output a path equal to an input, a folder or a
path under a file. Each ends in one line on stderr and exit 2, with no traceback and nothing written
(docs/robustness.md, "Validate first"). The values are made from the parser, so an option added
later is tried too.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest
from command_lines import cpu_eval_args, episodes_args, predict_args, tiny_folds_args, tiny_options
from fold_folder import FOLDS, make_fold_folder

from splitmatch.cli import build_parser, main
from splitmatch.commands.arguments import episode_counts, finite_float, megapixels, nonempty_text

# Options whose value names a file or folder the command writes.
OUTPUTS = {"out", "json", "figure", "onnx", "dst"}
# Text that is never a usable value, whatever the option: control characters, a lone surrogate.
STEERING = "\x1b[2J\x1b]0;pwned\x07"
# Values each text option refuses beyond the generated ones.
TEXT_VALUES = {
    "split": ["../val", "a/b", "nosuch"],
    "set": ["x", "=1", "train", "train.lr=nan", "train.no_such_key=1", "inference.window=0"],
    "classes": [",", "a,,b", "a,a", "a|", "|a", "x" * 300],
    "background_name": ["red", "x" * 300],
    "fold_scheme": ["nosuch", "../x"],
    "device": ["cuda:7", "gpu", "cpu:0:1"],
    "vocabulary": ["missing.json"],
    "size": ["0", "-8", "95", "8192", "x", "1e3"],
    "arch": ["nosuch-arch", "../clip/tiny-test"],
    "clip": ["packaged:nosuch", "nosuch"],
    "predictions": ["missing"],
    "data_root": ["missing"],
    "checkpoint": ["missing.safetensors"],
    "preset": ["nosuch"],
    "config": ["missing.yaml"],
    "src": ["missing"],
    "sbd": ["missing"],
    "world": ["missing"],
}


def type_values(action: argparse.Action) -> list[str]:
    """Values the option's type refuses, from the type itself."""
    kind = action.type
    if action.choices:
        return ["nosuch", STEERING]
    if hasattr(kind, "bounds"):
        low, high = kind.bounds
        return [str(low - 1), str(high + 1), "x", "1.5", "9" * 400, "0x10", " "]
    if kind in (float, finite_float):
        return ["nan", "inf", "-inf", "x", "1e999"]
    if kind is megapixels:
        return ["0", "-1", "nan", "1e9", "x"]
    if kind is episode_counts:
        return ["0", "x", "1,,-2", ","]
    if kind is nonempty_text and (action.dest in OUTPUTS or action.dest == "images"):
        return ["", " "]  # any other name is a path it may write (or, for predict, an image it names and skips)
    if kind is nonempty_text:
        return ["", " ", STEERING, *TEXT_VALUES.get(action.dest, [])]
    raise AssertionError(f"no hostile values for the type of {action.dest}: add them")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Every input a baseline command reads, made once: a dataset, a fold folder, checkpoints of both,
    a VOC source, a config file and a world with captions."""
    from conftest import make_tiny_dataset
    from fabricate import fabricate_voc

    from splitmatch.config.presets import preset
    from splitmatch.data.classes import ClassSplit
    from splitmatch.model.build import build_segmentor
    from splitmatch.model.checkpoint import save_checkpoint
    from splitmatch.world.generator import WorldSpec, generate_world

    root = tmp_path_factory.mktemp("inputs")
    data = make_tiny_dataset(root / "data")
    folds = make_fold_folder(root / "folds")
    config = preset("tiny")
    model = build_segmentor(config.clip, config.decoder)
    checkpoint = save_checkpoint(root / "model.safetensors", model, config, data.classes, data.classes.seen_names, 1)
    config.data.root = str(folds.root)
    fold_classes = ClassSplit(folds.classes.names, FOLDS[0], dataset=folds.classes.dataset)
    fold_checkpoint = save_checkpoint(
        root / "fold.safetensors", model, config, fold_classes, fold_classes.seen_names, 1
    )
    fabricate_voc(root / "voc")
    (root / "config.yaml").write_text(f"preset: tiny\ndata:\n  root: {data.root}\n")
    world = generate_world(root / "world", spec=WorldSpec(num_train=2, num_val=1, num_captions=2), progress=False)
    return {
        "root": root,
        "data": data.root,
        "folds": folds.root,
        "checkpoint": checkpoint,
        "fold_checkpoint": fold_checkpoint,
        "voc": root / "voc",
        "config": root / "config.yaml",
        "world": world.root,
    }


def baselines(i: dict, out: Path) -> dict[str, tuple[list, list[Path]]]:
    """Per subcommand, a command that would succeed (the hostile value is its only problem) and files
    it reads (an output naming one of them must be refused)."""
    image = i["data"] / "images" / "val_000.png"
    data = [i["data"] / "classes.json", image, i["data"] / "splits" / "val.txt"]
    folds = [i["folds"] / "folds.json", i["folds"] / "classes.json", i["folds"] / "labels" / "val_000.png"]
    tiny = tiny_options(i["data"], iterations=1)
    return {
        "train": (["train", *tiny, "--out", out / "run"], data),
        "seeds": (["seeds", *tiny, "--seeds", "0", "--out", out / "seeds"], data),
        "folds": (tiny_folds_args(i["folds"], out / "folds", iterations=1), folds),
        "pseudo-masks": (["pseudo-masks", *tiny, "--device", "cpu", "--evaluate", "--json", out / "pm.json"], data),
        "eval": (
            cpu_eval_args(i["checkpoint"], "--data-root", i["data"], "--max-images", "1", "--json", out / "eval.json"),
            [i["checkpoint"], *data],
        ),
        "eval --episodes": (
            episodes_args(i["fold_checkpoint"], "--json", out / "episodes.json"),
            [i["fold_checkpoint"], *folds],
        ),
        "eval --predictions": (
            ["eval", "--predictions", i["data"] / "labels", "--data-root", i["data"], "--quiet"],
            data,
        ),
        "predict": (
            predict_args(i["checkpoint"], "a,b", out / "pred", "--device", "cpu", "--quiet", image),
            [i["checkpoint"], image],
        ),
        "app": (["app", "--checkpoint", i["checkpoint"]], [i["checkpoint"]]),
        "export": (
            ["export", "--onnx", out / "m.onnx", "--classes", "a,b", "--checkpoint", i["checkpoint"], "--size", "32"],
            [i["checkpoint"]],
        ),
        "prepare": (
            ["prepare", "voc", "--src", i["voc"], "--dst", out / "voc", "--quiet", "--allow-partial"],
            [i["voc"] / "ImageSets" / "Segmentation" / "train.txt"],
        ),
        "convert-clip": (
            ["convert-clip", i["checkpoint"], out / "clip.safetensors", "--arch", "tiny-test"],
            [i["checkpoint"]],
        ),
        "world": (["world", "--out", out / "world", "--quiet"], []),
        "toy-clip": (
            ["toy-clip", "--world", i["world"], "--out", out / "toy.safetensors", "--steps", "1", "--quiet"],
            [i["world"] / "classes.json", i["world"] / "splits" / "captions.txt"],
        ),
        "package-model": (
            ["package-model", "--checkpoint", i["checkpoint"], "--out", out / "packaged.safetensors"],
            [i["checkpoint"]],
        ),
        "demo": (["demo", "--out", out / "demo", "--quick", "--quiet"], []),
    }


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


# Where a positional argument stands in its baseline.
POSITIONS = {"dataset": 1, "src": 1, "dst": 2, "images": -1}


def with_value(baseline: list, action: argparse.Action, value: str) -> list[str]:
    """``baseline`` with ``action``'s value replaced by (or given as) ``value``."""
    argv = [str(part) for part in baseline]
    if not action.option_strings:
        argv[POSITIONS[action.dest]] = value
        return argv
    flag = action.option_strings[-1]
    if flag in argv:
        argv[argv.index(flag) + 1] = value
        return argv
    return [*argv, flag, value]


# Commands whose --out (prepare's --dst) is a folder: a folder of other files is a fine place for them.
FOLDER_OUTPUTS = {"train", "seeds", "folds", "predict", "world", "demo", "prepare"}


def output_values(reads: list[Path], command: str, i: dict) -> list[str]:
    """An output that is a file the command reads, a path under a file, and for a file a folder."""
    values = [*map(str, reads), str(i["config"] / "under")]
    return values if command in FOLDER_OUTPUTS else [*values, str(i["root"])]


def snapshot(root: Path) -> dict[str, object]:
    return {str(p): "dir" if p.is_dir() else (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def outcome(argv: list[str], capsys) -> str | None:
    """None when the command was refused in one line with exit 2, else what happened."""
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse: its usage, then one error line
        err = capsys.readouterr().err.strip().splitlines()
        ok = stop.code == 2 and err and ": error: argument " in err[-1] and "Traceback" not in "\n".join(err)
        return None if ok else f"exit {stop.code}: {err[-3:]}"
    except BaseException as error:  # noqa: BLE001 (a traceback is the failure reported)
        capsys.readouterr()
        return f"{type(error).__name__}: {str(error)[:200]}"
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("splitmatch: error: ")]
    if code == 2 and len(errors) == 1 and errors[0] == err[-1] and len(errors[0]) < 2200:
        return None
    return f"exit {code}: {err[-3:]}"


COMMANDS = [
    "train",
    "seeds",
    "folds",
    "pseudo-masks",
    "eval",
    "eval --episodes",
    "eval --predictions",
    "predict",
    "app",
    "export",
    "prepare",
    "convert-clip",
    "world",
    "toy-clip",
    "package-model",
    "demo",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_refuses_hostile_values_in_one_line_writing_nothing(command, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    baseline, reads = baselines(inputs, out)[command]
    parser = subparsers()[command.split()[0]]
    before = snapshot(inputs["root"])
    failures, tried = [], 0
    for action in parser._actions:
        if action.dest == "help" or action.nargs == 0:
            continue
        values = type_values(action)
        if action.dest in OUTPUTS or (command == "convert-clip" and action.dest == "dst"):
            values += output_values(reads, command.split()[0], inputs)
        for value in values:
            if command == "app" and action.type is nonempty_text and value.strip() and action.dest != "model":
                continue  # the app would start serving: only what its parser refuses is tried
            tried += 1
            problem = outcome(with_value(baseline, action, value), capsys)
            if problem is None and out.exists() and any(out.rglob("*")):
                problem = f"wrote {sorted(str(p) for p in out.rglob('*'))[:3]}"
                shutil.rmtree(out)
            if problem is not None:
                failures.append(f"{action.option_strings or action.dest} {value[:40]!r}: {problem}")
    assert tried >= 5 and not failures, "\n".join(failures)
    assert snapshot(inputs["root"]) == before, "an input was changed"
