"""One training step with Split Matching vs Hungarian matching, same model and batch.

Method: the step is the body of ``splitmatch.train.trainer.train``'s loop: ``build_targets``
(which unpacks the pseudo-mask index maps for Split Matching), forward, ``SetCriterion``
(matching and losses on the last read-out and the 6 auxiliary ones), ``zero_grad``, backward,
gradient clipping and the AdamW step. The two criteria come from ``build_criterion`` with
``loss.matching`` set to ``split`` or ``hungarian``; model, optimizer and batch are shared and
the two steps alternate (speed does not depend on the weights' values).

The batch is synthetic: random images; labels with 1-4 seen-class boxes on an ignore (255)
background that also holds 1-3 boxes standing for unseen objects; pseudo masks standing for
the cache, cut from the unannotated area by 2x2, 3x3 and 4x4 grids (one scale each, like the
cache's index map) with random region embeddings.

Configurations: ``voc-vitb16`` (ViT-B/16 random weights, its decoder and loss settings,
12,544 points) at batch 2 and crop 512 instead of 16 x 512, which this 2-core CPU cannot run
in reasonable time: both matchers' costs scale with the batch alike, so the ratio holds; and
the ``world`` preset as it trains (its own batch and crop). Target: split / hungarian <= 1.10.
For context, the two criteria alone (targets, matching and losses, no backward) are timed
on one fixed set of outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from common import Result, describe_samples, paired_ratio, parse_args, print_results, time_interleaved, vitb16_config

from splitmatch.config import ExperimentConfig, merge
from splitmatch.config.presets import preset
from splitmatch.model.build import build_segmentor
from splitmatch.train.optim import build_optimizer
from splitmatch.train.step import build_criterion
from splitmatch.train.targets import build_targets

TARGET = 1.10
GRIDS = (2, 3, 4)  # pseudo-mask cells per side, one scale each


def box(size: int, g: torch.Generator) -> tuple[slice, slice]:
    h, w = torch.randint(size // 8, size // 2, (2,), generator=g).tolist()
    y, x = torch.randint(0, size - h, (1,), generator=g).item(), torch.randint(0, size - w, (1,), generator=g).item()
    return slice(y, y + h), slice(x, x + w)


def make_batch(batch: int, size: int, seen_ids: list[int], dim: int, seed: int = 0) -> dict:
    """Images, labels, pseudo index maps ``[B, S, H, W]`` and embeddings (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.full((batch, size, size), 255, dtype=torch.int64)
    index = torch.zeros(batch, len(GRIDS), size, size, dtype=torch.uint8)
    embeddings = []
    for b in range(batch):
        for _ in range(torch.randint(1, 5, (1,), generator=g).item()):
            labels[b][box(size, g)] = seen_ids[torch.randint(len(seen_ids), (1,), generator=g).item()]
        for _ in range(torch.randint(1, 4, (1,), generator=g).item()):
            labels[b][box(size, g)] = 255  # an "unseen" object
        free = labels[b] == 255
        count = 0
        for scale, cells in enumerate(GRIDS):
            edges = torch.linspace(0, size, cells + 1).long().tolist()
            for i in range(cells):
                for j in range(cells):
                    cell = torch.zeros_like(free)
                    cell[edges[i] : edges[i + 1], edges[j] : edges[j + 1]] = True
                    if (cell & free).sum() > 0.02 * size * size:
                        count += 1
                        index[b, scale][cell & free] = count
        embeddings.append(F.normalize(torch.randn(count, dim, generator=g), dim=-1))
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g)
    return {"image": images, "label": labels, "pseudo_index": index, "pseudo_embeddings": embeddings}


def measure(name: str, config: ExperimentConfig, repeats: int) -> list[Result]:
    """Times split and hungarian steps on one model and batch; returns the ratio and the criteria alone."""
    torch.manual_seed(0)
    model = build_segmentor(config.clip, config.decoder).train()
    seen_ids = list(range(15))  # positions only matter: the model sees 15 seen-class embeddings
    names = [f"class {i}" for i in seen_ids]
    class_embeddings = model.encode_classes(names)
    data = make_batch(config.train.batch_size, config.data.crop_size, seen_ids, model.image_encoder.embed_dim)
    optimizer = build_optimizer(model, config.train)
    trainable = [p for p in model.parameters() if p.requires_grad]
    criteria = {m: build_criterion(merge(config, {"loss": {"matching": m}}).loss) for m in ("split", "hungarian")}

    def targets(matching: str) -> list[dict]:
        if matching == "split":
            return build_targets(data["label"], seen_ids, data["pseudo_index"], data["pseudo_embeddings"])
        return build_targets(data["label"], seen_ids)

    def step(matching: str) -> None:
        outputs = model(data["image"], class_embeddings)
        losses = criteria[matching](outputs, targets(matching))
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(trainable, config.train.grad_clip or float("inf"))
        optimizer.step()

    with torch.no_grad():
        fixed = model(data["image"], class_embeddings)

    def criterion_only(matching: str) -> None:
        criteria[matching](fixed, targets(matching))

    timings = time_interleaved(
        {
            "split": lambda: step("split"),
            "hungarian": lambda: step("hungarian"),
            "split criterion": lambda: criterion_only("split"),
            "hungarian criterion": lambda: criterion_only("hungarian"),
        },
        repeats,
        warmup=1,
    )
    setting = f"{name}: B={config.train.batch_size}, crop {config.data.crop_size}, {config.loss.num_points} pts"
    ratio = paired_ratio(timings["split"], timings["hungarian"])
    criterion_ratio = paired_ratio(timings["split criterion"], timings["hungarian criterion"])
    k = [len(e) for e in data["pseudo_embeddings"]]
    print(f"{setting}: pseudo masks per image {k}; samples (s): " + describe_samples(timings))
    return [
        Result(
            name=f"step split ({setting})",
            value=timings["split"].median,
            unit="s",
            reference=timings["hungarian"].median,
            reference_name="step hungarian",
            target=f"<= {TARGET}",
            passed=ratio <= TARGET,
            ratio=ratio,
        ),
        Result(
            name=f"criterion split, no backward ({name})",
            value=timings["split criterion"].median,
            unit="s",
            reference=timings["hungarian criterion"].median,
            reference_name="criterion hungarian",
            ratio=criterion_ratio,
        ),
    ]


def main() -> None:
    args = parse_args(__doc__, repeats=3)
    if args.quick:
        vit = vitb16_config(["train.batch_size=1", "data.crop_size=224"])
        world = merge(preset("world"), {"train": {"batch_size": 4}})
    else:
        vit = vitb16_config(["train.batch_size=2", "data.crop_size=512"])
        world = preset("world")
    results = measure("world", world, max(args.repeats, 5) if not args.quick else 1)
    results += measure("voc-vitb16", vit, args.repeats)
    notes = [f"torch threads {torch.get_num_threads()}; {args.repeats} repeats for voc-vitb16 (median)"]
    print_results("bench_train_step: split / hungarian training step", results, notes)


if __name__ == "__main__":
    main()
