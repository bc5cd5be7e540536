"""Matchers against independent references: per-image solving and brute-force assignment."""

from __future__ import annotations

import itertools

import pytest
import torch

from splitmatch.matching.costs import class_cost, dice_cost, embedding_cost, sigmoid_bce_cost
from splitmatch.matching.matcher import HungarianMatcher, SplitMatcher, solve

NUM_CLASSES, DIM = 5, 8


def random_outputs(batch: int, num_seen: int, num_candidates: int, size: int = 16) -> dict:
    queries = num_seen + num_candidates
    return {
        "pred_logits": torch.randn(batch, queries, NUM_CLASSES + 1),
        "pred_masks": torch.randn(batch, queries, size, size),
        "pred_embeds": torch.nn.functional.normalize(torch.randn(batch, queries, DIM), dim=-1),
        "query_group": torch.tensor([0] * num_seen + [1] * num_candidates),
    }


def random_targets(counts: list[int], pseudo_counts: list[int], size: int = 32) -> list[dict]:
    """Targets as build_targets makes them: a label map of M classes (ids 0..M-1) and 255, and a
    two-layer pseudo-index map of K masks (masks of different layers overlap)."""
    targets = []
    for m, k in zip(counts, pseudo_counts):
        label_map = torch.randint(0, m + 1, (1, size, size), dtype=torch.uint8)
        label_map[label_map == m] = 255
        targets.append(
            {
                "labels": torch.randint(0, NUM_CLASSES, (m,)),
                "label_map": label_map,
                "label_ids": torch.arange(m, dtype=torch.uint8),
                "pseudo_index": torch.randint(0, k + 1, (2, size, size), dtype=torch.uint8),
                "pseudo_ids": torch.arange(1, k + 1, dtype=torch.uint8),
                "pseudo_embeddings": torch.randn(k, DIM),
            }
        )
    return targets


def test_costs_match_elementwise_definitions():
    logits, targets = torch.randn(3, 7), (torch.rand(4, 7) > 0.5).float()
    bce = sigmoid_bce_cost(logits, targets)
    dice = dice_cost(logits, targets)
    for i, j in itertools.product(range(3), range(4)):
        expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[i], targets[j])
        assert bce[i, j] == pytest.approx(expected.item(), abs=1e-5)
        p = logits[i].sigmoid()
        expected_dice = 1 - (2 * (p * targets[j]).sum() + 1) / (p.sum() + targets[j].sum() + 1)
        assert dice[i, j] == pytest.approx(expected_dice.item(), abs=1e-5)
    probs = torch.rand(3, 6)
    labels = torch.tensor([2, 0, 5])
    assert torch.equal(class_cost(probs, labels), -probs[:, labels])
    a, b = torch.randn(3, DIM), torch.randn(2, DIM)
    expected = -torch.nn.functional.cosine_similarity(a[:, None], b[None], dim=-1)
    assert torch.allclose(embedding_cost(a, b), expected, atol=1e-6)


@pytest.mark.parametrize("matcher_type", ["hungarian", "split"])
def test_batched_matching_equals_per_image(matcher_type):
    outputs = random_outputs(batch=4, num_seen=6, num_candidates=4)
    targets = random_targets([3, 0, 5, 2], [2, 6, 0, 1])
    coords = torch.rand(4, 200, 2)
    matcher = (
        HungarianMatcher(2.0, 5.0, 5.0, 200) if matcher_type == "hungarian" else SplitMatcher(2.0, 5.0, 5.0, 2.0, 200)
    )
    batched = matcher(outputs, targets, coords)
    for b in range(4):
        single_outputs = {k: (v[b : b + 1] if k != "query_group" else v) for k, v in outputs.items()}
        single = matcher(single_outputs, targets[b : b + 1], coords[b : b + 1])
        for got, want in ((batched.seen[b], single.seen[0]),) + (
            ((batched.candidate[b], single.candidate[0]),) if batched.candidate is not None else ()
        ):
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_no_targets_give_empty_matches():
    outputs = random_outputs(batch=2, num_seen=4, num_candidates=3)
    targets = random_targets([0, 0], [0, 0])
    matching = SplitMatcher(2.0, 5.0, 5.0, 2.0, 64)(outputs, targets)
    assert all(rows.numel() == 0 and cols.numel() == 0 for rows, cols in matching.seen + matching.candidate)
    matching = HungarianMatcher(2.0, 5.0, 5.0, 64)(outputs, targets)
    assert all(rows.numel() == 0 for rows, _ in matching.seen)


def brute_force(cost: torch.Tensor) -> float:
    """Minimum total cost over all injective assignments of the smaller side."""
    n, m = cost.shape
    if n >= m:
        return min(sum(cost[rows[j], j].item() for j in range(m)) for rows in itertools.permutations(range(n), m))
    return min(sum(cost[i, cols[i]].item() for i in range(n)) for cols in itertools.permutations(range(m), n))


@pytest.mark.parametrize("shape", [(5, 3), (4, 4), (3, 5), (6, 2)])
def test_solver_agrees_with_brute_force(shape):
    for _ in range(5):
        cost = torch.rand(1, *shape)
        ((rows, cols),) = solve(cost, [shape[1]], "test")
        assert len(rows) == min(shape)
        assert cost[0, rows, cols].sum().item() == pytest.approx(brute_force(cost[0]), abs=1e-5)


