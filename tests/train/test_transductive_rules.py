"""ZegCLIP's transductive rule against a re-expression of its code: only unseen-class pixels are
self-labelled (``train.transductive_pixels: unseen``), its self-training run restarts AdamW and the
schedule (``train.transductive_schedule: restart``), and each step logs ``self_trained_pixels``.

The re-expressions follow ZegCLIP's ``models/segmentor/zegclip.py`` (``_visiable_mask_st``: seen
ids kept, 255 kept, every other value -1) and ``models/decode_heads/decode_seg.py``
(``forward_train``: -1 pixels take the argmax over the unseen classes), and mmcv's poly schedule
with linear warm-up, which ZegCLIP's ``*_st.py`` configs restart from the inductive checkpoint.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from fabricate import fabricate_voc

from splitmatch.config.presets import load_config
from splitmatch.data.augmentation import build_train_transform
from splitmatch.data.classes import IGNORE_INDEX
from splitmatch.data.dataset import SegmentationDataset, collate_segmentation
from splitmatch.prepare.voc import prepare_voc
from splitmatch.train.optim import PolyWarmupSchedule
from splitmatch.train.transductive import padding_mask, self_training_labels


def _voc(tmp_path, unseen: bool = True):
    fabricate_voc(tmp_path / "VOC2012", count=6, unseen=unseen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a partial dataset: six images, not VOC's 1,464 / 1,449
        return prepare_voc(tmp_path / "VOC2012", tmp_path / "voc", progress=False, allow_partial=True)


def zegclip_self_training_target(full_label: np.ndarray, seen_ids, pseudo: np.ndarray) -> np.ndarray:
    """ZegCLIP's self-training target from its full label (unseen classes still their ids, 255 void
    and padding): seen ids stay, 255 stays, anything else is an unseen pixel (-1) and takes ``pseudo``."""
    visibility = np.full(256, -1, dtype=np.int64)
    visibility[255] = 255
    visibility[list(seen_ids)] = list(seen_ids)
    target = visibility[full_label.astype(np.int64)]
    return np.where(target == -1, pseudo, target)


def test_unseen_rule_labels_what_zegclip_labels_through_every_crop_flip_and_pad(tmp_path) -> None:
    folder = _voc(tmp_path)
    classes = folder.classes
    assert classes.unseen == ("pottedplant", "sheep", "sofa", "train", "tvmonitor")  # ZegCLIP's novel 15..19
    # Crops of 56 from images resized to 24..96 rows: cropped, flipped and padded alike. The crop
    # balance check is off, so the full and the training label draw the same windows.
    transform = build_train_transform(56, (128, 48), (0.5, 2.0), 1.0, 0.5, photometric=False)
    full = SegmentationDataset(folder, "train", transform)
    marked = SegmentationDataset(folder, "train", transform, inductive=True, mark_unseen=True)
    rng = np.random.default_rng(1)
    void_seen = unseen_seen = 0
    for seed in range(6):
        keys = [(i, seed) for i in range(len(full))]
        batch = collate_segmentation([marked[k] for k in keys])
        whole = torch.stack([full[k]["label"] for k in keys]).numpy()
        pseudo = rng.choice(classes.unseen_ids, size=whole.shape)  # any prediction over the unseen classes
        padding = padding_mask(batch["source_rows"], batch["source_cols"])
        ours = self_training_labels(
            batch["label"],
            padding,
            torch.from_numpy(pseudo),
            torch.ones(whole.shape),
            IGNORE_INDEX,
            unseen=batch["unseen_mask"],
        )
        whole_padded = np.where(padding.numpy(), 255, whole)  # mmseg pads ZegCLIP's labels with 255
        expected = zegclip_self_training_target(whole_padded, classes.seen_ids, pseudo)
        np.testing.assert_array_equal(ours.numpy(), expected)
        void_seen += int((whole == 255).sum())
        unseen_seen += int(batch["unseen_mask"].sum())
    assert void_seen and unseen_seen  # both kinds of ignored pixel were there to tell apart


def test_unseen_mask_needs_a_transform_that_reports_where_pixels_come_from(tmp_path) -> None:
    folder = _voc(tmp_path)
    with pytest.raises(ValueError, match="mark_unseen follows pixels through a Compose transform"):
        SegmentationDataset(folder, "train", lambda sample, rng: sample, inductive=True, mark_unseen=True)


def zegclip_poly_warmup(
    base: float,
    iteration: int,
    max_iters: int,
    warmup: int,
    ratio: float = 1e-6,
    power: float = 0.9,
    min_lr: float = 1e-6,
) -> float:
    """mmcv's PolyLrUpdaterHook with warmup='linear' at ``iteration`` of a run of ``max_iters``."""
    regular = (base - min_lr) * (1 - iteration / max_iters) ** power + min_lr
    if iteration < warmup:
        return regular * (1 - (1 - iteration / warmup) * (1 - ratio))
    return regular


