"""From a collated batch to the per-image targets the matchers and the criterion expect."""

from __future__ import annotations

import math

import torch

from splitmatch.data.classes import IGNORE_INDEX
from splitmatch.pseudo.proposals import masks_from_index_map


def build_targets(
    labels: torch.Tensor,
    train_class_ids: list[int],
    pseudo_index: torch.Tensor | None = None,
    pseudo_embeddings: list[torch.Tensor] | None = None,
    ignore_index: int = IGNORE_INDEX,
    min_pseudo_area: float = 0.0,
) -> list[dict]:
    """Per-image targets.

    Args:
        labels: ``[B, H, W]`` int64 dataset class ids (unseen already ``ignore_index``).
        train_class_ids: dataset ids of the classes the model is trained on, in the order of
            the class embeddings it receives.
        pseudo_index: ``[B, S, H, W]`` uint8 candidate index maps (0 none, k+1 candidate k).
        pseudo_embeddings: per image ``[K_b, D]``.
        ignore_index: the dataset's ignore value (255, or 65535 above 255 classes).
        min_pseudo_area: a pseudo mask is kept only when it covers at least this fraction of the
            ``H x W`` crop (and at least one pixel).

    Returns:
        per image ``labels [M]`` (positions in ``train_class_ids``), ``masks [M, H, W]`` bool and,
        with pseudo masks, ``pseudo_masks [K', H, W]`` and ``pseudo_embeddings [K', D]`` keeping
        only candidates that still cover ``min_pseudo_area`` after augmentation.
    """
    min_pixels = max(1, math.ceil(min_pseudo_area * labels.shape[-2] * labels.shape[-1]))
    lookup = torch.full((ignore_index + 1,), -1, dtype=torch.int64, device=labels.device)
    lookup[torch.as_tensor(train_class_ids, device=labels.device)] = torch.arange(
        len(train_class_ids), device=labels.device
    )
    targets = []
    for b in range(labels.shape[0]):
        label = labels[b]
        present = torch.unique(label)
        present = present[present != ignore_index]
        positions = lookup[present]
        if (positions < 0).any():
            stray = present[positions < 0].tolist()
            raise ValueError(f"training labels hold class ids {stray} that are not training classes")
        target = {"labels": positions, "masks": label.unsqueeze(0) == present.view(-1, 1, 1)}
        if pseudo_index is not None:
            embeddings = pseudo_embeddings[b].to(labels.device)
            masks = masks_from_index_map(pseudo_index[b], embeddings.shape[0])  # [K, H, W]
            alive = masks.flatten(1).sum(1) >= min_pixels
            target["pseudo_masks"] = masks[alive]
            target["pseudo_embeddings"] = embeddings[alive]
        targets.append(target)
    return targets


def move_targets(targets: list[dict], device: torch.device) -> list[dict]:
    """The targets with every tensor on ``device`` (copies issued without waiting where possible)."""
    return [{key: value.to(device, non_blocking=True) for key, value in target.items()} for target in targets]
