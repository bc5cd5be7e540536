"""What a segmentor computes on one image before the semantic map: its features, masks and query embeddings.

For users who build on the model (a new head, a different read-out, instance masks): every
tensor the semantic map of :mod:`splitmatch.inference.segmentation` is made from, on the whole
image resized to the protocol and padded to whole patches, as whole-image inference runs it.
"""

from __future__ import annotations

import numpy as np
import torch

from splitmatch.config import InferenceConfig
from splitmatch.device import mixed_precision
from splitmatch.inference.images import image_tensor, resize_short_side
from splitmatch.inference.segmentation import (
    SegmentationInference,
    pad_to,
    patch_multiple,
    query_class_probabilities,
)
from splitmatch.model.training_free import TrainingFreeSegmentor


@torch.no_grad()
def image_features(
    inference: SegmentationInference,
    image: np.ndarray,
    config: InferenceConfig,
    device: torch.device,
    class_embeddings: torch.Tensor | None = None,
) -> dict:
    """One image's features, at the batch dimension's first (only) entry.

    The image is resized as for prediction (short side ``config.short_side``), padded with the
    mean colour to ``padded_size`` (whole patches) and run at once, whatever ``config.mode``:
    queries of different windows would be different queries.

    Args:
        image: ``uint8 [H, W, 3]``.
        class_embeddings: ``[C, D]``, or ``None`` for the class-free tensors alone.

    Returns:
        a trained segmentor's (``h x w`` the patch grid, ``h' x w'`` the mask grid):

        * ``clip_features [D, h, w]``: the prompted CLIP's dense patch features in the joint
          space, what the pixel decoder reads;
        * ``mask_features [d, h', w']``: the pixel decoder's features, what masks are read from;
        * ``masks [Q, h', w']``: each query's mask logits;
        * ``query_embeddings [Q, D]``: each query's L2-normalised embedding in CLIP's joint space;
        * ``query_groups [Q]``: 0 for a seen query, 1 for a candidate query;
        * with ``class_embeddings``: ``class_logits [Q, C+1]`` (``cos(z_i, t_c) / tau``, the last
          column no-object) and ``class_probabilities [Q, C]`` (``p_i(c)``, each query's weight on
          each class in the semantic map, the candidate scoring applied);

        a training-free model's: ``clip_features [D, h, w]``, its recipe's normalised dense features, and
        with ``class_embeddings`` its per-patch ``class_probabilities [C, h, w]``;

        and for both ``image_size (H, W)``, ``input_size (h_in, w_in)`` (the resized image) and
        ``padded_size`` (``input_size`` rounded up to whole patches: the area every map covers).
        Tensors are float32 on ``device``.
    """
    model = inference.model
    resized = resize_short_side(image_tensor(image, device), config.short_side, config.max_long_side)
    input_size = tuple(resized.shape[-2:])
    padded_size = patch_multiple(input_size, model.patch_size)
    padded = pad_to(resized, padded_size, inference.pixel_mean(device))
    sizes = {"image_size": tuple(image.shape[:2]), "input_size": input_size, "padded_size": padded_size}
    if isinstance(model, TrainingFreeSegmentor):
        with mixed_precision(device, inference.amp):
            features = {"clip_features": model.dense_features(padded)[0].float()}
            if class_embeddings is not None:
                features["class_probabilities"] = model(padded, class_embeddings)[0].float()
        return features | sizes
    embeddings = (
        class_embeddings if class_embeddings is not None else padded.new_zeros((0, model.image_encoder.embed_dim))
    )
    with mixed_precision(device, inference.amp):
        clip = model.image_encoder(padded)
        decoded = model.pixel_decoder(clip["dense_tokens"], clip["layer_features"])
        outputs = model.query_decoder(decoded["memory"], decoded["mask_features"], embeddings)
    features = {
        "clip_features": clip["dense_tokens"][0].float(),
        "mask_features": decoded["mask_features"][0].float(),
        "masks": outputs["pred_masks"][0].float(),
        "query_embeddings": outputs["pred_embeds"][0].float(),
        "query_groups": outputs["query_group"].clone(),
    }
    if class_embeddings is not None:
        features["class_logits"] = outputs["pred_logits"][0].float()
        features["class_probabilities"] = query_class_probabilities(
            outputs["pred_logits"],
            outputs["pred_masks"],
            outputs["query_group"],
            model.query_decoder.temperature,
            inference.candidates,
        )[0]
    return features | sizes
