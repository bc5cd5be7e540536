"""The training-free presets carry each recipe's authors' settings, and bad values get one line."""

from __future__ import annotations

import json

import pytest

from splitmatch.clip.dense_recipes import RECIPES
from splitmatch.config import ConfigError
from splitmatch.config.templates import load_templates
from splitmatch.config.training_free import (
    RECIPE_NAMES,
    TRAINING_FREE_PRESETS,
    training_free_config,
    training_free_names,
)
from splitmatch.packaged import PACKAGE_ROOT

# From the authors' code (docs/training-free.md): prompt set, positional resize, logit scale, PAMR
# steps, and their configs' protocol (mode, short side, window, stride) for VOC-20 / Context-59.
AUTHORS = {
    "maskclip": ("maskclip", "bicubic", 0.0, 0, ("whole", 512)),
    "clearclip": ("ensemble", "bicubic_scale", 50.0, 0, ("slide", 448, 448, 224)),
    "sclip": ("ensemble", "bicubic_scale", 40.0, 0, ("slide", 336, 224, 112)),
    "naclip": ("ensemble", "bicubic_scale", 40.0, 10, ("slide", 336, 224, 112)),
    "scclip": ("ensemble", "bicubic_scale", 40.0, 0, ("slide", 336, 224, 112)),
}


def test_the_config_floor_names_the_recipes_the_clip_code_has():
    assert RECIPE_NAMES == RECIPES


@pytest.mark.parametrize("recipe", sorted(AUTHORS))
def test_each_recipe_carries_its_authors_settings(recipe):
    templates, pos, scale, pamr_steps, protocol = AUTHORS[recipe]
    for where in ("vitb16", "authors", "world"):
        config = training_free_config(f"{recipe}-{where}")
        assert config.recipe.name == recipe and config.recipe.logit_scale == scale
        assert config.recipe.pamr_steps == pamr_steps and config.recipe.pamr_dilations == [8, 16]
        assert config.clip.pos_interpolation == pos
        assert config.clip.templates == (templates if where != "world" else "single")
    authors = training_free_config(f"{recipe}-authors").inference
    assert (authors.mode, authors.short_side) == protocol[:2]
    if authors.mode == "slide":
        assert (authors.window, authors.stride) == protocol[2:]
    benchmark = training_free_config(recipe).inference  # the name alone: the benchmarks' protocol
    assert (benchmark.mode, benchmark.short_side, benchmark.window, benchmark.stride) == ("slide", 512, 512, 426)
    assert training_free_config(recipe).clip.weights == "openai"
    assert training_free_config(f"{recipe}-world").clip.weights == "packaged:world-clip"


def test_every_name_the_commands_take():
    names = training_free_names()
    assert set(RECIPE_NAMES) <= set(names) and "value-path-world" in names and "maskclip-world" in names
    assert "value-path-authors" not in TRAINING_FREE_PRESETS  # the value path is this project's, not a paper's
    assert len(TRAINING_FREE_PRESETS) == 3 * len(RECIPE_NAMES) - 1


def test_maskclips_templates_are_clips_80_and_five_scene_forms():
    ensemble, maskclip = load_templates("ensemble"), load_templates("maskclip")
    assert len(maskclip) == 85 and set(ensemble) <= set(maskclip)
    assert sorted(set(maskclip) - set(ensemble)) == sorted(
        f"{start} {article} {{}} in the scene."
        for start, article in (
            ("there is", "a"),
            ("there is", "the"),
            ("this is", "a"),
            ("this is", "the"),
            ("this is", "one"),
        )
    )
    source = json.loads((PACKAGE_ROOT / "configs" / "templates" / "maskclip.json").read_text())["source"]
    assert "prompt_engineering.py" in source


@pytest.mark.parametrize(
    "settings, message",
    [
        (["recipe.name=clip-dino"], "recipe.name must be one of"),
        (["recipe.pamr_dilations=[0]"], r"recipe.pamr_dilations\[0\] must be"),
        (["recipe.logit_scale=-1"], "recipe.logit_scale must be"),
        (["clip.pos_interpolation=nearest"], "clip.pos_interpolation must be one of"),
        (["decoder.hidden_dim=8"], "takes clip.*, recipe.* and inference.* keys"),
    ],
)
def test_bad_values_get_one_line(settings, message):
    with pytest.raises(ConfigError, match=message) as caught:
        training_free_config("sclip", settings)
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="unknown training-free model 'sclip-vitl14'"):
        training_free_config("sclip-vitl14")
