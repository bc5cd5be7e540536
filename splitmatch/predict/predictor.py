"""The user API for one image and any class names."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from splitmatch.config import InferenceConfig, with_inference_overrides
from splitmatch.data.classes import ClassEntry, ClassSplit, class_texts
from splitmatch.data.folder import image_to_rgb, read_image
from splitmatch.inference.images import predict_labels
from splitmatch.inference.segmentation import CandidateScoring, SegmentationInference, candidate_scoring
from splitmatch.model.segmentor import SplitMatchSegmentor
from splitmatch.predict.loading import load_segmentor, names_trained_on
from splitmatch.predict.packaged_model import PACKAGED_MODEL_NAME

ImageInput = str | Path | Image.Image | np.ndarray


def as_rgb_array(image: ImageInput) -> np.ndarray:
    """What :meth:`Predictor.predict` accepts, as RGB ``uint8 [H, W, 3]``.

    A path is read like every dataset image (:func:`splitmatch.data.folder.read_image`) and a
    Pillow image is converted the same way, so both get their EXIF orientation applied; an
    array must already be RGB ``uint8 [H, W, 3]`` (reverse OpenCV's BGR: ``array[..., ::-1]``).
    """
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return image_to_rgb(image, f"image {getattr(image, 'filename', '') or '(Pillow image)'}")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"an image array must be RGB uint8 [H, W, 3], got {image.dtype} {list(image.shape)}; "
                "pass other arrays through PIL.Image.fromarray(...)"
            )
        # torch needs positive strides (a reversed BGR -> RGB view has negative ones) and warns
        # about read-only memory (np.asarray of a PIL image is read-only).
        image = np.ascontiguousarray(image)
        return image if image.flags.writeable else image.copy()
    raise TypeError(f"image must be a path, a PIL image or a uint8 [H, W, 3] array, got {type(image).__name__}")


class Predictor:
    """Segments images with a trained model against a vocabulary of your choice.

    Example::

        predictor = Predictor.from_checkpoint("runs/voc/model.safetensors")
        names = ["background", "cat", "sofa", "pottedplant"]
        labels = predictor.predict("photo.jpg", names)  # uint8 [H, W], indices into names
        labels = predictor.predict("photo.jpg", ["background", ("tv monitor", "television")])  # a synonym

    Args:
        model: a trained segmentor.
        config: inference settings (mode, window, stride, resize, calibration).
        seen_classes: names the model was trained on; a class any of whose names is among them
            gets the seen-class calibration.
        candidates: how candidate queries score (:func:`splitmatch.inference.segmentation.candidate_scoring`);
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
        self.candidates = candidates
        self.device = next(model.parameters()).device
        self.inference = SegmentationInference(
            model, config.mode, config.window, config.stride, config.seen_calibration, candidates, config.amp
        )

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto", **overrides) -> Predictor:
        """Loads a checkpoint (a file, or ``packaged:world-model``) onto ``device`` (``auto``: the
        first GPU when CUDA is available, else the CPU); ``overrides`` replace inference settings
        (e.g. ``mode="whole"``)."""
        model, record = load_segmentor(path, device)
        experiment = with_inference_overrides(record["config"], overrides)
        predictor = cls(model, experiment.inference, sorted(names_trained_on(record)), candidate_scoring(experiment))
        predictor.classes: ClassSplit = record["classes"]
        return predictor

    @classmethod
    def packaged(cls, device: str | torch.device = "auto", **overrides) -> Predictor:
        """The model shipped with splitmatch: Split Matching trained on the built-in world (shapes
        and textures, not photos), with its classes in ``predictor.classes``; nothing to download."""
        return cls.from_checkpoint(PACKAGED_MODEL_NAME, device, **overrides)

    @torch.no_grad()
    def predict(self, image: ImageInput, class_names: Sequence[ClassEntry]) -> np.ndarray:
        """Labels every pixel with one of ``class_names``.

        Every pixel gets one of the names: there is no "none" or "unknown". A model trained with
        background ignored (VOC, Context-59) has no background class of its own, so add a
        background-like name ("background", "wall", "sky"...) or pixels of things you did not
        name go to the nearest name you gave.

        Args:
            image: a path, a PIL image or an RGB ``uint8 [H, W, 3]`` array (see :func:`as_rgb_array`);
                paths and PIL images are turned upright by their EXIF orientation first.
            class_names: the vocabulary, any names, seen in training or not; an entry may be a
                sequence of names (the class's name and its synonyms), whose text embeddings
                are averaged.

        Returns:
            ``[H, W]`` indices into ``class_names``, at the size of the image as shown (after the
            EXIF orientation): ``uint8`` for up to 255 names, else ``uint16`` (the types of label
            PNGs, so that a large image's map stays small).
        """
        image = as_rgb_array(image)
        embeddings, seen = self.encode_vocabulary(class_names)
        return predict_labels(self.inference, image, embeddings, seen, self.config, self.device)

    @torch.no_grad()
    def encode_vocabulary(self, class_names: Sequence[ClassEntry]) -> tuple[torch.Tensor, torch.Tensor]:
        """The vocabulary as :meth:`predict` hands it to the model: text embeddings ``[C, D]`` and
        ``[C]`` bool, True for the classes the seen-class calibration applies to."""
        texts = class_texts(class_names)
        embeddings = self.model.encode_classes(texts)
        seen = torch.tensor([any(name in self.seen_classes for name in names) for names in texts])
        return embeddings, seen
