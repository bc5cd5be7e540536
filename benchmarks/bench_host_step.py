"""The CPU side of the real-scale training step, against the code before the host-step rework.

Why: at CLIP ViT-B/16, 512 crops and a global batch of 16, a GPU step must not wait for its
host: for the loader's samples, for the targets built from them, for their copy to the device,
or for the criterion's synchronisations.

Method: one thread, side by side in the same run, the library against the code before the
change, rebuilt from the git history when the script starts (``reference_code.py``; a shallow
clone needs ``git fetch --unshallow`` first):

* **loader**: a VOC-like folder (500 x 375 JPEGs, PNG labels of 20 classes of which 5 unseen,
  one pseudo-mask cache entry per image: 40 masks on the 32 x 32 patch grid in 3 scales, 512-d
  embeddings) read by ``SegmentationDataset`` with the ViT-B/16 training transform (resize,
  crop 512, flip, photometric distortion, pad). Per sample: decoding, augmentation and the
  item's tensors, averaged over the same ``(index, seed)`` keys for both, interleaved.
* **targets**: ``build_targets`` of 16 of those crops (labels as each dataset gives them:
  uint8 now, int64 before).
* **device traffic and host synchronisations per step**: one step of 16 images in 4
  micro-batches of 4, as the trainer runs it (targets moved, normalisers, then per micro-batch
  the criterion and its backward), on an emulated device (``splitmatch.testing.host_syncs``: a
  ``TorchDispatchMode`` that counts ``aten._local_scalar_dense``, device-to-host copies and
  data-dependent ops, and every host-to-device byte). The decoder's outputs have ViT-B/16's
  shapes (7 read-outs, 100 seen + 20 candidate queries, 16 classes, 32 x 32 masks, 512-d
  embeddings, 12,544 points) with random values; images are counted apart (the same for both).
  Counted after one warm-up step; both criteria give the same losses (checked, printed).
* for context, the criterion alone at the built-in world's shapes on the CPU (where ``make demo``
  trains), interleaved.

Targets: targets <= 1/20 of before, target bytes to the device <= 1/8, sample <= 1/4, host
synchronisations <= 4 per step. The last line is one JSON object with every figure.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import Result, parse_args, print_results, time_interleaved
from PIL import Image
from reference_code import reference_modules

from splitmatch.data.augmentation import build_train_transform
from splitmatch.data.classes import ClassSplit
from splitmatch.data.dataset import SegmentationDataset, collate_segmentation
from splitmatch.data.folder import DatasetFolder, write_label, write_split
from splitmatch.data.transforms import resize_nearest
from splitmatch.losses import criterion as library_criterion
from splitmatch.matching import matcher as library_matcher
from splitmatch.pseudo.cache import PseudoMaskCache
from splitmatch.testing.host_syncs import DEVICE, EmulatedDevice, to_host
from splitmatch.train import targets as library_targets
from splitmatch.train.micro_batches import split_batch

MIB = 2**20
CLIP_MEAN = (122, 116, 104)  # ViT-B/16's normalisation mean in 0..255: the presets' padding


def voc_like_image(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A photo-like RGB image (gradient, textured objects, noise) and its label: 2-4 objects of
    classes 0..19 (one of them unseen, 15..19) with 5-pixel ignore borders; the background is
    ignore, as in the 20-class VOC of zero-shot segmentation."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    start, end = rng.uniform(40, 215, 3), rng.uniform(40, 215, 3)
    ramp = (rows / height)[..., None]
    image = start * (1 - ramp) + end * ramp + rng.normal(0, 12, (height, width, 3))
    label = np.full((height, width), 255, np.uint8)
    for k in range(rng.integers(2, 5)):
        h, w = rng.integers(height // 5, height // 2), rng.integers(width // 5, width // 2)
        top, left = rng.integers(0, height - h), rng.integers(0, width - w)
        cls = int(rng.integers(15, 20)) if k == 0 else int(rng.integers(0, 15))
        label[max(top - 5, 0) : top + h + 5, max(left - 5, 0) : left + w + 5] = 255
        label[top : top + h, left : left + w] = cls
        texture = 30 * np.sin(cols[top : top + h, left : left + w] / rng.uniform(2, 9))[..., None]
        image[top : top + h, left : left + w] = rng.uniform(20, 235, 3) + texture
    return np.clip(image, 0, 255).astype(np.uint8), label


def grid_index_map(rng: np.random.Generator, unannotated: np.ndarray) -> np.ndarray:
    """``[3, g, g]`` uint8 pseudo masks as the cache holds them: per scale, blocks of 4, 8 and 11
    cells that are at least 80 % unannotated (the rho rule), clipped to unannotated cells; up to
    24, 11 and 5 of them (40 in all).

    ``unannotated``: ``[g, g]`` bool, the patches whose label is ignore after the seen-only mapping.
    """
    grid = unannotated.shape[0]
    index = np.zeros((3, grid, grid), np.uint8)
    next_id = 1
    for scale, (cell, count) in enumerate(((4, 24), (8, 11), (11, 5))):
        blocks = [(r, c) for r in range(0, grid, cell) for c in range(0, grid, cell)]
        kept = 0
        for r, c in [blocks[i] for i in rng.permutation(len(blocks))]:
            free = unannotated[r : r + cell, c : c + cell]
            if kept < count and free.mean() >= 0.8:
                index[scale, r : r + cell, c : c + cell][free] = next_id
                next_id, kept = next_id + 1, kept + 1
    return index


def make_folder(root: Path, count: int, seed: int = 0) -> tuple[DatasetFolder, PseudoMaskCache]:
    """``count`` VOC-like training samples (JPEG images, PNG labels) and their pseudo-mask cache."""
    rng = np.random.default_rng(seed)
    classes = ClassSplit(tuple(f"class {i}" for i in range(20)), tuple(f"class {i}" for i in range(15, 20)), "bench")
    classes.write(root / "classes.json")
    cache = PseudoMaskCache(root / "pseudo", {"bench": "host step"}, grid=(3, 32, 32), embed_dim=512)
    stems = []
    for i in range(count):
        height, width = ((375, 500), (333, 500), (500, 375))[i % 3]
        image, label = voc_like_image(rng, height, width)
        stem = f"img{i:03d}"
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "images" / f"{stem}.jpg", quality=90)
        write_label(root / "labels" / f"{stem}.png", label)
        seen_only = np.where(label >= 15, 255, label)
        unannotated = resize_nearest(seen_only, (32, 32)) == 255
        index = grid_index_map(rng, unannotated)
        embeddings = rng.normal(size=(int(index.max()), 512)).astype(np.float32)
        cache.save(stem, index, embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True))
        stems.append(stem)
    write_split(root, "train", stems)
    return DatasetFolder(root), cache


def datasets(folder: DatasetFolder, cache: PseudoMaskCache, crop: int, reference):
    """The library's training dataset and the reference one, with their own training transforms."""
    args = (crop, (4 * crop, crop), (0.5, 2.0), 0.75, 0.5, True, CLIP_MEAN)
    library = SegmentationDataset(folder, "train", build_train_transform(*args), True, cache)
    before = reference.dataset.SegmentationDataset(
        folder, "train", reference.transforms.build_train_transform(*args), True, cache
    )
    return library, before


