"""Errors that escaped as tracebacks go through the one error path: one line naming the file or
value, exit 2 (splitmatch/cli.py, world/generator.py, config/architectures.py, data/folder.py)."""

from __future__ import annotations

import shutil

import pytest

from splitmatch.cli import main
from splitmatch.world.generator import WorldSpec, generate_world

SMALL_WORLD = WorldSpec(num_train=2, num_val=1, num_captions=0)


def refused(capsys, args: list[str]) -> str:
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("splitmatch: error: "), lines
    return lines[0]


def argparse_refused(capsys, args: list[str]) -> str:
    """argparse's refusal: exit 2, its usage, then one ``error: argument ...`` line."""
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("usage:") and ": error: argument " in lines[-1], lines
    return lines[-1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_world(tmp_path_factory.mktemp("world") / "w", seed=0, spec=SMALL_WORLD, progress=False).root


def test_a_world_of_another_seed(world, tmp_path, capsys):
    copy = shutil.copytree(world, tmp_path / "w")
    line = refused(capsys, ["world", "--out", str(copy), "--seed", "1", "--quiet"])
    assert "holds a different world" in line and "seed: 0 there, 1 asked" in line, line


def test_a_folder_that_is_not_a_world(tiny_dataset, capsys):
    line = refused(capsys, ["world", "--out", str(tiny_dataset.root), "--quiet"])
    assert "already holds a dataset" in line and "world.json" in line


@pytest.mark.parametrize(
    "record, message",
    [
        (b"{", "not a world's record"),
        (b"\xff\xfe", "not a world's record"),
        (b"[1]", "different world"),
        (b"[" * 100_000 + b"]" * 100_000, "not a world's record"),
        (b'{"seed": "' + b"x" * 10**6 + b'"}', "..."),
    ],
)
def test_a_damaged_world_record(world, tmp_path, capsys, record, message):
    copy = shutil.copytree(world, tmp_path / "w")
    (copy / "world.json").write_bytes(record)
    line = refused(capsys, ["world", "--out", str(copy), "--quiet"])
    assert message in line and len(line) < 2000, line


def test_demo_into_a_folder_whose_world_is_another_dataset(tiny_dataset, tmp_path, capsys):
    shutil.copytree(tiny_dataset.root, tmp_path / "demo" / "world")
    line = refused(capsys, ["demo", "--out", str(tmp_path / "demo"), "--quick", "--quiet"])
    assert "world" in line and "already holds a dataset" in line


def test_split_and_class_lists_that_are_not_utf8(tiny_dataset, tmp_path, capsys):
    root = tiny_dataset.root
    (root / "splits" / "val.txt").write_bytes(b"val_000\n\xff\xfeval_001\n")
    line = refused(capsys, ["eval", "--predictions", str(tmp_path), "--data-root", str(root)])
    assert "val.txt is not UTF-8 text (line 2: byte 0xff)" in line, line
    (root / "classes.json").write_bytes(b'{"classes": ["\xe9"]}')
    line = refused(capsys, ["eval", "--predictions", str(tmp_path), "--data-root", str(root)])
    assert "classes.json is not UTF-8 text" in line, line


ARCHITECTURES = {
    "a list": ("[1, 2]", "must hold a JSON object"),
    "no text_cfg": ('{"embed_dim": 32, "vision_cfg": {"layers": 3, "width": 32, "patch_size": 8}}', "lacks text_cfg"),
    "vision_cfg a list": ('{"embed_dim": 32, "vision_cfg": [1], "text_cfg": {}}', "vision_cfg must be a JSON object"),
    "a width that is text": (
        '{"embed_dim": 32, "vision_cfg": {"layers": 3, "width": "x", "patch_size": 8}, "text_cfg": {}}',
        "vision_cfg.width must be an integer",
    ),
    "an unknown key": (
        '{"embed_dim": 32, "vision_cfg": {"layers": 3, "wdth": 32, "patch_size": 8}, "text_cfg": {}}',
        "keys open_clip does not know: ['wdth']",
    ),
    "not UTF-8": (b'{"embed_dim": 32, "vision_cfg": {"\xff": 1}}', "not UTF-8 text"),
    "not JSON": ("embed_dim = 32", "not valid JSON"),
}


@pytest.mark.parametrize("body, message", ARCHITECTURES.values(), ids=list(ARCHITECTURES))
def test_architecture_files(tmp_path, capsys, body, message):
    (tmp_path / "arch.json").write_bytes(body.encode() if isinstance(body, str) else body)
    line = refused(
        capsys,
        ["train", "--preset", "tiny", "--set", f"clip.arch={tmp_path / 'arch.json'}", "--out", str(tmp_path / "run")],
    )
    assert "arch.json" in line and message in line, line


def test_a_shipped_architecture_is_named_not_reached_by_a_path(tmp_path, capsys):
    line = refused(
        capsys, ["train", "--preset", "tiny", "--set", "clip.arch=../clip/tiny-test", "--out", str(tmp_path / "run")]
    )
    assert "unknown CLIP architecture '../clip/tiny-test'" in line


@pytest.mark.parametrize(
    "args, message",
    [
        (["app", "--port", "70000"], "--port: must be a port number in 1..65535, got 70000"),
        (["app", "--port", "0"], "--port: must be a port number in 1..65535"),
        (["app", "--port", "http"], "--port: must be a port number in 1..65535, got 'http'"),
        (["app", "--max-megapixels", "nan"], "--max-megapixels: must be a finite number, got nan"),
        (["app", "--max-megapixels", "inf"], "--max-megapixels: must be a finite number, got inf"),
        (["app", "--max-megapixels", "0"], "--max-megapixels: must be more than 0"),
        (["app", "--max-megapixels", "1e9"], "at most 178.957"),
        (["world", "--out", "w", "--seed", "-1"], "--seed: must be an integer in 0..2**63-1, got -1"),
        (["toy-clip", "--world", "w", "--out", "o.safetensors", "--seed", str(2**70)], "--seed: must be an integer"),
        (["demo", "--seed", "x"], "--seed: must be an integer in 0..2**63-1, got 'x'"),
        (["eval", "--max-images", "0"], "--max-images: must be a positive integer, got 0"),
    ],
)
def test_out_of_range_options_are_refused_by_the_parser(capsys, args, message):
    assert message in argparse_refused(capsys, args)


def test_a_class_name_the_terminal_would_obey(untrained_checkpoint, tiny_dataset, tmp_path, capsys):
    image = tiny_dataset.root / "images" / "val_000.png"
    for names in ("background,red\x1b]0;pwned\x07", "a,b\udcff"):
        line = refused(
            capsys,
            [
                "predict",
                "--checkpoint",
                str(untrained_checkpoint),
                "--classes",
                names,
                "--out",
                str(tmp_path / "out"),
                str(image),
            ],
        )
        assert "control character" in line and "\x1b" not in line and "\udcff" not in line, line


def test_an_error_line_is_bounded_and_shows_no_control_characters(capsys, monkeypatch):
    from splitmatch.commands import world
    from splitmatch.commands.common import UsageError

    def noisy(args):
        raise UsageError("bad \x1b[2J value " + "x" * 100_000)

    monkeypatch.setattr(world, "cmd_presets", noisy)
    line = refused(capsys, ["presets"])
    assert "\x1b" not in line and "\\x1b[2J" in line and len(line) <= 2000 + len("splitmatch: error: ")


@pytest.mark.parametrize(
    "record",
    ["[" * 100_000 + "]" * 100_000, "[1, 2]", '{"format": ' + "9" * 5000 + "}", "not json"],
    ids=["nested 100,000 deep", "a list", "a 5000-digit number", "not JSON"],
)
def test_a_checkpoint_record_from_elsewhere(untrained_checkpoint, tiny_dataset, tmp_path, capsys, record):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"splitmatch": record})
    line = refused(
        capsys,
        [
            "predict",
            "--checkpoint",
            str(path),
            "--classes",
            "a,b",
            "--out",
            str(tmp_path / "o"),
            str(tiny_dataset.root / "images" / "val_000.png"),
        ],
    )
    assert str(path) in line and "damaged record" in line and len(line) < 600, line
