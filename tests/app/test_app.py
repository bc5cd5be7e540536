"""The app's logic without a browser: one request in, figure, label map, areas and time out;
every bad input answered with a message fit for the page."""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import sys
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from splitmatch.app.examples import example_indices, write_examples
from splitmatch.app.page import RESULT_LIFETIME_S, _prune
from splitmatch.app.segment import DISPLAY_LONG_SIDE, AppError, Segmenter, read_upload
from splitmatch.cli import main
from splitmatch.data.folder import read_image, read_label
from splitmatch.predict.predictor import Predictor
from splitmatch.visualize import legend, palette
from splitmatch.world.generator import DEFAULT_UNSEEN, WorldSpec, generate_world


@pytest.fixture(scope="module")
def segmenter(tiny_checkpoint) -> Segmenter:
    return Segmenter.from_checkpoint(tiny_checkpoint)


@pytest.fixture
def upload(tmp_path):
    """A 72x90 image file with a red rectangle."""
    pixels = np.random.default_rng(1).integers(90, 140, (72, 90, 3), dtype=np.uint8)
    pixels[10:40, 20:60] = (220, 40, 40)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


def test_result_holds_the_models_labels_the_legend_areas_and_time(segmenter, tiny_checkpoint, upload):
    names = ["background", "crimson square", "lawn"]
    result = segmenter.segment(str(upload), "background, crimson square ,lawn", seen_calibration=0.0, mode="whole")
    image = read_image(upload)
    expected = Predictor.from_checkpoint(tiny_checkpoint, mode="whole", seen_calibration=0.0).predict(image, names)
    assert result.names == tuple(names)
    assert np.array_equal(result.labels, expected) and result.labels.dtype == np.uint8

    factor = DISPLAY_LONG_SIDE // 90  # a small image is enlarged for display
    key = legend(names, palette(3), result.figure.shape[1])
    assert result.figure.shape == (72 * factor + key.shape[0], max(90 * factor, 240), 3)
    assert np.array_equal(result.figure[72 * factor :], key)

    areas = result.area_percent()
    assert [name for name, _ in areas] == sorted(names, key=lambda n: -np.mean(expected == names.index(n)))
    assert sum(share for _, share in areas) == pytest.approx(100.0, abs=0.05)
    assert result.seconds > 0 and "whole image" in result.summary() and "90x72 px" in result.summary()

    png = Image.open(io.BytesIO(result.label_png()))
    assert png.mode == "P" and json.loads(png.info["classes"]) == names
    assert np.array_equal(np.asarray(png), expected)
    path = upload.parent / "labels.png"
    path.write_bytes(result.label_png())
    assert np.array_equal(read_label(path, len(names), image.shape[:2]), expected)  # what `eval` reads


def test_settings_reach_the_model(segmenter, upload):
    default = segmenter.segment(str(upload), "background, red, yellow")
    assert (default.mode, default.seen_calibration) == ("whole", 0.0)  # the tiny preset's
    slide = segmenter.segment(str(upload), "background, red, yellow", mode="slide")
    assert slide.mode == "slide" and "sliding window" in slide.summary()
    # All of a seen class's normalised score taken off: only the name never trained on is left.
    calibrated = segmenter.segment(str(upload), "background, red, yellow", seen_calibration=1.0)
    assert calibrated.seen_calibration == 1.0 and (calibrated.labels == 2).all()
    assert segmenter.predictor.config.seen_calibration == 0.0  # the loaded model's settings stay


def test_defaults_come_from_the_checkpoint(segmenter):
    assert segmenter.default_class_text == "background, red, green, blue, yellow"
    assert segmenter.seen_classes == ["background", "red", "green", "blue"]


@pytest.mark.parametrize(
    "names, message",
    [
        ("", "no class names"),
        ("  ", "no class names"),
        ("cat, dog, cat", "appears twice"),
        ("cat,,dog", "empty name"),
        (", ".join(f"c{i}" for i in range(65536)), "at most 65535"),
    ],
)
def test_bad_class_names(segmenter, upload, names, message):
    with pytest.raises(AppError, match=message):
        segmenter.segment(str(upload), names)


