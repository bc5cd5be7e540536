"""Names read from data are names, not paths: a split list, a cache or a predictions folder cannot
make splitmatch read or write outside its folders, and a long file name does not stop a batch
(splitmatch/data/names.py and every place that builds a path from data)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_predict
from PIL import Image

from splitmatch.cli import main
from splitmatch.data.folder import DatasetFolder, DatasetFormatError, write_sample, write_split
from splitmatch.data.names import NAME_BYTES, download_stem, output_stem, outside, printable, stem_problem
from splitmatch.pseudo.cache import PseudoMaskCache, PseudoMaskCacheError


def refused(capsys, args: list[str]) -> str:
    """Runs the CLI, expects exit 2 with one error line, returns it."""
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("splitmatch: error: "), lines
    return lines[0]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture
def layout(tiny_dataset, tmp_path):
    """The tiny dataset, a perfect predictions folder beside it, and a 'secret' outside both that
    every traversal below would reach (so that following the name would succeed, not fail)."""
    secret = np.zeros((64, 64), np.uint8)
    outside_dir = tmp_path / "outside"
    outside_dir.mkdir()
    Image.fromarray(secret).save(outside_dir / "secret.png")
    predictions = tmp_path / "pred"
    predictions.mkdir()
    for label in (tiny_dataset.root / "labels").glob("val_*.png"):
        shutil.copy(label, predictions / label.name)
    return tiny_dataset.root, predictions, outside_dir


HOSTILE_STEMS = [
    ("../../outside/secret", "'..' part"),
    ("/ABSOLUTE", "absolute path"),
    ("sub/../../../outside/secret", "'..' part"),
    ("..", "'..' part"),
    ("a//val_000", "empty part"),
    ("val_000/", "empty part"),
    ("..\\..\\outside\\secret", "backslash"),
    ("val_\x00000", "control character \\x00"),
    ("val_\x1b[2J000", "control character \\x1b"),
    ("val\t000", "control character \\t"),
    ("v" * 300, "longer than 250 bytes"),
]


@pytest.mark.parametrize("stem, problem", HOSTILE_STEMS)
def test_a_split_list_line_that_is_not_a_name_is_refused_with_its_line(layout, capsys, stem, problem):
    root, predictions, outside_dir = layout
    stem = str(outside_dir / "secret") if stem == "/ABSOLUTE" else stem
    (root / "splits" / "val.txt").write_text(f"val_000\n{stem}\nval_001\n")
    line = refused(capsys, ["eval", "--predictions", str(predictions), "--data-root", str(root), "--quiet"])
    assert "val.txt, line 2" in line and problem in line, line
    assert "\x1b" not in line and "\x00" not in line


@pytest.mark.parametrize("command", ["train", "pseudo-masks"])
def test_training_and_the_cache_refuse_a_stem_that_leaves_the_dataset(layout, tmp_path, capsys, command):
    root, _, outside_dir = layout
    (root / "splits" / "train.txt").write_text(f"train_000\n{outside_dir / 'secret'}\n")
    args = ["--preset", "tiny", "--set", f"data.root={root}", "--set", f"pseudo.cache_dir={tmp_path / 'cache'}"]
    before = snapshot(outside_dir)
    extra = ["--out", str(tmp_path / "run")] if command == "train" else []
    line = refused(capsys, [command, *args, *extra, "--quiet"])
    assert "train.txt, line 2" in line and "absolute path" in line
    assert snapshot(outside_dir) == before and not (tmp_path / "run" / "model.safetensors").exists()


def test_a_stem_may_name_a_file_in_a_sub_folder(layout, capsys):
    root, predictions, _ = layout
    for folder in (root / "images", root / "labels", predictions):
        (folder / "city").mkdir()
        shutil.move(folder / "val_001.png", folder / "city" / "val_001.png")
    (root / "splits" / "val.txt").write_bytes(b"\xef\xbb\xbfval_000\r\ncity/val_001\r\n\r\nval_002\n")
    assert DatasetFolder(root).stems("val") == ["val_000", "city/val_001", "val_002"]
    assert main(["eval", "--predictions", str(predictions), "--data-root", str(root), "--quiet"]) == 0
    assert "mIoU" in capsys.readouterr().out


@pytest.mark.parametrize("which", ["image", "label", "prediction", "split list"])
def test_a_file_that_links_outside_its_folder_is_refused(layout, capsys, which):
    root, predictions, outside_dir = layout
    link = {
        "image": root / "images" / "val_000.png",
        "label": root / "labels" / "val_000.png",
        "prediction": predictions / "val_000.png",
        "split list": root / "splits" / "val.txt",
    }[which]
    link.unlink()
    target = outside_dir / ("list.txt" if which == "split list" else "secret.png")
    if which == "split list":
        target.write_text("val_000\n")
    link.symlink_to(target)
    command = ["eval", "--predictions", str(predictions), "--data-root", str(root), "--quiet"]
    if which == "image":  # eval --predictions does not read images; the dataset does
        with pytest.raises(DatasetFormatError, match="outside"):
            DatasetFolder(root).samples("val")
        return
    line = refused(capsys, command)
    assert "outside" in line and str(link) in line, line


def test_a_linked_folder_is_followed(tiny_dataset, tmp_path):
    """The folder itself may be a link (images kept on another disk); its files are inside it."""
    elsewhere = tmp_path / "disk" / "images"
    shutil.move(tiny_dataset.root / "images", elsewhere)
    (tiny_dataset.root / "images").symlink_to(elsewhere, target_is_directory=True)
    samples = DatasetFolder(tiny_dataset.root).samples("val")
    assert len(samples) == 4 and samples[0].image_path.parent == tiny_dataset.root / "images"


@pytest.mark.parametrize("split", ["../../outside/list", "/etc/hostname", "a/b", "..", "val\x1b[2J"])
def test_a_split_name_is_a_name(layout, capsys, split):
    root, predictions, _ = layout
    line = refused(capsys, ["eval", "--predictions", str(predictions), "--data-root", str(root), "--split", split])
    assert "split name" in line and "\x1b" not in line


def test_the_cache_never_names_an_entry_outside_its_folder(tmp_path):
    cache = PseudoMaskCache(tmp_path / "cache", {"v": 1})
    for stem in ("../escape", "/tmp/escape", "a\x00b", ""):
        with pytest.raises(PseudoMaskCacheError, match="no pseudo-mask entry can be named"):
            cache.path(stem)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "cache" / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(PseudoMaskCacheError, match="outside the cache"):
        cache.save("link/x", np.zeros((1, 2, 2), np.uint8), np.zeros((1, 4), np.float32))
    assert list((tmp_path / "elsewhere").iterdir()) == []
    assert cache.path("city/frame_1") == tmp_path / "cache" / "city" / "frame_1.npz"


def test_writers_refuse_what_readers_would(tmp_path):
    image, label = np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)
    for stem in ("../x", "/x", "a\nb", " padded "):
        with pytest.raises(DatasetFormatError, match="cannot be written as a stem"):
            write_sample(tmp_path, stem, image, label)
    with pytest.raises(DatasetFormatError, match="split name"):
        write_split(tmp_path, "../train", ["a"])
    assert not any(tmp_path.iterdir())


def test_the_name_rules():
    assert stem_problem("2008_000123") is None and stem_problem("city/frame 1") is None
    assert stem_problem("é" * 125) is None and stem_problem("é" * 126) is not None  # 250 bytes of UTF-8
    assert all(stem_problem(s) for s in ("", ".", "a/./b", "a/", "\u2028", "x\udcff", 7))
    assert outside("/a/b", "/a/b/../c") and not outside("/a/b", "/a/b/c/d")
    assert printable("a\x1b[2Jb\x07", 20) == "a\\x1b[2Jb\\x07" and len(printable("x" * 1000, 50)) == 50


def test_long_output_names_are_shortened_deterministically():
    budget = NAME_BYTES - len("_overlay.png") - len("..") - 8 - len(".tmp")
    assert output_stem("n" * budget) == "n" * budget
    long_a, long_b = "n" * 240 + "a", "n" * 240 + "b"
    short_a, short_b = output_stem(long_a), output_stem(long_b)
    assert short_a != short_b and short_a == output_stem(long_a)
    assert all(len(s.encode()) <= budget for s in (short_a, short_b, output_stem("é" * 200)))
    assert download_stem("../../etc/passwd") == "passwd" and download_stem("C:\\Users\\me\\p.jpg") == "p"
    assert download_stem(".bashrc") == "bashrc" and download_stem("") == "image" and download_stem(None) == "image"


def test_a_long_file_name_does_not_stop_the_batch(untrained_checkpoint, tiny_dataset, tmp_path, capsys):
    """Names up to the file system's limit, and one that is not UTF-8, are all done; summary.json
    maps each shortened output back to its input; eval --predictions finds the shortened names."""
    folder = tmp_path / "in"
    folder.mkdir()
    source = tiny_dataset.root / "images" / "val_000.png"
    names = ["n" * 251 + ".png", "n" * 240 + "x.png", "short.png"]
    for name in names:
        shutil.copy(source, folder / name)
    with open(os.path.join(os.fsencode(folder), b"caf\xe9 \x1b[2J.png"), "wb") as handle:
        handle.write(source.read_bytes())
    out = tmp_path / "out"
    code, stdout, stderr = run_predict(capsys, untrained_checkpoint, out, [folder], "background,red", "--quiet")
    assert code == 0, stderr
    assert "\x1b" not in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["images"]) == 4 and summary["failed"] == []
    for entry in summary["images"]:
        assert (out / entry["labels"]).is_file() and (out / entry["overlay"]).is_file()
        assert len(Path(entry["labels"]).name.encode("utf-8", "surrogateescape")) <= NAME_BYTES - 14
    shortened = {entry["shortened_from"] for entry in summary["images"] if "shortened_from" in entry}
    assert shortened == {"n" * 251, "n" * 240 + "x"}


def test_eval_finds_predictions_under_shortened_names(tiny_dataset, tmp_path, capsys):
    long_stem = "v" * 245
    root = tiny_dataset.root
    for folder in ("images", "labels"):
        os.rename(root / folder / "val_000.png", root / folder / f"{long_stem}.png")
    stems = [long_stem] + [f"val_{i:03d}" for i in range(1, 4)]
    (root / "splits" / "val.txt").write_text("\n".join(stems) + "\n")
    predictions = tmp_path / "pred"
    predictions.mkdir()
    for stem in stems:  # named as predict names its outputs
        shutil.copy(root / "labels" / f"{stem}.png", predictions / f"{output_stem(stem)}_labels.png")
    assert main(["eval", "--predictions", str(predictions), "--data-root", str(root), "--quiet"]) == 0
    capsys.readouterr()
