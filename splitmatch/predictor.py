"""The user API for one image and any class names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from splitmatch.config import ExperimentConfig, InferenceConfig
from splitmatch.data.classes import ClassSplit, validate_class_names
from splitmatch.engine import checkpoint as ckpt
from splitmatch.engine.evaluator import predict_labels
from splitmatch.inference import CandidateScoring, SegmentationInference, candidate_scoring
from splitmatch.model.build import build_segmentor
from splitmatch.model.segmentor import SplitMatchSegmentor


def load_segmentor(path: str | Path, device: str | torch.device = "cpu") -> tuple[SplitMatchSegmentor, dict]:
    """Builds the model a checkpoint describes and loads its weights (no unpickling).

    Returns:
        the model in eval mode and the checkpoint record (``config``, ``classes``,
        ``train_classes``, ``step``...).
    """
    record = ckpt.read_record(path)
    config: ExperimentConfig = record["config"]
    model = build_segmentor(config, load_clip_weights=False)
    ckpt.load_model_weights(model, path, record)
    return model.to(device).eval(), record


class Predictor:
    """Segments images with a trained model against a vocabulary of your choice.

    Example::

        predictor = Predictor.from_checkpoint("runs/voc/model.safetensors")
        labels = predictor.predict(image, ["cat", "sofa", "pottedplant"])  # [H, W] indices

    Args:
        model: a trained segmentor.
        config: inference settings (mode, window, stride, resize, calibration).
        seen_classes: names the model was trained on; they get the seen-class calibration.
        candidates: how candidate queries score (:func:`splitmatch.inference.candidate_scoring`);
            ``None`` scores every query alike (a Hungarian model).
    """

    def __init__(
        self,
        model: SplitMatchSegmentor,
        config: InferenceConfig,
        seen_classes: list[str] = (),
        candidates: CandidateScoring | None = None,
    ) -> None:
        self.model = model.eval()
        self.config = config
        self.seen_classes = set(seen_classes)
        self.device = next(model.parameters()).device
        self.inference = SegmentationInference(
            model, config.mode, config.window, config.stride, config.seen_calibration, candidates, config.amp
        )

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", **overrides) -> Predictor:
        """Loads a checkpoint; ``overrides`` replace inference settings (e.g. ``mode="whole"``)."""
        model, record = load_segmentor(path, device)
        experiment: ExperimentConfig = record["config"]
        config = experiment.inference
        for key, value in overrides.items():
            if not hasattr(config, key):
                raise ValueError(f"unknown inference setting '{key}'")
            setattr(config, key, value)
        predictor = cls(model, config, record["train_classes"], candidate_scoring(experiment))
        predictor.classes: ClassSplit = record["classes"]
        return predictor

    @torch.no_grad()
    def predict(self, image: np.ndarray, class_names: list[str]) -> np.ndarray:
        """Labels every pixel with one of ``class_names``.

        Args:
            image: ``uint8 [H, W, 3]`` RGB.
            class_names: the vocabulary, any names.

        Returns:
            ``[H, W]`` int64 indices into ``class_names``.
        """
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
        validate_class_names(class_names)
        embeddings = self.model.encode_classes(list(class_names))
        seen = torch.tensor([name in self.seen_classes for name in class_names])
        return predict_labels(self.inference, image, embeddings, seen, self.config, self.device)
