"""Inputs whose cost is bounded by their size: YAML aliases and nesting, --set values, deep JSON,
long lists, images and label maps whose headers lie. Each is refused quickly, in one line that
shows at most a sketch of the value (splitmatch/config/bounded_yaml.py, config/errors.py,
data/classes.py, data/folder.py)."""

from __future__ import annotations

import json
import re
import shutil
import struct
import time
import zlib

import pytest
from command_lines import tiny_options, tiny_train_args

from splitmatch.cli import main
from splitmatch.config.bounded_yaml import MAX_DEPTH, YamlTooCostly, check_cost, load_bounded
from splitmatch.config.errors import SHOWN_CHARS, shown
from splitmatch.data.folder import DatasetFormatError
from splitmatch.prepare.readback import PIXEL_COUNTS_FILE, read_pixel_counts
from splitmatch.storage.files import InvalidJsonError, json_depth, parse_json


def refused(capsys, args: list[str], within_s: float = 20.0) -> str:
    started = time.monotonic()
    assert main(args) == 2
    assert time.monotonic() - started < within_s
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("splitmatch: error: ") and len(err) < 3000, lines
    return lines[0]


def laugh_entries(levels: int = 9) -> list[str]:
    """The "billion laughs": each level nine aliases of the one before, 9**(levels + 1) strings."""
    entries = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    return entries + [f"a{n}: &a{n} [" + ",".join([f"*a{n - 1}"] * 9) + "]" for n in range(1, levels + 1)]


def laughs(levels: int = 9) -> str:
    return "\n".join(laugh_entries(levels)) + "\n"


def laughs_flow() -> str:
    return "{" + ", ".join(laugh_entries()) + "}"


YAML_FILES = {
    "billion laughs (aliases expanding to 3.9 billion strings)": (laughs(), "aliases"),
    "billion laughs inside a field": ("train:\n  lr: " + laughs_flow() + "\n", "aliases"),
    "one 500 kB string aliased 40,000 times": (
        "train:\n  s: &s '" + "x" * 500_000 + "'\n  l: [" + ",".join(["*s"] * 40_000) + "]\n",
        "aliases",
    ),
    # libyaml stops at 1000 levels itself; the pure-Python parser would recurse: refused here at MAX_DEPTH.
    "3000 nested lists": ("train: " + "[" * 3000 + "]" * 3000 + "\n", f"deeper than {MAX_DEPTH}|nesting depth"),
    "3000 nested mappings": ("train: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", f"deeper than {MAX_DEPTH}"),
    "an alias inside the node it names": ("train:\n  lr: &a [*a]\n", "cycle"),
    "a 5000-digit integer": ("train:\n  iterations: " + "9" * 5000 + "\n", "cannot be read"),
    "a 100,000-digit hex integer": ("train:\n  iterations: 0x" + "f" * 100_000 + "\n", "iterations"),
    "a 2 MB file": ("# " + "x" * (2 << 20) + "\n", "1,048,576 bytes"),
    "a list of 200,000 layers": ("clip:\n  decoder_layers: [" + ",".join(["1"] * 200_000) + "]\n", "decoder_layers"),
    "a key a megabyte long": ("k" * 1_000_000 + ": 1\n", "c.yaml"),
    "a NUL in a string": ('name: "a\\0b"\n', r"'\\x00'"),
    "a lone surrogate in a string": ('name: "\\ud800"\n', r"'\\ud800'|invalid Unicode"),
    "a python tag": ("train: !!python/object/apply:os.system ['touch PWNED']\n", "not valid YAML"),
}


@pytest.mark.parametrize("text, message", YAML_FILES.values(), ids=list(YAML_FILES))
def test_config_files_cost_at_most_their_size(tmp_path, capsys, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(text)
    line = refused(capsys, ["train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")])
    assert re.search(message, line), line  # naming the file, or the key whose value it is
    assert not (tmp_path / "run").exists() and not (tmp_path / "PWNED").exists()


