"""The part of :class:`~splitmatch.predict.Predictor` that an exported file computes.

``Predictor.predict`` decodes the image (EXIF orientation applied), resizes it so its short
side is ``inference.short_side``, scores it (whole image or sliding windows), then upsamples
the scores to the image's size and takes the argmax. The tensor work in the middle, for one
window, is :meth:`splitmatch.inference.segmentation.SegmentationInference.window_scores`; this module runs
exactly that, with the vocabulary's text embeddings and seen-class mask held as buffers, so
that a traced graph has them as constants and needs no text encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from splitmatch.data.classes import ClassEntry, class_texts
from splitmatch.predict.predictor import Predictor


class FixedVocabularySegmentation(nn.Module):
    """A predictor's model and inference settings, bound to one vocabulary.

    Args:
        predictor: its model, inference settings (seen-class calibration, candidate scoring)
            and trained names are used as they are.
        class_names: the vocabulary, as :meth:`Predictor.predict` takes it (a name, or a name
            and its synonyms, per class).
    """

    def __init__(self, predictor: Predictor, class_names: Sequence[ClassEntry]) -> None:
        super().__init__()
        self.model = predictor.model  # registered, so that tracing finds its weights
        self.inference = predictor.inference
        self.class_texts = class_texts(class_names)
        embeddings, seen = predictor.encode_vocabulary(self.class_texts)
        self.register_buffer("class_embeddings", embeddings.detach().clone())  # [C, D]
        self.register_buffer("seen", seen.to(embeddings.device))  # [C] bool
        self.eval()

    @property
    def num_classes(self) -> int:
        return len(self.class_texts)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores a batch of images already at the size the model reads.

        Args:
            images: ``[B, 3, H, W]`` float RGB in 0..255 (normalisation happens inside).

        Returns:
            ``scores [B, C, H, W]`` float32, as ``Predictor`` computes them for one window (the
            seen-class calibration included), and ``labels [B, H, W]`` int64, their argmax over C.
        """
        scores = self.inference.window_scores(images, self.class_embeddings, self.seen)  # [B, C, H, W]
        return scores, scores.argmax(1)
