"""Model files without their packaged CLIP: made the same byte for byte, loaded through the checkpoint
checks, refused when the packaged CLIP changed; the packaged world model as predict's default."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from splitmatch import packaged
from splitmatch.cli import main
from splitmatch.clip.loading import build_clip, save_clip_safetensors
from splitmatch.config import merge
from splitmatch.config.presets import preset
from splitmatch.data.folder import read_label
from splitmatch.evaluation.metrics import ConfusionMatrix, summarize
from splitmatch.model.build import build_segmentor
from splitmatch.model.checkpoint import CheckpointError, read_checkpoint, read_record
from splitmatch.predict.packaged_model import PACKAGED_MODEL_NAME, clip_digest, package_model
from splitmatch.predict.predictor import Predictor
from splitmatch.train.state import save_training_checkpoint
from splitmatch.world.generator import DEFAULT_SPEC, image_rng, render_image, world_class_split

WORLD_MODEL = packaged.PACKAGED_MODELS / "world-model.safetensors"


@pytest.fixture
def packaged_clip(tmp_path, monkeypatch):
    """A random tiny CLIP installed as ``packaged:tiny-clip`` (in a folder of the test's own)."""
    assets = tmp_path / "assets"
    torch.manual_seed(1)
    save_clip_safetensors(build_clip("tiny-test"), assets / "tiny-clip.safetensors")
    monkeypatch.setattr(packaged, "PACKAGED_WEIGHTS", assets)
    monkeypatch.setattr(packaged, "PACKAGED_MODELS", assets / "models")
    return assets / "tiny-clip.safetensors"


def _checkpoint(path, dataset, weights="packaged:tiny-clip", seed=0):
    config = merge(preset("tiny"), {"clip": {"weights": weights}, "data": {"root": str(dataset.root)}}).validate()
    torch.manual_seed(seed)
    model = build_segmentor(config.clip, config.decoder)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    classes = dataset.classes
    return save_training_checkpoint(path, model, config, classes, classes.seen_names, 7, optimizer)


def test_packaging_gives_the_same_bytes_without_clip_tensors_or_machine_paths(packaged_clip, tiny_dataset, tmp_path):
    source = _checkpoint(tmp_path / "run" / "step.safetensors", tiny_dataset)
    moved = tmp_path / "elsewhere" / "copy.safetensors"
    moved.parent.mkdir()
    moved.write_bytes(source.read_bytes())
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    record = package_model(source, first)
    package_model(moved, second)
    assert first.read_bytes() == second.read_bytes()  # wherever the checkpoint lies

    keys = set(load_file(str(first)))
    model = build_segmentor(
        read_record(source)["config"].clip, read_record(source)["config"].decoder, load_clip_weights=False
    )
    clip_keys = {f"model.{key}" for key in model.clip_state_keys()}
    assert keys == {f"model.{key}" for key in model.state_dict()} - clip_keys  # no CLIP, no optimizer, no RNG
    assert any(key.startswith("model.image_encoder.prompts") for key in keys)
    assert first.stat().st_size < source.stat().st_size / 2
    with safe_open(str(first), "pt") as handle:
        metadata = handle.metadata()
    assert list(metadata) == ["splitmatch"] and str(tmp_path) not in metadata["splitmatch"]
    assert json.loads(metadata["splitmatch"]) == record
    assert metadata["splitmatch"] == json.dumps(record, sort_keys=True)  # keys sorted at every level
    assert record["config"]["data"]["root"] == "demo_out/world" and record["config"]["given_paths"] == {}
    assert record["clip_from"]["weights"] == "packaged:tiny-clip"
    assert record["made_from"]["digest"] == read_record(source)["digest"]


def test_packaged_file_predicts_as_its_checkpoint_did(packaged_clip, tiny_dataset, tmp_path):
    source = _checkpoint(tmp_path / "model.safetensors", tiny_dataset)
    package_model(source, tmp_path / "packaged.safetensors")
    names = ["background", "red", "green", "a blue square"]
    image = tiny_dataset.root / "images" / "val_001.png"
    original = Predictor.from_checkpoint(source, "cpu")
    packaged = Predictor.from_checkpoint(tmp_path / "packaged.safetensors", "cpu")
    state, expected = packaged.model.state_dict(), original.model.state_dict()
    assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in state)
    assert np.array_equal(packaged.predict(image, names), original.predict(image, names))
    assert packaged.classes == original.classes and packaged.seen_classes == original.seen_classes


