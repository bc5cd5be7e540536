"""Small datasets fabricated in the official layouts and tensors for the tests of several folders.

Dataset sources in the layouts ``splitmatch prepare`` reads (VOC, COCO-Stuff, Context, ADE20K,
Context-459) as pytest fixtures, the writers they use, small batches for the criterion, and an
untrained tiny model with inputs for the inference tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import torch
from PIL import Image

from splitmatch.data.folder import DatasetFolder, read_label

HEIGHT, WIDTH = 12, 16  # every fabricated image and label
CONTEXT459_NAMES = ["accordion", "aeroplane", "air conditioner"] + [f"thing {i}" for i in range(4, 460)]


def write_jpeg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def write_label(path: Path, values: list[int], palette: bool = False) -> np.ndarray:
    """A label PNG whose rows cycle through ``values``; grayscale, or palette mode like VOC's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    label = np.array(values, dtype=np.uint8)[np.arange(HEIGHT * WIDTH).reshape(HEIGHT, WIDTH) % len(values)]
    image = Image.fromarray(label)
    if palette:
        image = image.convert("P")
        image.putpalette([(i * 37) % 256 for i in range(768)])
        image.putdata(label.ravel().tolist())  # keep indices = class ids, as in VOC's PNGs
    image.save(path)
    return label


def write_list(path: Path, stems: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(stems) + "\n")


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file with its inode and modification time, to tell whether a re-run touched it."""
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def labels_of(folder: DatasetFolder, stem: str) -> np.ndarray:
    return read_label(folder.root / "labels" / f"{stem}.png", folder.classes.num_classes)


def write_mat(path: Path, values: list[int]) -> None:
    """An official full-Context label file: a MATLAB v5 .mat with a uint16 LabelMap."""
    path.parent.mkdir(parents=True, exist_ok=True)
    label = np.array(values, dtype=np.uint16)[np.arange(HEIGHT * WIDTH).reshape(HEIGHT, WIDTH) % len(values)]
    scipy.io.savemat(path, {"LabelMap": label})


def fabricate_context_mat(src: Path, label_maps: dict[str, list[int]], names: list[str]) -> Path:
    """The official full-Context layout under ``src`` (a VOC2010 folder): a JPEG and a trainval
    ``.mat`` per stem of ``label_maps`` (its values, in order), ``labels.txt`` numbering ``names``
    from 1, and the last stem as the val split, the others as train."""
    stems = list(label_maps)
    for i, (stem, values) in enumerate(label_maps.items()):
        write_jpeg(src / "JPEGImages" / f"{stem}.jpg", i)
        write_mat(src / "trainval" / f"{stem}.mat", values)
    (src / "labels.txt").write_text("".join(f"{i}: {name}\n" for i, name in enumerate(names, 1)))
    write_list(src / "ImageSets" / "SegmentationContext" / "train.txt", stems[:-1])
    write_list(src / "ImageSets" / "SegmentationContext" / "val.txt", stems[-1:])
    return src


def fabricate_split_folders(src: Path, images: list[tuple[str, str]], labels: dict[str, list[int]]) -> Path:
    """The layout COCO-Stuff and ADE20K share under ``src``: a JPEG ``images/<split>/<stem>.jpg`` for
    each ``(split, stem)`` of ``images`` and a label PNG ``annotations/<name>`` for each name of
    ``labels``, its rows cycling through the values given."""
    for i, (split, stem) in enumerate(images):
        write_jpeg(src / "images" / split / f"{stem}.jpg", i)
    for name, values in labels.items():
        write_label(src / "annotations" / name, values)
    return src


def fabricate_voc(src: Path, count: int = 6, unseen: bool = True) -> None:
    """VOC2012's layout: JPEGs, palette PNG labels (0 background, 1..20, 255 border), split lists;
    with ``unseen=False`` no pixel of the unseen classes 16..20 (that region stays background)."""
    rng = np.random.default_rng(0)
    stems = [f"2007_{i:06d}" for i in range(count)]
    for i, stem in enumerate(stems):
        (src / "JPEGImages").mkdir(parents=True, exist_ok=True)
        (src / "SegmentationClass").mkdir(parents=True, exist_ok=True)
        image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        label = np.zeros((48, 64), np.uint8)
        label[8:30, 10:40] = 1 + (i % (20 if unseen else 15))
        if unseen:
            label[30:44, 40:60] = 16 + (i % 5)  # unseen classes 16..20 (pottedplant .. tvmonitor)
        label[29:31, :] = 255
        Image.fromarray(image).save(src / "JPEGImages" / f"{stem}.jpg", quality=95)
        png = Image.fromarray(label).convert("P")
        png.putpalette([(i * 37) % 256 for i in range(768)])
        png.putdata(label.ravel().tolist())
        png.save(src / "SegmentationClass" / f"{stem}.png")
    lists = src / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "train.txt").write_text("\n".join(stems[:4]) + "\n")
    (lists / "val.txt").write_text("\n".join(stems[4:]) + "\n")


def fixed_batch(batch: int = 2, size: int = 64, dim: int = 32):
    images = torch.randint(0, 256, (batch, 3, size, size))
    targets = []
    for b in range(batch):
        masks = torch.zeros(2, size, size, dtype=torch.bool)
        masks[0, : size // 2] = True
        masks[1, size // 2 :, : size // 2] = True
        pseudo = torch.zeros(2, size, size, dtype=torch.bool)
        pseudo[0, size // 2 :, size // 2 :] = True
        pseudo[1, : size // 4, : size // 4] = True
        targets.append(
            {
                "labels": torch.tensor([0, 1 + b]),
                "masks": masks,
                "pseudo_masks": pseudo,
                "pseudo_embeddings": torch.nn.functional.normalize(torch.randn(2, dim), dim=-1),
            }
        )
    return images, targets


def untrained_tiny_inputs():
    """The tiny preset's model with random weights (seed 0) in eval mode, the embeddings ``[3, D]`` of
    three class names and a random image ``[1, 3, 64, 64]`` in 0..255: what the inference tests score."""
    from splitmatch.config.presets import preset
    from splitmatch.model.build import build_segmentor

    torch.manual_seed(0)
    model = build_segmentor(preset("tiny").clip, preset("tiny").decoder).eval()
    embeddings = model.encode_classes(["a", "b", "c"])
    return model, embeddings, torch.rand(1, 3, 64, 64) * 255
