"""splitmatch: Split Matching for inductive zero-shot semantic segmentation.

The library API lives in its modules (importing this package loads nothing heavy)::

    from splitmatch.predict.predictor import Predictor
    from splitmatch.config.presets import load_config
    from splitmatch.train.trainer import train
"""

__version__ = "0.1.0"
