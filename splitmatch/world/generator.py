"""The built-in world's dataset generator: procedural images, exact labels, a fixed split.

Every image holds 1-4 objects of the classes in :mod:`splitmatch.world.shapes` on a smooth
background, each object a random size, rotation, position and pair of colours; later objects
occlude earlier ones, but every object keeps at least ``min_visible`` of its area in sight.
Images are drawn at twice their size and box-downsampled (anti-aliased edges); label maps are
exact (each pixel the class covering its centre, 0 for background).

Everything is fixed by ``(seed, spec)``: image ``i`` of a split comes from a generator seeded
by ``(seed, split, i)``, so it is the same however many images the split has, and a run that
stops half-way resumes where it stopped. Usage::

    folder = generate_world("data/world", seed=0)   # DatasetFolder: train, val, captions
"""

from __future__ import annotations

import json
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from splitmatch.config.errors import shown
from splitmatch.data.classes import ClassSplit
from splitmatch.data.folder import CLASSES_FILE, DatasetFolder, write_sample, write_split
from splitmatch.errors import SplitmatchError
from splitmatch.storage.files import read_json, write_json
from splitmatch.world.shapes import WORLD_CLASSES, background, colour_pair

WORLD_FILE = "world.json"
WORLD_VERSION = 1  # bump when a change to the drawing code changes the images of a given seed
BACKGROUND = "background"
CLASS_NAMES: tuple[str, ...] = (BACKGROUND,) + tuple(c.name for c in WORLD_CLASSES)
# Neither the easiest nor the hardest, by two probes on this world (seed 11 and 9): a small CNN
# telling which classes a 64x64 image holds (average precision 0.95-0.97 for these four, 0.99+
# for circle, triangle, star and hexagon, 0.76-0.91 for crescent, diamond, ring and arrow), and
# one telling 8x8 patches apart (95-98% correct for these four, 72% for crescent, 88% hexagon).
DEFAULT_UNSEEN: tuple[str, ...] = ("square", "heart", "cross", "bolt")
_MAX_TRIES = 10  # placements tried per object before it is dropped


class WorldMismatchError(SplitmatchError, ValueError):
    """The output folder already holds a different world (another seed, spec or version)."""


@dataclass(frozen=True)
class WorldSpec:
    """What to generate; together with the seed it fixes every byte of the world."""

    num_train: int = 2000  # labelled images for training the segmenter
    num_val: int = 400  # labelled images for evaluation
    num_captions: int = 4000  # images whose present classes caption the tiny CLIP's training
    size_range: tuple[int, int] = (64, 128)  # smallest and largest image side, pixels
    size_mode: int = 96  # the most likely side (triangular distribution), pixels
    objects_per_image: tuple[int, int] = (1, 4)  # fewest and most objects, inclusive
    object_extent: tuple[float, float] = (0.2, 0.6)  # object diameter as a fraction of the short side
    min_visible: float = 0.35  # smallest visible share of an object's area, else re-placed or dropped
    unseen: tuple[str, ...] = DEFAULT_UNSEEN  # unseen class names

    def __post_init__(self) -> None:
        for name in ("num_train", "num_val", "num_captions"):
            if getattr(self, name) < 0:
                raise ValueError(f"WorldSpec.{name} must be >= 0, got {getattr(self, name)}")
        low, high = self.size_range
        if not 16 <= low <= self.size_mode <= high <= 1024:
            raise ValueError(
                f"WorldSpec needs 16 <= size_range[0] <= size_mode <= size_range[1] <= 1024, "
                f"got size_range={self.size_range}, size_mode={self.size_mode}"
            )
        fewest, most = self.objects_per_image
        if not 1 <= fewest <= most <= len(WORLD_CLASSES):
            raise ValueError(
                f"WorldSpec.objects_per_image must lie in 1..{len(WORLD_CLASSES)}, got {self.objects_per_image}"
            )
        if not 0.05 <= self.object_extent[0] <= self.object_extent[1] <= 1.0:
            raise ValueError(f"WorldSpec.object_extent must lie in 0.05..1, got {self.object_extent}")
        if not 0.0 <= self.min_visible <= 1.0:
            raise ValueError(f"WorldSpec.min_visible must lie in 0..1, got {self.min_visible}")
        if BACKGROUND in self.unseen:
            raise ValueError("WorldSpec.unseen cannot hold 'background': it is a seen class (label 0)")
        ClassSplit(CLASS_NAMES, tuple(self.unseen), "world")  # refuses unknown or repeated names

    def split_sizes(self) -> dict[str, int]:
        return {"train": self.num_train, "val": self.num_val, "captions": self.num_captions}


