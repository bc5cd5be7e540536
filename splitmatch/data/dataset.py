"""The segmentation dataset: one split of a dataset folder as tensors, optionally with pseudo masks.

``SegmentationDataset(folder, "train", transform, inductive=True, pseudo_masks=cache)`` gives,
per image, the augmented image, its label with unseen classes turned into ignore (255, or 65535
above 255 classes), and the cached pseudo masks of the unannotated regions moved exactly as the label was.

Augmentation is reproducible: ``dataset[i]`` draws from ``np.random.default_rng((base_seed, i))``
and ``dataset[(i, seed)]`` from ``np.random.default_rng(seed)``, so a sampler that hands out
``(index, seed)`` pairs fixes every crop and flip of a run, in any worker process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from splitmatch.data.augmentation import Compose
from splitmatch.data.deferred import NearestView
from splitmatch.data.fold_schemes import training_label_map
from splitmatch.data.folder import DatasetFolder, DatasetFormatError, read_image, read_label
from splitmatch.data.transforms import SOURCE_PIXELS, source_pixels


class PseudoMaskSource(Protocol):
    """Where cached pseudo masks come from (e.g. the pseudo-mask cache of ``splitmatch.pseudo``)."""

    def load(self, stem: str, image_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Returns ``index_map`` uint8 [S, h, w] and ``embeddings`` float32 [K, D].

        ``image_size`` is the ``(H, W)`` of the image as read now; a source that recorded the
        size its masks were made for refuses another.

        Index value 0 means "no pseudo mask"; value k in 1..K means the mask whose embedding is
        row k-1. The grid (h, w) may be coarser than the image.
        """
        ...


