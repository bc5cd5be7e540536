"""`splitmatch predict` over folders: found recursively, mirrored in --out, summary.json, a progress
bar, bad folders named; predicting a dataset's images/ folder gives what `eval --predictions` scores."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from command_lines import predict_args
from conftest import run_predict
from PIL import Image

from splitmatch.cli import main
from splitmatch.data.folder import read_label


@pytest.fixture
def checkpoint(untrained_checkpoint):
    return untrained_checkpoint


def predict(capsys, checkpoint, out, paths, classes="background,red,green,sky", *extra) -> tuple[int, str, str]:
    return run_predict(capsys, checkpoint, out, paths, classes, *extra)


@pytest.fixture
def photos(tiny_dataset, tmp_path):
    """A folder of images as people keep them: nested, mixed suffixes, hidden files, other files."""
    source = tiny_dataset.root / "images"
    root = tmp_path / "photos"
    (root / "trip" / "day 1").mkdir(parents=True)
    (root / ".thumbnails").mkdir()
    shutil.copy(source / "val_000.png", root / "a.png")
    Image.open(source / "val_001.png").save(root / "b.JPG", quality=95)
    Image.open(source / "val_002.png").save(root / "trip" / "day 1" / "c.jpeg", quality=95)
    shutil.copy(source / "val_003.png", root / "trip" / "d.PNG")
    shutil.copy(source / "val_000.png", root / ".hidden.png")
    shutil.copy(source / "val_000.png", root / ".thumbnails" / "e.png")
    (root / "notes.txt").write_text("not an image\n")
    (root / "empty").mkdir()
    return root


def test_folders_are_searched_recursively_and_mirrored_with_a_summary(checkpoint, photos, capsys):
    out = photos / "results"  # inside the folder given: never read as input
    code, stdout, err = predict(capsys, checkpoint, out, [photos])
    assert code == 0, err
    assert "predict" in err and "image" in err  # the progress bar
    expected = ["a", "b", "trip/d", "trip/day 1/c"]  # sorted walk: a folder's files, then its folders
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted(
        [f"{stem}_{kind}.png" for stem in expected for kind in ("labels", "overlay")] + ["summary.json"]
    )
    assert sum(line.startswith(f"{photos}/") for line in stdout.splitlines()) == 4  # a line per image
    assert "4 images: label maps, overlays and summary.json" in stdout

    summary = json.loads((out / "summary.json").read_text())
    assert summary["classes"] == ["background", "red", "green", "sky"] and summary["synonyms"] == {}
    assert summary["checkpoint"] == str(checkpoint) and summary["trained_on"] == "tiny"
    assert summary["device"] == "cpu" and summary["settings"]["mode"] == "whole" and summary["failed"] == []
    assert [entry["labels"] for entry in summary["images"]] == [f"{stem}_labels.png" for stem in expected]
    for entry in summary["images"]:
        labels = read_label(out / entry["labels"], 4)
        image = Image.open(entry["input"])
        assert (entry["width"], entry["height"]) == image.size == labels.shape[::-1]
        counts = np.bincount(labels.ravel(), minlength=4)
        present = {
            name: round(100 * counts[i] / labels.size, 2) for i, name in enumerate(summary["classes"]) if counts[i]
        }
        shares = list(entry["classes"].values())
        assert entry["classes"] == present and shares == sorted(shares, reverse=True)  # largest first
        assert entry["seconds"] > 0

    # Predicting again into the same --out: the earlier results are not taken for images.
    code, _, err = predict(capsys, checkpoint, out, [photos], "background,red", "--quiet")
    assert code == 0 and err == ""  # --quiet: no progress bar
    assert len(json.loads((out / "summary.json").read_text())["images"]) == 4


def test_folders_and_files_together_keep_their_structure(checkpoint, photos, tmp_path, capsys):
    single = tmp_path / "single.png"
    shutil.copy(photos / "a.png", single)
    code, _, err = predict(capsys, checkpoint, tmp_path / "out", [photos / "trip", single, photos / "trip" / "d.PNG"])
    assert code == 0, err
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*_labels.png"))
    assert written == ["photos/trip/d_labels.png", "photos/trip/day 1/c_labels.png", "single_labels.png"]


@pytest.mark.parametrize("case", ["empty", "hidden and other files only", "the output folder"])
def test_a_folder_that_cannot_be_used_is_one_line(checkpoint, photos, tmp_path, capsys, case):
    folder = photos / "empty"
    out = tmp_path / "out"
    if case == "hidden and other files only":
        shutil.copy(photos / "a.png", folder / ".a.png")
        (folder / "readme.md").write_text("x\n")
    if case == "the output folder":
        folder, out = photos, photos
    code, stdout, err = predict(capsys, checkpoint, out, [photos / "a.png", folder])
    assert code == 2 and len(err.strip().splitlines()) == 1 and str(folder) in err
    assert ("holds no images" in err) if case != "the output folder" else ("is also the --out folder" in err)
    assert stdout == "" and not (tmp_path / "out").exists()  # refused before the model is loaded


def test_predicting_a_dataset_folder_gives_what_eval_scores(checkpoint, tiny_dataset, tmp_path, capsys):
    classes = ",".join(tiny_dataset.classes.names)  # typed in the dataset's order: label ids agree
    code, _, err = predict(capsys, checkpoint, tmp_path / "out", [tiny_dataset.root / "images"], classes, "--quiet")
    assert code == 0, err
    assert (tmp_path / "out" / "train_000_labels.png").is_file()  # every split's images, flat as in images/
    from_files, from_model = tmp_path / "files.json", tmp_path / "model.json"
    assert (
        main(
            [
                "eval",
                "--predictions",
                str(tmp_path / "out"),
                "--data-root",
                str(tiny_dataset.root),
                "--json",
                str(from_files),
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(checkpoint),
                "--data-root",
                str(tiny_dataset.root),
                "--json",
                str(from_model),
                "--quiet",
            ]
        )
        == 0
    )
    scored, expected = json.loads(from_files.read_text()), json.loads(from_model.read_text())
    assert scored["per_class_iou"] == expected["per_class_iou"]
    assert scored["miou"] == expected["miou"] and scored["miou_unseen"] == expected["miou_unseen"]


def test_a_folder_predicted_in_batches_gives_the_labels_of_one_by_one(tmp_path, untrained_checkpoint, tiny_dataset):
    from splitmatch.cli import main

    images = tiny_dataset.root / "images"
    runs = {}
    for size in (1, 3):
        out = tmp_path / f"batch{size}"
        batched = ["--batch-size", str(size), "--quiet", str(images)]
        assert main(predict_args(untrained_checkpoint, "background,red,green", out, *batched)) == 0
        runs[size] = {p.name: p.read_bytes() for p in sorted(out.glob("*_labels.png"))}
    assert len(runs[1]) == 12 and runs[1] == runs[3]