def test_a_changed_packaged_clip_is_refused_by_name(packaged_clip, tiny_dataset, tmp_path, capsys):
    package_model(_checkpoint(tmp_path / "model.safetensors", tiny_dataset), tmp_path / "packaged.safetensors")
    tensors = load_file(str(packaged_clip))
    tensors["ln_final.weight"] = tensors["ln_final.weight"] + 1e-3  # retrained, or another build of it
    save_file(tensors, str(packaged_clip))
    with pytest.raises(CheckpointError, match="made with other packaged:tiny-clip weights than this installation"):
        Predictor.from_checkpoint(tmp_path / "packaged.safetensors", "cpu")
    code = main(
        [
            "predict",
            "--checkpoint",
            str(tmp_path / "packaged.safetensors"),
            "--classes",
            "a,b",
            "--out",
            str(tmp_path / "out"),
            str(tiny_dataset.root / "images" / "val_000.png"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "packaged.safetensors" in err


def test_a_damaged_or_edited_packaged_file_is_refused(packaged_clip, tiny_dataset, tmp_path):
    packaged = tmp_path / "packaged.safetensors"
    package_model(_checkpoint(tmp_path / "model.safetensors", tiny_dataset), packaged)
    original = packaged.read_bytes()
    damaged = bytearray(original)
    damaged[-3] ^= 0xFF  # a byte of the last stored tensor
    packaged.write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match="do not match the recorded digest"):
        Predictor.from_checkpoint(packaged, "cpu")

    tensors = load_file(str(tmp_path / "model.safetensors"))
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as handle:
        record = json.loads(handle.metadata()["splitmatch"])
    record["clip_from"] = {"weights": "packaged:other-clip", "digest": "0" * 64}  # not the config's CLIP
    save_file(tensors, str(packaged), metadata={"splitmatch": json.dumps(record)})
    with pytest.raises(CheckpointError, match="does not name where they come from"):
        read_record(packaged)


def test_only_checkpoints_of_the_packaged_clip_are_packaged(packaged_clip, tiny_dataset, tmp_path, capsys):
    own_clip = _checkpoint(tmp_path / "random-clip.safetensors", tiny_dataset, weights=None)
    with pytest.raises(CheckpointError, match="only a model of packaged CLIP weights"):
        package_model(own_clip, tmp_path / "out.safetensors")
    other = _checkpoint(tmp_path / "other.safetensors", tiny_dataset)
    torch.manual_seed(5)
    save_clip_safetensors(build_clip("tiny-test"), packaged_clip)  # the packaged CLIP changed since training
    assert main(["package-model", "--checkpoint", str(other), "--out", str(tmp_path / "out.safetensors")]) == 2
    assert "differ from packaged:tiny-clip as this installation ships it" in capsys.readouterr().err
    assert not (tmp_path / "out.safetensors").exists()


def test_cli_packages_a_checkpoint_and_predicts_with_it(packaged_clip, tiny_dataset, tmp_path, capsys):
    source = _checkpoint(tmp_path / "model.safetensors", tiny_dataset)
    out = packaged_clip.parent / "models" / "mine.safetensors"
    assert main(["package-model", "--checkpoint", str(source), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    image = tiny_dataset.root / "images" / "val_000.png"
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(out),
                "--classes",
                "red,green",
                "--out",
                str(tmp_path / "p"),
                "--quiet",
                str(image),
            ]
        )
        == 0
    )
    assert (tmp_path / "p" / "val_000_labels.png").is_file()
    # Files in the package's model folder answer to packaged:NAME.
    assert Predictor.from_checkpoint("packaged:mine", "cpu").classes == tiny_dataset.classes
    with pytest.raises(CheckpointError, match=r"unknown packaged model 'packaged:nothing' \(.*packaged:mine\)"):
        Predictor.from_checkpoint("packaged:nothing", "cpu")


VAL_IMAGES = 16  # enough that one odd image does not decide a score


@pytest.fixture(scope="module")
def world_images(tmp_path_factory) -> tuple:
    """Validation images of the built-in world (never trained on) as PNG files, and their labels."""
    folder = tmp_path_factory.mktemp("world") / "images"
    folder.mkdir()
    truths = {}
    for index in range(VAL_IMAGES):
        image, label = render_image(image_rng(0, "val", index), DEFAULT_SPEC)
        Image.fromarray(image).save(folder / f"val_{index}.png")
        truths[f"val_{index}"] = label
    return folder, truths


def test_the_packaged_world_model_loads_small_and_matches_the_packaged_clip():
    # Small: it refers to the packaged CLIP instead of carrying those tensors again.
    assert WORLD_MODEL.stat().st_size < (packaged.PACKAGED_WEIGHTS / "world-clip.safetensors").stat().st_size
    tensors, record = read_checkpoint(WORLD_MODEL)  # every stored tensor checked against the recorded digest
    assert record["clip_from"]["weights"] == record["config"].clip.weights == "packaged:world-clip"
    assert record["classes"] == world_class_split() and record["config"].loss.matching == "split"
    model = build_segmentor(
        record["config"].clip, record["config"].decoder
    )  # the CLIP from this installation's packaged weights
    assert clip_digest(model.state_dict(), model.clip_state_keys()) == record["clip_from"]["digest"]
    assert not set(tensors) & {f"model.{key}" for key in model.clip_state_keys()}
    assert record["config"].data.root == "demo_out/world"  # no path of the machine it was made on


def _scores(predictions, truths) -> dict:
    matrix = ConfusionMatrix(len(world_class_split().names))
    for prediction, truth in zip(predictions, truths):
        matrix.update(prediction, truth)
    return summarize(matrix.matrix, world_class_split())


def test_the_packaged_world_model_segments_seen_and_unseen_classes_of_new_world_images(world_images):
    folder, truths = world_images
    predictor = Predictor.packaged("cpu")
    names = list(world_class_split().names)
    scores = _scores([predictor.predict(folder / f"{stem}.png", names) for stem in truths], truths.values())
    # The bar is set by what needs no model: one class everywhere, the best such class for each score
    # (background, for the seen classes). The model must close at least 40% of the distance from that
    # to perfect, on the classes it was trained on and on those it never saw alike.
    constant = [
        _scores([np.full_like(truth, label) for truth in truths.values()], truths.values())
        for label in range(len(names))
    ]
    for key in ("miou", "miou_seen", "miou_unseen"):
        floor = max(score[key] for score in constant)
        bar = floor + 0.4 * (100 - floor)
        assert scores[key] > bar, f"{key} {scores[key]:.1f} on {len(truths)} world images, below {bar:.1f}"


def test_predict_without_a_checkpoint_uses_the_packaged_world_model(world_images, tmp_path, capsys):
    folder, truths = world_images
    names = list(world_class_split().names)
    inputs = tmp_path / "in"
    inputs.mkdir()
    stems = list(truths)[:3]
    for stem in stems:
        shutil.copy(folder / f"{stem}.png", inputs)
    assert main(["predict", "--classes", ",".join(names), "--out", str(tmp_path / "all"), "--quiet", str(inputs)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "model: packaged:world-model, a model of splitmatch's built-in world (shapes and textures, docs/world.md), "
        "not of photos; for photos, train on a benchmark or pass --checkpoint"
    )
    summary = json.loads((tmp_path / "all" / "summary.json").read_text())
    assert summary["checkpoint"] == PACKAGED_MODEL_NAME and summary["trained_on"] == "world"
    predictor = Predictor.packaged("cpu")  # what the library gives, the CLI writes
    for stem in stems:
        labels = read_label(tmp_path / "all" / f"{stem}_labels.png", len(names))
        assert np.array_equal(labels, predictor.predict(folder / f"{stem}.png", names))

    image = folder / "val_0.png"  # any names: here three of them
    code = main(["predict", "--classes", "background,circle,heart", "--out", str(tmp_path / "three"), str(image)])
    assert code == 0 and read_label(tmp_path / "three" / "val_0_labels.png", 3).shape == truths["val_0"].shape
    assert "not of photos" in capsys.readouterr().out


def test_predictor_packaged_is_the_world_model_with_overrides():
    predictor = Predictor.packaged("cpu", mode="whole", seen_calibration=0.2)
    assert predictor.classes == world_class_split() and predictor.seen_classes == set(world_class_split().seen_names)
    assert predictor.config.mode == "whole" and predictor.config.seen_calibration == 0.2