def test_more_than_255_names_give_a_16_bit_label_map_with_the_names(segmenter, upload):
    names = ["background"] + [f"thing {i}" for i in range(299)]  # a COCO-Stuff- or ADE-sized vocabulary
    result = segmenter.segment(str(upload), ", ".join(names), mode="whole")
    assert result.labels.dtype == np.uint16 and result.names == tuple(names)
    png = Image.open(io.BytesIO(result.label_png()))
    assert png.mode.startswith("I") and np.array_equal(np.asarray(png), result.labels)
    assert json.loads(png.info["classes"]) == names
    assert sum(percent for _, percent in result.area_percent()) == pytest.approx(100, abs=0.1)


def test_bad_settings(segmenter, upload):
    with pytest.raises(AppError, match="inference mode"):
        segmenter.segment(str(upload), "a, b", mode="tiles")
    for amount in (1.5, -0.1, "much"):
        with pytest.raises(AppError, match="seen-class calibration"):
            segmenter.segment(str(upload), "a, b", seen_calibration=amount)


def test_bad_images_are_named_without_server_paths(segmenter, tmp_path, upload):
    text = tmp_path / "notes.png"
    text.write_text("not an image\n")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(upload.read_bytes()[:200])
    cases = [(None, "no image"), (str(text), "notes.png is corrupt"), (str(truncated), "cut.png is corrupt")]
    cases.append((str(tmp_path / "gone.png"), "gone.png does not exist"))
    for image, message in cases:
        with pytest.raises(AppError, match=message) as caught:
            segmenter.segment(image, "a, b")
        assert str(tmp_path) not in str(caught.value)
    small = Segmenter(segmenter.predictor, segmenter.model_classes, max_pixels=5000)
    with pytest.raises(AppError, match=r"photo.png is 90x72 = 6,480 pixels, more than the 5,000"):
        small.segment(str(upload), "a, b")
    with pytest.raises(AppError, match="90x72 px"):
        small.segment(read_image(upload), "a, b")
    with pytest.raises(AppError, match="RGB uint8"):
        segmenter.segment(np.zeros((8, 8), np.uint8), "a, b")


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width x height`` pixels but holds almost no data: opens, never decodes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("width, height, message", [(5000, 5000, "5000x5000"), (20000, 15000, "300000000 pixels")])
def test_enormous_image_is_refused_from_its_header(tmp_path, width, height, message):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header(width, height))
    with pytest.raises(AppError, match=message):
        read_upload(path)


def test_upload_is_turned_upright_by_its_exif_orientation(tmp_path):
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    Image.new("RGB", (40, 30), (200, 10, 10)).save(path, exif=exif)
    assert read_upload(path).shape == (40, 30, 3)


def test_examples_are_the_worlds_validation_images(tmp_path):
    indices = example_indices()
    world = generate_world(
        tmp_path / "world", spec=WorldSpec(num_train=0, num_val=max(indices) + 1, num_captions=0), progress=False
    )
    unseen = world.classes.unseen_ids
    assert set(world.classes.unseen) == set(DEFAULT_UNSEEN)
    for index, path in zip(indices, write_examples(tmp_path / "examples")):
        stem = f"val_{index:06d}"
        assert path.name == f"world_{stem}.png"
        assert np.array_equal(read_image(path), read_image(world.root / "images" / f"{stem}.png"))
        present = set(np.unique(read_label(world.root / "labels" / f"{stem}.png", 13)).tolist()) - {0}
        assert len(present) >= 2 and present & set(unseen)