def loader_times(library, reference, keys: list[tuple[int, int]]) -> tuple[float, float, int]:
    """Mean seconds per sample of each dataset over ``keys`` (interleaved), and pseudo maps that differ."""
    times: dict[str, list[float]] = {"library": [], "reference": []}
    differing = 0
    for key in keys:
        items = {}
        for name, dataset in (("reference", reference), ("library", library)):
            start = time.perf_counter()
            items[name] = dataset[key]
            times[name].append(time.perf_counter() - start)
        assert torch.equal(items["library"]["label"].long(), items["reference"]["label"])
        differing += int(not torch.equal(items["library"]["pseudo_index"], items["reference"]["pseudo_index"]))
    return statistics.mean(times["library"]), statistics.mean(times["reference"]), differing


def decoder_outputs(batch: int, layers: int, size: int, group: torch.Tensor, seed: int) -> dict:
    """Random read-outs of ViT-B/16's decoder shapes, made on ``group``'s device, as leaves that require grad."""
    generator = torch.Generator().manual_seed(seed)
    device = group.device

    def leaf(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=generator, device=device) * scale).requires_grad_()

    readouts = []
    for _ in range(layers):
        embeds = torch.nn.functional.normalize(torch.randn(batch, 120, 512, generator=generator, device=device), dim=-1)
        readouts.append(
            {
                "pred_logits": leaf(batch, 120, 16),
                "pred_masks": leaf(batch, 120, size, size, scale=3.0),
                "pred_embeds": embeds.requires_grad_(),
                "query_group": group,
            }
        )
    return {**readouts[0], "aux_outputs": readouts[1:]}


def make_criterion(criterion_module, matcher_module, points: int):
    matcher = matcher_module.SplitMatcher(2.0, 5.0, 5.0, 2.0, points)
    weights = {"class": 2.0, "bce": 5.0, "dice": 5.0, "embed": 2.0, "candidate": 1.0}
    return criterion_module.SetCriterion(matcher, weights, 0.1, points, 3.0, 0.75)


