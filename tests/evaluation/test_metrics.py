"""Metrics against hand-computed confusion matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from splitmatch.data.classes import ClassSplit
from splitmatch.evaluation.metrics import ConfusionMatrix, harmonic_iou, per_class_iou, summarize

CLASSES = ClassSplit(("a", "b", "c", "d"), ("c", "d"))


def test_confusion_matrix_accumulates_over_images_and_skips_ignore():
    confusion = ConfusionMatrix(4)
    confusion.update(np.array([[0, 0], [1, 2]]), np.array([[0, 1], [1, 255]]))
    confusion.update(np.array([[2, 2]]), np.array([[2, 0]]))
    expected = np.zeros((4, 4), np.int64)
    expected[0, 0] = 1
    expected[1, 0] = 1
    expected[1, 1] = 1
    expected[2, 2] = 1
    expected[0, 2] = 1
    assert np.array_equal(confusion.matrix, expected)


def test_per_class_iou_by_hand_and_nan_for_absent_classes():
    matrix = np.array([[3, 1, 0, 0], [0, 2, 0, 0], [2, 0, 4, 0], [0, 0, 0, 0]])
    iou = per_class_iou(matrix)
    assert iou[0] == pytest.approx(3 / (3 + 1 + 2))
    assert iou[1] == pytest.approx(2 / 3)
    assert iou[2] == pytest.approx(4 / 6)
    assert math.isnan(iou[3])
    result = summarize(matrix, CLASSES)
    assert result["miou_seen"] == pytest.approx(100 * (3 / 6 + 2 / 3) / 2)
    assert result["miou_unseen"] == pytest.approx(100 * 4 / 6)  # d is NaN and left out
    assert result["pixel_acc"] == pytest.approx(100 * 9 / 12)
    assert math.isnan(result["per_class_iou"]["d"])
    # c's 6 pixels: 2 predicted as a; a's 4 pixels: 1 as b; d is absent from the ground truth
    assert result["mistaken_for"] == {"a": {"b": 25.0}, "b": {}, "c": {"a": pytest.approx(100 / 3)}}


def test_class_predicted_but_absent_from_ground_truth_has_zero_iou():
    matrix = np.array([[2, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    iou = per_class_iou(matrix)
    assert iou[2] == 0.0 and math.isnan(iou[3])


def test_harmonic_iou_zegclip_example():
    assert round(harmonic_iou(91.9, 77.8), 1) == 84.3
    assert harmonic_iou(0.0, 0.0) == 0.0
    assert math.isnan(harmonic_iou(float("nan"), 50.0))


def test_update_refuses_mismatched_shapes_and_ids():
    confusion = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="pixels"):
        confusion.update(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="outside"):
        confusion.update(np.full((2, 2), 5), np.zeros((2, 2)))


def test_taken_for_background_counts_each_class_pixels_labelled_background():
    classes = ClassSplit(("background", "cat", "dog"), ("dog",), dataset="pets")
    truth = np.array([[0, 1, 1, 1], [2, 2, 2, 2]])
    predicted = np.array([[0, 0, 1, 1], [0, 0, 0, 1]])  # cat: 1 of 3 to background; dog: 3 of 4
    confusion = ConfusionMatrix(3)
    confusion.update(predicted, truth)
    shares = summarize(confusion.matrix, classes)["taken_for_background"]
    assert shares == pytest.approx({"cat": 100 / 3, "dog": 75.0})
    without = ClassSplit(("cat", "dog"), ("dog",), dataset="pets")
    assert "taken_for_background" not in summarize(np.eye(2, dtype=np.int64), without)
