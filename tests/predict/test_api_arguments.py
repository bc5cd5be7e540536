"""The public Python API at its boundary: a bad argument is a ValueError or TypeError of the
splitmatch family naming the argument, never a ZeroDivisionError deep inside, nor a message about
something else (splitmatch/errors.py: ArgumentTypeError, ArgumentValueError)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from splitmatch.errors import SplitmatchError
from splitmatch.predict import Predictor

IMAGE = np.zeros((20, 30, 3), np.uint8)


@pytest.fixture
def predictor(untrained_checkpoint):
    return Predictor.from_checkpoint(untrained_checkpoint, "cpu")


def refused(kind: type[Exception], call, *named: str) -> str:
    with pytest.raises(kind) as raised:
        call()
    message = str(raised.value)
    assert isinstance(raised.value, SplitmatchError) and "\n" not in message, message
    assert all(part in message for part in named), message
    return message


@pytest.mark.parametrize(
    "image, named",
    [
        (np.zeros((0, 5, 3), np.uint8), ["image", "0 x 5"]),
        (np.zeros((0, 0, 3), np.uint8), ["image", "0 x 0"]),
        (Image.new("RGB", (0, 0)), ["0x0", "no pixels"]),
        (Image.new("RGB", (0, 7)), ["0x7", "no pixels"]),
        (np.zeros((5, 5), np.uint8), ["RGB uint8 [H, W, 3]"]),
        (np.zeros((5, 5, 3), np.float32), ["RGB uint8 [H, W, 3]"]),
        (np.lib.stride_tricks.as_strided(np.zeros(3, np.uint8), (20000, 20000, 3), (0, 0, 1)), ["20000 x 20000"]),
        ("", ["an empty path"]),
    ],
    ids=["0 x N array", "0 x 0 array", "0 x 0 PIL", "0 x 7 PIL", "2-D", "float", "over the pixel limit", "''"],
)
def test_images_without_pixels_or_of_another_kind_are_value_errors(predictor, image, named):
    refused(ValueError, lambda: predictor.predict(image, ["a", "b"]), *named)
    refused(ValueError, lambda: predictor.predict([IMAGE, image], ["a", "b"]), *named)  # in a list too


@pytest.mark.parametrize(
    "names, named",
    [
        ([b"cat", "dog"], "class 0's name must be a str, got b'cat'"),
        ([("cat", b"kitty")], "class 1's name must be a str, got b'kitty'"),
        (["cat", 5], "class 1's name must be a str, got 5"),
        ("cat", "expected a list of class names, got 'cat'"),
        (b"cat", "expected a list of class names, got b'cat'"),
        (None, "expected a list of class names, got None"),
        ({"cat": 1}, "expected a list of class names"),
        # Labels index the list: a set has no order (it was taken in hash order), and a generator was
        # used up by the first read (then "no class names given").
        ({"cat", "dog"}, "got a set: a set has no order; pass a list"),
        ((name for name in ["cat", "dog"]), "got a generator: an iterator can be read once"),
    ],
)
def test_class_names_that_are_not_text_are_type_errors(predictor, names, named):
    refused(TypeError, lambda: predictor.predict(IMAGE, names), named)
    if names is not None:  # features() without names is the model's features alone
        refused(TypeError, lambda: predictor.features(IMAGE, names), named)


def test_other_arguments_are_named(predictor, untrained_checkpoint):
    refused(TypeError, lambda: predictor.predict(None, ["a"]), "image must be a path, a PIL image")
    for size in (0, 2.0, True):
        refused(ValueError, lambda size=size: predictor.predict(IMAGE, ["a"], batch_size=size), "batch_size")
    for value in (float("nan"), 2, "x"):
        refused(ValueError, lambda value=value: predictor.segments(IMAGE, ["a"], threshold=value), "threshold")
        refused(ValueError, lambda value=value: predictor.segments(IMAGE, ["a"], overlap=value), "overlap")
    refused(TypeError, lambda: Predictor.from_checkpoint(None), "path must be a checkpoint file")
    refused(ValueError, lambda: Predictor.from_checkpoint(""), "checkpoint '': an empty path")  # was "checkpoint ."
    refused(ValueError, lambda: Predictor.from_checkpoint(untrained_checkpoint, None), "device None is not a device")
    refused(
        TypeError,
        lambda: Predictor.from_checkpoint(untrained_checkpoint, "cpu", settings=None),
        "settings must be a list of 'key=value' texts, got None",
    )
    labels = predictor.predict([IMAGE], ["a"], batch_size=np.int64(2))  # a NumPy integer is a positive integer
    assert labels[0].shape == IMAGE.shape[:2]
    refused(
        TypeError,
        lambda: Predictor.from_checkpoint(untrained_checkpoint, "cpu", "inference.mode=whole"),
        "settings must be a list of 'key=value' texts",
    )
    refused(ValueError, lambda: Predictor.maskclip("maskclip-world", "cpu", weights=""), "clip.weights")
    refused(
        ValueError,
        lambda: Predictor.maskclip("maskclip-world", "cpu", settings=["clip.weights=null"]),
        "clip.weights of a training-free model must name weights",
    )


def test_numpy_scalars_are_the_numbers_they_stand_for(untrained_checkpoint):
    """Array code hands np.int64 / np.float32 around: the API reads them as Python numbers, and
    refuses the same values out of range as it refuses Python ones."""
    from splitmatch.config import ConfigError
    from splitmatch.inference.none_rule import NoneOfThese

    rule = NoneOfThese(label="other", below=np.float32(0.25))
    assert rule.below == 0.25 and type(rule.below) is float
    with pytest.raises(SplitmatchError, match="share in"):
        NoneOfThese(label="other", below=np.float64(1.5))
    predictor = Predictor.from_checkpoint(untrained_checkpoint, device="cpu", short_side=np.int64(64))
    assert predictor.predict(np.zeros((40, 50, 3), np.uint8), ["background", "circle"]).shape == (40, 50)
    with pytest.raises(ConfigError, match="inference.short_side"):
        Predictor.from_checkpoint(untrained_checkpoint, device="cpu", short_side=np.int64(-3))
