"""The user API: images and any class names -> label maps, features or segments."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from splitmatch.config import ExperimentConfig, InferenceConfig, with_inference_overrides
from splitmatch.data.classes import ClassEntry, ClassSplit, class_texts, label_dtype_for
from splitmatch.data.folder import MAX_IMAGE_PIXELS, image_to_rgb, read_image
from splitmatch.data.names import printable
from splitmatch.errors import ArgumentTypeError, ArgumentValueError
from splitmatch.inference.batched import batch_scores
from splitmatch.inference.features import image_features
from splitmatch.inference.images import predict_scores, scores_to_labels
from splitmatch.inference.none_rule import NoneOfThese
from splitmatch.inference.segmentation import CandidateScoring, SegmentationInference, candidate_scoring
from splitmatch.model.segmentor import SplitMatchSegmentor
from splitmatch.model.training_free import TrainingFreeSegmentor
from splitmatch.predict.loading import load_segmentor, load_training_free, names_trained_on
from splitmatch.predict.packaged_model import PACKAGED_MODEL_NAME
from splitmatch.predict.segments import OBJECT_THRESHOLD, OVERLAP_THRESHOLD, Segment, query_segments

ImageInput = str | Path | Image.Image | np.ndarray
# Images read and crops run at once by predict() on a list (chosen before measuring): eight
# 512-px ViT-B/16 crops make a forward pass that a small GPU holds, and the scores of eight
# images at 512 px stay small beside the model.
DEFAULT_BATCH_SIZE = 8


def as_rgb_array(image: ImageInput) -> np.ndarray:
    """What :meth:`Predictor.predict` accepts, as RGB ``uint8 [H, W, 3]``.

    A path is read like every dataset image (:func:`splitmatch.data.folder.read_image`) and a
    Pillow image is converted the same way, so both get their EXIF orientation applied; an
    array must already be RGB ``uint8 [H, W, 3]`` (reverse OpenCV's BGR: ``array[..., ::-1]``).
    """
    if isinstance(image, (str, Path)):
        if not str(image):
            raise ArgumentValueError("image: an empty path")
        return read_image(image)
    if isinstance(image, Image.Image):
        return image_to_rgb(image, f"image {getattr(image, 'filename', '') or '(Pillow image)'}")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            several = "; several images are a list of arrays" if image.ndim == 4 else ""
            raise ArgumentValueError(
                f"image: an array must be RGB uint8 [H, W, 3], got {image.dtype} {list(image.shape)}; "
                f"pass other arrays through PIL.Image.fromarray(...){several}"
            )
        height, width = image.shape[:2]
        if height < 1 or width < 1 or height * width > MAX_IMAGE_PIXELS:
            raise ArgumentValueError(
                f"image: an array of {height} x {width} pixels; an image has at least one pixel and at most "
                f"{MAX_IMAGE_PIXELS:,}"
            )
        # torch needs positive strides (a reversed BGR -> RGB view has negative ones) and warns
        # about read-only memory (np.asarray of a PIL image is read-only).
        image = np.ascontiguousarray(image)
        return image if image.flags.writeable else image.copy()
    raise ArgumentTypeError(f"image must be a path, a PIL image or a uint8 [H, W, 3] array, got {type(image).__name__}")


def _check_settings(settings: Sequence[str]) -> None:
    """``settings`` is a list of ``key=value`` texts: one text alone would be read letter by letter."""
    if (
        isinstance(settings, (str, bytes))
        or not isinstance(settings, Sequence)
        or not all(isinstance(text, str) for text in settings)
    ):
        raise ArgumentTypeError(f"settings must be a list of 'key=value' texts, got {printable(repr(settings), 60)}")


class Predictor:
    """Segments images with a trained model, or a training-free one, against a vocabulary of your choice.

    Example::

        predictor = Predictor.from_checkpoint("runs/voc/model.safetensors")
        names = ["background", "cat", "sofa", "pottedplant"]
        labels = predictor.predict("photo.jpg", names)  # uint8 [H, W], indices into names
        labels = predictor.predict("photo.jpg", ["background", ("tv monitor", "television")])  # a synonym
        maps = predictor.predict(["a.jpg", "b.jpg"], names, batch_size=8)  # a list of label maps
        photos = Predictor.training_free("sclip")  # no training: CLIP ViT-B/16 read by SCLIP

    A predictor from a checkpoint has the checkpoint's ``classes`` (a ``ClassSplit``); a
    training-free predictor its preset's ``name``, ``clip`` and ``recipe`` sections.

    Args:
        model: a trained segmentor, or a :class:`TrainingFreeSegmentor` (:meth:`training_free`).
        config: inference settings (mode, window, stride, resize, calibration).
        seen_classes: names the model was trained on; a class any of whose names is among them
            gets the seen-class calibration.
        candidates: how candidate queries score (:func:`splitmatch.inference.segmentation.candidate_scoring`);
            ``None`` scores every query alike (a Hungarian model).
    """

    def __init__(
        self,
        model: SplitMatchSegmentor | TrainingFreeSegmentor,
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
            model,
            config.mode,
            config.window,
            config.stride,
            config.seen_calibration,
            candidates,
            config.amp,
            config.seen_calibration_form,
        )

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "auto", settings: Sequence[str] = (), **overrides
    ) -> Predictor:
        """Loads a checkpoint (a file, or ``packaged:world-model``) onto ``device`` (``auto``: the
        first GPU when CUDA is available, else the CPU); ``settings`` (``"inference.mode=whole"``
        texts) and then ``overrides`` (e.g. ``mode="whole"``) replace inference settings."""
        _check_settings(settings)
        if not isinstance(path, (str, Path)):
            raise ArgumentTypeError(f"path must be a checkpoint file or packaged:NAME, got {type(path).__name__}")
        model, record = load_segmentor(path, device)
        experiment = with_inference_overrides(record["config"], overrides, settings)
        predictor = cls(model, experiment.inference, sorted(names_trained_on(record)), candidate_scoring(experiment))
        predictor.classes: ClassSplit = record["classes"]
        # What training was: a proxy run (held-out seen classes) or transductive is not a benchmark model.
        predictor.trained_with: ExperimentConfig = record["config"]
        return predictor

    @classmethod
    def training_free(
        cls,
        name: str = "maskclip",
        device: str | torch.device = "auto",
        arch: str | None = None,
        weights: str | None = None,
        templates: str | None = None,
        settings: Sequence[str] = (),
        **overrides,
    ) -> Predictor:
        """A training-free model (:mod:`splitmatch.model.training_free`): a frozen CLIP's dense
        features, read by a recipe, scored against the class names; segments photos with no training.

        Args:
            name: a recipe (``maskclip``, ``clearclip``, ``sclip``, ``naclip``, ``scclip``,
                ``value-path``: OpenAI's ViT-B/16, which open_clip downloads once, under the
                benchmarks' sliding windows at short side 512), or a preset: ``<recipe>-authors``
                (its authors' protocol), ``<recipe>-world`` (the built-in world's packaged CLIP)...
                (:mod:`splitmatch.config.training_free`).
            arch, weights, templates: replace the preset's ``clip.arch`` (an open_clip model config
                or a JSON file), ``clip.weights`` (a file, ``packaged:NAME`` or an open_clip tag) and
                ``clip.templates`` (a template set or a JSON file).
            settings: ``key=value`` texts (``clip.*``, ``recipe.*``, ``inference.*``), as ``--set`` takes them.
            overrides: inference settings by name (``mode="whole"``).
        """
        _check_settings(settings)
        given = (("arch", arch), ("weights", weights), ("templates", templates))
        clip = {key: value for key, value in given if value is not None}  # "" is refused, not ignored
        model, config = load_training_free(name, device, settings, {"clip": clip, "inference": overrides})
        predictor = cls(model, config.inference)
        predictor.name, predictor.clip, predictor.recipe = config.name, config.clip, config.recipe
        predictor.training_free_config = config
        return predictor

    @classmethod
    def maskclip(cls, preset: str = "maskclip-vitb16", device: str | torch.device = "auto", **kwargs) -> Predictor:
        """:meth:`training_free` by its name in version 0.2: MaskCLIP's preset unless ``preset``
        names another training-free one."""
        return cls.training_free(preset, device, **kwargs)

    @classmethod
    def packaged(cls, device: str | torch.device = "auto", **overrides) -> Predictor:
        """The model shipped with splitmatch: Split Matching trained on the built-in world (shapes
        and textures, not photos), with its classes in ``predictor.classes``; nothing to download."""
        return cls.from_checkpoint(PACKAGED_MODEL_NAME, device, **overrides)

    @torch.no_grad()
    def predict(
        self,
        image: ImageInput | Sequence[ImageInput],
        class_names: Sequence[ClassEntry],
        batch_size: int = DEFAULT_BATCH_SIZE,
        none: NoneOfThese | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """Labels every pixel with one of ``class_names`` (or ``none``'s label).

        Without ``none`` every pixel gets one of the names. A model trained with background
        ignored (VOC, Context-59) has no background class of its own, so add a background-like
        name ("background", "wall", "sky"...) or pixels of things you did not name go to the
        nearest name you gave; or give ``none``.

        Args:
            image: a path, a PIL image or an RGB ``uint8 [H, W, 3]`` array (see :func:`as_rgb_array`);
                paths and PIL images are turned upright by their EXIF orientation first. Or a list
                (or tuple) of them, of any sizes, run ``batch_size`` at a time.
            class_names: the vocabulary, any names, seen in training or not; an entry may be a
                sequence of names (the class's name and its synonyms), whose text embeddings
                are averaged.
            batch_size: for a list, the images read and the crops (whole images, or sliding
                windows) run through the model at once. Crops of the same size once padded to
                whole patches share a forward pass; no image is padded to another's size, so
                each gets the labels it gets alone (:mod:`splitmatch.inference.batched`).
            none: a "none of these" rule (:class:`~splitmatch.inference.none_rule.NoneOfThese`):
                pixels whose best name scores below its threshold, or that one of its background
                prompts wins, get index ``len(class_names)``.

        Returns:
            ``[H, W]`` indices into ``class_names`` (then ``none``'s label), at the size of the
            image as shown (after the EXIF orientation): ``uint8`` for up to 255 labels, else
            ``uint16`` (the types of label PNGs). For a list, a list of them.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
            raise ArgumentValueError(f"batch_size must be a positive integer, got {printable(repr(batch_size), 60)}")
        texts = class_texts(class_names, where="class_names")  # checked as given, before the none rule's prompts join
        if none is not None:
            if not isinstance(none, NoneOfThese):
                raise ArgumentTypeError(f"none must be a NoneOfThese rule or None, got {printable(repr(none), 60)}")
            none.check_names(texts)
        vocabulary = [*class_names, *((prompt,) for prompt in none.background)] if none else class_names
        embeddings, seen = self.encode_vocabulary(vocabulary)
        if not isinstance(image, (list, tuple)):
            arrays = [as_rgb_array(image)]
            scores = [predict_scores(self.inference, arrays[0], embeddings, seen, self.config, self.device)]
            return self._labels(scores, arrays, len(class_names), none)[0]
        labels: list[np.ndarray] = []
        for start in range(0, len(image), batch_size):
            arrays = [as_rgb_array(one) for one in image[start : start + batch_size]]
            scores = batch_scores(self.inference, arrays, embeddings, seen, self.config, self.device, batch_size)
            labels += self._labels(scores, arrays, len(class_names), none)
        return labels

    @staticmethod
    def _labels(
        scores: list[torch.Tensor], images: list[np.ndarray], num_names: int, none: NoneOfThese | None
    ) -> list[np.ndarray]:
        """Each image's ``[C, h, w]`` scores -> its ``[H, W]`` labels, with the rule applied when given."""
        if none is not None:
            scores = [none.scores(one, num_names) for one in scores]
        labels = [scores_to_labels(one, image.shape[:2]) for one, image in zip(scores, images)]
        dtype = label_dtype_for(num_names + (none is not None))
        return [one.astype(dtype, copy=False) for one in labels]

    @torch.no_grad()
    def features(self, image: ImageInput, class_names: Sequence[ClassEntry] | None = None) -> dict:
        """What the model computes on ``image`` before its semantic map, for building on the model.

        The image is resized as for :meth:`predict` and run whole (whatever ``mode``: each window
        would have queries of its own), padded to whole patches. With ``h x w`` the CLIP patch
        grid and ``h' x w'`` the mask grid, ``Q`` queries, ``D`` CLIP's joint width, ``d`` the
        decoder's, a trained model gives:

        * ``clip_features`` ``[D, h, w]``: the prompted CLIP's dense features (joint space);
        * ``mask_features`` ``[d, h', w']``: the pixel decoder's (MFE) features masks are read from;
        * ``masks`` ``[Q, h', w']``: per-query mask logits;
        * ``query_embeddings`` ``[Q, D]``: per-query class embeddings (L2-normalised), compared with
          the class names' text embeddings;
        * ``query_groups`` ``[Q]``: 0 seen query, 1 candidate query;
        * with ``class_names`` (``C`` of them): ``class_logits`` ``[Q, C+1]`` (last column: no-object)
          and ``class_probabilities`` ``[Q, C]``, ``p_i(c)`` as the semantic map weighs each mask;
        * ``image_size`` ``(H, W)``, ``input_size`` (the resized image) and ``padded_size`` (whole
          patches: what every map covers).

        The whole-image semantic scores are then ``einsum("qc,qhw->chw", class_probabilities,
        sigmoid(upsample(masks, padded_size)))``, cut to ``input_size``. A training-free predictor gives
        ``clip_features`` (its recipe's features), with names ``class_probabilities`` ``[C, h, w]``,
        and the sizes. Tensors are float32 on :attr:`device`.
        """
        embeddings = self.encode_vocabulary(class_names)[0] if class_names is not None else None
        return image_features(self.inference, as_rgb_array(image), self.config, self.device, embeddings)

    @torch.no_grad()
    def segments(
        self,
        image: ImageInput,
        class_names: Sequence[ClassEntry],
        threshold: float = OBJECT_THRESHOLD,
        overlap: float = OVERLAP_THRESHOLD,
    ) -> list[Segment]:
        """The model's queries as a panoptic-style list of segments (:mod:`splitmatch.predict.segments`).

        Each :class:`~splitmatch.predict.segments.Segment` holds a ``bool [H, W]`` mask at the
        image's size, a class index into ``class_names``, its name, a score, the query and its
        group; segments never overlap and come highest score first. Computed from
        :meth:`features` (the whole image at once).

        Args:
            threshold: a query is kept when its best class probability exceeds it. 0.8 is
                Mask2Former's published object-mask threshold, chosen before any image was seen:
                a kept query holds over 80% of its probability on one class.
            overlap: a segment is dropped when it keeps less than this share of its own mask
                after overlaps are resolved (Mask2Former's 0.8).
        """
        for name, value in (("threshold", threshold), ("overlap", overlap)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ArgumentValueError(f"{name} must be a number in [0, 1], got {printable(repr(value), 60)}")
        if isinstance(self.model, TrainingFreeSegmentor):
            raise ArgumentValueError(
                "a training-free model has no queries, hence no segments: use a trained model "
                "(Predictor.from_checkpoint or Predictor.packaged)"
            )
        names = [names[0] for names in class_texts(class_names)]
        return query_segments(self.features(image, class_names), names, threshold, overlap)

    @torch.no_grad()
    def encode_vocabulary(self, class_names: Sequence[ClassEntry]) -> tuple[torch.Tensor, torch.Tensor]:
        """The vocabulary as :meth:`predict` hands it to the model: text embeddings ``[C, D]`` and
        ``[C]`` bool, True for the classes the seen-class calibration applies to (trained on)."""
        texts = class_texts(class_names)
        embeddings = self.model.encode_classes(texts)
        seen = torch.tensor([any(name in self.seen_classes for name in names) for names in texts])
        return embeddings, seen
