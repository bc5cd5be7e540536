"""splitmatch: Split Matching for inductive zero-shot semantic segmentation.

The library API lives in its modules (importing this package loads nothing heavy)::

    from splitmatch.predictor import Predictor
    from splitmatch.presets import load_config
    from splitmatch.engine.trainer import train
"""

__version__ = "0.1.0"
