"""`splitmatch predict` on many inputs: nothing overwritten, bad images named, 16-bit labels, early errors."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from conftest import run_predict
from PIL import Image

from splitmatch.cli import main
from splitmatch.data.classes import ClassSplit
from splitmatch.data.folder import read_label, write_sample, write_split
from splitmatch.predict.predictor import Predictor


@pytest.fixture
def checkpoint(untrained_checkpoint):
    return untrained_checkpoint


def predict(capsys, checkpoint, out, images, classes="red,green,sky", *extra) -> tuple[int, str, str]:
    return run_predict(capsys, checkpoint, out, images, classes, *extra)


def test_inputs_of_one_name_in_different_folders_are_all_kept(tiny_dataset, checkpoint, tmp_path, capsys):
    source = tiny_dataset.root / "images" / "val_000.png"
    for folder, other in (("a", "val_001.png"), ("b/deep", "val_002.png")):
        (tmp_path / "in" / folder).mkdir(parents=True)
        shutil.copy(tiny_dataset.root / "images" / other, tmp_path / "in" / folder / "photo.png")
    shutil.copy(source, tmp_path / "in" / "photo.png")
    images = [
        tmp_path / "in" / "a" / "photo.png",
        tmp_path / "in" / "b" / "deep" / "photo.png",
        tmp_path / "in" / "photo.png",
        tmp_path / "in" / "a" / "photo.png",
    ]  # (one given twice)
    code, out, _ = predict(capsys, checkpoint, tmp_path / "out", images)
    assert code == 0 and out.count("photo.png:") == 3
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.png"))
    assert written == sorted(f"{d}photo_{kind}.png" for d in ("a/", "b/deep/", "") for kind in ("labels", "overlay"))
    sizes = {p: Image.open(tmp_path / "out" / p).size for p in written if p.endswith("labels.png")}
    assert sizes["photo_labels.png"] == Image.open(source).size  # each output is its own input's


def test_inputs_that_would_share_outputs_are_refused_before_any_work(tiny_dataset, checkpoint, tmp_path, capsys):
    png = tiny_dataset.root / "images" / "val_000.png"
    jpg = tiny_dataset.root / "images" / "val_000.jpg"
    Image.open(png).convert("RGB").save(jpg)
    code, _, err = predict(capsys, checkpoint, tmp_path / "out", [png, jpg])
    assert code == 2 and "val_000.png" in err and "val_000.jpg" in err and "separate --out" in err
    assert not (tmp_path / "out").exists()


def test_unreadable_images_are_named_at_the_end_and_the_others_done(tiny_dataset, checkpoint, tmp_path, capsys):
    good = [tiny_dataset.root / "images" / f"val_00{i}.png" for i in range(3)]
    broken = tmp_path / "broken.png"
    broken.write_bytes(good[0].read_bytes()[:80])
    missing = tmp_path / "missing.png"
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    images = [broken, good[0], missing, good[1], notes, good[2]]
    code, out, err = predict(capsys, checkpoint, tmp_path / "out", images)
    assert code == 2
    written = sorted(p.name for p in (tmp_path / "out").rglob("*_labels.png"))
    assert written == [f"val_00{i}_labels.png" for i in range(3)] and out.count(".png: ") == 3
    final = err.strip().splitlines()
    assert final[-1] == f"splitmatch: error: 3 of 6 images failed; the other 3 were written to {tmp_path / 'out'}"
    named = "\n".join(final[-4:-1])
    assert "broken.png is corrupt or truncated" in named and "missing.png does not exist" in named
    assert "notes.txt is corrupt or truncated" in named
    failed = json.loads((tmp_path / "out" / "summary.json").read_text())["failed"]
    assert [entry["input"] for entry in failed] == [str(broken), str(missing), str(notes)]


def test_300_names_give_16_bit_label_maps_that_eval_reads(tiny_dataset, checkpoint, tmp_path, capsys, monkeypatch):
    names = [f"thing {i}" for i in range(300)]
    data = tmp_path / "data300"
    rng = np.random.default_rng(0)
    truth = np.full((40, 56), 290, np.uint16)
    truth[:, :20] = 7
    write_sample(data, "v0", rng.integers(0, 256, (40, 56, 3), dtype=np.uint8), truth)
    write_split(data, "val", ["v0"])
    ClassSplit(tuple(names), ("thing 290",), dataset="three hundred").write(data / "classes.json")

    image = data / "images" / "v0.png"
    code, _, err = predict(capsys, checkpoint, tmp_path / "real", [image], ",".join(names))
    assert code == 0, err
    written = Image.open(tmp_path / "real" / "v0_labels.png")
    assert written.mode.startswith("I;16")
    expected = Predictor.from_checkpoint(checkpoint).predict(np.asarray(Image.open(image).convert("RGB")), names)
    assert np.array_equal(read_label(tmp_path / "real" / "v0_labels.png", 300), expected)

    # Ids above 255 survive the round trip: predict writes them, eval --predictions counts them.
    monkeypatch.setattr(
        Predictor, "predict", lambda self, images, names, batch_size=1, none=None: [truth.copy() for _ in images]
    )
    assert predict(capsys, checkpoint, tmp_path / "forced", [image], ",".join(names))[0] == 0
    assert (
        main(
            [
                "eval",
                "--predictions",
                str(tmp_path / "forced"),
                "--data-root",
                str(data),
                "--json",
                str(tmp_path / "m.json"),
            ]
        )
        == 0
    )  # (default split: val)
    per_class = json.loads((tmp_path / "m.json").read_text())["per_class_iou"]
    assert per_class["thing 290"] == 100.0 and per_class["thing 7"] == 100.0 and per_class["thing 34"] is None


@pytest.mark.parametrize(
    "device, message",
    [
        ("cuda:7", "device 'cuda:7' asked for, but"),
        ("foo", "device 'foo' is not a device name"),
        ("mps", "device 'mps' is not supported"),
    ],
)
def test_unknown_or_absent_device(tiny_dataset, checkpoint, tmp_path, capsys, device, message):
    if device.startswith("cuda") and __import__("torch").cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    image = tiny_dataset.root / "images" / "val_000.png"
    code, _, err = predict(capsys, checkpoint, tmp_path / "out", [image], "a,b", "--device", device)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    code = main(["eval", "--checkpoint", str(checkpoint), "--device", device])
    assert code == 2 and message in capsys.readouterr().err


def test_destinations_are_checked_before_the_work(tiny_dataset, checkpoint, tmp_path, capsys, monkeypatch):
    import splitmatch.predict.predictor as predictor_module

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the destination was checked")

    monkeypatch.setattr(predictor_module, "load_segmentor", never)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    image = tiny_dataset.root / "images" / "val_000.png"
    code, _, err = predict(capsys, checkpoint, blocker / "out", [image])
    assert code == 2 and "Not a directory" in err and "file.txt" in err
    code, _, err = predict(capsys, checkpoint, blocker, [image])
    assert code == 2 and "exists and is not a folder" in err and "file.txt" in err
    for target in (blocker / "m.json", tmp_path):  # under a file; a folder
        assert main(["eval", "--checkpoint", str(checkpoint), "--json", str(target)]) == 2
        assert str(target.parent if target.parent == blocker else target) in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders (see test_os_errors)")
def test_read_only_output_folder(tiny_dataset, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        code, _, err = predict(capsys, checkpoint, out, [tiny_dataset.root / "images" / "val_000.png"])
    finally:
        out.chmod(0o755)
    assert code == 2 and "Permission denied" in err and str(out) in err