class SegmentationDataset(Dataset):
    """One split of a :class:`DatasetFolder`.

    Args:
        folder: the dataset.
        split: a split name with a list file, e.g. ``"train"``.
        transform: ``transform(sample, rng) -> sample`` on numpy samples (see
            ``splitmatch.data.transforms``); ``None`` returns the file's pixels.
        inductive: training labels: unseen-class pixels become ignore (or background, with
            ``unseen_pixels="background"``). Files are never changed.
        pseudo_masks: optional :class:`PseudoMaskSource`. Its index map is resized (nearest) to
            the image, transformed with it, then zeroed wherever the label is not ignore, so the
            pseudo masks cover unannotated pixels only (``clip_pseudo_masks=False``: not zeroed,
            the ``pseudo.clip_to_unannotated`` ablation). A :class:`Compose` transform gets it as
            a :class:`~splitmatch.data.deferred.NearestView` of the stored grid, so the map is
            read out once, at the transform's output size; any other transform, as an array.
        base_seed: seeds the augmentation of integer keys, see the module docstring.
        unseen_pixels: with ``inductive``, what unseen-class pixels become: ``"ignore"`` (the
            default) or ``"background"`` (HSNet's convention; the dataset needs a ``background``
            class), :func:`splitmatch.data.fold_schemes.training_label_map`.
        mark_unseen: also give ``unseen_mask``, where the pixels of unseen classes are, apart from
            void ones that the training label makes ignore as well (what ZegCLIP's transductive
            self-training labels, :mod:`splitmatch.train.transductive`); needs a :class:`Compose`
            transform or none.

    Items are dicts: ``image`` uint8 [3, H, W], ``label`` [H, W] of the dataset's label dtype
    (uint8, or uint16 above 255 classes; ignore: ``folder.classes.ignore_index``), ``stem`` str,
    ``orig_size`` (H0, W0) of the file, and with pseudo masks ``pseudo_index`` uint8 [S, H, W]
    and ``pseudo_embeddings`` float32 [K, D], and the same map in the compact form it was moved
    in: ``pseudo_grid`` uint8 [S, h, w] (as stored), ``pseudo_rows`` int64 [H] and
    ``pseudo_cols`` int64 [W] (the grid row and column each pixel shows, -1 for padding), so
    that ``pseudo_index = grid[:, rows][:, :, cols]``, zero where a row or column is -1 or the
    label is not ignore (:func:`splitmatch.matching.target_maps.expand_index_map`). Every item
    also has ``source_rows`` int64 [H] and ``source_cols`` int64 [W]: the file row and column
    each pixel shows, -1 where the transform padded (a :class:`Compose` transform; otherwise
    no pixel counts as padding), so that padding can be told from ignored image pixels. With
    ``mark_unseen``, ``unseen_mask`` bool [H, W]: True where the pixel shows a pixel of an unseen
    class in the file (read through ``source_rows`` / ``source_cols``, so it moved exactly as the
    label did), False on void pixels and padding.
    """

    def __init__(
        self,
        folder: DatasetFolder,
        split: str,
        transform: Callable[[dict, np.random.Generator], dict] | None = None,
        inductive: bool = False,
        pseudo_masks: PseudoMaskSource | None = None,
        base_seed: int = 0,
        clip_pseudo_masks: bool = True,
        unseen_pixels: str = "ignore",
        mark_unseen: bool = False,
    ) -> None:
        if not isinstance(base_seed, int) or base_seed < 0:
            raise ValueError(f"base_seed must be a non-negative int, got {base_seed!r}")
        if mark_unseen and transform is not None and not isinstance(transform, Compose):
            raise ValueError(
                f"mark_unseen follows pixels through a Compose transform (or none), not through {transform!r}"
            )
        # Only paths are kept (no open files), so the dataset can be pickled into workers.
        self.samples = folder.samples(split)
        self.root = folder.root
        self.split = split
        self.classes = folder.classes
        self.transform = transform
        self.inductive = inductive
        self.pseudo_masks = pseudo_masks
        self.base_seed = base_seed
        self.clip_pseudo_masks = clip_pseudo_masks
        # A lookup table maps every label value at once; only unseen ids change.
        self.ignore_index = self.classes.ignore_index
        self.label_map = np.arange(self.ignore_index + 1, dtype=self.classes.label_dtype)
        if inductive:
            self.label_map = training_label_map(self.classes, unseen_pixels)
        # Which file label values are unseen classes (ZegCLIP's -1 apart from void 255), or None.
        self.unseen_values: np.ndarray | None = None
        if mark_unseen:
            self.unseen_values = np.zeros(self.ignore_index + 1, dtype=bool)
            self.unseen_values[list(self.classes.unseen_ids)] = True

    def __len__(self) -> int:
        return len(self.samples)

    def _resolve(self, key: int | tuple[int, int]) -> tuple[int, np.random.Generator]:
        if isinstance(key, (tuple, list)):
            if len(key) != 2:
                raise TypeError(f"dataset key must be an index or (index, aug_seed), got {key!r}")
            index, seed = int(key[0]), int(key[1])
            rng = np.random.default_rng(seed)
        else:
            index = int(key)
            rng = None
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for split '{self.split}' of {len(self)} images")
        index %= len(self)
        return index, rng if rng is not None else np.random.default_rng((self.base_seed, index))

    def _pseudo(self, stem: str, size: tuple[int, int]) -> tuple[NearestView, np.ndarray]:
        index_map, embeddings = self.pseudo_masks.load(stem, image_size=size)
        index_map, embeddings = np.asarray(index_map), np.asarray(embeddings)
        where = f"pseudo masks of '{stem}'"
        if index_map.dtype != np.uint8 or index_map.ndim != 3:
            raise DatasetFormatError(
                f"{where}: index map must be uint8 [S, h, w], got {index_map.dtype} {index_map.shape}"
            )
        if embeddings.ndim != 2:
            raise DatasetFormatError(f"{where}: embeddings must be [K, D], got shape {embeddings.shape}")
        if index_map.size and int(index_map.max()) > embeddings.shape[0]:
            raise DatasetFormatError(
                f"{where}: index map refers to mask {int(index_map.max())} but there are only "
                f"{embeddings.shape[0]} embeddings (expected values 0..K)"
            )
        return NearestView.of(index_map, size), embeddings.astype(np.float32, copy=False)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, rng = self._resolve(key)
        sample_paths = self.samples[index]
        image = read_image(sample_paths.image_path)
        orig_size = (int(image.shape[0]), int(image.shape[1]))
        label = read_label(sample_paths.label_path, self.classes.num_classes, orig_size)
        sample = {"image": image, "label": self.label_map[label]}
        if isinstance(self.transform, Compose):
            sample[SOURCE_PIXELS] = source_pixels(orig_size)
        embeddings = None
        if self.pseudo_masks is not None:
            sample["pseudo_index"], embeddings = self._pseudo(sample_paths.stem, orig_size)
            if not isinstance(self.transform, Compose):
                sample["pseudo_index"] = sample["pseudo_index"].array()
        if self.transform is not None:
            sample = self.transform(sample, rng)

        out = {
            "image": torch.from_numpy(np.ascontiguousarray(sample["image"].transpose(2, 0, 1))),
            "label": torch.from_numpy(np.ascontiguousarray(sample["label"])),
            "stem": sample_paths.stem,
            "orig_size": orig_size,
        }
        origin = sample.get(SOURCE_PIXELS)
        height, width = sample["label"].shape
        out["source_rows"] = torch.from_numpy(origin.rows if origin is not None else np.arange(height, dtype=np.int64))
        out["source_cols"] = torch.from_numpy(origin.cols if origin is not None else np.arange(width, dtype=np.int64))
        if self.unseen_values is not None:
            unseen = self.unseen_values[label]  # bool [H0, W0], at the file's pixels
            if origin is not None:  # the pixels the transform kept, padding False
                unseen = NearestView(unseen, origin.rows, origin.cols, fill=False).array()
            out["unseen_mask"] = torch.from_numpy(unseen)
        if embeddings is not None:
            view = sample["pseudo_index"]
            view = view if isinstance(view, NearestView) else NearestView.of(np.asarray(view))
            index_map = view.array()
            if index_map.shape[1:] != sample["label"].shape:
                raise ValueError(
                    f"transform {self.transform!r} left pseudo_index at {index_map.shape[1:]} but the label "
                    f"at {sample['label'].shape} for '{sample_paths.stem}'; it must resize both alike"
                )
            # Pseudo masks stand for unseen objects, so they may only cover unannotated pixels
            # (unless pseudo.clip_to_unannotated is off, an ablation).
            if self.clip_pseudo_masks:
                index_map = index_map * (sample["label"] == self.ignore_index)  # uint8 [S, H, W]
            out["pseudo_index"] = torch.from_numpy(index_map)
            out["pseudo_grid"] = torch.from_numpy(np.ascontiguousarray(view.source))
            out["pseudo_rows"], out["pseudo_cols"] = torch.from_numpy(view.rows), torch.from_numpy(view.cols)
            out["pseudo_embeddings"] = torch.from_numpy(np.ascontiguousarray(embeddings))
        return out

    def __repr__(self) -> str:
        return (
            f"SegmentationDataset(root={str(self.root)!r}, split={self.split!r}, images={len(self)}, "
            f"inductive={self.inductive}, pseudo_masks={self.pseudo_masks is not None})"
        )


