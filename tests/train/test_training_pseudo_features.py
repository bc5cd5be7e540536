"""pseudo.dense_features reaches training: the cache training fills is keyed by, and made from, the choice."""

from __future__ import annotations

import json

from splitmatch.config.presets import preset
from splitmatch.train.trainer import train


def test_training_fills_the_cache_of_the_dense_features_it_was_given(tmp_path, tiny_dataset):
    folder = tiny_dataset
    made = {}
    for features in ("value", "naclip"):
        config = preset("tiny")
        config.data.root = str(folder.root)
        config.pseudo.dense_features = features
        config.train.iterations = 1
        config.train.checkpoint_every = 1
        train(config, tmp_path / f"run-{features}", progress=False)
        records = [json.loads(meta.read_text()) for meta in (folder.root / "pseudo_masks").glob("*/meta.json")]
        made[features] = {record["pseudo"]["dense_features"] for record in records}
    assert made == {"value": {"value"}, "naclip": {"value", "naclip"}}  # a second cache beside the first