DEFAULT_SPEC = WorldSpec()


def world_class_split(unseen: tuple[str, ...] = DEFAULT_UNSEEN) -> ClassSplit:
    """The world's classes (background first, id 0) and its seen/unseen split."""
    return ClassSplit(CLASS_NAMES, tuple(unseen), "world")


@dataclass
class _Object:
    """One placed object, in 1x pixel units; ``radius`` is the half-extent along ``u``."""

    class_index: int
    cx: float
    cy: float
    radius: float
    aspect: float
    angle: float

    def local(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel centres ``xs [1, w]``, ``ys [h, 1]`` -> object coordinates ``u, v [h, w]``."""
        dx, dy = xs - np.float32(self.cx), ys - np.float32(self.cy)
        c, s = np.float32(np.cos(self.angle)), np.float32(np.sin(self.angle))
        return (c * dx + s * dy) / np.float32(self.radius), (c * dy - s * dx) / np.float32(self.radius * self.aspect)

    def box(self, scale: int) -> tuple[int, int, int, int]:
        """Unclipped ``(y0, y1, x0, x1)`` at ``scale`` samples per pixel covering the bounding disk."""
        reach = self.radius * max(1.0, self.aspect) * scale
        cx, cy = self.cx * scale, self.cy * scale
        return (
            int(np.floor(cy - reach)),
            int(np.ceil(cy + reach)),
            int(np.floor(cx - reach)),
            int(np.ceil(cx + reach)),
        )

    def mask(self, box: tuple[int, int, int, int], scale: int) -> np.ndarray:
        """Coverage of the sample centres in ``box`` -> bool ``[y1 - y0, x1 - x0]``."""
        y0, y1, x0, x1 = box
        xs = ((np.arange(x0, x1, dtype=np.float32) + 0.5) / scale)[None, :]
        ys = ((np.arange(y0, y1, dtype=np.float32) + 0.5) / scale)[:, None]
        return WORLD_CLASSES[self.class_index].shape(*self.local(xs, ys))


def _clip(box: tuple[int, int, int, int], h: int, w: int) -> tuple[slice, slice, slice, slice]:
    """Slices of the image and of the box array for the part of ``box`` inside an ``h x w`` image."""
    y0, y1, x0, x1 = box
    cy0, cy1, cx0, cx1 = max(y0, 0), min(y1, h), max(x0, 0), min(x1, w)
    return (slice(cy0, cy1), slice(cx0, cx1), slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))


def _place_objects(rng: np.random.Generator, spec: WorldSpec, h: int, w: int) -> tuple[list[_Object], np.ndarray]:
    """Places objects back to front under the visible-area rule -> objects, instance map ``[h, w]``."""
    count = int(rng.integers(spec.objects_per_image[0], spec.objects_per_image[1] + 1))
    classes = rng.choice(len(WORLD_CLASSES), size=count, replace=False)
    # largest first, so that the smaller objects drawn later occlude without hiding
    extents = np.sort(rng.uniform(*spec.object_extent, size=count))[::-1] * min(h, w)
    instance = np.full((h, w), -1, dtype=np.int16)
    objects: list[_Object] = []
    full_area: list[int] = []
    visible = np.zeros(0, dtype=np.int64)
    for class_index, extent in zip(classes, extents):
        radius = float(extent) / 2.0
        for _ in range(_MAX_TRIES):
            aspect = float(rng.uniform(0.85, 1.15))
            obj = _Object(
                int(class_index),
                float(rng.uniform(0.4 * radius, w - 0.4 * radius)),
                float(rng.uniform(0.4 * radius, h - 0.4 * radius)),
                radius,
                aspect,
                float(rng.uniform(0.0, 2.0 * np.pi)),
            )
            box = obj.box(1)
            mask = obj.mask(box, 1)
            area = int(mask.sum())
            image_y, image_x, box_y, box_x = _clip(box, h, w)
            inside = mask[box_y, box_x]
            under = instance[image_y, image_x][inside]
            covered = np.bincount(under[under >= 0], minlength=len(objects))
            if (
                area > 0
                and inside.sum() >= spec.min_visible * area
                and np.all(visible - covered >= spec.min_visible * np.asarray(full_area))
            ):
                instance[image_y, image_x][inside] = len(objects)
                visible = np.append(visible - covered, int(inside.sum()))
                objects.append(obj)
                full_area.append(area)
                break
            # a smaller object fits more easily on the next try, but none below the smallest extent
            radius = max(0.9 * radius, spec.object_extent[0] * min(h, w) / 2.0)
    return objects, instance


def _draw_object(image: np.ndarray, obj: _Object, rng: np.random.Generator) -> None:
    """Paints one object over ``image [H, W, 3]`` (float32, in place), anti-aliased.

    Coverage is sampled at 2x2 points per pixel and each pixel blended with the mean colour of
    its covered points: the same as drawing at twice the size over a pixel-replicated image and
    box-downsampling, but computed over the object's box only.
    """
    h, w = image.shape[:2]
    image_y, image_x, _, _ = _clip(obj.box(1), h, w)
    y0, y1, x0, x1 = image_y.start, image_y.stop, image_x.start, image_x.stop
    mask = obj.mask((2 * y0, 2 * y1, 2 * x0, 2 * x1), 2)  # [2h', 2w'] coverage of the sub-samples
    covered = mask[0::2, 0::2].astype(np.float32) + mask[1::2, 0::2] + mask[0::2, 1::2] + mask[1::2, 1::2]
    region = image[image_y, image_x]  # [h', w', 3], a view
    behind = (region * covered[..., None]).sum(axis=(0, 1)) / max(float(covered.sum()), 1.0)
    fill, pattern = colour_pair(rng, behind)
    ys = ((np.arange(2 * y0, 2 * y1, dtype=np.float32) + 0.5) / 2 - np.float32(obj.cy))[:, None]
    xs = ((np.arange(2 * x0, 2 * x1, dtype=np.float32) + 0.5) / 2 - np.float32(obj.cx))[None, :]
    xs, ys = np.broadcast_to(xs, mask.shape), np.broadcast_to(ys, mask.shape)
    on = WORLD_CLASSES[obj.class_index].texture(xs[mask], ys[mask], rng)  # [n] over covered samples
    colour = np.zeros(mask.shape + (3,), dtype=np.float32)  # [2h', 2w', 3]
    colour[mask] = np.where(on[:, None], pattern, fill)
    colour_sum = colour[0::2, 0::2] + colour[1::2, 0::2] + colour[0::2, 1::2] + colour[1::2, 1::2]
    region *= 1.0 - 0.25 * covered[..., None]
    region += 0.25 * colour_sum


def render_image(rng: np.random.Generator, spec: WorldSpec) -> tuple[np.ndarray, np.ndarray]:
    """Draws one image -> (RGB ``uint8 [H, W, 3]``, label ``uint8 [H, W]``), sizes from ``spec``."""
    low, high = spec.size_range
    h, w = (int(round(rng.triangular(low - 0.49, spec.size_mode, high + 0.49))) for _ in range(2))
    objects, instance = _place_objects(rng, spec, h, w)
    image = background(rng, h, w)
    for obj in objects:
        _draw_object(image, obj, rng)
    image += 2.0 * rng.standard_normal(size=image.shape, dtype=np.float32)  # faint sensor noise
    class_ids = np.array([0] + [obj.class_index + 1 for obj in objects], dtype=np.uint8)
    label = class_ids[instance + 1]  # instance -1 (nothing) maps to background 0
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), label


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of image ``index`` of ``split``: independent of the split's size."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(split.encode("utf-8")), index]))


def _stem(split: str, index: int) -> str:
    return f"{split}_{index:06d}"


def _record(seed: int, spec: WorldSpec) -> dict:
    # a JSON round trip turns tuples into lists, so a freshly built record compares with a read one
    return json.loads(
        json.dumps({"generator": "splitmatch.world", "version": WORLD_VERSION, "seed": seed, "spec": asdict(spec)})
    )


def _sample_exists(root: Path, stem: str) -> bool:
    # files are written atomically, so one that exists is whole
    return (root / "images" / f"{stem}.png").is_file() and (root / "labels" / f"{stem}.png").is_file()


def _check_existing(root: Path, record: dict, spec: WorldSpec) -> bool:
    """Refuses a folder holding another world or dataset -> True when this world is complete there."""
    path = root / WORLD_FILE
    if not path.is_file():
        taken = [name for name in (CLASSES_FILE, "images", "labels", "splits") if (root / name).exists()]
        if taken:
            raise WorldMismatchError(
                f"{root} already holds a dataset ({', '.join(taken)}) but no {WORLD_FILE}; "
                "generate the world into an empty or new folder"
            )
        return False
    try:
        existing = read_json(path, "world record")
    except ValueError as error:  # InvalidJsonError, TextFileError: not JSON, not UTF-8, nested too deep
        raise WorldMismatchError(f"{path} is not a world's record ({str(error)[:200]}); use another folder") from None
    if existing != record:
        found = existing if isinstance(existing, dict) else {}
        diff = _differences(found, record)[:8]
        raise WorldMismatchError(
            f"{root} holds a different world; refusing to mix two worlds in one folder "
            f"({'; '.join(diff)}). Use another folder or delete this one."
        )
    sizes = {split: count for split, count in spec.split_sizes().items() if count > 0}
    lists = [root / CLASSES_FILE] + [root / "splits" / f"{split}.txt" for split in sizes]
    return all(p.is_file() for p in lists) and all(
        _sample_exists(root, _stem(split, i)) for split, count in sizes.items() for i in range(count)
    )


def _differences(found: dict, asked: dict, prefix: str = "") -> list[str]:
    """``"spec.num_train: 160 there, 2000 asked"`` per differing key (one level into mappings),
    each value shown in bounded length: a record read from a folder may hold anything."""
    lines = []
    for key in sorted(set(found) | set(asked), key=str):
        there, wanted = found.get(key), asked.get(key)
        if there == wanted:
            continue
        if isinstance(there, dict) and isinstance(wanted, dict) and not prefix:
            lines += _differences(there, wanted, prefix=f"{key}.")
        else:
            lines.append(f"{prefix}{key}: {shown(there)} there, {shown(wanted)} asked")
    return lines


def generate_world(
    out_dir: str | Path, seed: int = 0, spec: WorldSpec = DEFAULT_SPEC, progress: bool = True
) -> DatasetFolder:
    """Writes the world into ``out_dir`` in the dataset folder format, or finishes a partial one.

    Writes ``images/<split>_<index>.png``, ``labels/<split>_<index>.png``,
    ``splits/{train,val,captions}.txt`` (a split of 0 images gets no list), ``classes.json`` and
    ``world.json`` (seed, spec and generator version). Does nothing when the same world is
    already complete there; resumes one that was interrupted.

    Raises:
        WorldMismatchError: ``out_dir`` holds another world or another dataset.
    """
    root = Path(out_dir)
    record = _record(seed, spec)
    if _check_existing(root, record, spec):
        return DatasetFolder(root)
    write_json(root / WORLD_FILE, record)
    sizes = spec.split_sizes()
    todo = [
        (split, i) for split, count in sizes.items() for i in range(count) if not _sample_exists(root, _stem(split, i))
    ]
    total = sum(sizes.values())
    bar = tqdm(total=total, initial=total - len(todo), desc="world", unit="img", disable=not progress)
    # PNG encoding and file syncs release the GIL, so one writer thread overlaps them with drawing
    with bar, ThreadPoolExecutor(max_workers=1) as writer:
        pending: deque[Future] = deque()
        for split, i in todo:
            image, label = render_image(image_rng(seed, split, i), spec)
            pending.append(writer.submit(write_sample, root, _stem(split, i), image, label))
            while pending and (len(pending) > 16 or pending[0].done()):
                pending.popleft().result()  # re-raises a failed write here
                bar.update(1)
        while pending:
            pending.popleft().result()
            bar.update(1)
    for split, count in sizes.items():
        if count > 0:
            write_split(root, split, [_stem(split, i) for i in range(count)])
    classes = world_class_split(spec.unseen).to_dict()
    write_json(root / CLASSES_FILE, classes)
    return DatasetFolder(root)
