"""The "none of these" rule: SCLIP's and NACLIP's background rule (prob_thd and background names),
through Predictor.predict and `splitmatch predict`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from splitmatch.cli import main
from splitmatch.inference.none_rule import NoneOfThese
from splitmatch.predict.predictor import Predictor
from splitmatch.world.generator import DEFAULT_SPEC, image_rng, render_image, world_class_split


def authors_rule(probabilities: torch.Tensor, num_names: int, below: float) -> torch.Tensor:
    """The recipes' postprocess_result with a background class made of several names: the class's
    probability is the max over its names, the argmax over classes, then pixels under ``prob_thd``
    go to the background (index ``num_names`` here)."""
    if probabilities.shape[0] > num_names:
        classes = torch.cat([probabilities[:num_names], probabilities[num_names:].max(0, keepdim=True)[0]])
    else:  # no background names: the threshold alone
        classes = torch.cat([probabilities, torch.full_like(probabilities[:1], -1.0)])
    labels = classes.argmax(0)
    labels[classes.max(0)[0] < below] = num_names
    return labels


@pytest.mark.parametrize("below, prompts", [(0.4, 3), (0.0, 2), (0.6, 0)])
def test_the_rule_is_the_recipes_background_rule(below, prompts):
    generator = torch.Generator().manual_seed(prompts)
    probabilities = (3 * torch.randn(4 + prompts, 30, 40, generator=generator)).softmax(0)
    rule = NoneOfThese("background", below, tuple(f"prompt {i}" for i in range(prompts)))
    labels = rule.scores(probabilities, 4).argmax(0)
    assert torch.equal(labels, authors_rule(probabilities, 4, below))
    assert 0 < (labels == 4).float().mean() < 1


def test_bad_rules_get_one_line():
    with pytest.raises(ValueError, match="needs a threshold"):
        NoneOfThese("none")
    with pytest.raises(ValueError, match=r"share in \[0, 1\]"):
        NoneOfThese("none", 1.5)
    with pytest.raises(ValueError, match="non-empty name"):
        NoneOfThese(" ", 0.5)


def test_predict_gives_the_label_its_index_after_the_names():
    image, truth = render_image(image_rng(0, "val", 2), DEFAULT_SPEC)
    predictor = Predictor.training_free("maskclip-world", device="cpu")
    names = ["circle", "heart", "crescent"]  # no background: every pixel forced into a shape
    forced = predictor.predict(image, names)
    assert set(np.unique(forced)) <= {0, 1, 2}
    kept = predictor.predict(image, names, none=NoneOfThese("none", background=("background",)))
    assert 3 in kept and (kept == 3).mean() > 0.5  # the world's images are mostly background
    background = world_class_split().names.index("background")
    assert (kept[truth == background] == 3).mean() > (kept[truth != background] == 3).mean()
    everything = predictor.predict([image, image], names, none=NoneOfThese("none", 1.0))
    assert all((labels == 3).all() for labels in everything)  # no name holds all of a pixel


def test_the_command_writes_the_label_as_the_last_class(tmp_path, capsys):
    image, _ = render_image(image_rng(0, "val", 2), DEFAULT_SPEC)
    from splitmatch.data.folder import write_png

    path = tmp_path / "shapes.png"
    write_png(path, image)
    out = tmp_path / "out"
    argv = [
        "predict",
        "--model",
        "maskclip-world",
        "--classes",
        "circle,heart",
        "--out",
        str(out),
        "--quiet",
        "--none-label",
        "nothing",
        "--none-below",
        "0.5",
        "--background",
        "background,sky",
        str(path),
    ]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["classes"] == ["circle", "heart", "nothing"]
    assert summary["none_of_these"] == {"label": "nothing", "below": 0.5, "background": ["background", "sky"]}
    assert "nothing" in summary["images"][0]["classes"]
    capsys.readouterr()
    assert main([*argv[:-7], "--none-below", "0.5", str(path)]) == 2  # a threshold with no label
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "need --none-label" in err


def test_a_rule_of_the_wrong_type_or_clashing_with_a_name_is_refused():
    from splitmatch.errors import ArgumentTypeError, ArgumentValueError

    with pytest.raises(ArgumentTypeError, match="threshold must be a number"):
        NoneOfThese("other", "0.5")
    with pytest.raises(ArgumentTypeError, match="background prompts must be a list"):
        NoneOfThese("other", 0.0, "sky")
    rule = NoneOfThese("other", 0.0, ["sky", "wall"])
    assert rule.background == ("sky", "wall")
    rule.check_names([("cat",), ("sofa", "couch")])
    for clashing in (NoneOfThese("cat", 0.5), NoneOfThese("other", 0.0, ("couch",))):
        with pytest.raises(ArgumentValueError, match="must differ from the class names"):
            clashing.check_names([("cat",), ("sofa", "couch")])
    predictor = Predictor.training_free("value-path-world")
    with pytest.raises(ArgumentValueError, match="'cat' is both"):
        predictor.predict(np.zeros((16, 16, 3), np.uint8), ["cat", "dog"], none=NoneOfThese("cat", 0.5))
    with pytest.raises(ArgumentTypeError, match="none must be a NoneOfThese"):
        predictor.predict(np.zeros((16, 16, 3), np.uint8), ["cat", "dog"], none="other")


def test_the_command_refuses_a_prompt_that_is_a_class_before_anything_is_written(tmp_path, capsys):
    image = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    out = tmp_path / "out"
    args = ["predict", "--model", "value-path-world", "--classes", "circle|round,square", "--none-label", "other"]
    assert main([*args, "--background", "sky,round", "--out", str(out), str(image)]) == 2
    assert "'round' is both" in capsys.readouterr().err and not out.exists()
