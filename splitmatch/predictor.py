"""Kept so that ``from splitmatch.predictor import Predictor`` (splitmatch 0.1) still works.

The predictor lives in :mod:`splitmatch.predict`: write ``from splitmatch.predict import Predictor``.
"""

from splitmatch.predict.loading import load_segmentor, names_trained_on
from splitmatch.predict.predictor import Predictor, as_rgb_array

__all__ = ["Predictor", "as_rgb_array", "load_segmentor", "names_trained_on"]