def step_targets(module, data: dict, seen_ids: list[int]) -> list[dict]:
    """``build_targets`` as the trainer calls it; the library's with the compact pseudo-index maps
    (the one-line wiring ``pseudo_view=pseudo_view(part)``)."""
    args = (data["label"], seen_ids, data["pseudo_index"], data["pseudo_embeddings"])
    if module is library_targets:
        return module.build_targets(*args, pseudo_view=library_targets.pseudo_view(data))
    return module.build_targets(*args)


def training_step(targets_module, criterion, parts: list[dict], outputs: list[dict], device, seen_ids) -> list[dict]:
    """The trainer's step body: targets moved, normalisers, then criterion and backward per micro-batch.

    Returns:
        each micro-batch's loss terms (read on the host only here, as the trainer does at log steps).
    """
    targets = [targets_module.move_targets(step_targets(targets_module, p, seen_ids), device) for p in parts]
    host_group = torch.tensor([0] * 100 + [1] * 20)  # the trainer passes the model's groups copied once
    normalisers = criterion.normalisers([t for part in targets for t in part], host_group, device)
    terms = []
    for part_targets, part_outputs in zip(targets, outputs):
        losses = criterion(part_outputs, part_targets, normalisers)
        losses["loss"].backward()
        terms.append(losses)
    return [{k: float(to_host(v.detach())) for k, v in losses.items()} for losses in terms]


def world_criterion_times(repeats: int, reference) -> tuple[float, float]:
    """Median seconds of the criterion (forward) at the built-in world's shapes on the CPU, library
    and before, interleaved: 8 crops of 96, 16 + 4 queries, 4 read-outs, 24 x 24 masks, 2,048 points."""
    generator = torch.Generator().manual_seed(1)
    labels = torch.full((8, 96, 96), 255, dtype=torch.uint8)
    index = torch.zeros(8, 3, 96, 96, dtype=torch.uint8)
    for b in range(8):
        for k in range(3):
            top, left = torch.randint(0, 60, (2,), generator=generator).tolist()
            labels[b, top : top + 30, left : left + 30] = k
        index[b, :, :, 30 * (b % 3) : 30 * (b % 3) + 30] = torch.arange(1, 4, dtype=torch.uint8).view(3, 1, 1)
    index *= (labels == 255).unsqueeze(1)
    embeddings = [torch.randn(3, 32, generator=generator) for _ in range(8)]
    group = torch.tensor([0] * 16 + [1] * 4)
    readouts = [
        {
            "pred_logits": torch.randn(8, 20, 7, generator=generator),
            "query_group": group,
            "pred_masks": torch.randn(8, 20, 24, 24, generator=generator) * 3,
            "pred_embeds": torch.randn(8, 20, 32, generator=generator),
        }
        for _ in range(4)
    ]
    outputs = {**readouts[0], "aux_outputs": readouts[1:]}
    calls = {}
    for name, targets_module, criterion_module, matcher_module, label in (
        ("library", library_targets, library_criterion, library_matcher, labels),
        ("reference", reference.targets, reference.criterion, reference.matcher, labels.long()),
    ):
        targets = targets_module.build_targets(label, [0, 1, 2], index, embeddings)
        criterion = make_criterion(criterion_module, matcher_module, 2048)
        calls[name] = lambda criterion=criterion, targets=targets: criterion(outputs, targets)
    timings = time_interleaved(calls, repeats=repeats)
    return timings["library"].median, timings["reference"].median


def main() -> None:
    args = parse_args(__doc__, repeats=3)
    with reference_modules() as reference:
        measure(args, reference)


