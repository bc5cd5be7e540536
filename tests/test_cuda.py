"""CUDA code paths: mixed precision, generator and scaler state, deterministic mode, pinned loading.

They skip without a CUDA device; ``python benchmarks/gpu_check.py`` runs them first on a GPU machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from splitmatch.config.presets import load_config
from splitmatch.evaluation.evaluator import evaluate
from splitmatch.inference.images import predict_scores
from splitmatch.inference.segmentation import SegmentationInference
from splitmatch.matching.point_sampling import point_sample
from splitmatch.model.build import build_segmentor
from splitmatch.model.checkpoint import read_checkpoint
from splitmatch.model.query_decoder import DecoderLayer
from splitmatch.train.data import build_loader
from splitmatch.train.sampler import StepBatchSampler
from splitmatch.train.state import list_checkpoints
from splitmatch.train.trainer import train

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def tiny(data_root, *overrides: str):
    return load_config(
        preset_name="tiny",
        overrides=[f"data.root={data_root}", "train.iterations=4", "train.checkpoint_every=2", *overrides],
    )


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_training_under_autocast_checkpoints_cuda_state_and_resumes(tiny_dataset, tmp_path, amp):
    out = tmp_path / "run"
    metrics = train(tiny(tiny_dataset.root, f"train.amp={amp}", "train.keep_checkpoints=3"), out, progress=False)
    assert np.isfinite(metrics["miou"])
    tensors, record = read_checkpoint(list_checkpoints(out / "checkpoints")[0])
    assert "rng.rank0.cuda" in tensors and "rng.rank0.cpu" in tensors
    assert ("grad_scaler" in record) == (amp == "fp16")
    last = list_checkpoints(out / "checkpoints")[-1]
    last.unlink()
    (out / "model.safetensors").unlink()
    train(tiny(tiny_dataset.root, f"train.amp={amp}", "train.keep_checkpoints=3"), out, resume=True, progress=False)
    assert (out / "model.safetensors").is_file()


def test_deterministic_training_is_bitwise_repeatable_on_cuda(tiny_dataset, tmp_path):
    try:
        runs = []
        for name in ("a", "b"):
            config = tiny(tiny_dataset.root, "train.deterministic=true", "train.amp=bf16", "train.iterations=3")
            train(config, tmp_path / name, progress=False)
            runs.append(load_file(tmp_path / name / "model.safetensors"))
    finally:
        torch.use_deterministic_algorithms(False)
    different = [k for k in runs[0] if not torch.equal(runs[0][k], runs[1][k])]
    assert not different, f"{len(different)} tensors differ between two deterministic runs, e.g. {different[:3]}"


def test_evaluation_under_autocast_keeps_float32_scores_close_to_float32(tiny_dataset):
    config = tiny(tiny_dataset.root)
    torch.manual_seed(0)
    model = build_segmentor(config.clip, config.decoder).cuda().eval()
    embeddings = model.encode_classes(list(tiny_dataset.classes.names))
    image = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    scores = {}
    for amp in ("none", "bf16"):
        inference = SegmentationInference(model, "whole", amp=amp)
        scores[amp] = predict_scores(inference, image, embeddings, None, config.inference, torch.device("cuda"))
    assert scores["bf16"].dtype == torch.float32
    assert torch.allclose(scores["bf16"], scores["none"], atol=0.05, rtol=0.05)
    config.inference.amp = "bf16"
    assert np.isfinite(evaluate(model, tiny_dataset, "val", config.inference, progress=False)["miou"])


def test_attention_fast_path_and_deterministic_point_reads_match_their_references_on_cuda():
    torch.manual_seed(0)
    layer = DecoderLayer(64, 4, 128).cuda().eval()
    queries, memory = torch.randn(2, 6, 64, device="cuda"), torch.randn(2, 40, 64, device="cuda")
    mask = torch.rand(8, 6, 40, device="cuda") < 0.3
    fast = layer(queries, torch.zeros_like(queries), memory, torch.zeros_like(memory), mask)
    attended = layer.cross_attn(queries, memory, memory, attn_mask=mask, need_weights=True)[0]
    reference = layer.norms[0](queries + attended)
    reference = layer.norms[1](reference + layer.self_attn(reference, reference, reference, need_weights=True)[0])
    assert torch.allclose(fast, layer.norms[2](reference + layer.ffn(reference)), atol=1e-4)

    masks = torch.randn(2, 1, 32, 32, device="cuda", requires_grad=True)
    coords = torch.rand(2, 500, 2, device="cuda")
    reference = point_sample(masks, coords)
    torch.use_deterministic_algorithms(True)
    try:
        gathered = point_sample(masks, coords)
        gathered.sum().backward()  # refused by PyTorch if a non-deterministic kernel were used
    finally:
        torch.use_deterministic_algorithms(False)
    assert torch.allclose(gathered, reference, atol=1e-5)


def test_training_loader_hands_out_pinned_batches_for_cuda(tiny_dataset):
    from splitmatch.data.dataset import SegmentationDataset

    dataset = SegmentationDataset(tiny_dataset, "train")
    loader = build_loader(dataset, StepBatchSampler(len(dataset), 1, 0, 1, 0, 0, 1), 0, torch.device("cuda"))
    assert next(iter(loader))["image"].is_pinned()
