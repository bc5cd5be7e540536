"""The matcher and the criterion against the code before their rework (its assignments, losses,
gradients and synchronisations on these inputs, recorded in tests/fixtures: host_step_fixture.py):
the same assignments and losses from the maps as from the unpacked masks, in one device
synchronisation per call whatever the batch and the number of read-outs."""

from __future__ import annotations

import pytest
import torch
from host_step_fixture import recorded, recorded_names, recorded_targets, value_name

from splitmatch.losses.criterion import SetCriterion
from splitmatch.matching import matcher as matcher_module
from splitmatch.matching.matcher import HungarianMatcher, SplitMatcher, pad_targets
from splitmatch.testing import host_syncs
from splitmatch.train.targets import build_targets, move_targets

CLASSES, DIM, SEEN, CANDIDATES = 6, 16, 8, 4
WEIGHTS = {"class": 2.0, "bce": 5.0, "dice": 5.0, "embed": 2.0, "candidate": 1.0}
MATCH_CASES = [(matching, *size) for size in [(24, 200), (64, 200)] for matching in ("split", "hungarian")]
LOSS_CASES = [
    (*case, layers)
    for layers in (1, 4)
    for case in [("split", "uniform"), ("split", "importance"), ("hungarian", "uniform")]
]
SYNC_CASES = [(matching, layers) for layers in (1, 5) for matching in ("split", "hungarian")]


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
        # Drawn in float64: the same bits on every CPU (float32 normals take a vectorised path on some).
        embeddings.append(
            torch.nn.functional.normalize(torch.randn(count, DIM, generator=g, dtype=torch.float64), dim=-1).float()
        )
    return {"label": labels, "pseudo_index": index, "pseudo_embeddings": embeddings}


def outputs(layers: int, size: int, seed: int, device=None) -> dict:
    g = torch.Generator().manual_seed(seed)
    queries = SEEN + CANDIDATES
    group = torch.tensor([0] * SEEN + [1] * CANDIDATES, device=device)

    def leaf(*shape: int, scale: float = 1.0) -> torch.Tensor:
        draw = torch.randn(*shape, generator=g, device=device, dtype=torch.float64).float()  # as the embeddings
        return (draw * scale).requires_grad_()

    readouts = [
        {
            "pred_logits": leaf(4, queries, CLASSES + 1),
            "pred_masks": leaf(4, queries, size, size, scale=3.0),
            "pred_embeds": leaf(4, queries, DIM),
            "query_group": group,
        }
        for _ in range(layers)
    ]
    return {**readouts[0], "aux_outputs": readouts[1:]}


def matchers(module, matching: str, points: int):
    if matching == "split":
        return module.SplitMatcher(2.0, 5.0, 5.0, 2.0, points)
    return module.HungarianMatcher(2.0, 5.0, 5.0, points)


def criterion_of(matching: str, points: int, sampling: str = "uniform", code=(matcher_module, SetCriterion)):
    """The criterion of the library, or with ``code`` (a matcher module, a criterion class) that of other code."""
    matchers_module, criterion_class = code
    return criterion_class(matchers(matchers_module, matching, points), WEIGHTS, 0.1, points, 3.0, 0.75, True, sampling)


def targets_of(data: dict, matching: str, targets_module=None) -> list[dict]:
    """The library's targets of ``data``, or with ``targets_module`` those of its ``build_targets`` (int64 labels)."""
    pseudo = (data["pseudo_index"], data["pseudo_embeddings"]) if matching == "split" else (None, None)
    if targets_module is None:
        return build_targets(data["label"], list(range(CLASSES)), *pseudo)
    return targets_module.build_targets(data["label"].long(), list(range(CLASSES)), *pseudo)


def matching_inputs(map_size: int, points: int) -> tuple[dict, dict, torch.Tensor]:
    """The batch, three read-outs and ``[4, points, 2]`` points every read-out is matched at."""
    return batch(map_size), outputs(3, 9, seed=1), torch.rand(4, points, 2, generator=torch.Generator().manual_seed(2))


def losses_and_gradients(criterion, targets: list[dict], layers: int) -> tuple[dict, torch.Tensor]:
    """The loss terms of one call and the gradients of every read-out's outputs, flattened and concatenated."""
    out = outputs(layers, 10, seed=3)
    torch.manual_seed(4)  # the same points, drawn in the same order
    losses = criterion(out, targets)
    losses["loss"].backward()
    leaves = [r[k] for r in [out, *out["aux_outputs"]] for k in ("pred_logits", "pred_masks", "pred_embeds")]
    return losses, torch.cat([leaf.grad.flatten() for leaf in leaves if leaf.grad is not None])


