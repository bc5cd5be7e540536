"""Template sets as data, the positional-embedding resize modes, and the ViT-B presets' choices."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

from splitmatch.clip.image_encoder import POS_INTERPOLATION, ClipImageEncoder
from splitmatch.clip.loading import build_clip, clip_tokenizer
from splitmatch.clip.text_encoder import ClipTextEncoder, prompt_templates
from splitmatch.config import ConfigError, load_config
from splitmatch.config.presets import preset
from splitmatch.config.templates import load_templates, template_set_names

ZEGCLIP_MULTI = (
    "a photo of a {}.",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "a {} in the scene.",
    "a photo of a {} in the scene.",
    "There is a {} in the scene.",
    "There is the {} in the scene.",
    "This is a {} in the scene.",
    "This is the {} in the scene.",
    "This is one {} in the scene.",
)


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    return build_clip("tiny-test")


def test_every_shipped_set_names_its_source_and_holds_valid_templates():
    assert set(template_set_names()) >= {"single", "ensemble", "zegclip-multi", "zegclip-single"}
    from splitmatch.config.templates import TEMPLATE_SETS

    for name in template_set_names():
        data = json.loads((TEMPLATE_SETS / f"{name}.json").read_text(encoding="utf-8"))
        assert isinstance(data["source"], str) and len(data["source"]) > 20
        assert load_templates(name) == tuple(data["templates"])
    assert prompt_templates("single") == ("a photo of a {}.",)
    assert prompt_templates("ensemble") == tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)
    assert prompt_templates("zegclip-multi") == ZEGCLIP_MULTI
    assert prompt_templates("zegclip-single") == ("a photo of a {}",)


@pytest.mark.parametrize("name", ["single", "ensemble", "zegclip-multi", "zegclip-single"])
def test_class_embedding_is_the_normalised_mean_over_the_sets_templates(tiny_clip, name):
    tokenizer = clip_tokenizer("tiny-test")
    text = ClipTextEncoder(tiny_clip, tokenizer, prompt_templates(name))
    got = text(["cat", "traffic light"])
    for row, label in enumerate(["cat", "traffic light"]):
        tokens = tokenizer([template.format(label) for template in prompt_templates(name)])
        each = tiny_clip.encode_text(tokens, normalize=True)  # open_clip's own text forward
        assert torch.allclose(got[row], F.normalize(each.mean(0), dim=0), atol=1e-5)
    assert torch.allclose(got.norm(dim=-1), torch.ones(2), atol=1e-6)


def test_a_json_file_of_templates_is_a_set_of_its_own(tmp_path, monkeypatch, tiny_clip):
    listed = tmp_path / "mine.json"
    listed.write_text(json.dumps(["itap of a {}.", "a sketch of the {}."]), encoding="utf-8")
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"source": "mine", "templates": ["a {}."]}), encoding="utf-8")
    assert load_templates(str(listed)) == ("itap of a {}.", "a sketch of the {}.")
    assert load_templates(str(wrapped)) == ("a {}.",)
    monkeypatch.chdir(tmp_path)  # a relative path means one relative to where the command runs
    config = load_config(preset_name="tiny", overrides=["clip.templates=mine.json"])
    assert config.clip.templates == str(listed) and config.given_paths["clip.templates"] == "mine.json"
    text = ClipTextEncoder(tiny_clip, clip_tokenizer("tiny-test"), prompt_templates(config.clip.templates))
    assert text.templates == ("itap of a {}.", "a sketch of the {}.")


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        ("{not json", "cannot be read as JSON"),
        ("[]", "non-empty list of templates"),
        ('{"templates": "a {}."}', "non-empty list of templates"),
        ('["a photo of a cat."]', "template 0 must be a string with '{}' once"),
        ('["a {} and a {}."]', "template 0 must be a string with '{}' once"),
        ('["a {0}."]', "template 0 must be a string with '{}' once"),
    ],
)
def test_a_bad_template_file_is_refused_when_the_config_is_built(tmp_path, content, message):
    path = tmp_path / "templates.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match="clip.templates file") as error:
        load_config(preset_name="tiny", overrides=[f"clip.templates={path}"])
    assert message in str(error.value)


def test_an_unknown_set_name_is_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match=r"clip.templates must be one of \['ensemble', 'maskclip', 'single'"):
        load_config(preset_name="tiny", overrides=["clip.templates=../single"])


@pytest.mark.parametrize("mode", sorted(POS_INTERPOLATION))
def test_positional_embedding_is_the_identity_at_the_native_grid_and_interpolates_as_named(tiny_clip, mode):
    encoder = ClipImageEncoder(tiny_clip.visual, pos_interpolation=mode)
    pos = tiny_clip.visual.positional_embedding
    native = tuple(tiny_clip.visual.grid_size)
    assert torch.equal(encoder.positional_embedding(native), pos)
    grid = (7, 10)
    patch_pos = pos[1:].reshape(1, *native, -1).permute(0, 3, 1, 2)
    arguments = {
        "bicubic": {"size": grid, "mode": "bicubic", "align_corners": False},
        "bilinear": {"size": grid, "mode": "bilinear", "align_corners": False},
        "bicubic_antialias": {"size": grid, "mode": "bicubic", "align_corners": False, "antialias": True},
        # the SCLIP family's: the sampling set by the factor (grid + 0.1) / native, not by the sizes
        "bicubic_scale": {
            "scale_factor": ((grid[0] + 0.1) / native[0], (grid[1] + 0.1) / native[1]),
            "mode": "bicubic",
            "align_corners": False,
            "recompute_scale_factor": False,
        },
    }[mode]
    want = F.interpolate(patch_pos, **arguments).permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)
    got = encoder.positional_embedding(grid)
    assert torch.equal(got[0], pos[0]) and torch.equal(got[1:], want)


def test_every_mode_gives_a_different_embedding(tiny_clip):
    resized = [
        ClipImageEncoder(tiny_clip.visual, pos_interpolation=m).positional_embedding((8, 8))
        for m in sorted(POS_INTERPOLATION)
    ]
    assert len(resized) == 4
    for first in range(len(resized)):
        for second in range(first + 1, len(resized)):
            assert not torch.allclose(resized[first], resized[second])
    with pytest.raises(ValueError, match="pos_interpolation must be one of"):
        ClipImageEncoder(tiny_clip.visual, pos_interpolation="nearest")


def test_presets_choose_templates_and_interpolation_as_zegclip_does_and_the_world_keeps_its_own():
    assert preset("coco-stuff-vitb16").clip.templates == "zegclip-multi"
    assert preset("context-vitb16").clip.templates == "zegclip-multi"
    assert preset("voc-vitb16").clip.templates == "zegclip-single"
    for name in ("voc-vitb16", "coco-stuff-vitb16", "context-vitb16"):
        assert preset(name).clip.pos_interpolation == "bilinear"
    for name in ("world", "tiny"):
        assert preset(name).clip.templates == "single" and preset(name).clip.pos_interpolation == "bicubic"


def test_the_built_model_uses_the_configs_interpolation_and_templates():
    from splitmatch.model.build import build_segmentor

    config = load_config(preset_name="tiny", overrides=["clip.pos_interpolation=bilinear", "clip.templates=ensemble"])
    model = build_segmentor(config.clip, config.decoder)
    assert model.image_encoder.pos_interpolation == "bilinear"
    assert len(model.text_encoder.templates) == 80