def collate_segmentation(batch: list[dict]) -> dict:
    """Batches dataset items of equal size.

    Returns:
        ``image`` uint8 [B, 3, H, W], ``label`` uint8 or uint16 [B, H, W], ``stem`` list[str],
        ``orig_size`` list[(H0, W0)], ``source_rows`` [B, H] and ``source_cols`` [B, W] (-1:
        padding) and ``unseen_mask`` bool [B, H, W] when every item has them, and when the items
        have them ``pseudo_index`` uint8 [B, S, H, W], ``pseudo_grid`` [B, S, h, w], ``pseudo_rows`` [B, H],
        ``pseudo_cols`` [B, W] and ``pseudo_embeddings`` list of float32 [K_i, D].
    """
    if not batch:
        raise ValueError("collate_segmentation got an empty batch")
    stems = [item["stem"] for item in batch]
    sizes = {tuple(item["image"].shape) for item in batch}
    if len(sizes) > 1:
        shown = ", ".join(f"{s}: {tuple(i['image'].shape)}" for s, i in zip(stems, batch))
        raise ValueError(
            f"cannot batch images of different sizes ({shown}); use a transform that crops or pads "
            f"to one size, or batch size 1"
        )
    out = {
        "image": torch.stack([item["image"] for item in batch]),
        "label": torch.stack([item["label"] for item in batch]),
        "stem": stems,
        "orig_size": [item["orig_size"] for item in batch],
    }
    for key in ("source_rows", "source_cols", "unseen_mask"):  # one size within a batch, as the images
        if all(key in item for item in batch):
            out[key] = torch.stack([item[key] for item in batch])
    with_pseudo = ["pseudo_index" in item for item in batch]
    if any(with_pseudo):
        if not all(with_pseudo):
            missing = [s for s, has in zip(stems, with_pseudo) if not has]
            raise ValueError(f"items {missing} have no pseudo masks while others in the batch do")
        shapes = {tuple(item["pseudo_index"].shape) for item in batch}
        if len(shapes) > 1:
            raise ValueError(f"pseudo_index shapes differ within the batch {stems}: {sorted(shapes)}")
        out["pseudo_index"] = torch.stack([item["pseudo_index"] for item in batch])
        for key in ("pseudo_grid", "pseudo_rows", "pseudo_cols"):  # one cache grid, one crop size
            if all(key in item for item in batch) and len({tuple(item[key].shape) for item in batch}) == 1:
                out[key] = torch.stack([item[key] for item in batch])
        out["pseudo_embeddings"] = [item["pseudo_embeddings"] for item in batch]
    return out
