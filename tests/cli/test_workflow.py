"""The benchmark path on fabricated data: official layout -> prepare -> train -> eval -> predict."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from command_lines import predict_args, tiny_options, tiny_train_args
from fabricate import fabricate_voc, untrained_tiny_inputs
from PIL import Image

from splitmatch.cli import main
from splitmatch.config.presets import preset
from splitmatch.data.class_lists import BUILTIN_SPLITS
from splitmatch.data.folder import DatasetFolder, read_label
from splitmatch.device import mixed_precision
from splitmatch.evaluation.evaluator import evaluate
from splitmatch.inference.segmentation import SegmentationInference, calibrate_seen, semantic_scores
from splitmatch.model.build import build_segmentor
from splitmatch.train.seeds import aggregate


def test_prepare_train_eval_predict_on_fabricated_voc(tmp_path, capsys):
    fabricate_voc(tmp_path / "VOC2012")
    data = tmp_path / "voc"
    assert (
        main(["prepare", "voc", "--src", str(tmp_path / "VOC2012"), "--dst", str(data), "--quiet", "--allow-partial"])
        == 0
    )
    folder = DatasetFolder(data)
    assert folder.classes == BUILTIN_SPLITS["voc"]
    label = read_label(data / "labels" / "2007_000000.png", 20)
    assert label[0, 0] == 255 and label[10, 20] == 0  # background -> 255, class 1 -> 0
    assert label[35, 50] == 15  # pottedplant stays in the file: unseen -> 255 happens in training only

    capsys.readouterr()
    assert main(["pseudo-masks", "--preset", "tiny", "--quiet", "--set", f"data.root={data}"]) == 0
    first = capsys.readouterr().out
    assert main(["pseudo-masks", "--preset", "tiny", "--quiet", "--set", f"data.root={data}"]) == 0
    assert "computed 0," not in first and "computed 0," in capsys.readouterr().out  # cached: nothing redone

    run = tmp_path / "run"
    assert main(tiny_train_args(data, run, "train.checkpoint_every=3", iterations=3)) == 0
    assert len(list((data / "pseudo_masks").iterdir())) == 1  # training used the cache the command made
    baseline = tmp_path / "baseline"
    assert main(tiny_train_args(data, baseline, "loss.matching=hungarian")) == 0
    assert "matching: hungarian" in (baseline / "config.yaml").read_text()
    for name in ("config.yaml", "environment.json", "metrics.jsonl", "eval.json", "model.safetensors"):
        assert (run / name).is_file(), name
    environment = json.loads((run / "environment.json").read_text())
    assert environment["seed"] == 0 and "torch" in environment["versions"] and environment["git_revision"]
    compute = environment["compute"]  # what moves float results between machines
    assert compute["cpu_model"] and compute["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert compute["torch_threads"] >= 1 and compute["omp_wait_policy"] == os.environ.get("OMP_WAIT_POLICY")

    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run / "model.safetensors"), "--json", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert set(metrics) >= {"miou_seen", "miou_unseen", "hiou", "pixel_acc", "per_class_iou"}
    assert list(metrics["per_class_iou"]) == list(BUILTIN_SPLITS["voc"].names)
    checkpoint = str(run / "model.safetensors")
    assert main(["eval", "--checkpoint", checkpoint, "--set", "inference.candidate_scoring=excluded"]) == 0
    assert main(["eval", "--checkpoint", checkpoint, "--set", "train.lr=1"]) == 2
    assert "inference.* keys only" in capsys.readouterr().err

    out = tmp_path / "pred"
    image = data / "images" / "2007_000004.jpg"
    assert main(predict_args(run / "model.safetensors", "dog,sofa,sky", out, str(image))) == 0
    labels = np.array(Image.open(out / "2007_000004_labels.png"))
    assert labels.shape == (48, 64) and labels.max() <= 2
    overlay = Image.open(out / "2007_000004_overlay.png")
    assert overlay.width >= 64 and overlay.height > 48  # the picture has a legend under it


def val_predictions_args(predictions: Path, data: Path, *rest: str) -> list[str]:
    """``splitmatch eval --predictions``: the label PNGs in ``predictions`` scored on the val split of ``data``."""
    return ["eval", "--predictions", str(predictions), "--data-root", str(data), "--split", "val", *rest]


LAYOUTS = [("voc", "voc_src"), ("coco-stuff", "coco_src"), ("context", "context_src"), ("ade20k", "ade_src")]


@pytest.mark.parametrize("dataset, fixture", LAYOUTS)
def test_every_official_layout_goes_through_prepare_train_eval_predict(dataset, fixture, request, tmp_path):
    src = request.getfixturevalue(fixture)
    data = tmp_path / dataset
    assert main(["prepare", dataset, "--src", str(src), "--dst", str(data), "--quiet", "--allow-partial"]) == 0
    assert dataset not in BUILTIN_SPLITS or DatasetFolder(data).classes == BUILTIN_SPLITS[dataset]
    run = tmp_path / "run"
    assert main(tiny_train_args(data, run, "train.batch_size=2")) == 0
    assert main(["eval", "--checkpoint", str(run / "model.safetensors"), "--json", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert len(metrics["per_class_iou"]) == DatasetFolder(data).classes.num_classes
    image = next((data / "images").iterdir())
    assert main(predict_args(run / "model.safetensors", "cat,grass", tmp_path / "pred", str(image))) == 0
    assert (tmp_path / "pred" / f"{image.stem}_overlay.png").is_file()


@pytest.mark.slow
def test_sixteen_bit_labels_through_prepare_train_eval_predict(context459_src, tmp_path):  # noqa: F811
    """Context-459: 16-bit label PNGs from prepare, through training, eval, predict and eval --predictions."""
    data = tmp_path / "context-459"
    assert (
        main(["prepare", "context-459", "--src", str(context459_src), "--dst", str(data), "--quiet", "--allow-partial"])
        == 0
    )
    folder = DatasetFolder(data)
    assert folder.classes.num_classes == 459 and folder.classes.ignore_index == 65535
    run = tmp_path / "run"
    assert main(tiny_train_args(data, run, "train.batch_size=2")) == 0
    checkpoint = str(run / "model.safetensors")
    assert main(["eval", "--checkpoint", checkpoint, "--json", str(tmp_path / "m.json")]) == 0
    by_model = json.loads((tmp_path / "m.json").read_text())
    assert len(by_model["per_class_iou"]) == 459 and by_model["pixel_acc"] is not None

    names = ",".join(folder.classes.names)
    image = folder.samples("val")[0].image_path
    assert main(predict_args(checkpoint, names, tmp_path / "pred", str(image))) == 0
    written = tmp_path / "pred" / f"{image.stem}_labels.png"
    with Image.open(written) as png:
        assert png.mode.startswith("I")  # 459 names: a 16-bit label map
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    written.rename(predictions / f"{image.stem}.png")
    assert main(val_predictions_args(predictions, data, "--json", str(tmp_path / "p.json"))) == 0
    by_file = json.loads((tmp_path / "p.json").read_text())
    assert by_file["per_class_iou"] == by_model["per_class_iou"]  # the same labels, scored from the PNG


def test_seeds_command_reports_mean_and_std(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "seeds"
    assert main(["seeds", *tiny_options(tiny_dataset.root), "--seeds", "0,1", "--out", str(out)]) == 0
    summary = json.loads((out / "seeds.json").read_text())["summary"]
    assert summary["seeds"] == [0, 1] and summary["hiou"]["n"] <= 2
    assert (out / "seed_0" / "model.safetensors").is_file() and (out / "seed_1" / "eval.json").is_file()
    assert "| hiou |" in capsys.readouterr().out


def test_eval_predictions_against_hand_computed_iou(tmp_path, capsys):
    fabricate_voc(tmp_path / "VOC2012", count=6)
    data = tmp_path / "voc"
    main(["prepare", "voc", "--src", str(tmp_path / "VOC2012"), "--dst", str(data), "--quiet", "--allow-partial"])
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    folder = DatasetFolder(data)
    hand = np.zeros((20, 20), np.int64)
    for sample in folder.samples("val"):
        label = read_label(sample.label_path, 20)
        guess = np.where(label == 255, 0, label).astype(np.uint8)
        guess[:, :32] = 3  # the left half is called 'boat'
        Image.fromarray(guess).save(predictions / f"{sample.stem}.png")
        valid = label != 255
        np.add.at(hand, (label[valid].astype(int), guess[valid].astype(int)), 1)
    assert main(val_predictions_args(predictions, data, "--json", str(tmp_path / "m.json"))) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    for class_id, name in enumerate(BUILTIN_SPLITS["voc"].names):
        tp = hand[class_id, class_id]
        union = hand[class_id].sum() + hand[:, class_id].sum() - tp
        expected = None if union == 0 else 100 * tp / union
        assert metrics["per_class_iou"][name] == pytest.approx(expected), name
    bad = predictions / "2007_000004.png"
    Image.fromarray(np.full((48, 64), 255, np.uint8)).save(bad)
    assert main(val_predictions_args(predictions, data)) == 2
    assert "2007_000004.png" in capsys.readouterr().err


def test_semantic_scores_and_calibration():
    logits = torch.tensor([[[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]]])  # 2 queries, 2 classes + no-object
    masks = torch.tensor([[[[10.0, -10.0]], [[-10.0, 10.0]]]])  # query 0 left, query 1 right
    scores = semantic_scores(logits.softmax(-1)[..., :-1], masks, (1, 2))
    assert scores.argmax(1).tolist() == [[[0, 1]]]
    calibrated = calibrate_seen(scores, torch.tensor([True, False]), 0.97)  # normalised: [0.98, 0.02]
    assert calibrated.argmax(1).tolist() == [[[1, 1]]]  # seen class 0 loses its margin
    # ZegCLIP's form takes the amount off the raw scores: S minus 0.97 on seen class 0 exactly.
    seen = torch.tensor([True, False])
    raw = calibrate_seen(scores, seen, 0.97, form="zegclip")
    assert torch.allclose(raw, scores - torch.tensor([0.97, 0.0]).view(1, 2, 1, 1))
    bigger = scores * 10  # ten times larger raw scores: the normalised form does not notice, ZegCLIP's does
    assert torch.allclose(calibrate_seen(bigger, seen, 0.5), calibrate_seen(scores, seen, 0.5))
    assert not torch.allclose(
        calibrate_seen(bigger, seen, 0.5, "zegclip") / 10, calibrate_seen(scores, seen, 0.5, "zegclip")
    )
    with pytest.raises(ValueError, match="calibration form"):
        calibrate_seen(scores, seen, 0.5, "softmax")


def test_one_evaluation_pass_reports_every_seen_calibration(tiny_dataset):
    config = preset("tiny")
    config.inference.mode = "whole"
    model = build_segmentor(config.clip, config.decoder).eval()
    both = evaluate(model, tiny_dataset, "val", config.inference, progress=False, compared_calibrations=(0.0, 0.5))
    assert set(both["seen_calibration"]) == {"0", "0.5"}
    for amount in (0.0, 0.5):
        config.inference.seen_calibration = amount
        alone = evaluate(model, tiny_dataset, "val", config.inference, progress=False, compared_calibrations=())
        assert both["seen_calibration"][f"{amount:g}"] == {key: alone[key] for key in both["seen_calibration"]["0"]}
        assert list(alone["seen_calibration"]) == [f"{amount:g}"]
    assert both["miou"] == both["seen_calibration"]["0"]["miou"]  # the headline is the config's calibration
    assert both["seen_calibration"]["0"] != both["seen_calibration"]["0.5"]


def test_sliding_window_equals_whole_image_when_one_window_covers_it():
    model, embeddings, image = untrained_tiny_inputs()
    whole = SegmentationInference(model, "whole")(image, embeddings)
    slide = SegmentationInference(model, "slide", window=64, stride=48)(image, embeddings)
    assert torch.allclose(whole, slide, atol=1e-5)
    wide = torch.rand(1, 3, 64, 150) * 255  # three windows, overlapping, and not a patch multiple
    scores = SegmentationInference(model, "slide", window=64, stride=48)(wide, embeddings)
    assert scores.shape == (3, 64, 150) and torch.isfinite(scores).all()


def test_mixed_precision_falls_back_to_float32_on_cpu():
    config = preset("tiny")
    config.train.amp = "bf16"
    with mixed_precision(torch.device("cpu"), config.train.amp):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32


def test_seed_aggregation():
    runs = {
        0: {
            "miou_seen": 50.0,
            "miou_unseen": 10.0,
            "hiou": 16.7,
            "miou": 40.0,
            "pixel_acc": 80.0,
            "per_class_iou": {"a": 50.0, "b": float("nan")},
        },
        1: {
            "miou_seen": 60.0,
            "miou_unseen": 30.0,
            "hiou": 40.0,
            "miou": 50.0,
            "pixel_acc": 90.0,
            "per_class_iou": {"a": 70.0, "b": 20.0},
        },
    }
    summary = aggregate(runs)
    assert summary["miou_seen"]["mean"] == pytest.approx(55.0)
    assert summary["miou_unseen"]["std"] == pytest.approx(np.std([10.0, 30.0], ddof=1))
    assert summary["per_class_iou"]["b"] == {"mean": 20.0, "std": 0.0, "n": 1}