def test_restarted_schedule_is_the_inductive_run_then_a_fresh_run_from_its_checkpoint() -> None:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=2e-4)
    schedule = PolyWarmupSchedule(optimizer, 20, 0.9, 1e-6, 3, 1e-6, restart_at=10)
    got = []
    for _ in range(20):
        got.append(optimizer.param_groups[0]["lr"])
        schedule.step()
    # ZegCLIP: the inductive 20k run up to iter_10000, then the *_st.py run of 10k loaded from it.
    expected = [zegclip_poly_warmup(2e-4, i, 20, 3) for i in range(10)]
    expected += [zegclip_poly_warmup(2e-4, i, 10, 3) for i in range(10)]
    assert got == pytest.approx(expected, rel=1e-12)


def _train(tmp_path, root, name: str, *overrides: str) -> tuple[list[dict], list[int]]:
    """A tiny transductive run of 4 steps from step 3 on; its log lines and AdamW's step count after each step."""
    from splitmatch.train import step as step_module
    from splitmatch.train.trainer import train

    config = load_config(
        preset_name="tiny",
        overrides=[
            f"data.root={root}",
            "train.iterations=4",
            "train.log_every=1",
            "train.checkpoint_every=100",
            "train.transductive=true",
            *overrides,
        ],
    )
    adam_steps, original = [], step_module.TrainingStep.__call__

    def counting(self, batch, done):
        result = original(self, batch, done)
        adam_steps.append(int(next(iter(self.optimizer.state.values()))["step"]))
        return result

    step_module.TrainingStep.__call__ = counting
    try:
        train(config, tmp_path / name, progress=False)
    finally:
        step_module.TrainingStep.__call__ = original
    lines = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return [line for line in lines if "eval" not in line], adam_steps


def test_a_voc_tree_without_unseen_pixels_self_trains_none_of_its_background(tmp_path) -> None:
    root = _voc(tmp_path, unseen=False).root
    logged, adam_steps = _train(tmp_path, root, "unseen")
    assert [line["self_trained_pixels"] for line in logged] == [0, 0, 0, 0]
    assert adam_steps == [1, 2, 1, 2]  # ZegCLIP's fresh AdamW at the first self-training step
    logged, adam_steps = _train(
        tmp_path, root, "ignored", "train.transductive_pixels=ignored", "train.transductive_schedule=continue"
    )
    counts = [line["self_trained_pixels"] for line in logged]
    assert counts[:2] == [0, 0] and min(counts[2:]) > 0  # the background (ignore in VOC) taken for unseen
    assert adam_steps == [1, 2, 3, 4]


def test_a_voc_tree_with_unseen_pixels_self_trains_them_from_the_start_share_on(tmp_path) -> None:
    logged, _ = _train(tmp_path, _voc(tmp_path).root, "run")
    counts = [line["self_trained_pixels"] for line in logged]
    assert counts[:2] == [0, 0] and min(counts[2:]) > 0