def counted_call(criterion, targets: list[dict], layers: int, move) -> host_syncs.Counts:
    """What one call of ``criterion`` and its backward cost on the emulated device, ``move`` having put
    ``targets`` there, after a first call (which copies the model's query groups over once)."""
    with host_syncs.EmulatedDevice():
        out = outputs(layers, 8, seed=7, device=host_syncs.DEVICE)
        moved = move(targets)
        normalisers = criterion.normalisers(moved, torch.tensor([0] * SEEN + [1] * CANDIDATES), host_syncs.DEVICE)
        criterion(out, moved, normalisers)
        with host_syncs.EmulatedDevice() as counts:
            losses = criterion(out, moved, normalisers)
            losses["loss"].backward()
    return counts


@pytest.mark.parametrize("matching, map_size, points", MATCH_CASES)  # grid_sample of unpacked masks; gathers
def test_every_read_out_is_matched_as_before(matching, map_size, points):
    data, out, coords = matching_inputs(map_size, points)
    ours = targets_of(data, matching)
    new = matchers(matcher_module, matching, points)
    readouts = [out, *out["aux_outputs"]]
    matched = new.match_readouts(readouts, pad_targets(ours, coords))
    for index, matching_now in enumerate(matched):
        before = value_name("matchings", matching, map_size, points, index)
        pairs = [(matching_now.seen, recorded_targets(value_name(before, "seen")))]
        if matching == "split":
            pairs.append((matching_now.candidate, recorded_targets(value_name(before, "candidate"))))
            assert [len(rows) for rows, _ in matching_now.candidate] == [0, 3 - 1, 4, 4]  # id 2 was cut away
        for got, want in pairs:
            assert len(got) == len(want) == 4
            for (rows, cols), pair_before in zip(got, want):
                assert torch.equal(rows, pair_before["rows"]) and torch.equal(cols, pair_before["cols"])
        assert torch.equal(matching_now.class_queries, recorded(value_name(before, "class_queries")))


# The recorded losses and gradients are float32, computed with ATen's AVX2 kernels on one thread;
# another CPU's kernels sum in another order and round exp and log differently. With ATen's scalar
# kernels (ATEN_CPU_CAPABILITY=default) the losses came out the same and the gradients moved by at
# most 7.5e-9 (the largest is 0.1); inputs a float32 rounding apart (as float32 normals drawn by
# those two kernels are) moved the losses by 1.6e-7 relative and the gradients by 2.6e-8: a ninth
# of the bounds below. A no-object weight 1 % off, or a dice smoothing of 0.9 instead of 1, fails
# every case.
RTOL, ATOL = 1e-5, 1e-7


@pytest.mark.parametrize("matching, sampling, layers", LOSS_CASES)
def test_losses_and_gradients_are_those_of_before(matching, sampling, layers):
    losses, grads = losses_and_gradients(criterion_of(matching, 256, sampling), targets_of(batch(64), matching), layers)
    case = value_name("losses", matching, sampling, layers)
    losses_before = {
        name: recorded(value_name(case, "terms", name)) for name in recorded_names(value_name(case, "terms"))
    }
    assert losses.keys() == losses_before.keys()
    for name in losses:
        torch.testing.assert_close(losses[name].detach(), losses_before[name], rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(grads, recorded(value_name(case, "gradients")), rtol=RTOL, atol=ATOL)


def test_batched_costs_of_all_read_outs_give_the_per_image_assignments(monkeypatch):
    data = batch(64)
    ours = targets_of(data, "split")
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


@pytest.mark.parametrize("matching, layers", SYNC_CASES)
def test_one_host_synchronisation_per_call_whatever_the_read_outs(matching, layers):
    counts = counted_call(
        criterion_of(matching, 128),
        targets_of(batch(32), matching),
        layers,
        lambda targets: move_targets(targets, host_syncs.DEVICE),
    )
    assert counts.syncs == {"device-to-host copy": 1}
    assert counts.h2d_copies == 1  # the matched pairs of every read-out, one copy
    syncs_before = int(recorded(value_name("syncs", matching, layers)))
    assert syncs_before >= 2 * layers * (2 if matching == "split" else 1)


def test_unpacked_masks_written_by_hand_are_still_read():
    data = batch(24)
    ours = targets_of(data, "split")
    theirs = recorded_targets("unpacked")  # as build_targets unpacked them before the rework
    new = criterion_of("split", 200)
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
    compact = build_targets(
        data["label"],
        list(range(CLASSES)),
        data["pseudo_index"],
        data["pseudo_embeddings"],
        pseudo_view=pseudo_view(data),
    )
    criterion = criterion_of("split", 200)
    losses = []
    for targets in (full, compact):
        torch.manual_seed(11)
        losses.append(criterion(outputs(3, 9, seed=12), targets))
    for key in losses[0]:
        torch.testing.assert_close(losses[1][key], losses[0][key], rtol=0, atol=0)
