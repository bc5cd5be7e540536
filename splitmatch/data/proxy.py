"""The pseudo-unseen proxy: a zero-shot problem made from the training split alone.

Unseen class names, unseen pixels and the benchmark's validation (test) split must never choose
a setting. A proxy gives settings a legal place to be compared: K **seen** classes are held out
and treated exactly as unseen ones are (their pixels ignored in training labels, their names
never given to the model in training, their regions left to the pseudo masks and candidate
queries), and a share of the **training** images is kept out of training as the proxy's
validation set (split ``proxy-val``). A proxy model is scored there with the remaining seen
classes as S and the held-out ones as U.

The benchmark's own unseen classes stay what they are in every run: ignored in training, their
names unused. In the proxy's scoring they are neither S nor U: they are left out of the class
list (no name of theirs reaches the model) and their pixels are void, as the vocabulary of
:meth:`ProxySplit.vocabulary` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from splitmatch.data.class_selection import check_known, draw, share_of
from splitmatch.data.classes import ClassSplit, ClassSplitError
from splitmatch.data.folder import DatasetFormatError
from splitmatch.data.vocabulary import Vocabulary, vocabulary_from_dict

PROXY_VAL_SPLIT = "proxy-val"  # the proxy's validation images, taken from the training split
# Zero-shot protocols never make the background unseen (VOC-21's keeps it seen), so a drawn proxy
# does not hold it out either; data.proxy.classes may still name it.
NEVER_DRAWN = ("background",)


@dataclass(frozen=True)
class ProxySplit:
    """A proxy's classes and images.

    Attributes:
        benchmark: the dataset's split as the experiment has it (its unseen classes stay out of the proxy).
        held_out: seen classes held out as pseudo-unseen, in label-id order.
        train_split: the split the proxy is made from; training reads it without ``val_stems``.
        val_stems: the training images kept out of training: the proxy's validation set.
        val_fraction, seed: how they were drawn (``data.proxy``), for the record.
    """

    benchmark: ClassSplit
    held_out: tuple[str, ...]
    train_split: str
    val_stems: tuple[str, ...]
    val_fraction: float
    seed: int

    @property
    def training_classes(self) -> ClassSplit:
        """What training sees: the held-out classes unseen as well as the benchmark's unseen ones."""
        unseen = set(self.held_out) | set(self.benchmark.unseen)
        benchmark = self.benchmark
        return ClassSplit(
            benchmark.names, tuple(n for n in benchmark.names if n in unseen), benchmark.dataset, benchmark.synonyms
        )

    @property
    def proxy_seen(self) -> list[str]:
        """The seen classes the proxy trains on: the benchmark's seen ones less the held-out ones (S)."""
        return [name for name in self.benchmark.seen_names if name not in set(self.held_out)]

    @property
    def left_out(self) -> list[str]:
        """The benchmark's unseen classes: neither S nor U of the proxy, their pixels void in its scoring."""
        return list(self.benchmark.unseen)

    def vocabulary(self) -> Vocabulary:
        """The proxy's scoring vocabulary: its seen and held-out classes in label-id order (held-out
        ones unseen); the benchmark's unseen classes are left out, so their pixels are ignored."""
        kept = [name for name in self.benchmark.names if name not in set(self.benchmark.unseen)]
        data = {"classes": kept, "unseen": list(self.held_out), "dataset": f"{self.benchmark.dataset} proxy"}
        return vocabulary_from_dict(data, self.training_classes, where="the proxy's classes")

    def summary(self) -> dict:
        """What a run's record and ``eval`` say about the proxy (the image list aside)."""
        return {
            "held_out": list(self.held_out),
            "proxy_seen": self.proxy_seen,
            "left_out": self.left_out,
            "train_split": self.train_split,
            "val_split": PROXY_VAL_SPLIT,
            "val_images": len(self.val_stems),
            "val_fraction": self.val_fraction,
            "seed": self.seed,
        }

    def to_dict(self) -> dict:
        """:meth:`summary` and the validation images' stems."""
        return self.summary() | {"val_stems": list(self.val_stems)}


def default_held_out_count(classes: ClassSplit) -> int:
    """As many seen classes as keep the benchmark's share of unseen classes: round(S * U / C), at least 1.

    VOC: 4 of 15 (5 of 20 unseen); COCO-Stuff: 14 of 156; Context-59: 8 of 49; the world: 3 of 9.
    Only the count of unseen classes enters, a fact of the protocol, never their names.
    """
    seen = len(classes.seen_ids)
    return share_of(seen, len(classes.unseen) / classes.num_classes)


def build_proxy(
    classes: ClassSplit,
    train_stems: Sequence[str],
    train_split: str,
    held_out: Sequence[str] | None = None,
    count: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> ProxySplit:
    """Holds out seen classes and training images.

    Args:
        classes: the benchmark's split (after ``data.unseen`` / ``data.unseen_fraction``).
        train_stems: the training split's images.
        held_out: seen classes to hold out (``data.proxy.classes``); ``None``: ``count`` drawn by
            ``seed`` among the seen classes but ``background`` (:data:`NEVER_DRAWN`).
        count: how many to draw; ``None``: :func:`default_held_out_count`.
        val_fraction: share of ``train_stems`` drawn by ``seed`` as the proxy's validation images.

    Raises:
        ClassSplitError: a held-out name that is not a class, or not a seen one; too few seen classes.
        DatasetFormatError: a training split of fewer than two images.
    """
    seen = classes.seen_names
    if len(seen) < 2:
        raise ClassSplitError(
            f"a proxy holds out seen classes and trains on the rest, but '{classes.dataset}' has {len(seen)} seen class"
        )
    if held_out is not None:
        check_known(held_out, classes, "data.proxy.classes")
        unseen = [name for name in held_out if name in set(classes.unseen)]
        if unseen:
            raise ClassSplitError(
                f"data.proxy.classes names unseen classes ({', '.join(unseen)}): a proxy holds out seen classes "
                "only; the unseen ones stay out of it"
            )
        chosen = tuple(name for name in classes.names if name in set(held_out))
    else:
        count = default_held_out_count(classes) if count is None else count
        drawable = [name for name in seen if name not in NEVER_DRAWN]
        if count >= len(seen) or count > len(drawable):
            raise ClassSplitError(
                f"data.proxy.count={count}: '{classes.dataset}' has {len(seen)} seen classes "
                f"({len(drawable)} that a draw may hold out); a proxy keeps at least one to train on"
            )
        chosen = draw(drawable, count, seed, "proxy-classes")
    if len(chosen) >= len(seen):
        raise ClassSplitError(
            f"the proxy holds out {len(chosen)} of the {len(seen)} seen classes of '{classes.dataset}': "
            "none would be left to train on (data.proxy.classes or data.proxy.count)"
        )
    if len(train_stems) < 2:
        raise DatasetFormatError(
            f"split '{train_split}' has {len(train_stems)} image; a proxy needs at least two "
            "(some to train on, some to validate on)"
        )
    val_stems = draw(train_stems, share_of(len(train_stems), val_fraction), seed, "proxy-images")
    return ProxySplit(classes, chosen, train_split, val_stems, val_fraction, seed)