def measure(args, reference) -> None:
    """Runs every measurement of ``reference`` (the rebuilt modules) against the library and prints them."""
    torch.set_num_threads(1)
    quick = args.quick
    crop, images, micro, layers, points = (128, 4, 2, 2, 1024) if quick else (512, 16, 4, 7, 12544)
    seen_ids = list(range(15))
    with tempfile.TemporaryDirectory() as scratch:
        folder, cache = make_folder(Path(scratch), 4 if quick else 16)
        library, before = datasets(folder, cache, crop, reference)
        keys = [(i % len(library), 1000 + i) for i in range((4 if quick else 48) * args.repeats)]
        sample_s, sample_before_s, differing = loader_times(library, before, keys)
        batch_keys = [(i % len(library), 7 + i) for i in range(images)]
        batch = collate_segmentation([library[k] for k in batch_keys])
        batch_before = reference.dataset.collate_segmentation([before[k] for k in batch_keys])

    timings: dict[str, list[float]] = {"library": [], "reference": []}
    for _ in range(max(3, args.repeats)):
        for name, module, data in (("reference", reference.targets, batch_before), ("library", library_targets, batch)):
            start = time.perf_counter()
            step_targets(module, data, seen_ids)
            timings[name].append(time.perf_counter() - start)
    targets_s, targets_before_s = statistics.median(timings["library"]), statistics.median(timings["reference"])

    # One step of `images` crops in micro-batches, on the emulated device, for both codes.
    codes = {
        "library": ((library_targets, library_criterion, library_matcher), batch),
        "reference": ((reference.targets, reference.criterion, reference.matcher), batch_before),
    }
    step_figures = {}
    for name, (code, data) in codes.items():
        targets_module, criterion_module, matcher_module = code
        criterion = make_criterion(criterion_module, matcher_module, points)
        parts = split_batch(data, images // micro)
        with EmulatedDevice():
            group = torch.tensor([0] * 100 + [1] * 20, device=DEVICE)  # the model's buffer: one tensor
            outputs = [decoder_outputs(micro, layers, crop // 16, group, seed) for seed in range(len(parts))]
            training_step(targets_module, criterion, parts, outputs, DEVICE, seen_ids)  # warm-up
        with EmulatedDevice() as counts:
            outputs = [decoder_outputs(micro, layers, crop // 16, group, seed) for seed in range(len(parts))]
            torch.manual_seed(0)
            start = time.perf_counter()
            losses = training_step(targets_module, criterion, parts, outputs, DEVICE, seen_ids)
            seconds = time.perf_counter() - start
        image_bytes = sum(p["image"].numel() for p in parts)
        step_figures[name] = {"counts": counts, "losses": losses, "seconds": seconds, "image_bytes": image_bytes}
    after, before = step_figures["library"], step_figures["reference"]
    world_s, world_before_s = world_criterion_times(3 if quick else 10 * args.repeats, reference)
    loss_gap = max(
        abs(a[k] - b[k]) / max(abs(b[k]), 1e-12) for a, b in zip(after["losses"], before["losses"]) for k in b
    )

    figures = {
        "targets_ms": targets_s * 1e3,
        "device_mib": after["counts"].h2d_bytes / MIB,
        "sample_ms": sample_s * 1e3,
        "host_syncs": after["counts"].total_syncs,
        "targets_ms_before": targets_before_s * 1e3,
        "device_mib_before": before["counts"].h2d_bytes / MIB,
        "sample_ms_before": sample_before_s * 1e3,
        "host_syncs_before": before["counts"].total_syncs,
    }
    results = [
        Result(
            f"build_targets, {images} crops of {crop}",
            targets_s,
            "s",
            targets_before_s,
            "before",
            "<= 1/20",
            targets_s <= targets_before_s / 20,
        ),
        Result(
            "bytes to the device per step (targets, matchings)",
            figures["device_mib"],
            "MiB",
            figures["device_mib_before"],
            "before",
            "<= 1/8",
            figures["device_mib"] <= figures["device_mib_before"] / 8,
        ),
        Result(
            f"loader, per sample at {crop} incl. decoding",
            sample_s,
            "s",
            sample_before_s,
            "before",
            "<= 1/4",
            sample_s <= sample_before_s / 4,
        ),
        Result(
            f"host synchronisations per step ({images // micro} micro-batches, {layers} read-outs)",
            figures["host_syncs"],
            "",
            figures["host_syncs_before"],
            "before",
            "<= 4",
            figures["host_syncs"] <= 4,
        ),
        Result("host-to-device copies per step", after["counts"].h2d_copies, "", before["counts"].h2d_copies, "before"),
        Result(
            "step on the emulated device (info: emulation overhead included)",
            after["seconds"],
            "s",
            before["seconds"],
            "before",
        ),
        Result("criterion at the world's shapes, on the CPU (info)", world_s, "s", world_before_s, "before"),
    ]
    notes = [
        f"one thread; VOC-like 500x375 JPEGs, crop {crop}, {len(keys)} samples; {images} images in micro-batches "
        f"of {micro}; {layers} read-outs; {points} points",
        f"syncs by cause, library: {after['counts'].syncs}; before: {before['counts'].syncs}",
        f"images to the device (both, not in the figure): {after['image_bytes'] / MIB:.1f} MiB; "
        f"pseudo-index maps that differ from before: {differing} of {len(keys)}; "
        f"largest relative loss difference: {loss_gap:.1e}",
    ]
    print_results("bench_host_step: the training step's host side", results, notes)
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
