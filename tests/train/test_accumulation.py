"""Gradient accumulation: a step cut into micro-batches is the step of the whole batch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from splitmatch.config import ConfigError
from splitmatch.config.presets import load_config
from splitmatch.model.build import build_segmentor
from splitmatch.train.micro_batches import DivergenceWatch, split_batch
from splitmatch.train.step import build_criterion
from splitmatch.train.targets import build_targets

SEEN_IDS = [0, 1, 2, 3]


def fabricated_batch(batch: int = 4, size: int = 64, seed: int = 0, dim: int = 32) -> dict:
    """Collated-batch-like dict: images, labels with seen boxes on ignore, pseudo masks in the ignore area."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.full((batch, size, size), 255, dtype=torch.int64)
    index = torch.zeros(batch, 1, size, size, dtype=torch.uint8)
    embeddings = []
    for b in range(batch):
        for _ in range(b % 3 + 1):  # 1-3 seen boxes
            y, x = torch.randint(0, size // 2, (2,), generator=g).tolist()
            labels[b, y : y + size // 3, x : x + size // 3] = SEEN_IDS[torch.randint(4, (1,), generator=g).item()]
        free = labels[b] == 255
        count = b % 4  # 0-3 pseudo masks: halves and quarters of the free area
        for k in range(count):
            region = torch.zeros_like(free)
            region[:, k * size // 4 : (k + 1) * size // 4] = True
            index[b, 0][region & free] = k + 1
        embeddings.append(F.normalize(torch.randn(count, dim, generator=g), dim=-1))
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g)
    return {
        "image": images,
        "label": labels,
        "pseudo_index": index,
        "pseudo_embeddings": embeddings,
        "stem": [f"s{b}" for b in range(batch)],
        "orig_size": [(size, size)] * batch,
    }


def config(points: int = 4096, matching: str = "split"):
    return load_config(preset_name="tiny", overrides=[f"loss.num_points={points}", f"loss.matching={matching}"])


def targets_of(batch: dict, matching: str) -> list[dict]:
    pseudo = matching == "split"
    return build_targets(
        batch["label"],
        SEEN_IDS,
        batch["pseudo_index"] if pseudo else None,
        batch["pseudo_embeddings"] if pseudo else None,
    )


@pytest.mark.parametrize("matching", ["split", "hungarian"])
def test_normalisers_known_before_the_forward_are_what_matching_then_does(matching):
    torch.manual_seed(0)
    cfg = config(matching=matching)
    model = build_segmentor(cfg.clip, cfg.decoder).train()
    criterion = build_criterion(cfg.loss)
    batch = fabricated_batch()
    targets = targets_of(batch, matching)
    group = model.query_decoder.query_group
    normalisers = criterion.normalisers(targets, group, torch.device("cpu"))

    outputs = model(batch["image"], model.encode_classes([f"class {i}" for i in SEEN_IDS]))
    matching_result = criterion.matcher(outputs, targets)
    assert normalisers.num_masks == sum(len(t["labels"]) for t in targets)
    matched = sum(len(rows) for rows, _ in matching_result.seen)
    unmatched = len(targets) * matching_result.class_queries.numel() - matched
    assert normalisers.class_weight == pytest.approx(matched + cfg.loss.no_object_weight * unmatched)
    if matching == "split":
        assert normalisers.num_candidates == sum(len(rows) for rows, _ in matching_result.candidate) > 0
    else:
        assert normalisers.num_candidates == 1.0  # clamped: no candidate losses


def step_gradient(model, criterion, batch: dict, parts: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, object]:
    """The flattened gradient and summed loss of one step cut into ``parts`` micro-batches."""
    torch.manual_seed(seed)
    embeddings = model.encode_classes([f"class {i}" for i in SEEN_IDS])
    micro = split_batch(batch, parts)
    targets = [targets_of(part, "split") for part in micro]
    normalisers = criterion.normalisers([t for part in targets for t in part], model.query_decoder.query_group, "cpu")
    model.zero_grad(set_to_none=True)
    loss = torch.zeros(())
    for part, part_targets in zip(micro, targets):
        losses = criterion(model(part["image"], embeddings), part_targets, normalisers)
        losses["loss"].backward()
        loss += losses["loss"].detach()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return grads, loss, normalisers


def test_one_step_in_two_micro_batches_is_the_step_of_the_whole_batch():
    torch.manual_seed(0)
    cfg = config()
    model = build_segmentor(cfg.clip, cfg.decoder).train()
    criterion = build_criterion(cfg.loss)
    batch = fabricated_batch()
    whole, whole_loss, whole_norms = step_gradient(model, criterion, batch, 1, seed=1)
    again, again_loss, _ = step_gradient(model, criterion, batch, 1, seed=2)  # other random points
    halves, halves_loss, halves_norms = step_gradient(model, criterion, batch, 2, seed=1)
    assert whole_norms == halves_norms  # exactly the same normalisers
    noise = (whole_loss - again_loss).abs()
    assert (halves_loss - whole_loss).abs() <= 3 * noise + 1e-3 * whole_loss
    noise_cos = F.cosine_similarity(whole, again, dim=0)
    assert F.cosine_similarity(whole, halves, dim=0) >= noise_cos - 0.02
    assert noise_cos > 0.9  # the points are many: sampling noise is small


def test_batches_are_split_evenly_or_refused():
    batch = fabricated_batch(4)
    parts = split_batch(batch, 2)
    assert [part["stem"] for part in parts] == [["s0", "s1"], ["s2", "s3"]]
    assert torch.equal(torch.cat([part["image"] for part in parts]), batch["image"])
    assert parts[1]["pseudo_embeddings"][1] is batch["pseudo_embeddings"][3]
    with pytest.raises(ValueError, match="4 images does not split into 3"):
        split_batch(batch, 3)
    with pytest.raises(ConfigError, match=r"batch_size \(6\) must split evenly into train.accumulate_steps \(4\)"):
        load_config(preset_name="tiny", overrides=["train.batch_size=6", "train.accumulate_steps=4"])
    with pytest.raises(ConfigError, match=r"train.accumulate_steps must be an integer in 1\.\."):
        load_config(preset_name="tiny", overrides=["train.accumulate_steps=0"])


def test_divergence_watch_keeps_the_first_bad_step_without_syncing_each_step():
    watch = DivergenceWatch(torch.device("cpu"))
    watch.update(1, {"loss": torch.tensor(2.0), "dice": torch.tensor(0.5)})
    assert watch.first_bad_step() is None
    watch.update(2, {"loss": torch.tensor(float("nan")), "dice": torch.tensor(0.25)})
    watch.update(3, {"loss": torch.tensor(float("inf")), "dice": torch.tensor(0.75)})
    step, terms = watch.first_bad_step()
    assert step == 2 and terms["dice"] == 0.25 and terms["loss"] != terms["loss"]


def fixed_points(monkeypatch) -> None:
    """Makes every random point draw the same for every mask: what remains between a whole batch
    and its micro-batches is float rounding alone."""
    rand = torch.rand

    def same_rows(*size, device=None, generator=None, **kwargs):
        size = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else size
        row = rand(1, *size[1:], generator=torch.Generator().manual_seed(sum(size[1:])), **kwargs)
        return row.expand(size[0], *size[1:]).contiguous().to(device)

    monkeypatch.setattr(torch, "rand", same_rows)


@pytest.mark.parametrize("matching", ["split", "hungarian"])
def test_two_micro_batches_of_half_the_batch_give_the_whole_batch_gradient(monkeypatch, matching):
    torch.manual_seed(0)
    cfg = config(points=256, matching=matching)
    model = build_segmentor(cfg.clip, cfg.decoder).train()
    criterion = build_criterion(cfg.loss)
    batch = fabricated_batch()
    embeddings = model.encode_classes([f"class {i}" for i in SEEN_IDS])
    fixed_points(monkeypatch)

    def gradient(parts: int) -> tuple[torch.Tensor, torch.Tensor]:
        micro = split_batch(batch, parts)
        targets = [targets_of(part, matching) for part in micro]
        normalisers = criterion.normalisers([t for p in targets for t in p], model.query_decoder.query_group, "cpu")
        model.zero_grad(set_to_none=True)
        loss = torch.zeros(())
        for part, part_targets in zip(micro, targets):
            losses = criterion(model(part["image"], embeddings.detach()), part_targets, normalisers)
            losses["loss"].backward()
            loss += losses["loss"].detach()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]), loss

    whole, whole_loss = gradient(1)
    halves, halves_loss = gradient(2)
    assert whole.abs().max() > 0
    torch.testing.assert_close(halves_loss, whole_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(halves, whole, rtol=1e-4, atol=1e-6 * whole.abs().max().item())
