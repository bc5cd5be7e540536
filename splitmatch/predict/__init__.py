"""Prediction, the user-facing wing: a trained model on your images with the class names you choose.

* :mod:`~splitmatch.predict.predictor`: :class:`Predictor`, images and any names -> label maps, features, segments;
* :mod:`~splitmatch.predict.loading`: a checkpoint file -> the model it describes; the MaskCLIP model;
* :mod:`~splitmatch.predict.segments`: a model's queries as a panoptic-style list of segments;
* :mod:`~splitmatch.predict.batch`: ``splitmatch predict`` over files and folders, ``summary.json``;
* :mod:`~splitmatch.predict.outputs`: which images a command reads and where each one's outputs go;
* :mod:`~splitmatch.predict.packaged_model`: model files without a packaged CLIP, ``packaged:world-model``.

Nothing here imports the training wing (:mod:`splitmatch.train`).
"""

from splitmatch.predict.loading import load_segmentor
from splitmatch.predict.predictor import Predictor

__all__ = ["Predictor", "load_segmentor"]
