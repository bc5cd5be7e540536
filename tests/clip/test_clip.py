"""The CLIP backbone reproduces open_clip, interpolates, prompts, and loads every weights format."""

from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F

from splitmatch.clip.image_encoder import ClipImageEncoder
from splitmatch.clip.loading import (
    ClipWeightsError,
    build_clip,
    clip_tokenizer,
    is_torchscript_archive,
    save_clip_safetensors,
)
from splitmatch.clip.text_encoder import ClipTextEncoder, prompt_templates
from splitmatch.config.architectures import ArchitectureError, clip_model_config


@pytest.fixture
def tiny_clip():
    torch.manual_seed(0)
    return build_clip("tiny-test")


def test_zero_prompts_reproduce_open_clip_image_and_text(tiny_clip):
    encoder = ClipImageEncoder(tiny_clip.visual, prompt_tokens=0, prompt_layers=0, region_layers=2)
    images = torch.randint(0, 256, (2, 3, 32, 32)).float()
    ours = encoder(images)["cls_embedding"]
    theirs = tiny_clip.encode_image(encoder.normalize(images))
    assert torch.allclose(ours, theirs, atol=1e-5)
    text = ClipTextEncoder(tiny_clip, clip_tokenizer("tiny-test"), prompt_templates("single"))
    tokens = clip_tokenizer("tiny-test")(["a photo of a cat.", "a photo of a sofa."])
    assert torch.allclose(text(["cat", "sofa"]), tiny_clip.encode_text(tokens, normalize=True), atol=1e-6)


def test_text_embeddings_are_cached_per_class_list_and_average_templates(tiny_clip):
    text = ClipTextEncoder(tiny_clip, clip_tokenizer("tiny-test"), prompt_templates("ensemble"))
    first = text(["cat", "dog"])
    assert text(["cat", "dog"]) is first
    assert len(text.templates) == 80
    manual = text.encode_texts([t.format("cat") for t in text.templates]).mean(0)
    assert torch.allclose(first[0], F.normalize(manual, dim=0), atol=1e-6)
    assert torch.allclose(first.norm(dim=-1), torch.ones(2), atol=1e-6)


def test_prompts_change_features_and_receive_gradients(tiny_clip):
    encoder = ClipImageEncoder(tiny_clip.visual, prompt_tokens=3, prompt_layers=2, region_layers=1)
    images = torch.randint(0, 256, (1, 3, 32, 32)).float()
    prompted = encoder(images)["dense_tokens"]
    plain = encoder(images, use_prompts=False)["dense_tokens"]
    assert not torch.allclose(prompted, plain)
    prompted.sum().backward()
    assert encoder.prompts.grad is not None and encoder.prompts.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_clip.visual.parameters())


def test_positional_interpolation_is_identity_at_native_grid_and_resizes(tiny_clip):
    encoder = ClipImageEncoder(tiny_clip.visual)
    native = tuple(tiny_clip.visual.grid_size)
    assert torch.equal(encoder.positional_embedding(native), tiny_clip.visual.positional_embedding)
    resized = encoder.positional_embedding((6, 8))
    assert resized.shape == (1 + 48, tiny_clip.visual.positional_embedding.shape[1])
    out = encoder(torch.rand(2, 3, 48, 64) * 255, value_features=True)
    assert out["dense_tokens"].shape == (2, 32, 6, 8) and out["dense_values"].shape == (2, 32, 6, 8)


def test_full_image_mask_gives_the_cls_embedding_and_masks_matter(tiny_clip):
    encoder = ClipImageEncoder(tiny_clip.visual, region_layers=2)
    images = torch.randint(0, 256, (2, 3, 32, 32)).float()
    cls = encoder(images, use_prompts=False)["cls_embedding"]
    full = torch.ones(2, 2, 4, 4, dtype=torch.bool)
    assert torch.allclose(encoder.region_embeddings(images, full), cls[:, None].expand(-1, 2, -1), atol=1e-5)
    halves = torch.zeros(2, 2, 4, 4, dtype=torch.bool)
    halves[:, 0, :2], halves[:, 1, 2:] = True, True
    regions = encoder.region_embeddings(images, halves)
    assert not torch.allclose(regions[:, 0], regions[:, 1], atol=1e-3)


def test_weights_round_trip_through_safetensors_and_state_dict(tiny_clip, tmp_path):
    save_clip_safetensors(tiny_clip, tmp_path / "w.safetensors")
    loaded = build_clip("tiny-test", str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": {"module." + k: v for k, v in tiny_clip.state_dict().items()}}, tmp_path / "w.pt")
    loaded_pt = build_clip("tiny-test", str(tmp_path / "w.pt"))
    for model in (loaded, loaded_pt):
        for key, value in tiny_clip.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), key


def test_torchscript_archive_loads(tiny_clip, tmp_path):
    images, tokens = torch.rand(1, 3, 32, 32), clip_tokenizer("tiny-test")(["a cat"])
    traced = torch.jit.trace(tiny_clip, (images, tokens), check_trace=False)
    traced.save(str(tmp_path / "openai.pt"))
    assert is_torchscript_archive(tmp_path / "openai.pt")
    loaded = build_clip("tiny-test", str(tmp_path / "openai.pt"))
    assert torch.allclose(loaded.encode_image(images), tiny_clip.encode_image(images), atol=1e-6)


def test_bad_weights_files_get_clear_errors(tiny_clip, tmp_path):
    with pytest.raises(ClipWeightsError, match="does not exist"):
        build_clip("tiny-test", str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ClipWeightsError, match="junk.pt"):
        build_clip("tiny-test", str(tmp_path / "junk.pt"))
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ClipWeightsError, match="does not fit"):
        build_clip("tiny-test", str(tmp_path / "other.pt"))
    with pytest.raises(ArchitectureError, match="unknown CLIP architecture"):
        clip_model_config("ViT-Nonexistent")
    with pytest.raises(ClipWeightsError, match="timm or ResNet"):
        build_clip("RN50")


@pytest.mark.slow
def test_openai_vit_b16_layout_loads_and_runs_at_224_and_512(tmp_path):
    """A fabricated state dict in OpenAI's ViT-B/16 layout: random values, real shapes and keys."""
    torch.manual_seed(0)
    reference = open_clip.CLIP(**{k: v for k, v in clip_model_config("ViT-B-16-quickgelu").items()})
    state = {k: v.half() for k, v in reference.state_dict().items()}  # OpenAI ships fp16
    state.update(input_resolution=torch.tensor(224), context_length=torch.tensor(77), vocab_size=torch.tensor(49408))
    torch.save(state, tmp_path / "ViT-B-16.pt")
    model = build_clip("ViT-B-16-quickgelu", str(tmp_path / "ViT-B-16.pt"))
    encoder = ClipImageEncoder(model.visual, prompt_tokens=10, prompt_layers=11, feature_layers=[5, 8, 11])
    with torch.no_grad():
        for size, grid in ((224, 14), (512, 32)):
            out = encoder(torch.rand(1, 3, size, size) * 255, value_features=True)
            assert out["dense_tokens"].shape == (1, 512, grid, grid)
            assert out["dense_values"].shape == (1, 512, grid, grid)
            assert [f.shape for f in out["layer_features"]] == [(1, 768, grid, grid)] * 3
            assert torch.isfinite(out["cls_embedding"]).all()
    with pytest.raises(ClipWeightsError, match="quickgelu|does not fit"):
        build_clip("ViT-B-32-quickgelu", str(tmp_path / "ViT-B-16.pt"))
