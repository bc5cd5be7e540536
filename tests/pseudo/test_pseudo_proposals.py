"""The proposal settings on hand-made clusters: per-scale minimum areas, containment, the cap's order, clipping."""

from __future__ import annotations

import pytest
import torch

from splitmatch.config import ConfigError, load_config
from splitmatch.config.presets import preset
from splitmatch.pseudo.proposals import deduplicate, feature_coherence, keep_unannotated_clusters, propose


def two_objects() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """An 8 x 8 grid, all unannotated: a 2 x 2 object and a 4 x 4 object on a background, each its own colour."""
    dense = torch.zeros(1, 3, 8, 8)
    dense[0, 0] = 1.0
    small, big = torch.zeros(8, 8, dtype=torch.bool), torch.zeros(8, 8, dtype=torch.bool)
    small[0:2, 0:2] = True
    big[4:8, 4:8] = True
    dense[0, :, small] = torch.tensor([0.0, 1.0, 0.0])[:, None]
    dense[0, :, big] = torch.tensor([0.0, 0.0, 1.0])[:, None]
    return dense, torch.ones(1, 8, 8), small, big


def scales_of(found: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor) -> list[int]:
    masks, scales = found
    return sorted(int(s) for m, s in zip(masks, scales) if torch.equal(m, target))


def test_one_minimum_area_per_scale():
    dense, unannotated, small, big = two_objects()
    args = ([2, 4], 10, 0.8)
    # No de-duplication (IoU 1), so each scale shows what it kept. One area for both scales
    # (0.05 of 64 patches = 3.2): both objects at both scales.
    (found,) = propose(dense, unannotated, *args, 0.05, 1.0, 20)
    assert scales_of(found, small) == [0, 1] and scales_of(found, big) == [0, 1]
    # Window 2 keeps masks of 4 patches, window 4 those of 13 or more.
    (found,) = propose(dense, unannotated, *args, [0.05, 0.2], 1.0, 20)
    assert scales_of(found, small) == [0] and scales_of(found, big) == [0, 1]
    (found,) = propose(dense, unannotated, *args, [0.5, 0.2], 1.0, 20)
    assert scales_of(found, small) == [] and scales_of(found, big) == [1]
    with pytest.raises(ValueError, match="one value per window size"):
        propose(dense, unannotated, *args, [0.05], 0.7, 20)


def test_containment_drops_a_part_beside_its_whole_and_keeps_what_lies_mostly_outside():
    masks = torch.zeros(3, 20, dtype=torch.bool)
    masks[0, :10] = True  # the whole
    masks[1, :4] = True  # a part, entirely inside: IoU 0.4, so the IoU rule keeps it
    masks[2, 7:13] = True  # half inside (3 of 6 patches)
    assert deduplicate(masks, 0.7, 10).tolist() == [0, 2, 1]  # today's rule: all three, largest first
    assert deduplicate(masks, 0.7, 10, containment=1.0).tolist() == [0, 2, 1]
    assert deduplicate(masks, 0.7, 10, containment=0.8).tolist() == [0, 2]
    assert deduplicate(masks, 0.7, 10, containment=0.4).tolist() == [0]  # half inside is more than 0.4
    assert deduplicate(masks, 0.7, 10, containment=0.5).tolist() == [0, 2]  # exactly half is not more


def test_the_cap_keeps_the_largest_or_the_highest_priority():
    masks = torch.zeros(4, 20, dtype=torch.bool)
    for k, (start, stop) in enumerate([(0, 8), (8, 14), (14, 18), (18, 20)]):
        masks[k, start:stop] = True
    assert deduplicate(masks, 0.7, 2).tolist() == [0, 1]
    priority = torch.tensor([0.1, 0.5, 0.9, 0.5])
    assert deduplicate(masks, 0.7, 2, priority=priority).tolist() == [2, 1]  # ties: the larger first
    assert deduplicate(masks, 0.7, 10, priority=priority).tolist() == [2, 1, 3, 0]
    assert deduplicate(masks[:0], 0.7, 2, priority=priority[:0]).tolist() == []


def test_feature_coherence_is_one_for_alike_patches_and_low_for_mixed_ones():
    dense = torch.zeros(2, 6)
    dense[0, :3] = 2.0  # three patches pointing one way
    dense[1, 3:] = 5.0  # three pointing another, at right angles
    masks = torch.zeros(2, 6, dtype=torch.bool)
    masks[0, :3] = True
    masks[1] = True
    coherence = feature_coherence(dense, masks)
    assert torch.allclose(coherence, torch.tensor([1.0, 0.5**0.5]), atol=1e-6)


