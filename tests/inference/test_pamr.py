"""PAMR against its authors' formulation (the LocalAffinity kernels of SCLIP's and NACLIP's pamr.py),
re-expressed here with convolutions, and where a training-free model applies it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from splitmatch.inference.pamr import pamr
from splitmatch.inference.segmentation import pad_to
from splitmatch.predict.predictor import Predictor
from splitmatch.world.generator import DEFAULT_SPEC, image_rng, render_image, world_class_split

NEIGHBOURS = [(r, c) for r in range(3) for c in range(3) if (r, c) != (1, 1)]
EVERY_PLACE = [(r, c) for r in range(3) for c in range(3)]


def picking(places) -> torch.Tensor:
    """3 x 3 kernels, one per place, each taking the value there."""
    kernel = torch.zeros(len(places), 1, 3, 3)
    for index, (r, c) in enumerate(places):
        kernel[index, 0, r, c] = 1.0
    return kernel


def differences() -> torch.Tensor:
    """LocalAffinity's kernels: the centre minus each neighbour."""
    kernel = -picking(NEIGHBOURS)
    kernel[:, 0, 1, 1] = 1.0
    return kernel


def local(x: torch.Tensor, kernel: torch.Tensor, dilations) -> torch.Tensor:
    batch, channels, height, width = x.shape
    x = x.reshape(batch * channels, 1, height, width)
    out = [F.conv2d(F.pad(x, [d] * 4, mode="replicate"), kernel, dilation=d) for d in dilations]
    return torch.cat(out, 1).view(batch, channels, -1, height, width)


def authors_pamr(image: torch.Tensor, mask: torch.Tensor, steps: int, dilations) -> torch.Tensor:
    """PAMR.forward: |centre - neighbour| affinities over the local std, softmax, then ``steps`` copies."""
    mask = F.interpolate(mask, size=image.shape[-2:], mode="bilinear", align_corners=True)
    spread = local(image, picking(EVERY_PLACE), dilations).std(2, keepdim=True)  # LocalStDev
    affinity = local(image, differences(), dilations).abs()  # LocalAffinityAbs
    weights = F.softmax((-affinity / (1e-8 + 0.1 * spread)).mean(1, keepdim=True), 2)
    for _ in range(steps):
        mask = (local(mask, picking(NEIGHBOURS), dilations) * weights).sum(2)  # LocalAffinityCopy
    return mask


@pytest.mark.parametrize("dilations", [(8, 16), (1,), (2, 5)])
def test_pamr_is_its_authors(dilations):
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, 40, 52, generator=generator)
    scores = torch.randn(1, 5, 20, 26, generator=generator)  # resized first, corners aligned
    expected = authors_pamr(image, scores, 10, dilations)
    torch.testing.assert_close(pamr(image, scores, 10, dilations), expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(expected, F.interpolate(scores, size=(40, 52), mode="bilinear", align_corners=True))


def test_a_training_free_model_refines_at_the_images_size_and_labels_it():
    image, _ = render_image(image_rng(0, "val", 1), DEFAULT_SPEC)  # 118 x 104: the world's own kind of image
    names = list(world_class_split().names)
    plain = Predictor.training_free("maskclip-world", device="cpu")
    refined = Predictor.training_free("maskclip-world", device="cpu", settings=["recipe.pamr_steps=10"])
    assert Predictor.training_free("naclip-world", device="cpu").model.pamr_steps == 10  # NACLIP's default
    assert refined.model.pamr_dilations == (8, 16)
    assert refined.inference.refines_at_image_size and not plain.inference.refines_at_image_size
    labels = refined.predict(image, names)
    assert labels.shape == (118, 104)
    assert np.array_equal(refined.predict([image, image], names, batch_size=2)[1], labels)
    # the authors' order: window logits at the image's size, PAMR on the image resized there, softmax
    resized = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    resized = F.interpolate(resized, size=(109, 96), mode="bilinear", align_corners=False).clamp(0, 255)
    padded = pad_to(resized, (112, 96), plain.inference.pixel_mean(torch.device("cpu")))  # whole patches of 8
    logits = plain.inference.padded_scores(padded, plain.model.encode_classes(names))[..., :109, :]
    logits = F.interpolate(logits, size=(118, 104), mode="bilinear", align_corners=False)
    normalised = F.interpolate(plain.model.image_encoder.normalize(resized), size=(118, 104), mode="bilinear")
    expected = authors_pamr(normalised, logits, 10, (8, 16)).argmax(1)[0].numpy()
    assert (labels == expected).mean() > 0.999
    assert (plain.predict(image, names) == expected).mean() < 0.9  # what PAMR changes on this image
