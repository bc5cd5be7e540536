"""Code paths chosen for the GPU, checked on the CPU: same results as the paths they replace."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from splitmatch.device import mixed_precision
from splitmatch.matching.point_sampling import point_sample
from splitmatch.model.query_decoder import DecoderLayer
from splitmatch.model.resize import resize_bilinear
from splitmatch.train.data import build_loader
from splitmatch.train.sampler import StepBatchSampler


@pytest.fixture
def deterministic():
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


def test_decoder_layer_without_attention_weights_equals_the_layer_that_returns_them():
    torch.manual_seed(0)
    layer = DecoderLayer(32, 4, 64).eval()
    queries, query_pos = torch.randn(2, 5, 32), torch.randn(2, 5, 32)
    memory, memory_pos = torch.randn(2, 12, 32), torch.randn(2, 12, 32)
    mask = torch.rand(2 * 4, 5, 12) < 0.3
    fast = layer(queries, query_pos, memory, memory_pos, mask)
    # The reference: the same layer with nn.MultiheadAttention's weight-returning path.
    attended = layer.cross_attn(queries + query_pos, memory + memory_pos, memory, attn_mask=mask, need_weights=True)
    reference = layer.norms[0](queries + attended[0])
    q = reference + query_pos
    reference = layer.norms[1](reference + layer.self_attn(q, q, reference, need_weights=True)[0])
    reference = layer.norms[2](reference + layer.ffn(reference))
    assert torch.allclose(fast, reference, atol=1e-5)


@pytest.mark.parametrize("size", [(7, 9), (24, 24)])
def test_deterministic_resize_equals_interpolate_in_values_and_gradients(size, deterministic):
    torch.manual_seed(0)
    features = torch.randn(2, 3, 6, 5, requires_grad=True)
    weights = torch.randn(2, 3, *size)
    reference = F.interpolate(features, size=size, mode="bilinear", align_corners=False)
    (reference_grad,) = torch.autograd.grad((reference * weights).sum(), features)
    resized = resize_bilinear(features, size)  # deterministic mode and a gradient: the matrix form
    (grad,) = torch.autograd.grad((resized * weights).sum(), features)
    assert torch.allclose(resized, reference, atol=1e-5) and torch.allclose(grad, reference_grad, atol=1e-5)


def test_deterministic_point_sample_equals_grid_sample_in_values_and_gradients(deterministic):
    torch.manual_seed(0)
    masks = torch.randn(3, 2, 9, 11, requires_grad=True)
    coords = torch.rand(3, 50, 2)
    coords[0, :4] = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.01, 0.99], [0.5, 0.5]])  # borders: zero padding
    weights = torch.randn(3, 2, 50)
    grid = (2.0 * coords - 1.0).unsqueeze(2)
    reference = F.grid_sample(masks, grid, mode="bilinear", align_corners=False).squeeze(3)
    (reference_grad,) = torch.autograd.grad((reference * weights).sum(), masks)
    sampled = point_sample(masks, coords)
    (grad,) = torch.autograd.grad((sampled * weights).sum(), masks)
    assert torch.allclose(sampled, reference, atol=1e-5) and torch.allclose(grad, reference_grad, atol=1e-5)


def test_training_loader_pins_memory_for_cuda_only_and_autocast_is_cuda_only():
    sampler = StepBatchSampler(4, 2, 0, 1, 0, 0, 1)
    assert build_loader(list(range(4)), sampler, 0, torch.device("cpu")).pin_memory is False
    assert build_loader(list(range(4)), sampler, 0, torch.device("cuda", 0)).pin_memory is True
    with mixed_precision(torch.device("cpu"), "bf16"):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32
    with pytest.warns(UserWarning) if not torch.cuda.is_available() else torch.no_grad():
        cuda = mixed_precision(torch.device("cuda", 0), "fp16")
    assert isinstance(cuda, torch.autocast) and cuda.fast_dtype == torch.float16
    assert not isinstance(mixed_precision(torch.device("cuda", 0), "none"), torch.autocast)
