"""How often the training crops of a config are padded, and how many pseudo masks the crop cuts to slivers.

Two recipe details act only where this happens: the colour of the padding (``data.pad_fill``)
and dropping pseudo masks below a share of the crop (``pseudo.min_crop_area``). This script
draws the training crops of one pass over the split exactly as training does (same transform
and seeds, no model) and counts.

Example (the built-in world, after ``splitmatch pseudo-masks`` or a training run filled the cache)::

    python benchmarks/crop_stats.py --config configs/world.yaml --set data.root=runs/world-data
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from splitmatch.config.presets import load_config  # noqa: E402
from splitmatch.data.augmentation import Compose, build_train_transform  # noqa: E402
from splitmatch.data.dataset import SegmentationDataset  # noqa: E402
from splitmatch.data.folder import DatasetFolder  # noqa: E402
from splitmatch.model.build import build_segmentor  # noqa: E402
from splitmatch.pseudo.build_cache import open_cache  # noqa: E402
from splitmatch.pseudo.proposals import masks_from_index_map  # noqa: E402
from splitmatch.train.sampler import StepBatchSampler  # noqa: E402

THRESHOLDS = (0.005, 0.01, 0.02, 0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config")
    parser.add_argument("--preset")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--samples", type=int, help="crops to draw (default: one pass over the split)")
    args = parser.parse_args()
    config = load_config(args.config, args.preset, args.set)
    folder = DatasetFolder(config.data.root)
    torch.manual_seed(config.train.seed)
    cache = open_cache(config.pseudo, config.clip, folder, build_segmentor(config.clip, config.decoder).image_encoder)
    data = config.data
    transform = build_train_transform(
        data.crop_size,
        tuple(data.resize_scale),
        tuple(data.ratio_range),
        data.cat_max_ratio,
        data.flip_prob,
        photometric=False,
    )
    transform = Compose(transform.transforms[:-1])  # without the final Pad: its size tells the padding
    dataset = SegmentationDataset(folder, data.train_split, transform, inductive=True, pseudo_masks=cache)
    count = args.samples or len(dataset)
    sampler = StepBatchSampler(len(dataset), 1, 0, 1, config.train.seed, 0, count)
    padded_crops, padded_pixels, masks_total = 0, 0.0, 0
    below = dict.fromkeys(THRESHOLDS, 0)
    for (key,) in sampler:
        item = dataset[key]
        height, width = item["label"].shape
        pad_share = 1 - height * width / data.crop_size**2
        padded_crops += pad_share > 0
        padded_pixels += pad_share
        embeddings = item["pseudo_embeddings"]
        masks = masks_from_index_map(item["pseudo_index"], embeddings.shape[0])  # [K, h, w]
        areas = masks.flatten(1).float().sum(1) / data.crop_size**2  # share of the padded crop
        alive = areas > 0
        masks_total += int(alive.sum())
        for threshold in THRESHOLDS:
            below[threshold] += int((alive & (areas < threshold)).sum())
    print(f"{config.name}, {count} training crops of {data.crop_size} px from {folder.root}:")
    print(f"  padded crops: {padded_crops / count:.1%}; padded share of all crop pixels: {padded_pixels / count:.1%}")
    print(f"  pseudo masks with pixels in the crop: {masks_total} ({masks_total / count:.2f} per crop)")
    for threshold, number in below.items():
        print(f"  of them below {threshold:.1%} of the crop: {number} ({number / max(masks_total, 1):.1%})")


if __name__ == "__main__":
    main()
