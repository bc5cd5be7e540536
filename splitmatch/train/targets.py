"""From a collated batch to the per-image targets the matchers and the criterion expect.

Targets keep the label map as it leaves the loader (uint8 or uint16) and the pseudo-index map
in the compact form it was moved in (the cached patch grid and, per axis, the grid cell each
pixel shows), and name their masks by id (:mod:`splitmatch.matching.target_maps`): a batch of
16 crops of 512 then moves about 5 MiB to the device, where unpacked bool masks moved 100-200
MiB, and building them costs a histogram per map instead of a comparison per mask and pixel.
"""

from __future__ import annotations

import math

import torch

from splitmatch.data.classes import IGNORE_INDEX
from splitmatch.matching.target_maps import index_map_areas


def present_classes(label: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """The class ids a label map holds, ascending, ``ignore_index`` left out: ``[M]`` int64.

    ``label``: ``[H, W]`` non-negative integers (uint8, uint16 or int64).
    """
    values = label.flatten()
    if values.dtype not in (torch.uint8, torch.int16, torch.int32, torch.int64):
        values = values.to(torch.int32)  # bincount has no uint16 kernel
    counts = torch.bincount(values, minlength=ignore_index + 1)
    counts[ignore_index] = 0
    return torch.nonzero(counts).flatten()


def build_targets(
    labels: torch.Tensor,
    train_class_ids: list[int],
    pseudo_index: torch.Tensor | None = None,
    pseudo_embeddings: list[torch.Tensor] | None = None,
    ignore_index: int = IGNORE_INDEX,
    min_pseudo_area: float = 0.0,
    pseudo_view: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> list[dict]:
    """Per-image targets, built where the batch is (the host, for the trainer's loader batches).

    Args:
        labels: ``[B, H, W]`` dataset class ids, uint8 or uint16 as the dataset gives them (int64
            is accepted too); unseen classes are already ``ignore_index``.
        train_class_ids: dataset ids of the classes the model is trained on, in the order of
            the class embeddings it receives.
        pseudo_index: ``[B, S, H, W]`` uint8 candidate index maps (0 none, k+1 candidate k).
        pseudo_embeddings: per image ``[K_b, D]``.
        ignore_index: the dataset's ignore value (255, or 65535 above 255 classes).
        min_pseudo_area: a pseudo mask is kept only when it covers at least this fraction of the
            ``H x W`` crop (and at least one pixel).
        pseudo_view: the batch's ``pseudo_grid [B, S, h, w]``, ``pseudo_rows [B, H]`` and
            ``pseudo_cols [B, W]`` (:func:`pseudo_view`): the targets then carry those instead of
            ``pseudo_index``, which the device expands again (12 MiB fewer per 16 crops of 512).

    Returns:
        per image ``labels [M]`` int64 (positions in ``train_class_ids``), ``label_map [1, H, W]``
        (a view of ``labels[b]``) and ``label_ids [M]`` of its dtype: mask m is
        ``label_map == label_ids[m]``. With pseudo masks also ``pseudo_index [S, H, W]`` (a view),
        ``pseudo_ids [K']`` uint8 (mask k is ``any_s(pseudo_index[s] == pseudo_ids[k])``) and
        ``pseudo_embeddings [K', D]``, keeping only candidates that still cover
        ``min_pseudo_area`` after augmentation; with ``pseudo_view``, ``pseudo_grid``,
        ``pseudo_rows`` and ``pseudo_cols`` in place of ``pseudo_index``.
        :func:`splitmatch.matching.target_maps.dense_masks` unpacks either kind for inspection.
    """
    min_pixels = max(1, math.ceil(min_pseudo_area * labels.shape[-2] * labels.shape[-1]))
    lookup = torch.full((ignore_index + 1,), -1, dtype=torch.int64, device=labels.device)
    lookup[torch.as_tensor(train_class_ids, device=labels.device)] = torch.arange(
        len(train_class_ids), device=labels.device
    )
    targets = []
    for b in range(labels.shape[0]):
        label = labels[b]
        present = present_classes(label, ignore_index)
        if present.numel() and int(present[-1]) > ignore_index:
            raise ValueError(f"training labels hold class ids above the ignore value {ignore_index}")
        positions = lookup[present]
        if (positions < 0).any():
            stray = present[positions < 0].tolist()
            raise ValueError(f"training labels hold class ids {stray} that are not training classes")
        target = {"labels": positions, "label_map": label.unsqueeze(0), "label_ids": present.to(label.dtype)}
        if pseudo_index is not None:
            index = pseudo_index[b]
            embeddings = pseudo_embeddings[b]
            alive = index_map_areas(index, embeddings.shape[0]) >= min_pixels  # [K]
            if pseudo_view is None:
                target["pseudo_index"] = index
            else:
                target.update(zip(("pseudo_grid", "pseudo_rows", "pseudo_cols"), (v[b] for v in pseudo_view)))
            target["pseudo_ids"] = (torch.nonzero(alive).flatten() + 1).to(index.dtype)
            target["pseudo_embeddings"] = embeddings[alive.to(embeddings.device)]
        targets.append(target)
    return targets


def pseudo_view(batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The compact pseudo-index maps of a collated batch (``pseudo_grid``, ``pseudo_rows``,
    ``pseudo_cols``), or ``None`` when it has none."""
    keys = ("pseudo_grid", "pseudo_rows", "pseudo_cols")
    return tuple(batch[key] for key in keys) if all(key in batch for key in keys) else None


def move_targets(targets: list[dict], device: torch.device | str) -> list[dict]:
    """The targets with every tensor on ``device``, in one copy per dtype.

    The tensors of all targets are packed by dtype into one host buffer each (pinned for CUDA),
    copied without waiting, and handed back as views of the device copies: a handful of
    transfers per micro-batch instead of several per image, none of them from pageable memory.
    On the device they are already on, targets are returned as they are.
    """
    device = torch.device(device)
    entries = [(i, key, value) for i, target in enumerate(targets) for key, value in target.items()]
    if all(value.device == device for _, _, value in entries):
        return [dict(target) for target in targets]
    by_dtype: dict[torch.dtype, list[tuple[int, str, torch.Tensor]]] = {}
    for entry in entries:
        by_dtype.setdefault(entry[2].dtype, []).append(entry)
    moved: list[dict] = [{} for _ in targets]
    for dtype, group in by_dtype.items():
        sizes = [value.numel() for _, _, value in group]
        staging = torch.empty(sum(sizes), dtype=dtype, pin_memory=device.type == "cuda")
        torch.cat([value.reshape(-1).cpu() for _, _, value in group], out=staging)
        on_device = staging.to(device, non_blocking=True)
        for (i, key, value), part in zip(group, on_device.split(sizes)):
            moved[i][key] = part.view(value.shape)
    return [{key: moved[i][key] for key in target} for i, target in enumerate(targets)]