def test_coherence_order_keeps_the_coherent_object_over_a_larger_mixed_one():
    dense, _, small, big = two_objects()
    noise = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    dense = torch.where(big, dense + 0.3 * noise, dense)  # the big object's features agree less
    unannotated = (small | big).float()[None]  # the background is annotated
    args = ([4], 10, 0.8, 0.05, 0.7, 1)
    ((by_area, _),) = propose(dense, unannotated, *args)
    ((by_coherence, _),) = propose(dense, unannotated, *args, order="coherence")
    assert by_area[0].sum() > small.sum() and not (by_area[0] & ~big).any()  # (most of) the big one
    assert torch.equal(by_coherence[0], small)
    with pytest.raises(ValueError, match="order must be one of"):
        propose(dense, unannotated, *args, order="score")


def test_without_clipping_a_kept_cluster_stays_whole_and_its_area_counts_whole():
    # Cluster 0: patches 0-3, three unannotated; cluster 1: patches 4-7, one unannotated.
    assignments = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]])
    unannotated = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]])
    clipped, keep = keep_unannotated_clusters(assignments, unannotated, rho=0.75, min_area=0.0)
    assert keep.tolist() == [[True, False]] and clipped[0, 0].tolist() == [True] * 3 + [False] * 5
    whole, keep = keep_unannotated_clusters(assignments, unannotated, rho=0.75, min_area=0.0, clip=False)
    assert keep.tolist() == [[True, False]]  # the rho rule is the same on the unclipped cluster
    assert whole[0, 0].tolist() == [True] * 4 + [False] * 4
    # A minimum of 4 patches: the clipped mask (3) fails it, the whole cluster (4) passes.
    _, keep = keep_unannotated_clusters(assignments, unannotated, rho=0.75, min_area=0.5)
    assert keep.tolist() == [[False, False]]
    _, keep = keep_unannotated_clusters(assignments, unannotated, rho=0.75, min_area=0.5, clip=False)
    assert keep.tolist() == [[True, False]]


def test_propose_without_clipping_returns_clusters_that_reach_into_annotated_patches():
    dense, _, small, big = two_objects()
    unannotated = big.float()[None].clone()
    unannotated[0, 4, 4] = 0.0  # one patch of the object is annotated: 15 of 16 unannotated
    ((clipped, _),) = propose(dense, unannotated, [4], 10, 0.8, 0.0, 0.7, 20)
    ((whole, _),) = propose(dense, unannotated, [4], 10, 0.8, 0.0, 0.7, 20, clip=False)
    assert any(torch.equal(m, big & (unannotated[0] > 0)) for m in clipped)
    assert any(torch.equal(m, big) for m in whole)
    assert not (clipped & (unannotated[0] < 0.5)).any() and (whole & (unannotated[0] < 0.5)).any()


def test_the_new_settings_are_config_and_the_world_keeps_the_methods_behaviour():
    world = preset("world").pseudo
    assert (world.resize, world.min_area_per_scale, world.dedup_containment) == ("square", [], 1.0)
    assert (world.mask_order, world.clip_to_unannotated) == ("area", True)
    for name in ("voc-vitb16", "coco-stuff-vitb16", "context-vitb16"):
        pseudo = preset(name).pseudo
        assert pseudo.resize == "keep_aspect" and len(pseudo.min_area_per_scale) == len(pseudo.window_sizes)
        assert pseudo.dedup_containment < 1 and pseudo.clip_to_unannotated
    config = load_config(preset_name="tiny", overrides=["pseudo.min_area_per_scale=[0.01,0.02,0.05]"])
    assert config.pseudo.min_area_per_scale == [0.01, 0.02, 0.05]
    with pytest.raises(ConfigError, match="pseudo.min_area_per_scale needs one value per window size"):
        load_config(preset_name="tiny", overrides=["pseudo.min_area_per_scale=[0.01]"])
    with pytest.raises(ConfigError, match="pseudo.dedup_containment must be a finite number in \\(0, 1\\]"):
        load_config(preset_name="tiny", overrides=["pseudo.dedup_containment=0"])
    with pytest.raises(ConfigError, match="pseudo.mask_order must be one of"):
        load_config(preset_name="tiny", overrides=["pseudo.mask_order=score"])
    with pytest.raises(ConfigError, match="pseudo.resize must be one of"):
        load_config(preset_name="tiny", overrides=["pseudo.resize=pad"])


def test_unclipped_masks_are_scored_whole_seen_pixels_included():
    import numpy as np
    from test_pseudo_quality import CLASSES, hand_case

    from splitmatch.pseudo.quality import score_image

    label, index = hand_case()
    text = np.eye(4, dtype=np.float32)
    embeddings = text[[2, 2, 3]]
    tallies: dict = {}
    score_image(label, index, embeddings, text, CLASSES, 0.05, tallies, "x", clip_to_unannotated=False)
    counts = tallies["overall"].counts
    # Mask 1: 14 b of 15 pixels that are not void; mask 2: 4 c of 4; mask 3: 7 seen a of 8, so its
    # dominant class is a and its reading as c is wrong. Clipped, precision was 19 / 20, accuracy 2 / 3.
    assert counts["mask_precision"] == [25, 27]
    assert counts["region_accuracy"] == [1, 3]
    assert counts["unseen_coverage"] == [20, 32] and counts["object_recall"] == [1, 2]
