"""Imports of earlier versions that still work, and say where the name lives now."""

from __future__ import annotations

import importlib
import sys

import pytest


def test_the_0_1_predictor_module_warns_and_gives_the_same_objects():
    sys.modules.pop("splitmatch.predictor", None)
    with pytest.warns(DeprecationWarning, match="splitmatch.predict"):
        old = importlib.import_module("splitmatch.predictor")
    from splitmatch.predict import Predictor
    from splitmatch.predict.loading import load_segmentor

    assert old.Predictor is Predictor and old.load_segmentor is load_segmentor
