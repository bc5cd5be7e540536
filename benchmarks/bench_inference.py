"""`splitmatch predict`'s work on one 512x512 image vs the bare CLIP image encoder.

Method: the ``voc-vitb16`` preset (CLIP ViT-B/16 built from open_clip's ``ViT-B-16-quickgelu``
config, random weights: speed does not depend on values) is wrapped in a
:class:`splitmatch.predict.predictor.Predictor` in whole-image mode, exactly as ``splitmatch predict``
uses it, and asked to label a random 512x512 uint8 image with the 20 VOC class names. That
covers resizing, the prompted image encoder, pixel decoder with MFE, the 6-layer query
decoder, semantic scores at full resolution and the argmax.

* warm: the vocabulary's text embeddings are already cached (every image after the first);
* cold: the first call for a vocabulary, text encoding included (the text encoder's
  per-vocabulary cache is emptied before each call).

Reference, measured in the same run: open_clip's ``CLIP.encode_image`` of a ViT-B/16 whose
native input size is the same 512x512 (so no interpolation), on the same image, under
``no_grad``. The callables are timed in turn; medians are reported. Target: <= 1.3x, judged
for warm and cold alike; the text encoding alone is reported for context.
"""

from __future__ import annotations

import copy

import numpy as np
import open_clip
import torch
from common import Result, describe_samples, paired_ratio, parse_args, print_results, time_interleaved, vitb16_config

from splitmatch.config.architectures import clip_model_config
from splitmatch.data.class_lists import BUILTIN_SPLITS
from splitmatch.model.build import build_segmentor
from splitmatch.predict.predictor import Predictor

TARGET = 1.3


def bare_clip(arch: str, size: int) -> open_clip.CLIP:
    """open_clip's CLIP for ``arch`` with its image tower built for ``size`` x ``size`` inputs."""
    config = copy.deepcopy(clip_model_config(arch))
    config["vision_cfg"]["image_size"] = size
    keep = ("embed_dim", "vision_cfg", "text_cfg", "quick_gelu")
    return open_clip.CLIP(**{k: v for k, v in config.items() if k in keep}).eval()


def main() -> None:
    args = parse_args(__doc__, repeats=5)
    size = 224 if args.quick else 512
    torch.manual_seed(0)
    config = vitb16_config(["inference.mode=whole", f"inference.short_side={size}"])
    classes = BUILTIN_SPLITS["voc"]
    names = list(classes.names)
    model = build_segmentor(config.clip, config.decoder).eval()
    predictor = Predictor(model, config.inference, classes.seen_names)
    clip = bare_clip(config.clip.arch, size)

    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None]  # [1, 3, S, S]
    normalised = model.image_encoder.normalize(pixels)  # CLIP mean/std, as open_clip's preprocessing

    def cold() -> np.ndarray:
        model.text_encoder._cache.clear()  # the vocabulary is new again
        return predictor.predict(image, names)

    def warm() -> np.ndarray:
        return predictor.predict(image, names)

    def encode_text() -> torch.Tensor:
        model.text_encoder._cache.clear()
        return model.encode_classes(names)

    @torch.no_grad()
    def reference() -> torch.Tensor:
        return clip.encode_image(normalised)

    labels = warm()
    assert labels.shape == (size, size), labels.shape
    timings = time_interleaved(
        {"reference": reference, "warm": warm, "cold": cold, "text": encode_text}, args.repeats, warmup=1
    )
    ref = timings["reference"]
    ref_name = f"encode_image {size}px"

    def result(name: str, key: str, judged: bool) -> Result:
        ratio = paired_ratio(timings[key], ref)
        passed = ratio <= TARGET if judged else None
        target = f"<= {TARGET}" if judged else ""
        return Result(name, timings[key].median, "s", ref.median, ref_name, target, passed, ratio)

    results = [
        result("predict, warm (text cached)", "warm", True),
        result("predict, cold (first call)", "cold", True),
        result("text encoding alone, 20 names", "text", False),
    ]
    notes = [
        f"{size}x{size} image, 20 VOC class names, whole-image mode, torch threads {torch.get_num_threads()}, "
        f"{args.repeats} repeats (median); samples (s): " + describe_samples(timings),
    ]
    print_results("bench_inference: Predictor.predict / CLIP encode_image", results, notes)


if __name__ == "__main__":
    main()
