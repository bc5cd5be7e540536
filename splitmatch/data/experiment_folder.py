"""A dataset folder as one experiment sees it: the classes its config splits, and a proxy's images.

:func:`open_dataset` is the one place where a run (training, ``pseudo-masks``, ``eval`` of its
checkpoint) gets its dataset: the folder of ``data.root`` with

* the seen / unseen split ``data.unseen`` or ``data.unseen_fraction`` asks for
  (:mod:`splitmatch.data.class_selection`; the ``classes.json`` split when neither is set), and
* with ``data.proxy.enabled``, the pseudo-unseen proxy (:mod:`splitmatch.data.proxy`): its
  held-out classes are unseen to training, the training split loses the proxy's validation
  images, and those are split ``proxy-val``.

Everything downstream (the training dataset, the pseudo-mask cache, checkpoints, evaluation)
reads ``folder.classes`` and ``folder.samples(split)`` as it does for any folder, so the
inductive mapping applies to whatever is unseen here. Files on disk are never changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from splitmatch.data.class_selection import select_unseen
from splitmatch.data.classes import ClassSplit
from splitmatch.data.folder import DatasetFolder, DatasetFormatError
from splitmatch.data.proxy import PROXY_VAL_SPLIT, ProxySplit, build_proxy
from splitmatch.data.vocabulary import Vocabulary


class ProxyRequest(Protocol):
    """The config's ``data.proxy`` section (:class:`splitmatch.config.schema.ProxyConfig`)."""

    enabled: bool
    classes: list[str] | None
    count: int | None
    val_fraction: float
    seed: int


class DataRequest(Protocol):
    """What of the config's ``data`` section (:class:`splitmatch.config.DataConfig`) picks a dataset's
    classes and images; the data floor reads these attributes and imports no config code."""

    root: str
    train_split: str
    val_split: str
    unseen: list[str] | None
    unseen_fraction: float | None
    split_seed: int
    proxy: ProxyRequest


class ExperimentFolder(DatasetFolder):
    """A :class:`DatasetFolder` whose ``classes`` are the experiment's and, with a proxy, whose
    training split is the proxy's.

    Attributes:
        classes: what training sees: unseen are the experiment's unseen classes, and with a
            proxy its held-out ones too.
        dataset_classes: the split ``classes.json`` holds.
        proxy: the proxy, or ``None`` for a benchmark run.
    """

    def __init__(self, root: str | Path, classes: ClassSplit | None = None, proxy: ProxySplit | None = None) -> None:
        super().__init__(root)
        self.dataset_classes = self.classes
        if proxy is not None:
            classes = proxy.training_classes
            if (self.root / "splits" / f"{PROXY_VAL_SPLIT}.txt").exists():
                raise DatasetFormatError(
                    f"{self.root / 'splits' / PROXY_VAL_SPLIT}.txt exists, but '{PROXY_VAL_SPLIT}' names the "
                    "proxy's validation images; rename that split list"
                )
        if classes is not None:
            if classes.names != self.dataset_classes.names:
                raise DatasetFormatError(f"{root}: the experiment's classes are not those of its classes.json")
            self.classes = classes
        self.proxy = proxy

    def stems(self, split: str) -> list[str]:
        """A split's stems; with a proxy, its training split without the validation images, and ``proxy-val``."""
        if self.proxy is None:
            return super().stems(split)
        if split == PROXY_VAL_SPLIT:
            return list(self.proxy.val_stems)
        stems = super().stems(split)
        if split == self.proxy.train_split:
            kept_out = set(self.proxy.val_stems)
            stems = [stem for stem in stems if stem not in kept_out]
        return stems

    def split_names(self) -> list[str]:
        return super().split_names() + ([PROXY_VAL_SPLIT] if self.proxy is not None else [])

    def evaluation_split(self, val_split: str) -> str:
        """Where a run is scored: ``proxy-val`` for a proxy, else ``val_split`` (``data.val_split``)."""
        return PROXY_VAL_SPLIT if self.proxy is not None else val_split

    def evaluation_vocabulary(self) -> Vocabulary | None:
        """The class list a run is scored with, or ``None`` (the folder's classes).

        A proxy's: :meth:`ProxySplit.vocabulary`. A run that sees every class (``data.unseen: []``,
        the fully supervised bound) is scored with ``classes.json``'s split, so that its mIoU(S) and
        mIoU(U) are the bounds of a zero-shot model's on the same classes.
        """
        if self.proxy is not None:
            return self.proxy.vocabulary()
        if not self.classes.unseen and self.dataset_classes.unseen:
            return Vocabulary.of_dataset(self.dataset_classes)
        return None

    def record(self) -> dict:
        """The classes training sees and the proxy, as a run folder's ``split.json`` holds them."""
        return {
            "classes": self.classes.to_dict(),
            "proxy": self.proxy.to_dict() if self.proxy is not None else None,
        }


def open_dataset(data: DataRequest, root: str | Path | None = None) -> ExperimentFolder:
    """The dataset of ``data.root`` (or ``root``) with the classes and images ``data`` asks for.

    Raises:
        DatasetFormatError, ClassSplitError: the folder is not a dataset, or ``data`` names
            classes it does not have (one line naming them), or leaves a proxy nothing to train on.
    """
    folder = DatasetFolder(data.root if root is None else root)
    classes = select_unseen(folder.classes, data.unseen, data.unseen_fraction, data.split_seed)
    proxy = None
    if data.proxy.enabled:
        request = data.proxy
        proxy = build_proxy(
            classes,
            folder.stems(data.train_split),
            data.train_split,
            request.classes,
            request.count,
            request.val_fraction,
            request.seed,
        )
    return ExperimentFolder(folder.root, classes, proxy)
