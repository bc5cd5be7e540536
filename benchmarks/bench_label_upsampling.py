"""Labels at full size: the tiled argmax of ``splitmatch.inference.label_upsampling`` against upsampling
every class whole.

Method: class scores shaped like a model's (20 soft masks, each with a class distribution drawn
at random) at 384x384 are brought to 1152x1152 (``--quick``: 256 -> 768) for 21, 171 and 300
classes, by ``upsample_argmax`` forced onto its tiled path and by ``F.interpolate(...,
mode="bilinear")`` of every class then the argmax (the reference, in the same run). Reported:
the pixels whose label differs (ties up to float rounding only: PyTorch's kernel may fuse
multiply-adds, the tiled arithmetic does not) and the time of each (interleaved, median).
Uniform noise over 300 classes, the worst case for ties and for pruning, is reported too.
Memory is measured on the real command by ``bench_memory.py``. Target: at most 1 differing
pixel in 10,000 on model-like maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from common import Result, parse_args, print_results, time_interleaved

from splitmatch.inference import label_upsampling
from splitmatch.inference.label_upsampling import upsample_argmax

GB = 1e9


def model_like_scores(num_classes: int, side: int, seed: int) -> torch.Tensor:
    """``[C, side, side]``: S[c] = sum_q p_q(c) sigmoid(m_q), as inference computes scores."""
    generator = torch.Generator().manual_seed(seed)
    masks = torch.randn(20, 1, side // 16, side // 16, generator=generator) * 4
    masks = F.interpolate(masks, size=(side, side), mode="bilinear", align_corners=False)[:, 0].sigmoid()
    probs = (torch.randn(20, num_classes, generator=generator) * 3).softmax(-1)
    return torch.einsum("qc,qhw->chw", probs, masks)


def whole_argmax(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The reference: every class of ``[C, h, w]`` upsampled whole, then the argmax ``[H, W]``."""
    return F.interpolate(scores[None], size=size, mode="bilinear", align_corners=False)[0].argmax(0)


def main() -> None:
    args = parse_args(__doc__, repeats=3)
    side, out = (256, 768) if args.quick else (384, 1152)
    label_upsampling.WHOLE_BYTES = 0  # the tiled path at every size
    results, notes = [], []
    cases = [(f"model-like, {c} classes", model_like_scores(c, side, c)) for c in (21, 171, 300)]
    cases.append(
        ("uniform noise, 300 classes", torch.rand(300, side, side, generator=torch.Generator().manual_seed(0)))
    )
    for name, scores in cases:
        tiled = upsample_argmax(scores, (out, out))
        whole = whole_argmax(scores, (out, out))
        differing = int((tiled != whole).sum())
        per_pixel = differing / tiled.numel()
        model_like = name.startswith("model")
        results.append(
            Result(
                f"differing labels, {name}",
                differing,
                "px",
                None,
                "",
                "<= 1e-4 of pixels" if model_like else "",
                per_pixel <= 1e-4 if model_like else None,
            )
        )
        timings = time_interleaved(
            {
                "tiled": lambda scores=scores: upsample_argmax(scores, (out, out)),
                "whole": lambda scores=scores: whole_argmax(scores, (out, out)),
            },
            args.repeats,
        )
        results.append(
            Result(
                f"time, {name}", timings["tiled"].median, "s", timings["whole"].median, "F.interpolate whole + argmax"
            )
        )
        notes.append(
            f"{name}: {differing} of {tiled.numel():,} pixels differ; whole upsampling holds "
            f"{scores.shape[0] * out * out * 4 / GB:.2f} GB of scores, the tiled path at most a few "
            f"blocks of {label_upsampling.BLOCK_BYTES / 2**20:.0f} MiB"
        )
    print_results(f"bench_label_upsampling: {side}x{side} scores -> {out}x{out} labels", results, notes)


if __name__ == "__main__":
    main()
