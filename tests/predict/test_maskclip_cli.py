"""`--model maskclip...` on `splitmatch predict` and `splitmatch eval`, and `predict --set`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from command_lines import predict_args

from splitmatch.cli import main
from splitmatch.data.folder import read_image, read_label
from splitmatch.evaluation.metrics import ConfusionMatrix, summarize
from splitmatch.predict.predictor import Predictor
from splitmatch.world.generator import WorldSpec, generate_world


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    """Six validation images of the default world's generator (nothing else)."""
    return generate_world(
        tmp_path_factory.mktemp("world"), 0, WorldSpec(num_train=0, num_val=6, num_captions=0), progress=False
    )


def test_eval_scores_the_maskclip_model_as_the_predictor_labels(small_world, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    code = main(
        [
            "eval",
            "--model",
            "maskclip-world",
            "--data-root",
            str(small_world.root),
            "--quiet",
            "--device",
            "cpu",
            "--json",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "model: maskclip-world, training-free MaskCLIP on CLIP world-clip" in printed
    assert "seen calibration" not in printed  # trained on no class: nothing to calibrate
    metrics = json.loads(out.read_text())
    assert metrics["model"]["name"] == "maskclip-world" and metrics["model"]["clip"]["templates"] == "single"
    predictor = Predictor.maskclip("maskclip-world", device="cpu")
    classes = small_world.classes
    confusion = ConfusionMatrix(classes.num_classes, classes.ignore_index)
    for sample in small_world.samples("val"):
        labels = predictor.predict(read_image(sample.image_path), list(classes.names))
        confusion.update(labels, read_label(sample.label_path, classes.num_classes))
    expected = summarize(confusion.matrix, classes)
    for key in ("miou_seen", "miou_unseen", "miou", "pixel_acc"):
        assert metrics[key] == pytest.approx(expected[key])


def test_predict_writes_the_maskclip_models_labels(small_world, tmp_path, capsys):
    image = small_world.samples("val")[0].image_path
    names = "background,circle,heart"
    code = main(
        [
            "predict",
            "--model",
            "maskclip-world",
            "--classes",
            names,
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
            "--quiet",
            "--set",
            "inference.mode=slide",
            str(image),
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["checkpoint"] == "maskclip-world" and summary["settings"]["mode"] == "slide"
    written = read_label(tmp_path / "out" / f"{image.stem}_labels.png", 3)
    expected = Predictor.maskclip("maskclip-world", device="cpu", mode="slide").predict(image, names.split(","))
    assert np.array_equal(written, expected)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "--model", "maskclip", "--checkpoint", "x.safetensors", "--data-root", "d"], "is training-free"),
        (["eval", "--model", "maskclip-world"], "needs --data-root"),
        (["eval", "--model", "maskclip-world", "--data-root", "d", "--seen-calibration", "0.1"], "trained on no class"),
        (["eval", "--model", "maskclip-world", "--predictions", "p", "--data-root", "d"], "not both"),
        (
            ["eval", "--model", "maskclip-world", "--data-root", "d", "--set", "decoder.hidden_dim=8"],
            "eval --set of a training-free model takes clip.*, recipe.* and inference.* keys",
        ),
        (
            [
                "predict",
                "--model",
                "maskclip-world",
                "--classes",
                "a,b",
                "--out",
                "OUT",
                "--set",
                "clip.templates=x",
                "IMAGE",
            ],
            "clip.templates must be one of",
        ),
    ],
)
def test_wrong_uses_get_one_line(small_world, tmp_path, capsys, argv, message):
    image = str(small_world.samples("val")[0].image_path)
    argv = [image if a == "IMAGE" else str(tmp_path / "out") if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("splitmatch: error:")


def test_predict_set_changes_a_checkpoints_inference(untrained_checkpoint, tiny_dataset, tmp_path, capsys):
    image = tiny_dataset.samples("val")[0].image_path
    out = str(tmp_path / "out")
    code = main(
        predict_args(
            untrained_checkpoint, "background,red", out, "--quiet", "--set", "inference.short_side=32", str(image)
        )
    )
    assert code == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["settings"]["short_side"] == 32
    assert (
        main(predict_args(untrained_checkpoint, "background,red", tmp_path / "out", "--set", "train.lr=1", str(image)))
        == 2
    )
    assert "takes inference.* keys only" in capsys.readouterr().err
