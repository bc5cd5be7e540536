"""splitmatch: Split Matching for inductive zero-shot semantic segmentation.

The package is laid out as floors and wings (docs/package.md); the library API lives in its
modules, and importing this package loads nothing heavy::

    from splitmatch.predict import Predictor
    from splitmatch.config import load_config
    from splitmatch.train.trainer import train
"""

__version__ = "0.3.0"
