"""Batched SplitMatcher vs a per-image Mask2Former-style matcher on the same points.

Method: model-like outputs for B=16 images and Q=120 queries (100 seen + 20 candidates),
``pred_masks`` on the 32x32 feature grid of a 512 crop (the ``voc-vitb16`` preset), 15 seen
classes + no-object, 512-d embeddings; targets with 1-10 seen masks and 0-20 pseudo masks per
image, boxes at 128x128. Both matchers read the same 12,544 points per image.

* library: ``splitmatch.matching.matcher.SplitMatcher`` (one batched cost per query group,
  images padded to the largest target count, scipy per image);
* reference, written here after Mask2Former's matcher: a loop over images; per image the
  class / BCE / dice (and embedding) costs of its own predictions and targets, each mask
  point-sampled on its own (coordinates repeated per mask, as Mask2Former does), the BCE cost
  as Mask2Former computes it (``binary_cross_entropy_with_logits`` against all-ones and
  all-zeros targets, two matmuls), then ``scipy.optimize.linear_sum_assignment``;
* for context, the same loop with the BCE cost as two ``softplus`` passes: the per-image
  arithmetic nearest to the library's, which shows how much of the gain is arithmetic rather
  than batching.

All are timed in turn (medians); the assignments must be identical. Target: >= 3x faster than
the Mask2Former-style reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from common import Result, paired_ratio, parse_args, print_results, time_interleaved
from scipy.optimize import linear_sum_assignment

from splitmatch.matching.matcher import Matching, SplitMatcher

NUM_SEEN, NUM_CANDIDATES, NUM_CLASSES, DIM = 100, 20, 15, 512
COSTS = {"class": 2.0, "bce": 5.0, "dice": 5.0, "embed": 2.0}
TARGET = 3.0


def random_boxes(count: int, size: int, g: torch.Generator) -> torch.Tensor:
    """``[count, size, size]`` bool rectangles covering 5-60% of each side."""
    masks = torch.zeros(count, size, size, dtype=torch.bool)
    for k in range(count):
        h, w = (torch.randint(size // 20, size * 3 // 5, (2,), generator=g)).tolist()
        y, x = (
            torch.randint(0, size - h, (1,), generator=g).item(),
            torch.randint(0, size - w, (1,), generator=g).item(),
        )
        masks[k, y : y + h, x : x + w] = True
    return masks


def make_batch(batch: int, grid: int, size: int, seed: int = 0) -> tuple[dict, list[dict]]:
    """Model-like outputs and per-image targets (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    queries = NUM_SEEN + NUM_CANDIDATES
    outputs = {
        "pred_logits": torch.randn(batch, queries, NUM_CLASSES + 1, generator=g) * 3,
        "pred_masks": torch.randn(batch, queries, grid, grid, generator=g) * 4,
        "pred_embeds": F.normalize(torch.randn(batch, queries, DIM, generator=g), dim=-1),
        "query_group": torch.tensor([0] * NUM_SEEN + [1] * NUM_CANDIDATES),
    }
    targets = []
    for _ in range(batch):
        seen, pseudo = torch.randint(1, 11, (1,), generator=g).item(), torch.randint(0, 21, (1,), generator=g).item()
        targets.append(
            {
                "labels": torch.randint(0, NUM_CLASSES, (seen,), generator=g),
                "masks": random_boxes(seen, size, g),
                "pseudo_masks": random_boxes(pseudo, size, g),
                "pseudo_embeddings": torch.randn(pseudo, DIM, generator=g),
            }
        )
    return outputs, targets


def sample_each(masks: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Mask2Former-style point sampling: ``[N, H, W]`` masks, ``[P, 2]`` coords repeated per mask -> ``[N, P]``."""
    grid = (2 * coords - 1).expand(masks.shape[0], -1, -1).unsqueeze(2)  # [N, P, 1, 2]
    return F.grid_sample(masks[:, None].float(), grid, align_corners=False)[:, 0, :, 0]


def mask2former_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mask2Former's ``batch_sigmoid_ce_loss``: ``[N, P]`` logits, ``[M, P]`` targets -> ``[N, M]``."""
    positive = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    negative = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    cost = torch.einsum("np,mp->nm", positive, targets) + torch.einsum("np,mp->nm", negative, 1 - targets)
    return cost / logits.shape[1]


def softplus_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The same cost as two softplus passes."""
    cost = torch.einsum("np,mp->nm", F.softplus(-logits), targets)
    cost = cost + torch.einsum("np,mp->nm", F.softplus(logits), 1 - targets)
    return cost / logits.shape[1]


def pair_costs(logits: torch.Tensor, targets: torch.Tensor, bce_cost=mask2former_bce) -> torch.Tensor:
    """Weighted sigmoid BCE and dice of every prediction ``[N, P]`` against every target ``[M, P]``."""
    bce = bce_cost(logits, targets)
    probs = logits.sigmoid()
    dice = 1 - (2 * torch.einsum("np,mp->nm", probs, targets) + 1) / (probs.sum(1)[:, None] + targets.sum(1)[None] + 1)
    return COSTS["bce"] * bce + COSTS["dice"] * dice


def solve(cost: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = linear_sum_assignment(cost.numpy())
    return torch.as_tensor(rows, dtype=torch.int64) + offset, torch.as_tensor(cols, dtype=torch.int64)


@torch.no_grad()
def reference_match(outputs: dict, targets: list[dict], coords: torch.Tensor, bce_cost=mask2former_bce) -> Matching:
    """Per-image matching of seen queries to seen masks and candidate queries to pseudo masks."""
    seen_pairs, candidate_pairs = [], []
    empty = (torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64))
    for b, target in enumerate(targets):
        masks = outputs["pred_masks"][b]
        seen_points = sample_each(masks[:NUM_SEEN], coords[b])  # [N_s, P]
        probs = outputs["pred_logits"][b, :NUM_SEEN].softmax(-1)
        cost = -COSTS["class"] * probs[:, target["labels"]]
        cost = cost + pair_costs(seen_points, sample_each(target["masks"], coords[b]), bce_cost)
        seen_pairs.append(solve(cost, 0))
        if len(target["pseudo_masks"]) == 0:
            candidate_pairs.append(empty)
            continue
        candidate_points = sample_each(masks[NUM_SEEN:], coords[b])  # [N_c, P]
        similarity = outputs["pred_embeds"][b, NUM_SEEN:] @ F.normalize(target["pseudo_embeddings"], dim=-1).t()
        cost = -COSTS["embed"] * similarity + pair_costs(
            candidate_points, sample_each(target["pseudo_masks"], coords[b]), bce_cost
        )
        candidate_pairs.append(solve(cost, NUM_SEEN))
    return Matching(seen_pairs, candidate_pairs, torch.arange(NUM_SEEN))


def identical(a: Matching, b: Matching) -> bool:
    pairs = zip(a.seen + a.candidate, b.seen + b.candidate)
    return all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in pairs)


def main() -> None:
    args = parse_args(__doc__, repeats=10)
    batch, points = (4, 2048) if args.quick else (16, 12544)
    outputs, targets = make_batch(batch, grid=32, size=128)
    coords = torch.rand(batch, points, 2, generator=torch.Generator().manual_seed(1))
    matcher = SplitMatcher(COSTS["class"], COSTS["bce"], COSTS["dice"], COSTS["embed"], points)

    library = matcher(outputs, targets, coords)
    same = identical(library, reference_match(outputs, targets, coords))
    same_softplus = identical(library, reference_match(outputs, targets, coords, softplus_bce))
    timings = time_interleaved(
        {
            "reference": lambda: reference_match(outputs, targets, coords),
            "softplus": lambda: reference_match(outputs, targets, coords, softplus_bce),
            "library": lambda: matcher(outputs, targets, coords),
        },
        args.repeats,
        warmup=2,
    )
    ratio = paired_ratio(timings["library"], timings["reference"])
    softplus_ratio = paired_ratio(timings["library"], timings["softplus"])
    seen = [len(t["labels"]) for t in targets]
    pseudo = [len(t["pseudo_masks"]) for t in targets]
    results = [
        Result(
            "SplitMatcher (batched)",
            timings["library"].median,
            "s",
            timings["reference"].median,
            "per-image, Mask2Former BCE",
            f"<= {1 / TARGET:.2f} (>= {TARGET:.0f}x)",
            same and ratio <= 1 / TARGET,
            ratio,
        ),
        Result(
            "SplitMatcher (batched)",
            timings["library"].median,
            "s",
            timings["softplus"].median,
            "per-image, softplus BCE",
            "info",
            None,
            softplus_ratio,
        ),
    ]
    notes = [
        f"speed-up {1 / ratio:.2f}x over the Mask2Former-style loop, {1 / softplus_ratio:.2f}x over the "
        f"softplus loop; assignments identical: {same} / {same_softplus}",
        f"B={batch}, Q={NUM_SEEN}+{NUM_CANDIDATES}, {points} points, pred masks 32x32, targets 128x128, "
        f"seen masks {seen}, pseudo masks {pseudo}, {args.repeats} repeats",
    ]
    print_results("bench_matching: SplitMatcher vs per-image Mask2Former-style matcher", results, notes)


if __name__ == "__main__":
    main()
