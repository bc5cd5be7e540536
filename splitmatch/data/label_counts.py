"""Class counts of label maps, for the crop's category-ratio check (up to 10 windows a sample).

A histogram of a window that is mostly one value (ignore, or a large class) increments one
counter pixel after pixel and waits on itself; when a label holds few classes, one comparison
pass per class counts faster. Both give the same counts.
"""

from __future__ import annotations

import numpy as np
import torch

from splitmatch.data.classes import ignore_index_of


def few_classes(label: np.ndarray, limit: int) -> np.ndarray | None:
    """The non-ignore ids of ``label``, ascending, when there are at most ``limit``; else ``None``.

    Found smallest first, each by a minimum over the pixels above the last one found: a few
    vectorised passes for the few classes a crop holds.
    """
    ignore = ignore_index_of(label.dtype)
    flat = label.ravel()
    if flat.size == 0:
        return np.empty(0, dtype=np.int64)
    found = [int(flat.min())]
    while found[-1] < ignore:
        if len(found) > limit:
            return None
        found.append(int(flat.min(where=flat > found[-1], initial=ignore)))
    return np.array(found[:-1], dtype=np.int64)


def label_histogram(label: np.ndarray) -> np.ndarray:
    """Pixels of each value of a uint8 / uint16 label, ``[ignore + 1]`` int64 (torch counts uint8 as
    it is, where numpy first widens every pixel to int64)."""
    values = torch.from_numpy(np.ascontiguousarray(label)).flatten()
    if values.dtype != torch.uint8:
        values = values.to(torch.int32)  # no uint16 bincount kernel
    return torch.bincount(values, minlength=ignore_index_of(label.dtype) + 1).numpy()