def test_matchers_reach_brute_force_optimum_on_their_own_costs():
    torch.manual_seed(3)
    outputs = random_outputs(batch=1, num_seen=5, num_candidates=4)
    targets = random_targets([3], [6])
    coords = torch.rand(1, 100, 2)
    matcher = SplitMatcher(2.0, 5.0, 5.0, 2.0, 100)
    matching = matcher(outputs, targets, coords)
    from splitmatch.matching.matcher import mask_costs
    from splitmatch.matching.point_sampling import point_sample
    from splitmatch.matching.target_maps import dense_masks

    seen = torch.arange(5)
    mask_points = point_sample(
        dense_masks(targets[0]["label_map"], targets[0]["label_ids"])[None].float(), coords
    )  # grid_sample, as a reference
    bce, dice = mask_costs(outputs["pred_masks"][:, seen], mask_points, coords)
    probs = outputs["pred_logits"][:, seen].softmax(-1)
    seen_cost = (2 * class_cost(probs, targets[0]["labels"][None]) + 5 * bce + 5 * dice)[0]
    rows, cols = matching.seen[0]
    assert seen_cost[rows, cols].sum().item() == pytest.approx(brute_force(seen_cost), abs=1e-4)

    cand = torch.arange(5, 9)
    pseudo_points = point_sample(
        dense_masks(targets[0]["pseudo_index"], targets[0]["pseudo_ids"])[None].float(), coords
    )
    bce, dice = mask_costs(outputs["pred_masks"][:, cand], pseudo_points, coords)
    emb = embedding_cost(outputs["pred_embeds"][:, cand], targets[0]["pseudo_embeddings"][None])
    cand_cost = (2 * emb + 5 * bce + 5 * dice)[0]
    rows, cols = matching.candidate[0]
    assert len(rows) == 4  # more pseudo masks (6) than candidates (4): the cheapest 4 are kept
    assert cand_cost[rows - 5, cols].sum().item() == pytest.approx(brute_force(cand_cost), abs=1e-4)


def test_seen_and_candidate_groups_never_share_a_query():
    outputs = random_outputs(batch=3, num_seen=4, num_candidates=4)
    targets = random_targets([6, 2, 4], [6, 3, 0])
    matching = SplitMatcher(2.0, 5.0, 5.0, 2.0, 128)(outputs, targets)
    for (seen_rows, _), (cand_rows, _) in zip(matching.seen, matching.candidate):
        assert set(seen_rows.tolist()) <= set(range(4))
        assert set(cand_rows.tolist()) <= set(range(4, 8))
    assert torch.equal(matching.class_queries, torch.arange(4))


def test_split_without_pseudo_masks_equals_hungarian_over_seen_queries():
    outputs = random_outputs(batch=3, num_seen=6, num_candidates=3)
    targets = random_targets([2, 4, 1], [0, 0, 0])
    coords = torch.rand(3, 150, 2)
    split = SplitMatcher(2.0, 5.0, 5.0, 2.0, 150)(outputs, targets, coords)
    seen_only = {k: (v[:, :6] if k not in ("query_group",) else v[:6]) for k, v in outputs.items()}
    hungarian = HungarianMatcher(2.0, 5.0, 5.0, 150)(seen_only, targets, coords)
    for (a_rows, a_cols), (b_rows, b_cols) in zip(split.seen, hungarian.seen):
        assert torch.equal(a_rows, b_rows) and torch.equal(a_cols, b_cols)
    assert all(rows.numel() == 0 for rows, _ in split.candidate)


def test_non_finite_costs_are_refused_with_a_message():
    outputs = random_outputs(batch=2, num_seen=3, num_candidates=2)
    outputs["pred_masks"][1, 0] = float("nan")
    targets = random_targets([2, 2], [1, 1])
    with pytest.raises(FloatingPointError, match="image 1"):
        HungarianMatcher(2.0, 5.0, 5.0, 64)(outputs, targets)


@pytest.mark.parametrize("size", [(17, 23), (160, 190)])  # small masks: grid_sample; large: the gather
def test_target_masks_are_read_at_points_as_grid_sample_reads_them(size):
    from splitmatch.matching.point_sampling import gather_bilinear, point_sample, sample_target_masks

    torch.manual_seed(0)
    masks = torch.rand(5, *size) > 0.5  # neither square nor a power of two
    coords = torch.rand(5, 300, 2)
    coords[:, :4] = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.01, 0.99]])  # borders: zero padding
    reference = point_sample(masks[:, None].float(), coords).squeeze(1)
    assert torch.allclose(sample_target_masks(masks, coords), reference, atol=1e-5)
    assert torch.allclose(gather_bilinear(masks, coords), reference, atol=1e-5)
    shared = coords[:1]  # one set of points for every mask
    assert torch.allclose(sample_target_masks(masks, shared), point_sample(masks[None].float(), shared)[0], atol=1e-5)
    assert sample_target_masks(masks[:0], shared).shape == (0, 300)  # an image without targets
