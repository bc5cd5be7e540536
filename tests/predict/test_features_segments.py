"""Predictor.segments on the packaged world model: Mask2Former-style segments of its queries."""

from __future__ import annotations

import numpy as np
import pytest

from splitmatch.predict.predictor import Predictor
from splitmatch.predict.segments import OBJECT_THRESHOLD
from splitmatch.world.generator import DEFAULT_SPEC, image_rng, render_image, world_class_split

WORLD = world_class_split()


@pytest.fixture(scope="module")
def packaged() -> Predictor:
    return Predictor.packaged(device="cpu", mode="whole")


@pytest.fixture(scope="module")
def found(packaged):
    """(image, truth, segments, labels) of the first 12 validation images of the world."""
    names = list(WORLD.names)
    results = []
    for index in range(12):
        image, truth = render_image(image_rng(0, "val", index), DEFAULT_SPEC)
        results.append((image, truth, packaged.segments(image, names), packaged.predict(image, names)))
    return results


def test_segments_are_disjoint_masks_at_the_image_size_highest_score_first(found):
    for image, _, segments, _ in found:
        assert segments, "every world image has at least its background"
        taken = np.zeros(image.shape[:2], bool)
        for segment in segments:
            assert segment.mask.dtype == bool and segment.mask.shape == image.shape[:2] and segment.area > 0
            assert not (taken & segment.mask).any()
            taken |= segment.mask
            assert OBJECT_THRESHOLD < segment.score <= 1
            assert segment.name == WORLD.names[segment.class_index] and segment.group in ("seen", "candidate")
        scores = [segment.score for segment in segments]
        assert scores == sorted(scores, reverse=True)


def test_segments_agree_with_the_semantic_map_and_find_the_objects(found):
    agree = total = 0
    best_ious, unseen_found = [], set()
    for _, truth, segments, labels in found:
        for segment in segments:
            agree += int((labels[segment.mask] == segment.class_index).sum())
            total += segment.area
        for class_index in set(np.unique(truth).tolist()) - {0, WORLD.ignore_index}:
            ious = [
                (segment, (segment.mask & (truth == class_index)).sum() / (segment.mask | (truth == class_index)).sum())
                for segment in segments
                if segment.class_index == class_index
            ]
            best_segment, best = max(ious, key=lambda pair: pair[1], default=(None, 0.0))
            best_ious.append(best)
            if best > 0.5 and WORLD.names[class_index] in WORLD.unseen:
                unseen_found.add((best_segment.group, WORLD.names[class_index]))
    assert agree / total > 0.95  # the segments are the queries the map is made of
    assert np.mean(best_ious) > 0.4  # most objects are one query's segment, of their own class
    # Classes the model never trained on are found, by the candidate queries of Split Matching.
    assert any(group == "candidate" for group, _ in unseen_found), unseen_found


def test_the_threshold_is_the_least_score_kept(packaged, found):
    image = found[4][0]
    names = [("background", "backdrop"), *WORLD.names[1:]]  # a synonym: segments name the class by its first name
    # Not monotone in the count: a lower threshold lets in more queries, which may take pixels
    # from others until these keep less than `overlap` of their masks and are dropped.
    for threshold in (0.0, 0.5, OBJECT_THRESHOLD, 0.99):
        assert all(segment.score > threshold for segment in packaged.segments(image, names, threshold=threshold))
    assert len(packaged.segments(image, names, threshold=0.99)) < len(packaged.segments(image, names))
    shown = {segment.name for segment in packaged.segments(image, names)}
    assert "background" in shown and "backdrop" not in shown
    with pytest.raises(ValueError, match=r"threshold must lie in \[0, 1\)"):
        packaged.segments(image, names, threshold=1.0)
