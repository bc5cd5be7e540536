"""Filling the pseudo-mask cache for a training split (``splitmatch pseudo-masks``, and before training)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from splitmatch.clip.image_encoder import ClipImageEncoder
from splitmatch.config import ClipConfig, PseudoMaskConfig
from splitmatch.data.classes import ClassSplit
from splitmatch.data.folder import DatasetFolder, read_image, read_label
from splitmatch.distributed import all_reduce_sum, is_main_process, rank, world_size
from splitmatch.pseudo.cache import PseudoMaskCache
from splitmatch.pseudo.generator import GENERATOR_VERSION, PseudoMaskGenerator
from splitmatch.storage.digest import tensor_digest
from splitmatch.storage.files import InputPaths, OutputIsInputError

# pseudo.* keys that do not change what is cached.
TRAINING_ONLY_KEYS = ("cache_dir", "min_crop_area")


def cache_fingerprint(
    pseudo: PseudoMaskConfig, clip: ClipConfig, encoder: ClipImageEncoder, classes: ClassSplit
) -> dict:
    """Everything pseudo masks depend on: CLIP weights, settings, and which pixels are annotated.

    Settings that act only in training (``min_crop_area``: which cached masks a crop keeps) and
    where the cache lives are left out, so changing them reuses the cache; the generator's
    version is in, so a changed algorithm never reuses entries made by an older one.
    """
    settings = {key: value for key, value in dataclasses.asdict(pseudo).items() if key not in TRAINING_ONLY_KEYS}
    return {
        "generator_version": GENERATOR_VERSION,
        "clip_arch": clip.arch,
        "clip_visual_digest": tensor_digest(encoder.visual.state_dict()),
        "region_layers": encoder.region_layers,
        "pos_interpolation": encoder.pos_interpolation,
        "pseudo": settings,
        "classes": list(classes.names),
        "unseen": sorted(classes.unseen),
    }


# What a dataset folder holds besides its caches: a pseudo.cache_dir among them would write entries
# into the dataset (or over its files); its own pseudo_masks/ folder is where caches belong.
DATASET_PARTS = ("classes.json", "splits", "images", "labels", "folds.json", "episodes", "world.json")


def check_cache_folder(pseudo: PseudoMaskConfig, root: Path) -> None:
    """Refuses a ``pseudo.cache_dir`` that is, holds or lies inside a part of the dataset folder ``root``
    (its images, labels, lists): entries would be written among the dataset's files. Writes nothing."""
    if pseudo.cache_dir is None:
        return
    cache = Path(pseudo.cache_dir)
    if Path(os.path.realpath(root)).is_relative_to(os.path.realpath(cache)):
        raise OutputIsInputError(
            f"pseudo.cache_dir {cache} holds the dataset folder {root}, which this command reads: its entries "
            f"would be written among the dataset's files; choose a folder of its own, e.g. {root}/pseudo_masks/NAME"
        )
    InputPaths([root / name for name in DATASET_PARTS]).check(cache, "pseudo.cache_dir")


def open_cache(
    pseudo: PseudoMaskConfig, clip: ClipConfig, folder: DatasetFolder, encoder: ClipImageEncoder
) -> PseudoMaskCache:
    """The cache for these settings: ``pseudo.cache_dir``, or a folder named by the fingerprint's hash."""
    fingerprint = cache_fingerprint(pseudo, clip, encoder, folder.classes)
    directory = pseudo.cache_dir
    if directory is None:
        key = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:12]
        directory = folder.root / "pseudo_masks" / key
    grid = pseudo.input_size // encoder.patch_size[0], pseudo.input_size // encoder.patch_size[1]
    return PseudoMaskCache(directory, fingerprint, (len(pseudo.window_sizes), *grid), encoder.embed_dim)


def inductive_label(label: np.ndarray, classes: ClassSplit) -> np.ndarray:
    """Seen-only training labels: unseen-class pixels become ignore (a copy; files are never changed)."""
    mapped = label.copy()
    mapped[np.isin(label, classes.unseen_ids)] = classes.ignore_index
    return mapped


@torch.no_grad()
def fill_cache(
    cache: PseudoMaskCache,
    encoder: ClipImageEncoder,
    pseudo: PseudoMaskConfig,
    folder: DatasetFolder,
    split: str,
    batch_size: int = 8,
    progress: bool = True,
) -> int:
    """Computes the pseudo masks missing from the cache (this process's share); returns how many.

    Entries already there are read and checked first (:meth:`PseudoMaskCache.problem`); a damaged
    or foreign one is named on stderr and computed again.
    """
    generator = PseudoMaskGenerator(encoder, pseudo)
    device = next(encoder.parameters()).device
    samples = missing_entries(cache, folder.samples(split), device)[rank() :: world_size()]
    bar = tqdm(total=len(samples), desc="pseudo masks", disable=not (progress and is_main_process()), leave=False)
    # Compression and file syncs release the GIL: one writer thread overlaps them with the next batch.
    with bar, ThreadPoolExecutor(max_workers=1) as writer:
        pending: deque[Future] = deque()
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            results, sizes = _batch(generator, folder, chunk, device)
            for sample, result, size in zip(chunk, results, sizes):
                pending.append(
                    writer.submit(cache.save, sample.stem, result.index_map.numpy(), result.embeddings.numpy(), size)
                )
            while pending and (len(pending) > 2 * batch_size or pending[0].done()):
                pending.popleft().result()  # re-raises a failed write here
            bar.update(len(chunk))
        while pending:
            pending.popleft().result()
    return len(samples)


def missing_entries(cache: PseudoMaskCache, samples: list, device: torch.device) -> list:
    """The samples whose cache entry is missing or damaged, in split order, the same list on every rank.

    Each rank checks its share of the entries (reading one costs about a millisecond at ViT-B/16
    sizes), then the ranks exchange what they found, so that the work left is shared evenly
    afterwards: a cache half filled before the run does not leave one rank alone with the rest.
    """
    missing = torch.zeros(len(samples), dtype=torch.int32)  # [N]: 1 where this rank found work
    for index in range(rank(), len(samples), world_size()):
        stem = samples[index].stem
        problem = cache.problem(stem)
        if problem is not None:
            print(f"splitmatch: recomputing {cache.path(stem)}: {problem}", file=sys.stderr)
        elif cache.has(stem):
            continue
        missing[index] = 1
    union = all_reduce_sum(missing.to(device)).cpu()  # the ranks checked disjoint entries
    return [samples[index] for index in torch.nonzero(union).flatten().tolist()]


def _batch(
    generator: PseudoMaskGenerator, folder: DatasetFolder, chunk: list, device: torch.device
) -> tuple[list, list[tuple[int, int]]]:
    """Pseudo masks of a few samples, read and resized as one batch, and each image's (H, W)."""
    images, unannotated, sizes = [], [], []
    for sample in chunk:
        image = read_image(sample.image_path)
        sizes.append(image.shape[:2])
        label = read_label(sample.label_path, folder.classes.num_classes, image.shape[:2])
        label = inductive_label(label, folder.classes)
        resized, mask = generator.prepare(
            torch.from_numpy(image).permute(2, 0, 1),
            torch.from_numpy(label.astype(np.int64)),
            folder.classes.ignore_index,
        )
        images.append(resized)
        unannotated.append(mask)
    return generator(torch.stack(images).to(device), torch.stack(unannotated).to(device)), sizes