SET_VALUES = {
    "3000 nested lists": ("train.lr=" + "[" * 3000 + "]" * 3000, "deeper than|nesting depth"),
    "3000 nested mappings": ("train.lr=" + "{a: " * 3000 + "1" + "}" * 3000, "deeper than"),
    "billion laughs": ("train.lr=" + laughs_flow(), "aliases"),
    "a key of 3000 parts": (".".join(["train"] * 3000) + "=1", r"3000 parts; config keys have at most three \(data"),
    "a megabyte value": ("train.lr=" + "x" * 1_000_000, "train.lr must be a number, got 'xxx"),
    "a megabyte key": ("x" * 1_000_000 + "=1", "unknown config key 'xxx"),
    "a NUL by YAML escape": ('name="a\\0b"', r"'\\x00'"),
    "NaN": ("train.lr=.nan", "train.lr"),
    "a 5000-digit integer": ("train.iterations=" + "9" * 5000, "cannot be read"),
}


@pytest.mark.parametrize("item, message", SET_VALUES.values(), ids=list(SET_VALUES))
def test_set_values_cost_at_most_their_size(tmp_path, capsys, item, message):
    line = refused(capsys, ["train", "--preset", "tiny", "--set", item, "--out", str(tmp_path / "run")])
    assert re.search(message, line), line


def test_aliases_within_the_bound_keep_working(tmp_path):
    text = "defaults: &d {lr: 0.001, grad_clip: 1.0}\ntrain:\n  <<: *d\n  iterations: 5\n"
    assert load_bounded(text, "x")["train"] == {"lr": 0.001, "grad_clip": 1.0, "iterations": 5}
    check_cost(laughs(levels=4), "x")  # 9**5 = 59,049 strings: within the bound
    with pytest.raises(YamlTooCostly):
        check_cost(laughs(levels=6), "x")


def test_a_value_is_shown_as_a_bounded_sketch():
    nested: list = []
    for _ in range(100_000):
        nested = [nested]
    shared = ["x" * 10_000] * 10**6  # a million references to one string: 10 GB as text
    for value in (nested, shared, "y" * 10**7, {f"k{i}": i for i in range(10**5)}, int("f" * 10**5, 16)):
        started = time.monotonic()
        assert len(shown(value)) <= SHOWN_CHARS
        assert time.monotonic() - started < 0.5


JSON_BODIES = {
    "3000 nested lists": ("[" * 3000 + "]" * 3000, "nested 3000 levels"),
    "100,000 nested lists": ("[" * 100_000 + "]" * 100_000, "nested 100000 levels"),
    "a 100,000-digit number": ('{"classes": ["a"], "x": ' + "9" * 100_000 + "}", "not valid JSON"),
    "not UTF-8": (b'{"classes": ["\xff"]}', "not UTF-8"),
    "a name with an escape sequence": ('{"classes": ["background", "red\\u001b[2J"]}', "control character \\x1b"),
    "a name 10,000 characters long": ('{"classes": ["background", "' + "r" * 10_000 + '"]}', "at most 256"),
    "a dataset name that is a list": ('{"classes": ["background"], "dataset": [[[1]]]}', "'dataset' must be a short"),
}


@pytest.mark.parametrize("body, message", JSON_BODIES.values(), ids=list(JSON_BODIES))
@pytest.mark.parametrize("which", ["vocabulary", "classes.json"])
def test_class_files_and_vocabularies(tiny_dataset, tmp_path, capsys, body, message, which):
    predictions = tmp_path / "pred"
    shutil.copytree(tiny_dataset.root / "labels", predictions)
    path = tmp_path / "v.json" if which == "vocabulary" else tiny_dataset.root / "classes.json"
    path.write_bytes(body.encode() if isinstance(body, str) else body)
    args = ["eval", "--predictions", str(predictions), "--data-root", str(tiny_dataset.root), "--quiet"]
    line = refused(capsys, args + (["--vocabulary", str(path)] if which == "vocabulary" else []))
    assert path.name in line and message in line, line


def test_json_depth_is_counted_without_parsing():
    assert json_depth('{"a": [1, {"b": "[[[[\\"]]"}]}') == 3
    assert json_depth("[" * 10**6) == 10**6


