"""Deprecated since 0.2: ``from splitmatch.predictor import Predictor`` (splitmatch 0.1) still works
but warns; write ``from splitmatch.predict import Predictor``. It will be removed in 0.4."""

import warnings

from splitmatch.predict.loading import load_segmentor, names_trained_on
from splitmatch.predict.predictor import Predictor, as_rgb_array

warnings.warn(
    "splitmatch.predictor is deprecated; import from splitmatch.predict instead (docs/api.md, 'Moved')",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["Predictor", "as_rgb_array", "load_segmentor", "names_trained_on"]
