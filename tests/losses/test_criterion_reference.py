"""The matcher and the criterion against the code before their rework (benchmarks/reference_host_step):
the same assignments and losses from the maps as from the unpacked masks, in one device
synchronisation per call whatever the batch and the number of read-outs."""

from __future__ import annotations

import pytest
import torch
from host_step_reference import reference_criterion, reference_matcher, reference_targets

from splitmatch.losses.criterion import SetCriterion
from splitmatch.matching import matcher as matcher_module
from splitmatch.matching.matcher import HungarianMatcher, SplitMatcher, pad_targets
from splitmatch.testing import host_syncs
from splitmatch.train.targets import build_targets, move_targets

CLASSES, DIM, SEEN, CANDIDATES = 6, 16, 8, 4
WEIGHTS = {"class": 2.0, "bce": 5.0, "dice": 5.0, "embed": 2.0, "candidate": 1.0}


def batch(size: int, seed: int = 0) -> dict:
    """Four images: one without seen classes, pseudo masks from none to more than the candidate
    queries, some of them cut to nothing (id 2 never appears)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (4, size, size), generator=g, dtype=torch.uint8)
    labels[:, : size // 3] = 255
    labels[1] = 255
    index = torch.zeros(4, 3, size, size, dtype=torch.uint8)
    embeddings = []
    for b, count in enumerate((0, 3, 7, 11)):  # 7 and 11 pseudo masks: more than the 4 candidates
        index[b, :, : size // 3] = torch.randint(0, count + 1, (3, size // 3, size), generator=g, dtype=torch.uint8)
        index[b][index[b] == 2] = 0
        embeddings.append(torch.nn.functional.normalize(torch.randn(count, DIM, generator=g), dim=-1))
    return {"label": labels, "pseudo_index": index, "pseudo_embeddings": embeddings}


def outputs(layers: int, size: int, seed: int, device=None) -> dict:
    g = torch.Generator().manual_seed(seed)
    queries = SEEN + CANDIDATES
    group = torch.tensor([0] * SEEN + [1] * CANDIDATES, device=device)

    def leaf(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=g, device=device) * scale).requires_grad_()

    readouts = [
        {"pred_logits": leaf(4, queries, CLASSES + 1), "pred_masks": leaf(4, queries, size, size, scale=3.0),
         "pred_embeds": leaf(4, queries, DIM), "query_group": group}
        for _ in range(layers)
    ]  # fmt: skip
    return {**readouts[0], "aux_outputs": readouts[1:]}


def matchers(module, matching: str, points: int):
    if matching == "split":
        return module.SplitMatcher(2.0, 5.0, 5.0, 2.0, points)
    return module.HungarianMatcher(2.0, 5.0, 5.0, points)


def criteria(matching: str, points: int, sampling: str = "uniform"):
    args = (WEIGHTS, 0.1, points, 3.0, 0.75, True, sampling)
    ours = SetCriterion(matchers(matcher_module, matching, points), *args)
    return ours, reference_criterion.SetCriterion(matchers(reference_matcher, matching, points), *args)


def both_targets(data: dict, matching: str) -> tuple[list[dict], list[dict]]:
    pseudo = (data["pseudo_index"], data["pseudo_embeddings"]) if matching == "split" else (None, None)
    ours = build_targets(data["label"], list(range(CLASSES)), *pseudo)
    return ours, reference_targets.build_targets(data["label"].long(), list(range(CLASSES)), *pseudo)


@pytest.mark.parametrize("matching", ["split", "hungarian"])
@pytest.mark.parametrize("map_size, points", [(24, 200), (64, 200)])  # grid_sample of unpacked masks; gathers
def test_every_read_out_is_matched_as_before(matching, map_size, points):
    data = batch(map_size)
    ours, theirs = both_targets(data, matching)
    out = outputs(3, 9, seed=1)
    coords = torch.rand(4, points, 2, generator=torch.Generator().manual_seed(2))
    new, old = matchers(matcher_module, matching, points), matchers(reference_matcher, matching, points)
    readouts = [out, *out["aux_outputs"]]
    matched = new.match_readouts(readouts, pad_targets(ours, coords))
    for readout, matching_now in zip(readouts, matched):
        before = old(readout, theirs, coords)
        pairs = [(matching_now.seen, before.seen)]
        if matching == "split":
            pairs.append((matching_now.candidate, before.candidate))
            assert [len(rows) for rows, _ in matching_now.candidate] == [0, 3 - 1, 4, 4]  # id 2 was cut away
        for got, want in pairs:
            for (rows, cols), (rows_before, cols_before) in zip(got, want):
                assert torch.equal(rows, rows_before) and torch.equal(cols, cols_before)
        assert torch.equal(matching_now.class_queries, before.class_queries)


@pytest.mark.parametrize(
    "matching, sampling", [("split", "uniform"), ("split", "importance"), ("hungarian", "uniform")]
)
@pytest.mark.parametrize("layers", [1, 4])
def test_losses_and_gradients_are_those_of_before(matching, sampling, layers):
    data = batch(64)
    ours, theirs = both_targets(data, matching)
    new, old = criteria(matching, 256, sampling)
    results = {}
    for name, criterion, targets in (("new", new, ours), ("old", old, theirs)):
        out = outputs(layers, 10, seed=3)
        torch.manual_seed(4)  # the same points, drawn in the same order
        losses = criterion(out, targets)
        losses["loss"].backward()
        leaves = [r[k] for r in [out, *out["aux_outputs"]] for k in ("pred_logits", "pred_masks", "pred_embeds")]
        results[name] = (losses, torch.cat([leaf.grad.flatten() for leaf in leaves if leaf.grad is not None]))
    (losses, grads), (losses_before, grads_before) = results["new"], results["old"]
    assert losses.keys() == losses_before.keys()
    for key in losses:
        torch.testing.assert_close(losses[key], losses_before[key], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grads, grads_before, rtol=1e-5, atol=1e-8)


def test_batched_costs_of_all_read_outs_give_the_per_image_assignments(monkeypatch):
    data = batch(64)
    ours, _ = both_targets(data, "split")
    out = outputs(3, 9, seed=5)
    padded = pad_targets(ours, torch.rand(4, 300, 2, generator=torch.Generator().manual_seed(6)))
    matcher = SplitMatcher(2.0, 5.0, 5.0, 2.0, 300)
    per_image = matcher.match_readouts([out, *out["aux_outputs"]], padded)
    batched_costs = matcher_module.readout_mask_costs
    monkeypatch.setattr(matcher_module, "readout_mask_costs", lambda *a: batched_costs(*a, per_image=False))
    batched = matcher.match_readouts([out, *out["aux_outputs"]], padded)  # the way a GPU builds them
    for a, b in zip(per_image, batched):
        for (rows, cols), (rows_b, cols_b) in zip(a.seen + a.candidate, b.seen + b.candidate):
            assert torch.equal(rows, rows_b) and torch.equal(cols, cols_b)
        assert torch.equal(a.seen_index.query, b.seen_index.query)


@pytest.mark.parametrize("matching", ["split", "hungarian"])
@pytest.mark.parametrize("layers", [1, 5])
def test_one_host_synchronisation_per_call_whatever_the_read_outs(matching, layers):
    data = batch(32)
    ours, theirs = both_targets(data, matching)
    new, old = criteria(matching, 128)
    counted = {}
    for name, criterion, targets in (("new", new, ours), ("old", old, theirs)):
        with host_syncs.EmulatedDevice():
            out = outputs(layers, 8, seed=7, device=host_syncs.DEVICE)
            moved = move_targets(targets, host_syncs.DEVICE) if name == "new" else [
                {k: v.to(host_syncs.DEVICE) for k, v in t.items()} for t in targets]  # fmt: skip
            normalisers = criterion.normalisers(moved, torch.tensor([0] * SEEN + [1] * CANDIDATES), host_syncs.DEVICE)
            criterion(out, moved, normalisers)  # the first call copies the model's query groups over once
            with host_syncs.EmulatedDevice() as counts:
                losses = criterion(out, moved, normalisers)
                losses["loss"].backward()
        counted[name] = counts
    assert counted["new"].syncs == {"device-to-host copy": 1}
    assert counted["new"].h2d_copies == 1  # the matched pairs of every read-out, one copy
    assert counted["old"].total_syncs >= 2 * layers * (2 if matching == "split" else 1)


def test_unpacked_masks_written_by_hand_are_still_read():
    data = batch(24)
    ours, theirs = both_targets(data, "split")
    new, _ = criteria("split", 200)
    out = outputs(2, 9, seed=8)
    torch.manual_seed(9)
    from_maps = new(out, ours)["loss"]
    torch.manual_seed(9)
    from_masks = new(out, theirs)["loss"]  # "masks" and "pseudo_masks", as the reference built them
    torch.testing.assert_close(from_maps, from_masks, rtol=0, atol=0)
    with pytest.raises(ValueError, match="pseudo masks"):
        SplitMatcher(2.0, 5.0, 5.0, 2.0, 50)(
            out, [{k: t[k] for k in ("labels", "label_map", "label_ids")} for t in ours]
        )
    assert isinstance(HungarianMatcher(2.0, 5.0, 5.0, 50)(out, ours).seen, list)


@pytest.mark.parametrize("size", [24, 64])  # unpacked on the device; gathered
def test_compact_pseudo_maps_give_the_losses_of_full_ones(size):
    from splitmatch.matching.target_maps import expand_index_map
    from splitmatch.train.targets import pseudo_view

    data = batch(size)
    g = torch.Generator().manual_seed(10)
    grid = torch.zeros(4, 3, 6, 6, dtype=torch.uint8)
    for b, count in enumerate((0, 3, 7, 11)):
        grid[b] = torch.randint(0, count + 1, (3, 6, 6), generator=g, dtype=torch.uint8)
    rows = (torch.arange(size) * 6 // size).expand(4, -1).clone()
    cols = (torch.arange(size) * 6 // size).flip(0).expand(4, -1).clone()  # a flipped crop
    rows[:, -3:], cols[:, -5:] = -1, -1  # padding
    data.update(pseudo_grid=grid, pseudo_rows=rows, pseudo_cols=cols)
    data["pseudo_index"] = expand_index_map(grid, rows, cols, data["label"][:, None])
    full = build_targets(data["label"], list(range(CLASSES)), data["pseudo_index"], data["pseudo_embeddings"])
    compact = build_targets(data["label"], list(range(CLASSES)), data["pseudo_index"], data["pseudo_embeddings"],
                            pseudo_view=pseudo_view(data))  # fmt: skip
    criterion, _ = criteria("split", 200)
    losses = []
    for targets in (full, compact):
        torch.manual_seed(11)
        losses.append(criterion(outputs(3, 9, seed=12), targets))
    for key in losses[0]:
        torch.testing.assert_close(losses[1][key], losses[0][key], rtol=0, atol=0)
