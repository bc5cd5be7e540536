"""Labels at full size in bounded memory equal the full-size argmax; pictures of large images likewise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from splitmatch.inference import label_upsampling
from splitmatch.inference.images import resize_short_side
from splitmatch.inference.label_upsampling import upsample_argmax
from splitmatch.visualize import colourise, palette, prediction_figure


def full_size_argmax(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """What prediction did before: every class upsampled whole by PyTorch, then the argmax."""
    return F.interpolate(scores[None], size=size, mode="bilinear", align_corners=False)[0].argmax(0)


def smooth_scores(num_classes: int, height: int, width: int, seed: int) -> torch.Tensor:
    """Score maps shaped like a model's: a few soft masks, each with its own class distribution."""
    generator = torch.Generator().manual_seed(seed)
    masks = torch.randn(6, 1, max(2, height // 8), max(2, width // 8), generator=generator) * 4
    masks = F.interpolate(masks, size=(height, width), mode="bilinear", align_corners=False)[:, 0].sigmoid()
    probs = (torch.randn(6, num_classes, generator=generator) * 3).softmax(-1)
    return torch.einsum("qc,qhw->chw", probs, masks)  # [C, h, w]


@pytest.fixture
def tiled(monkeypatch):
    """Forces the tiled path on small maps, with tiles and blocks small enough to cut everything up."""
    monkeypatch.setattr(label_upsampling, "WHOLE_BYTES", 0)
    monkeypatch.setattr(label_upsampling, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(label_upsampling, "MIN_TILE", 3)
    monkeypatch.setattr(label_upsampling, "MAX_TILE", 3)


CASES = [
    (3, 9, 7, 50, 61),
    (21, 16, 12, 40, 30),
    (300, 12, 20, 97, 131),
    (5, 40, 40, 23, 17),
    (4, 1, 30, 9, 70),
    (6, 25, 25, 25, 25),
]  # (C, h, w, H, W): up, down, one row, same size


@pytest.mark.parametrize("case", CASES, ids=[f"C{c[0]}-{c[1]}x{c[2]}-to-{c[3]}x{c[4]}" for c in CASES])
def test_tiled_labels_equal_the_full_size_argmax(tiled, monkeypatch, case):
    num_classes, height, width, out_h, out_w = case
    for seed in range(3):
        scores = smooth_scores(num_classes, height, width, seed) - 0.1 * (seed == 2)  # calibrated scores go below 0
        got = upsample_argmax(scores, (out_h, out_w), torch.int16)
        assert got.dtype == torch.int16 and got.shape == (out_h, out_w)
        assert torch.equal(got.long(), full_size_argmax(scores, (out_h, out_w)))
        monkeypatch.setattr(label_upsampling, "PRUNE_MARGIN", float("inf"))  # every class in every tile
        assert torch.equal(upsample_argmax(scores, (out_h, out_w)), got.long())
        monkeypatch.setattr(label_upsampling, "PRUNE_MARGIN", 1e-5)


def test_pruning_is_exact_against_the_same_arithmetic_on_noise(tiled, monkeypatch):
    """On uniform noise every class competes; pruned and unpruned tiles must still agree exactly."""
    scores = torch.rand(40, 11, 13, generator=torch.Generator().manual_seed(0))
    pruned = upsample_argmax(scores, (50, 37))
    monkeypatch.setattr(label_upsampling, "PRUNE_MARGIN", float("inf"))
    assert torch.equal(pruned, upsample_argmax(scores, (50, 37)))
    # Against PyTorch's own kernel only float-rounding ties may differ.
    assert (pruned != full_size_argmax(scores, (50, 37))).float().mean() < 1e-3


def test_non_finite_scores_are_refused():
    scores = torch.zeros(3, 4, 4)
    scores[1, 2, 2] = float("nan")
    with pytest.raises(FloatingPointError, match="not finite"):
        upsample_argmax(scores, (8, 8))


def test_resize_one_channel_at_a_time_equals_all_at_once():
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (71, 93, 3), dtype=np.uint8))
    tensor = image.permute(2, 0, 1)[None]
    whole = F.interpolate(tensor.float(), size=(64, 84), mode="bilinear", align_corners=False).clamp(0, 255)
    # Equal to the last bit with several threads; one thread takes another kernel path (3e-5 apart).
    torch.testing.assert_close(resize_short_side(tensor, 64, 1000), whole, rtol=0, atol=1e-4)


def test_prediction_figure_in_blocks_equals_the_whole_image_blend(monkeypatch):
    import splitmatch.visualize as visualize

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 50, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, (37, 50)).astype(np.uint8)
    names = ["a", "b", "c", "d"]
    reference = prediction_figure(image, labels, names)
    blend = (1 - 0.55) * image.astype(np.float32) + 0.55 * colourise(labels, palette(4)).astype(np.float32)
    assert np.array_equal(reference[:37, :50], blend.clip(0, 255).astype(np.uint8))  # the former formula
    monkeypatch.setattr(visualize, "BLOCK_ROWS", 5)
    assert np.array_equal(prediction_figure(image, labels, names), reference)
