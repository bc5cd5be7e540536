"""What training reads: the training split as the inductive protocol sees it, and its loader."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from splitmatch.config import DataConfig
from splitmatch.data.augmentation import build_train_transform
from splitmatch.data.dataset import SegmentationDataset, collate_segmentation
from splitmatch.data.folder import DatasetFolder
from splitmatch.model.segmentor import SplitMatchSegmentor
from splitmatch.pseudo.cache import PseudoMaskCache
from splitmatch.train.sampler import StepBatchSampler


def mean_colour(model: SplitMatchSegmentor) -> tuple[int, int, int]:
    """The image encoder's normalisation mean as an RGB colour in 0..255 (zero once normalised)."""
    return tuple(int(round(v)) for v in model.image_encoder.pixel_mean.flatten().tolist())


def pad_colour(data: DataConfig, model: SplitMatchSegmentor) -> tuple[int, int, int]:
    """The colour ``data.pad_fill`` asks for around crops smaller than the crop size."""
    return mean_colour(model) if data.pad_fill == "mean" else (0, 0, 0)


def build_train_dataset(
    data: DataConfig,
    folder: DatasetFolder,
    pseudo_cache: PseudoMaskCache | None,
    seed: int,
    pad_fill: tuple[int, int, int],
    clip_pseudo_masks: bool = True,
    mark_unseen: bool = False,
) -> SegmentationDataset:
    """The training split as training reads it: seen classes only (inductive; unseen pixels as
    ``data.unseen_pixels`` says), the training transform of ``data`` and, for Split Matching, the
    pseudo masks of ``pseudo_cache``.

    ``seed`` is ``train.seed`` (each sample's augmentation follows from it and the sample's
    draw); ``pad_fill`` is :func:`pad_colour`; ``clip_pseudo_masks`` is ``pseudo.clip_to_unannotated``;
    ``mark_unseen`` gives each item's ``unseen_mask`` (transductive self-training of unseen pixels only).
    """
    return SegmentationDataset(
        folder,
        data.train_split,
        inductive=True,
        pseudo_masks=pseudo_cache,
        base_seed=seed,
        clip_pseudo_masks=clip_pseudo_masks,
        unseen_pixels=data.unseen_pixels,
        mark_unseen=mark_unseen,
        transform=build_train_transform(
            data.crop_size,
            tuple(data.resize_scale),
            tuple(data.ratio_range),
            data.cat_max_ratio,
            data.flip_prob,
            data.photometric,
            pad_fill=pad_fill,
        ),
    )


def build_loader(dataset, sampler: StepBatchSampler, num_workers: int, device: torch.device) -> DataLoader:
    """The training loader: batches as the sampler says, pinned for a CUDA device."""
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_segmentation,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=device.type == "cuda",  # non_blocking copies overlap with compute only from pinned memory
        generator=torch.Generator(),  # its own generator: the global RNG stays as resumed
    )
