"""Transductive self-training (train.transductive): which pixels get labels, which label, from when,
padding never; under the ``ignored`` rule where the unseen pixels are is never used; and HSNet's
unseen-pixel convention. ZegCLIP's ``unseen`` rule, the schedule restart and the per-step count:
tests/train/test_transductive_rules.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from command_lines import tiny_train_args
from conftest import TINY_CLASSES, make_tiny_dataset

from splitmatch.cli import main
from splitmatch.config import ConfigError
from splitmatch.config.presets import preset
from splitmatch.data.augmentation import build_train_transform
from splitmatch.data.dataset import SegmentationDataset, collate_segmentation
from splitmatch.data.folder import DatasetFolder, write_sample, write_split
from splitmatch.data.transforms import rescale_size
from splitmatch.train.transductive import (
    first_self_training_step,
    padding_mask,
    self_training_labels,
    unseen_predictions,
)

IGNORE = 255


def test_padding_is_told_apart_from_ignored_image_pixels(tiny_dataset) -> None:
    # Crops of 96 from images of 64 x 64 and 64 x 80 at scale 1: every sample is padded below and right.
    transform = build_train_transform(96, (80, 64), (1.0, 1.0), 1.0, 0.5, False)
    dataset = SegmentationDataset(tiny_dataset, "train", transform, inductive=True)
    for index in range(len(dataset)):
        item = dataset[index]
        height, width = item["orig_size"]
        padding = padding_mask(item["source_rows"][None], item["source_cols"][None])[0]
        expected = torch.ones(96, 96, dtype=torch.bool)
        expected[:height, :width] = False
        assert torch.equal(padding, expected)
        assert (item["label"][padding] == IGNORE).all()  # padding is ignore, as the label says too
        rows = item["source_rows"][~padding.all(1)]
        assert torch.equal(rows, torch.arange(height))  # the file rows each image row shows
    batch = collate_segmentation([dataset[0], dataset[2]])
    assert batch["source_rows"].shape == (2, 96) and batch["source_cols"].shape == (2, 96)


def test_flips_and_resizes_move_the_padding_marks_with_the_pixels(tiny_dataset) -> None:
    transform = build_train_transform(96, (64, 48), (1.0, 1.0), 1.0, 1.0, False)  # always flipped
    item = SegmentationDataset(tiny_dataset, "train", transform)[1]  # 64 x 80, scaled to fit 64 x 48, then padded
    height, width = rescale_size(64, 80, (64, 48))
    rows, cols = item["source_rows"], item["source_cols"]
    assert (height, width) == (48, 60)
    assert (cols[:width] >= 0).all() and (cols[width:] == -1).all()
    assert cols[0] == 79 and cols[width - 1] == 0  # mirrored: the first column shows the file's last one
    assert (rows[:height] >= 0).all() and (rows[height:] == -1).all() and rows[height - 1] == 63


def test_self_training_labels_go_on_ignored_image_pixels_only() -> None:
    labels = torch.tensor([[[0, 1, IGNORE, IGNORE]]], dtype=torch.uint8)
    padding = torch.tensor([[[False, False, False, True]]])
    ids = torch.tensor([[[4, 4, 3, 3]]])
    share = torch.tensor([[[0.9, 0.9, 0.4, 0.9]]])
    out = self_training_labels(labels, padding, ids, share, IGNORE)
    assert out.tolist() == [[[0, 1, 3, IGNORE]]] and out.dtype == torch.uint8  # padding stays ignore
    thresholded = self_training_labels(labels, padding, ids, share, IGNORE, threshold=0.5)
    assert thresholded.tolist() == [[[0, 1, IGNORE, IGNORE]]]  # 0.4 of the pixel's scores: below the threshold


def test_the_label_is_the_best_unseen_class_even_where_a_seen_one_wins() -> None:
    # One image 1 x 2 on a 1 x 2 mask grid; classes 0 (seen), 1 (unseen), 2 (unseen); two queries.
    big = 20.0
    logits = torch.tensor([[[big, -big, -big, -big], [-big, -big, big, -big]]])  # q0 -> class 0, q1 -> class 2
    masks = torch.tensor([[[[big, big]], [[-big, 1.0]]]])  # q0 everywhere, q1 a little on pixel 1
    outputs = {"pred_logits": logits, "pred_masks": masks, "query_group": torch.zeros(2, dtype=torch.long)}
    ids, share = unseen_predictions(outputs, [1, 2], (1, 2), 0.07, None)
    assert ids.tolist() == [[[2, 2]]]  # class 0 holds most of both pixels, yet the label is unseen
    sigmoid = 1 / (1 + math.exp(-1.0))
    assert share[0, 0, 1].item() == pytest.approx(sigmoid / (1 + sigmoid), rel=1e-4)
    assert share[0, 0, 0].item() < 1e-6


def _dataset_of(root, unseen_or_void: int) -> DatasetFolder:
    """One image: background, a seen square and a region that is either the unseen class or void."""
    image = np.full((32, 32, 3), 120, np.uint8)
    label = np.zeros((32, 32), np.uint8)
    label[2:12, 2:12] = 1
    label[16:30, 16:30] = unseen_or_void
    write_sample(root, "train_000", image, label)
    write_split(root, "train", ["train_000"])
    TINY_CLASSES.write(root / "classes.json")
    return DatasetFolder(root)


def test_the_ignored_rule_never_learns_where_the_unseen_pixels_are(tmp_path) -> None:
    unseen = TINY_CLASSES.names.index("yellow")
    items = [SegmentationDataset(_dataset_of(tmp_path / str(v), v), "train", inductive=True)[0] for v in (unseen, 255)]
    assert torch.equal(items[0]["label"], items[1]["label"])  # one and the same training label
    ids = torch.full((1, 32, 32), unseen)
    labels = [
        self_training_labels(
            i["label"][None],
            padding_mask(i["source_rows"][None], i["source_cols"][None]),
            ids,
            torch.ones(1, 32, 32),
            IGNORE,
        )
        for i in items
    ]
    assert torch.equal(labels[0], labels[1])


def test_self_training_starts_at_the_schedule_share_and_names_every_class(tmp_path, monkeypatch) -> None:
    from splitmatch.train import step as step_module
    from splitmatch.train.trainer import train

    config = preset("tiny")
    config.data.root = str(make_tiny_dataset(tmp_path / "data").root)
    config.train.iterations = 4
    config.train.transductive = True
    config.validate()
    assert first_self_training_step(config.train) == 3
    config.train.transductive_start = 0.0
    assert first_self_training_step(config.train) == 1
    config.train.transductive_start = 0.5
    calls, original = [], step_module.TrainingStep.with_self_training_labels

    def spy(self, part):
        labelled = original(self, part)
        before, after = part["label"], labelled["label"]
        padding = padding_mask(part["source_rows"], part["source_cols"])
        assert (after[padding] == IGNORE).all()  # never on padding
        assert (after[~padding] != IGNORE).all()  # every ignored image pixel (no threshold)
        kept = before != IGNORE
        assert torch.equal(after[kept], before[kept])  # annotated pixels as they were
        assert set(after[(before == IGNORE) & ~padding].tolist()) <= set(TINY_CLASSES.unseen_ids)
        calls.append((self.class_embeddings.shape[0], int(((before == IGNORE) & ~padding).sum())))
        return labelled

    monkeypatch.setattr(step_module.TrainingStep, "with_self_training_labels", spy)
    train(config, tmp_path / "run", progress=False)
    assert len(calls) == 2  # steps 3 and 4, one micro-batch each
    assert all(rows == len(TINY_CLASSES.names) for rows, _ in calls)  # every class's name
    assert sum(labelled for _, labelled in calls) > 0
    assert "transductive: true" in (tmp_path / "run" / "config.yaml").read_text()


def test_eval_says_transductive_beside_every_number(tmp_path, capsys) -> None:
    from splitmatch.train.trainer import train

    config = preset("tiny")
    config.data.root = str(make_tiny_dataset(tmp_path / "data").root)
    config.train.iterations = 2
    config.train.transductive = True
    train(config.validate(), tmp_path / "run", progress=False)
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["transductive"] is True  # the run's own record
    assert (
        main(["eval", "--checkpoint", str(tmp_path / "run" / "model.safetensors"), "--device", "cpu", "--quiet"]) == 0
    )
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| run")]
    assert rows and all("transductive: unseen names were used in training" in line for line in rows)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"data": {"unseen_pixels": "background"}}, "data.unseen_pixels=ignore"),
        ({"data": {"proxy": {"enabled": True}}}, "train the proxy inductively"),
        ({"transductive_start": 1.0}, "train.transductive_start must be a finite number in [0, 1)"),
    ],
)
def test_transductive_settings_that_cannot_work_are_refused(changes, message) -> None:
    from splitmatch.config import merge

    train_changes = {"transductive": True} | {k: v for k, v in changes.items() if k != "data"}
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        merge(preset("tiny"), {"train": train_changes, "data": changes.get("data", {})}).validate()


def test_a_transductive_run_without_unseen_classes_is_one_line(tmp_path, capsys) -> None:
    root = make_tiny_dataset(tmp_path / "data").root
    code = main(tiny_train_args(root, tmp_path / "run", "train.transductive=true", "data.unseen=[]", iterations=None))
    err = capsys.readouterr().err
    assert code == 2 and "train.transductive needs unseen classes" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_hsnet_convention_labels_unseen_pixels_background(tiny_dataset) -> None:
    yellow = TINY_CLASSES.names.index("yellow")
    plain = SegmentationDataset(tiny_dataset, "train")
    hsnet = SegmentationDataset(tiny_dataset, "train", inductive=True, unseen_pixels="background")
    ours = SegmentationDataset(tiny_dataset, "train", inductive=True)
    found = False
    for index in range(len(plain)):
        where = plain[index]["label"] == yellow
        found |= bool(where.any())
        assert (hsnet[index]["label"][where] == 0).all() and (ours[index]["label"][where] == IGNORE).all()
    assert found


def test_hsnet_convention_needs_a_background_class(tmp_path, capsys) -> None:
    from splitmatch.data.classes import ClassSplit

    root = make_tiny_dataset(tmp_path / "data").root
    ClassSplit(("ground", "red", "green", "blue", "yellow"), ("yellow",), dataset="tiny").write(root / "classes.json")
    code = main(tiny_train_args(root, tmp_path / "run", "data.unseen_pixels=background", iterations=None))
    err = capsys.readouterr().err
    assert code == 2 and "data.unseen_pixels=background" in err and "does not have" in err
    assert len(err.strip().splitlines()) == 1