def test_long_lists_cost_linear_time(tiny_dataset, tmp_path, capsys):
    """A duplicate in a split list of 300,000 lines, or among 65,535 class names, is found in
    linear time (both were quadratic: hours)."""
    root = tiny_dataset.root
    (root / "splits" / "val.txt").write_text("\n".join(f"s{i}" for i in range(300_000)) + "\ns5\n")
    line = refused(capsys, ["eval", "--predictions", str(tmp_path), "--data-root", str(root)], within_s=10)
    assert "names ['s5'] more than once" in line
    names = ["background", "red", "green", "blue", "yellow"] + [f"c{i}" for i in range(65_530)]
    names[-1] = "c0"
    (root / "classes.json").write_text(json.dumps({"classes": names, "unseen": ["yellow"]}))
    line = refused(capsys, ["eval", "--predictions", str(tmp_path), "--data-root", str(root)], within_s=10)
    assert "'c0' appears twice" in line


def png_declaring(width: int, height: int, colour: int = 0) -> bytes:
    """A valid PNG header declaring ``width x height`` in a few hundred bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("which", ["label", "prediction"])
def test_a_label_png_is_checked_against_the_pixel_limit_from_its_header(tiny_dataset, tmp_path, capsys, which):
    predictions = tmp_path / "pred"
    shutil.copytree(tiny_dataset.root / "labels", predictions)
    target = (tiny_dataset.root / "labels" if which == "label" else predictions) / "val_001.png"
    target.write_bytes(png_declaring(100_000, 100_000))
    args = ["eval", "--predictions", str(predictions), "--data-root", str(tiny_dataset.root), "--quiet"]
    line = refused(capsys, args)
    assert str(target) in line and "too large to decode safely" in line, line


def test_training_refuses_a_lying_label_header(tiny_dataset, tmp_path, capsys):
    (tiny_dataset.root / "labels" / "train_001.png").write_bytes(png_declaring(60_000, 60_000))
    args = tiny_train_args(tiny_dataset.root, tmp_path / "run", f"pseudo.cache_dir={tmp_path / 'cache'}", iterations=1)
    line = refused(capsys, args, within_s=120)
    assert "train_001.png is too large to decode safely" in line, line


ARCHITECTURES = {
    "a width of a billion": (
        '{"embed_dim": 32, "vision_cfg": {"layers": 3, "width": 1000000000, "patch_size": 8}, "text_cfg": {}}',
        "vision_cfg.width must be an integer in 1..16,384",
    ),
    "3000 nested lists": ('{"embed_dim": ' + "[" * 3000 + "]" * 3000 + "}", "not valid JSON"),
    "5 MB": ('{"pad": "' + "x" * (5 << 20) + '"}', "over 1,048,576 bytes"),
}


@pytest.mark.parametrize("body, message", ARCHITECTURES.values(), ids=list(ARCHITECTURES))
def test_architecture_files_are_bounded(tmp_path, capsys, body, message):
    (tmp_path / "arch.json").write_text(body)
    line = refused(
        capsys,
        ["train", "--preset", "tiny", "--set", f"clip.arch={tmp_path / 'arch.json'}", "--out", str(tmp_path / "run")],
    )
    assert "arch.json" in line and message in line, line


DEEP_JSON = "[" * 100_000 + "]" * 100_000


def test_every_json_reader_of_a_file_refuses_deep_nesting_in_one_line(tiny_dataset, tmp_path, capsys):
    """Fold schemes, template files and prepare's pixel counts parse through storage.parse_json,
    as class files, architectures, checkpoint records and ONNX metadata do: 100,000 nested lists
    (past Python's recursion limit) are one line naming the file, not a RecursionError."""
    (tiny_dataset.root / "folds.json").write_text(DEEP_JSON)
    line = refused(
        capsys, ["folds", *tiny_options(tiny_dataset.root, iterations=None), "--out", str(tmp_path / "folds")]
    )
    assert "folds.json is malformed" in line and "nested deeper" in line, line
    templates = tmp_path / "templates.json"
    templates.write_text(DEEP_JSON)
    args = tiny_train_args(
        tiny_dataset.root, tmp_path / "run", f"clip.templates={templates}", iterations=None, quiet=False
    )
    line = refused(capsys, args)
    assert "templates.json cannot be read as JSON" in line and "nested deeper" in line, line
    (tmp_path / PIXEL_COUNTS_FILE).write_text(DEEP_JSON)
    with pytest.raises(DatasetFormatError, match=r"class_pixels\.json is damaged .*nested deeper"):
        read_pixel_counts(tmp_path)
    for text in (DEEP_JSON, "9" * 100_000, "{"):
        with pytest.raises(InvalidJsonError):
            parse_json(text)
