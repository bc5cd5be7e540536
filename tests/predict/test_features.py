"""Predictor.features: the tensors the semantic map is made from, with their documented shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from splitmatch.inference.images import predict_scores, scores_to_labels
from splitmatch.model.query_decoder import CANDIDATE_GROUP, SEEN_GROUP
from splitmatch.predict.predictor import Predictor
from splitmatch.world.generator import DEFAULT_SPEC, image_rng, render_image


@pytest.fixture(scope="module")
def packaged() -> Predictor:
    return Predictor.packaged(device="cpu", mode="whole")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return render_image(image_rng(0, "val", 4), DEFAULT_SPEC)[0]  # an odd size: padded to whole patches


def test_shapes_are_those_documented(packaged, image):
    model = packaged.model
    names = list(packaged.classes.names)
    features = packaged.features(image, names)
    decoder = model.query_decoder
    queries = decoder.query_feat.num_embeddings
    patch = model.patch_size[0]
    height, width = features["padded_size"]
    grid = (height // patch, width // patch)
    assert features["image_size"] == image.shape[:2]
    assert min(features["input_size"]) == packaged.config.short_side
    assert height % patch == 0 and width % patch == 0 and height >= features["input_size"][0]
    assert features["clip_features"].shape == (model.image_encoder.embed_dim, *grid)
    hidden = decoder.output_norm.normalized_shape[0]
    mask_grid = features["mask_features"].shape[1:]
    assert features["mask_features"].shape[0] == hidden and mask_grid[0] == 2 * grid[0]  # mask_upsample 2
    assert features["masks"].shape == (queries, *mask_grid)
    assert features["query_embeddings"].shape == (queries, model.image_encoder.embed_dim)
    torch.testing.assert_close(features["query_embeddings"].norm(dim=-1), torch.ones(queries))
    groups = features["query_groups"].tolist()
    assert groups.count(CANDIDATE_GROUP) == 4 and groups.count(SEEN_GROUP) == queries - 4
    assert features["class_logits"].shape == (queries, len(names) + 1)
    assert features["class_probabilities"].shape == (queries, len(names))
    without_names = packaged.features(image)
    assert "class_logits" not in without_names and "class_probabilities" not in without_names
    assert torch.equal(without_names["masks"], features["masks"])  # masks do not depend on the names


def test_the_semantic_map_is_made_from_these_masks_and_embeddings(packaged, image):
    names = list(packaged.classes.names)
    features = packaged.features(image, names)
    texts = packaged.model.encode_classes(names)
    decoder = packaged.model.query_decoder
    # Class logits are the query embeddings against the names (and no-object), over tau.
    targets = torch.cat([texts, F.normalize(decoder.no_object_embedding, dim=0)[None]])
    torch.testing.assert_close(
        features["class_logits"], features["query_embeddings"] @ targets.t() / decoder.temperature
    )
    # The scores predict() argmaxes: sum over queries of p_i(c) * sigmoid(mask_i), cut to the input.
    height, width = features["input_size"]
    masks = F.interpolate(features["masks"][None], size=features["padded_size"], mode="bilinear", align_corners=False)
    rebuilt = torch.einsum("qc,qhw->chw", features["class_probabilities"], masks[0].sigmoid())[:, :height, :width]
    scores = predict_scores(packaged.inference, image, texts, None, packaged.config, packaged.device)
    torch.testing.assert_close(rebuilt, scores, rtol=1e-5, atol=1e-5)
    assert np.array_equal(scores_to_labels(rebuilt, image.shape[:2]), packaged.predict(image, names))


def test_a_training_free_predictor_gives_its_recipes_features():
    predictor = Predictor.maskclip("maskclip-world", device="cpu")
    image = render_image(image_rng(0, "val", 1), DEFAULT_SPEC)[0]
    names = ["background", "star", "heart"]
    features = predictor.features(image, names)
    height, width = features["padded_size"]
    grid = (height // 8, width // 8)
    assert features["clip_features"].shape == (128, *grid)
    torch.testing.assert_close(features["clip_features"].norm(dim=0), torch.ones(grid))
    assert features["class_probabilities"].shape == (3, *grid)
    with pytest.raises(ValueError, match="training-free model has no queries"):
        predictor.segments(image, names)
