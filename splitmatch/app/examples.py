"""The app's example images: validation images of the built-in world, drawn when the app starts.

They are drawn, not shipped: the world generator makes image ``i`` of a split from
``(seed, split, i)`` alone, so these are byte for byte the images ``splitmatch world`` writes as
``images/val_<i>.png`` (seed 0), never seen in training, and they follow the generator if its
drawing changes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from splitmatch.storage.files import atomic_write_bytes
from splitmatch.world.generator import DEFAULT_SPEC, image_rng, render_image, world_class_split

EXAMPLE_SEED = 0
EXAMPLE_SPLIT = "val"


def example_indices(count: int = 4, seed: int = EXAMPLE_SEED) -> list[int]:
    """The first ``count`` validation images with two or more objects, one of an unseen class:
    examples where the zero-shot part of the model has something to do."""
    unseen = world_class_split(DEFAULT_SPEC.unseen).unseen_ids
    chosen: list[int] = []
    index = 0
    while len(chosen) < count:
        _, label = render_image(image_rng(seed, EXAMPLE_SPLIT, index), DEFAULT_SPEC)
        present = set(np.unique(label).tolist()) - {0}
        if len(present) >= 2 and present & set(unseen):
            chosen.append(index)
        index += 1
    return chosen


def write_examples(out_dir: str | Path, count: int = 4, seed: int = EXAMPLE_SEED) -> list[Path]:
    """Writes the example images as ``world_val_<i>.png`` into ``out_dir``; returns their paths."""
    import io

    from PIL import Image

    paths = []
    for index in example_indices(count, seed):
        image, _ = render_image(image_rng(seed, EXAMPLE_SPLIT, index), DEFAULT_SPEC)
        path = Path(out_dir) / f"world_{EXAMPLE_SPLIT}_{index:06d}.png"
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        atomic_write_bytes(path, buffer.getvalue())
        paths.append(path)
    return paths