@pytest.mark.slow  # imports Gradio and builds the page before it finds the port taken
def test_cli_names_a_port_it_cannot_take(tiny_checkpoint, capsys):
    pytest.importorskip("gradio", reason="the app extra is not installed: pip install -e '.[app]'")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["app", "--checkpoint", str(tiny_checkpoint), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_old_result_files_are_pruned(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    for folder in (old, new):
        folder.mkdir()
        (folder / "x_labels.png").write_bytes(b"png")
    os.utime(old, (time.time() - 700, time.time() - 700))
    _prune(tmp_path, RESULT_LIFETIME_S)
    assert not old.exists() and (new / "x_labels.png").is_file()


def test_cli_says_how_to_install_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    assert main(["app", "--checkpoint", "model.safetensors"]) == 2
    assert "pip install -e '.[app]'" in capsys.readouterr().err


def test_cli_serves_the_packaged_world_model_without_a_checkpoint(monkeypatch, capsys, tmp_path):
    import splitmatch.app.page

    served = []
    monkeypatch.setattr(splitmatch.app.page, "require_gradio", lambda: None)
    monkeypatch.setattr(splitmatch.app.page, "serve", lambda checkpoint, *args: served.append(checkpoint))
    assert main(["app"]) == 0 and served == ["packaged:world-model"]
    assert "model: packaged:world-model, a model of splitmatch's built-in world" in capsys.readouterr().out
    monkeypatch.undo()
    monkeypatch.setattr(splitmatch.app.page, "require_gradio", lambda: None)
    assert main(["app", "--checkpoint", str(tmp_path / "missing.safetensors")]) == 2
    assert "missing.safetensors does not exist" in capsys.readouterr().err


def test_the_packaged_world_model_behind_the_page(tmp_path):
    from splitmatch.app.page import _about

    segmenter = Segmenter.from_checkpoint("packaged:world-model")
    about = _about(segmenter, "packaged:world-model")
    assert "Model packaged\\:world\\-model, trained on \\'world\\'" in about and "not of photos" in about
    assert "never shown square\\, heart\\, cross\\, bolt" in about
    assert segmenter.default_class_text.split(", ")[:3] == ["background", "circle", "square"]
    example = write_examples(tmp_path / "examples", count=1)[0]
    typed = "heart, background, bolt, circle"  # any names, in any order
    result = segmenter.segment(example, typed)  # a path, as the page passes an upload
    expected = Predictor.packaged("cpu").predict(example, [name.strip() for name in typed.split(",")])
    assert np.array_equal(result.labels, expected) and result.names == ("heart", "background", "bolt", "circle")


def test_a_changed_mode_keeps_the_candidate_scoring(tiny_checkpoint):
    from splitmatch.inference.segmentation import CandidateScoring

    predictor = Predictor.from_checkpoint(tiny_checkpoint, "cpu", candidate_scoring="excluded")
    assert predictor.candidates == CandidateScoring("excluded")
    segmenter = Segmenter(predictor, list(predictor.classes.names), 10**6, predictor.classes.dataset)
    assert segmenter._predictor("slide", 0.5).candidates == CandidateScoring("excluded")


def test_the_app_serves_the_training_free_maskclip_model(monkeypatch, capsys, tmp_path):
    import splitmatch.app.page
    from splitmatch.app.page import _about

    served = []
    monkeypatch.setattr(splitmatch.app.page, "require_gradio", lambda: None)
    monkeypatch.setattr(splitmatch.app.page, "serve", lambda checkpoint, *args: served.append(args[-1]))
    assert main(["app", "--model", "maskclip-world"]) == 0 and served == ["maskclip-world"]
    assert main(["app", "--model", "maskclip-world", "--checkpoint", "x.safetensors"]) == 2
    assert "training-free" in capsys.readouterr().err

    segmenter = Segmenter.from_maskclip("maskclip-world")  # the world's packaged CLIP: nothing to download
    about = _about(segmenter, segmenter.predictor.name)
    assert "Training-free MaskCLIP (maskclip\\-world)" in about and "every name is new to it" in about
    assert segmenter.seen_classes == [] and segmenter.default_class_text.startswith("background, circle")
    pixels = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    result = segmenter.segment(pixels, "background, circle, heart")
    assert result.labels.shape == (48, 64) and list(result.names) == ["background", "circle", "heart"]
