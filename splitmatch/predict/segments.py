"""Per-query masks with their class scores, as a panoptic-style list of segments.

The semantic map sums every query's mask weighted by its class probabilities; a segment list
keeps the queries apart instead. The merge is Mask2Former's panoptic inference: a query is
kept when its best class probability exceeds ``threshold``; every pixel goes to the kept query
whose ``score x mask probability`` is highest there; a query's segment is the pixels it won
inside its own mask (probability >= 0.5), dropped when that is less than ``overlap`` of its
mask (the rest went to others). Queries are never merged: two queries on two objects of one
class are two segments, both naming the class (merge them by ``class_index`` for "stuff").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from splitmatch.inference.label_upsampling import upsample_argmax
from splitmatch.model.query_decoder import CANDIDATE_GROUP

# Both are Mask2Former's panoptic-inference defaults (object_mask_threshold, overlap_threshold),
# taken as published, before any image of ours was seen: a query is kept when one class holds
# more than 80% of its probability (against the others and no-object, so it is about one class,
# not torn between two), and a segment must keep 80% of its own mask after overlaps are resolved.
OBJECT_THRESHOLD = 0.8
OVERLAP_THRESHOLD = 0.8


@dataclass(frozen=True)
class Segment:
    """One query's segment.

    Attributes:
        mask: ``bool [H, W]`` at the image's size; the segments of one image never overlap.
        class_index: index into the class names the segments were asked for.
        name: that class's (first) name.
        score: the query's probability of that class, in ``(threshold, 1]``.
        query: the query's index (into ``features()``'s ``masks`` and ``query_embeddings``).
        group: ``"seen"`` or ``"candidate"``, the query's group.
    """

    mask: np.ndarray
    class_index: int
    name: str
    score: float
    query: int
    group: str

    @property
    def area(self) -> int:
        """Pixels in the mask."""
        return int(self.mask.sum())


def query_segments(
    features: dict,
    names: list[str],
    threshold: float = OBJECT_THRESHOLD,
    overlap: float = OVERLAP_THRESHOLD,
) -> list[Segment]:
    """Segments from :func:`splitmatch.inference.features.image_features` computed with class embeddings.

    Args:
        features: ``masks [Q, h', w']``, ``class_probabilities [Q, C]``, ``query_groups [Q]``,
            ``image_size``, ``input_size`` and ``padded_size``.
        names: the ``C`` class names (for :attr:`Segment.name`).
        threshold: the least class probability a query needs to be kept (exclusive).
        overlap: the least share of its own mask a segment must keep (inclusive).

    Returns:
        the segments, highest score first (ties: lower query index first).
    """
    if not 0 <= threshold < 1 or not 0 <= overlap <= 1:
        raise ValueError(f"threshold must lie in [0, 1) and overlap in [0, 1], got {threshold} and {overlap}")
    scores, classes = features["class_probabilities"].max(dim=-1)  # [Q], [Q]
    kept = torch.nonzero(scores > threshold).flatten()
    if kept.numel() == 0:
        return []
    height, width = features["input_size"]
    masks = features["masks"][kept].float()[None]  # [1, K, h', w']
    masks = F.interpolate(masks, size=features["padded_size"], mode="bilinear", align_corners=False)
    probabilities = masks[0, :, :height, :width].sigmoid()  # [K, h, w] on the resized image, as the map
    image_size = tuple(features["image_size"])
    winner = upsample_argmax(scores[kept, None, None] * probabilities, image_size, torch.int64)  # [H, W]
    segments = []
    for position, query in enumerate(kept.tolist()):
        own = F.interpolate(probabilities[position][None, None], size=image_size, mode="bilinear", align_corners=False)
        own = own[0, 0] >= 0.5  # [H, W]
        won = own & (winner == position)
        mask_area, won_area = int(own.sum()), int(won.sum())
        if won_area == 0 or won_area < overlap * mask_area:
            continue
        group = "candidate" if int(features["query_groups"][query]) == CANDIDATE_GROUP else "seen"
        index = int(classes[query])
        segments.append(Segment(won.cpu().numpy(), index, names[index], float(scores[query]), query, group))
    return sorted(segments, key=lambda segment: (-segment.score, segment.query))
