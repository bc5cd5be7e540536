"""Where the built-in world's training step spends its time, and what the cheaper variants save.

Why: ``make demo`` trains two world models of 2,000 steps side by side, one thread each, and
the training is most of its time. This script splits one Split Matching step of the ``world``
preset, as ``splitmatch.train.trainer.train`` runs it, into its phases and times variants
that would make it cheaper.

Method: a small world (96 training images, the real generator and the packaged small CLIP) is
written to a temporary folder and its pseudo masks are cached, as the demo does. Then, with
one thread (as the demo trains), ``--repeats`` steps run on batches from the real loader
(``SegmentationDataset`` with the training transform and the pseudo-mask cache) and each phase
is timed: data (loading, augmenting and collating the batch), targets (``build_targets``),
forward, criterion (matching and losses), backward, optimizer (clipping and AdamW). The shares
are of the sum of the phases' medians.

The variants are timed on one fixed batch, interleaved with the default step (forward,
criterion, backward, optimizer): PyTorch's math attention instead of the fused kernel it picks
(``sdpa_kernel``), 1,024 and 512 points (``loss.num_points``) instead of 2,048, and batch 16
instead of 8 (its time halved: the cost of 8 images in a batch of 16). Reference: the default
step, measured in the same run. No target: the figures say how far op-level changes can take
the demo's time.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import Result, paired_ratio, parse_args, print_results, time_interleaved
from torch.nn.attention import SDPBackend, sdpa_kernel

from splitmatch.config import merge
from splitmatch.config.presets import preset
from splitmatch.model.build import build_segmentor
from splitmatch.pseudo.build_cache import fill_cache, open_cache
from splitmatch.train.data import build_loader, build_train_dataset, pad_colour
from splitmatch.train.optim import build_optimizer
from splitmatch.train.sampler import StepBatchSampler
from splitmatch.train.step import build_criterion
from splitmatch.train.targets import build_targets
from splitmatch.world.generator import WorldSpec, generate_world

PHASES = ("data", "targets", "forward", "criterion", "backward", "optimizer")


class WorldStep:
    """A model, criterion and optimizer of one config, and one training step on a batch."""

    def __init__(self, config, seen_ids: list[int], class_texts: list[str]) -> None:
        torch.manual_seed(0)
        self.config = config
        self.seen_ids = seen_ids
        self.model = build_segmentor(config.clip, config.decoder).train()
        self.class_embeddings = self.model.encode_classes(class_texts)
        self.criterion = build_criterion(config.loss)
        self.optimizer = build_optimizer(self.model, config.train)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.query_group = self.model.query_decoder.query_group

    def targets(self, batch: dict) -> list[dict]:
        return build_targets(batch["label"], self.seen_ids, batch["pseudo_index"], batch["pseudo_embeddings"])

    def run(self, batch: dict, targets: list[dict], clock: dict[str, list[float]] | None = None) -> None:
        """One step; with ``clock``, appends each phase's seconds to it."""
        mark = time.perf_counter()

        def lap(phase: str) -> None:
            nonlocal mark
            now = time.perf_counter()
            if clock is not None:
                clock[phase].append(now - mark)
            mark = now

        outputs = self.model(batch["image"], self.class_embeddings)
        lap("forward")
        normalisers = self.criterion.normalisers(targets, self.query_group, torch.device("cpu"))
        losses = self.criterion(outputs, targets, normalisers)
        lap("criterion")
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        lap("backward")
        torch.nn.utils.clip_grad_norm_(self.trainable, self.config.train.grad_clip or float("inf"))
        self.optimizer.step()
        lap("optimizer")


def make_world(folder: Path, num_train: int, config):
    """A small world with its pseudo masks cached; returns the folder and the training dataset."""
    spec = WorldSpec(num_train=num_train, num_val=1, num_captions=0)
    world = generate_world(folder, seed=0, spec=spec, progress=False)
    config = merge(config, {"data": {"root": str(world.root)}})
    model = build_segmentor(config.clip, config.decoder)
    cache = open_cache(config.pseudo, config.clip, world, model.image_encoder)
    fill_cache(cache, model.image_encoder, config.pseudo, world, "train", progress=False)
    return world, build_train_dataset(config.data, world, cache, config.train.seed, pad_colour(config.data, model))


def main() -> None:
    args = parse_args(__doc__, repeats=20)
    torch.set_num_threads(1)
    config = preset("world")
    if args.quick:
        config = merge(config, {"train": {"batch_size": 2}})
    batch_size = config.train.batch_size
    with tempfile.TemporaryDirectory() as scratch:
        world, dataset = make_world(Path(scratch) / "world", 12 if args.quick else 96, config)
        classes = world.classes
        texts = [classes.texts[i] for i in classes.seen_ids]
        steps = args.repeats + 1  # the first step warms up
        sampler = StepBatchSampler(len(dataset), batch_size, 0, 1, 0, 0, steps)
        default = WorldStep(config, list(classes.seen_ids), texts)

        clock: dict[str, list[float]] = {phase: [] for phase in PHASES}
        mark = time.perf_counter()
        for batch in build_loader(dataset, sampler, 0, torch.device("cpu")):
            clock["data"].append(time.perf_counter() - mark)
            mark = time.perf_counter()
            targets = default.targets(batch)
            clock["targets"].append(time.perf_counter() - mark)
            default.run(batch, targets, clock)
            mark = time.perf_counter()
        medians = {phase: statistics.median(values[1:]) for phase, values in clock.items()}
        total = sum(medians.values())
        results = [
            Result(
                name=f"phase {phase} (share {medians[phase] / total:.0%})",
                value=medians[phase],
                unit="s",
                reference=total,
                reference_name="step",
            )
            for phase in PHASES
        ]

        one_batch = StepBatchSampler(len(dataset), batch_size, 0, 1, 0, 0, 1)
        batch = next(iter(build_loader(dataset, one_batch, 0, torch.device("cpu"))))
        targets = default.targets(batch)
        variants = {
            "1,024 points": WorldStep(merge(config, {"loss": {"num_points": 1024}}), list(classes.seen_ids), texts),
            "512 points": WorldStep(merge(config, {"loss": {"num_points": 512}}), list(classes.seen_ids), texts),
        }
        double = {key: torch.cat([value, value]) for key, value in batch.items() if torch.is_tensor(value)}
        double["pseudo_embeddings"] = batch["pseudo_embeddings"] * 2
        double_targets = default.targets(double)

        def math_attention() -> None:
            with sdpa_kernel(SDPBackend.MATH):
                default.run(batch, targets)

        timings = time_interleaved(
            {
                "default": lambda: default.run(batch, targets),
                "math attention": math_attention,
                **{name: (lambda step=step: step.run(batch, targets)) for name, step in variants.items()},
                "batch x2": lambda: default.run(double, double_targets),
            },
            repeats=max(3, args.repeats // 4),
        )
        for name in ("math attention", *variants, "batch x2"):
            halved = name == "batch x2"  # the cost of one batch's worth of images
            results.append(
                Result(
                    name="step of twice the batch, halved" if halved else f"step with {name}",
                    value=timings[name].median / (2 if halved else 1),
                    unit="s",
                    reference=timings["default"].median,
                    reference_name="default step",
                    ratio=paired_ratio(timings[name], timings["default"]) / (2 if halved else 1),
                )
            )
    notes = [f"world preset, batch {batch_size}, crop {config.data.crop_size}, 1 thread; {args.repeats} steps timed"]
    print_results("bench_world_step: the world's training step, phase by phase", results, notes)


if __name__ == "__main__":
    main()
