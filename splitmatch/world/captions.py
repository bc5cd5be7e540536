"""Caption data for the world's small CLIP: random crops and captions naming what they show.

Like web alt-text, a caption names every object class visible in the crop, unseen classes
included; it never says where. The background is named only when nothing else is visible.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

TEMPLATES = ("a photo of {}.", "an image with {}.", "{}.", "a picture showing {}.")


def join_names(names: list[str]) -> str:
    """``["star", "ring", "cross"]`` -> ``"a star, a ring and a cross"``."""
    items = [f"a {name}" for name in names]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def caption(names: list[str], rng: np.random.Generator) -> str:
    """A caption naming ``names`` (in the given order) in a random template."""
    return TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(join_names(names))


class CropSampler:
    """Draws square crops of in-memory images, resized to the CLIP input, with their class sets.

    Args:
        images: list of ``uint8 [H, W, 3]``.
        labels: list of ``uint8 [H, W]`` (full labels: every class, unseen included).
        class_names: names by label id; id 0 is the background.
        size: CLIP input side.
        scale: crop side as a fraction of the short image side, ``(low, high)``.
        min_share: a class is visible when it covers at least this share of the crop.
        object_crop_prob: share of crops framed on one object (its box plus a random margin),
            like close-up photos; the rest are random windows.
    """

    def __init__(
        self,
        images: list[np.ndarray],
        labels: list[np.ndarray],
        class_names: tuple[str, ...],
        size: int,
        scale: tuple[float, float] = (0.5, 1.0),
        min_share: float = 0.04,
        object_crop_prob: float = 0.5,
    ) -> None:
        self.images, self.labels, self.class_names = images, labels, class_names
        self.size, self.scale, self.min_share = size, scale, min_share
        self.object_crop_prob = object_crop_prob

    def window(self, label: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int]:
        """A square crop ``(top, left, side)``: a random window, or one framed on a random object."""
        height, width = label.shape
        objects = [c for c in np.unique(label) if c != 0]
        if objects and rng.random() < self.object_crop_prob:
            ys, xs = np.nonzero(label == rng.choice(objects))
            extent = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
            side = int(min(min(height, width), max(8, extent * rng.uniform(1.1, 1.5))))
            top = int(np.clip(round((ys.min() + ys.max()) / 2 - side / 2), 0, height - side))
            left = int(np.clip(round((xs.min() + xs.max()) / 2 - side / 2), 0, width - side))
            return top, left, side
        side = max(8, int(rng.uniform(*self.scale) * min(height, width)))
        return int(rng.integers(height - side + 1)), int(rng.integers(width - side + 1)), side

    def sample(self, count: int, rng: np.random.Generator) -> tuple[torch.Tensor, list[tuple[int, ...]], list[str]]:
        """Returns ``crops [count, 3, size, size]`` float 0..255, class-id sets and captions."""
        crops, class_sets, captions = [], [], []
        for _ in range(count):
            index = int(rng.integers(len(self.images)))
            image, label = self.images[index], self.labels[index]
            top, left, side = self.window(label, rng)
            patch = image[top : top + side, left : left + side]
            window = label[top : top + side, left : left + side]
            if rng.random() < 0.5:
                patch, window = patch[:, ::-1], window[:, ::-1]
            counts = np.bincount(window.ravel(), minlength=len(self.class_names))
            visible = [c for c in np.flatnonzero(counts >= self.min_share * window.size) if c != 0]
            order = list(rng.permutation(visible)) if visible else [0]
            class_sets.append(tuple(sorted(int(c) for c in order)))
            captions.append(caption([self.class_names[int(c)] for c in order], rng))
            tensor = torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1)[None].float()
            crops.append(F.interpolate(tensor, size=(self.size, self.size), mode="bilinear", align_corners=False)[0])
        return torch.stack(crops), class_sets, captions


def positives(class_sets: list[tuple[int, ...]]) -> torch.Tensor:
    """``[N, N]`` row-normalised target: crops whose captions name the same classes are positives."""
    keys = {key: i for i, key in enumerate(dict.fromkeys(class_sets))}
    ids = torch.tensor([keys[key] for key in class_sets])
    same = (ids[:, None] == ids[None, :]).float()
    return same / same.sum(1, keepdim=True)
