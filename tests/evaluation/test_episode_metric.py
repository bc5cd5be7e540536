"""The episode metric against hand-computed areas and against HSNet's way of computing it (torch.histc)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from splitmatch.evaluation.episode_metric import EpisodeAreas, episode_areas, mean_over_folds, score_fold


def test_one_episode_by_hand() -> None:
    target = np.array([[1, 1, 0], [0, 0, 0]], bool)
    prediction = np.array([[1, 0, 0], [1, 0, 0]], bool)
    ignore = np.array([[0, 0, 0], [0, 0, 1]], bool)
    # Valid pixels: 5. Foreground: predicted {00, 10}, true {00, 01}. Background: the others.
    assert episode_areas("cat", prediction, target, ignore) == EpisodeAreas("cat", (2, 1), (4, 3))


def test_empty_foreground_all_foreground_and_a_class_over_several_episodes() -> None:
    episodes = [
        episode_areas("cat", [[1, 0, 0], [1, 0, 0]], [[1, 1, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 1]]),
        episode_areas("cat", np.ones((2, 2), bool), np.ones((2, 2), bool)),  # all foreground
        episode_areas("dog", np.zeros((2, 2), bool), np.zeros((2, 2), bool)),  # empty foreground, empty prediction
        episode_areas("dog", [[0, 1]], [[1, 0]]),
    ]
    assert episodes[1] == EpisodeAreas("cat", (0, 4), (0, 4)) and episodes[2] == EpisodeAreas("dog", (4, 0), (4, 0))
    score = score_fold(episodes, ["cat", "dog", "cow"])
    assert score.per_class_iou["cat"] == pytest.approx(100 * 5 / 7)  # (1 + 4) / (3 + 4)
    assert score.per_class_iou["dog"] == 0.0  # (0 + 0) / (0 + 2)
    assert math.isnan(score.per_class_iou["cow"]) and score.classes_without_episodes == ("cow",)
    assert score.miou == pytest.approx((100 * 5 / 7 + 0) / 2)
    assert score.background_iou == pytest.approx(100 * 6 / 10)  # (2 + 0 + 4 + 0) / (4 + 0 + 4 + 2)
    assert score.foreground_iou == pytest.approx(100 * 5 / 9)
    assert score.fb_iou == pytest.approx((60 + 500 / 9) / 2) and score.episodes == 4


def test_a_class_whose_episodes_have_no_union_scores_zero_as_in_hsnet() -> None:
    empty = episode_areas("dog", np.zeros((2, 2), bool), np.zeros((2, 2), bool))
    assert score_fold([empty], ["dog"]).per_class_iou["dog"] == 0.0


def hsnet_fold(episodes: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]], fold_ids: list[int], nclass: int):
    """HSNet's Evaluator.classify_prediction and AverageMeter.compute_iou, rewritten from their description."""
    inter_buf, union_buf = torch.zeros(2, nclass), torch.zeros(2, nclass)
    for class_id, prediction, target, ignore in episodes:
        pred = torch.tensor(prediction, dtype=torch.float32)
        gt = torch.tensor(target, dtype=torch.float32) + 255 * torch.tensor(ignore, dtype=torch.float32)
        pred[gt == 255] = 255
        inter = pred[pred == gt]
        area_inter = torch.histc(inter, bins=2, min=0, max=1) if inter.numel() else torch.zeros(2)
        area_union = torch.histc(pred, bins=2, min=0, max=1) + torch.histc(gt, bins=2, min=0, max=1) - area_inter
        inter_buf[:, class_id] += area_inter
        union_buf[:, class_id] += area_union
    iou = inter_buf / torch.max(union_buf, torch.ones_like(union_buf))
    miou = iou[1, fold_ids].mean() * 100
    fb_iou = (inter_buf[:, fold_ids].sum(1) / union_buf[:, fold_ids].sum(1)).mean() * 100
    return float(miou), float(fb_iou), (iou[1] * 100).tolist()


def test_random_episodes_score_as_hsnet_computes_them() -> None:
    rng = np.random.default_rng(0)
    names = [f"class {i}" for i in range(20)]
    fold_ids = [5, 6, 7, 8, 9]
    episodes = []
    for _ in range(60):
        height, width = rng.integers(4, 30, size=2)
        target = rng.random((height, width)) < rng.random()
        ignore = (rng.random((height, width)) < 0.1) & ~target
        prediction = rng.random((height, width)) < rng.random()
        episodes.append((int(rng.choice(fold_ids)), prediction, target, ignore))
    score = score_fold([episode_areas(names[c], p, t, i) for c, p, t, i in episodes], [names[i] for i in fold_ids])
    miou, fb_iou, per_class = hsnet_fold(episodes, fold_ids, len(names))
    assert score.miou == pytest.approx(miou, abs=1e-4) and score.fb_iou == pytest.approx(fb_iou, abs=1e-4)
    assert [score.per_class_iou[names[i]] for i in fold_ids] == pytest.approx(
        [per_class[i] for i in fold_ids], abs=1e-4
    )


def test_mean_over_folds_and_refusals() -> None:
    folds = [
        score_fold([episode_areas("a", [[1, 0]], [[1, 0]])], ["a"]),
        score_fold([episode_areas("b", [[0, 1]], [[1, 1]])], ["b"]),
    ]
    summary = mean_over_folds(folds)
    assert summary["miou"] == pytest.approx(75.0) and summary["folds"] == 2
    assert summary["per_fold_miou"] == [100.0, 50.0]
    assert [f.fb_iou for f in folds] == [100.0, 25.0]  # b: foreground 1/2, background 0/1
    assert summary["fb_iou"] == pytest.approx(62.5)
    with pytest.raises(ValueError, match="no fold scores"):
        mean_over_folds([])
    with pytest.raises(ValueError, match="not a fold class"):
        score_fold([episode_areas("a", [[1]], [[1]])], ["b"])
    with pytest.raises(ValueError, match="ignored pixels are also foreground"):
        episode_areas("a", [[1]], [[1]], [[1]])
    with pytest.raises(ValueError, match=r"prediction is \(1, 2\) but the target is \(1, 1\)"):
        episode_areas("a", [[1, 0]], [[1]])
