"""How a Split Matching model's candidate queries should score pixels: every variant on one model.

Candidate queries are trained on pseudo masks and region embeddings only (no class loss, no
no-object loss), so at inference their no-object logit is untrained and an unmatched candidate
was never taught to switch off. This script evaluates one trained checkpoint under each
scoring variant (``inference.candidate_*``, see ``splitmatch.inference.segmentation.CandidateScoring``) with
the library's own evaluation (``splitmatch.evaluation.evaluator.evaluate``), and prints mIoU(S),
mIoU(U) and hIoU per variant. Only inference changes, so one training serves every row.

It also prints how the candidates' cosines with the class texts are spread (the quantity
that decides how flat their softmax is at a temperature): with real CLIP, region and text
embeddings have cosines of about 0.15-0.35, which a small CLIP need not reproduce.

The comparison chooses a setting, so it is made on a pseudo-unseen proxy (``--proxy``, the
default for every dataset but the built-in world): the checkpoint must come from
``splitmatch train --proxy``, and it is scored on the proxy's validation images (taken from the
training split) with the proxy's classes, its held-out seen classes as U and the benchmark's
unseen classes left out (docs/protocols.md). The world is this project's own test bed and may
be tuned on its own labels: there the default scores its validation split (``--no-proxy``).

Examples::

    # VOC: a proxy model, then every variant on its validation images
    splitmatch train --config configs/voc.yaml --proxy --out runs/voc-proxy
    python benchmarks/candidate_scoring.py --checkpoint runs/voc-proxy/model.safetensors

    # the built-in world, on its own validation split
    splitmatch world --out runs/world-data
    splitmatch train --config configs/world.yaml --set data.root=runs/world-data --out runs/world
    python benchmarks/candidate_scoring.py --checkpoint runs/world/model.safetensors
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the command line: the machine may be shared

import torch  # noqa: E402

from splitmatch.data.experiment_folder import ExperimentFolder, open_dataset  # noqa: E402
from splitmatch.data.folder import read_image  # noqa: E402
from splitmatch.evaluation.evaluator import evaluate  # noqa: E402
from splitmatch.evaluation.metrics import format_table  # noqa: E402
from splitmatch.inference.images import resize_short_side  # noqa: E402
from splitmatch.inference.segmentation import CandidateScoring, mask_confidence  # noqa: E402
from splitmatch.model.query_decoder import CANDIDATE_GROUP  # noqa: E402
from splitmatch.predict.loading import load_segmentor  # noqa: E402

CLIP_TEMPERATURE = 0.01  # CLIP's logit scale of 100

VARIANTS: dict[str, CandidateScoring | None] = {
    "as seen queries (softmax with no-object)": CandidateScoring("no_object"),
    "classes only": CandidateScoring("classes"),
    "classes only, tau 0.01 (CLIP's scale)": CandidateScoring("classes", CLIP_TEMPERATURE),
    "with no-object, tau 0.01": CandidateScoring("no_object", CLIP_TEMPERATURE),
    "classes only, weight 0.5": CandidateScoring("classes", weight=0.5),
    "classes only, weight 2": CandidateScoring("classes", weight=2.0),
    "classes only, x mask confidence": CandidateScoring("classes", mask_confidence=True),
    "classes only, tau 0.01, x mask confidence": CandidateScoring("classes", CLIP_TEMPERATURE, mask_confidence=True),
    "left out": CandidateScoring("excluded"),
}


WORLD = "world"  # the built-in world's dataset name: its own labels may choose its settings


@torch.no_grad()
def cosine_spread(model, folder: ExperimentFolder, names: list[str], split: str, config, max_images: int) -> dict:
    """Statistics of candidate queries' cosines with the texts of ``names``, over confident candidates.

    Returns:
        medians over candidates whose mask confidence is >= 0.5: ``top1`` (highest cosine),
        ``margin`` (highest minus second highest), ``range`` (highest minus lowest),
        ``no_object_cosine`` (with the learned no-object embedding), ``no_object_probability``
        (its share of the softmax with no-object at the model's tau), ``top1_probability`` (the
        top class's share of the softmax over the classes alone) and ``count`` (candidates counted).
    """
    embeddings = model.encode_classes(names)
    tau = model.query_decoder.temperature
    top1, margin, spread, no_object, no_object_probability, top1_probability = [], [], [], [], [], []
    for sample in folder.samples(split)[:max_images]:
        image = torch.from_numpy(read_image(sample.image_path)).permute(2, 0, 1)[None]
        resized = resize_short_side(image, config.short_side, config.max_long_side)
        ph, pw = model.patch_size
        resized = resized[..., : resized.shape[-2] // ph * ph, : resized.shape[-1] // pw * pw]
        outputs = model(resized, embeddings)
        candidates = outputs["query_group"] == CANDIDATE_GROUP
        confident = mask_confidence(outputs["pred_masks"][:, candidates])[0] >= 0.5
        logits = outputs["pred_logits"][0, candidates][confident].float()  # [N, C+1], cos / tau
        ordered = (logits[:, :-1] * tau).sort(-1, descending=True).values
        top1 += ordered[:, 0].tolist()
        margin += (ordered[:, 0] - ordered[:, 1]).tolist()
        spread += (ordered[:, 0] - ordered[:, -1]).tolist()
        no_object += (logits[:, -1] * tau).tolist()
        no_object_probability += logits.softmax(-1)[:, -1].tolist()
        top1_probability += logits[:, :-1].softmax(-1).amax(-1).tolist()
    median = lambda values: round(statistics.median(values), 3) if values else None  # noqa: E731
    return {
        "top1": median(top1),
        "margin": median(margin),
        "range": median(spread),
        "no_object_cosine": median(no_object),
        "no_object_probability": median(no_object_probability),
        "top1_probability": median(top1_probability),
        "count": len(top1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a Split Matching model (model.safetensors)")
    parser.add_argument("--data-root", help="dataset folder (default: the checkpoint's)")
    parser.add_argument(
        "--split",
        help="split to score (default: the proxy's validation images, proxy-val; "
        "with --no-proxy the config's val split)",
    )
    parser.add_argument("--max-images", type=int, help="score only the first N images")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument(
        "--proxy",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="require a proxy checkpoint (splitmatch train --proxy) and score its proxy (default: on, but for "
        "the built-in world)",
    )
    args = parser.parse_args()

    started = time.time()
    model, record = load_segmentor(args.checkpoint)
    config = record["config"]
    if config.loss.matching != "split":
        raise SystemExit(f"{args.checkpoint} was trained with loss.matching={config.loss.matching}: no candidates")
    proxy = args.proxy if args.proxy is not None else record["classes"].dataset != WORLD
    if proxy and not config.data.proxy.enabled:
        raise SystemExit(
            f"{args.checkpoint} is not a proxy model: scoring it on '{config.data.val_split}' would choose a setting "
            "on the benchmark's test split. Train one with `splitmatch train --config ... --proxy` "
            "(docs/protocols.md), or pass --no-proxy for a diagnostic that chooses nothing"
        )
    # The folder as the checkpoint was trained on it: a proxy checkpoint's holds its proxy.
    folder = open_dataset(config.data, root=args.data_root)
    split = args.split or folder.evaluation_split(config.data.val_split)
    if folder.proxy is not None and split == config.data.val_split:
        raise SystemExit(f"--split {split} is the benchmark's validation (test) split; a proxy is scored on proxy-val")
    vocabulary = folder.evaluation_vocabulary()
    names = list((vocabulary.classes if vocabulary is not None else folder.classes).names)
    results = {}
    for name, scoring in VARIANTS.items():
        results[name] = evaluate(
            model,
            folder,
            split,
            config.inference,
            vocabulary,
            progress=False,
            max_images=args.max_images,
            compared_calibrations=(),
            candidates=scoring,
        )
        print(
            f"{name}: S {results[name]['miou_seen']:.1f} U {results[name]['miou_unseen']:.1f} "
            f"hIoU {results[name]['hiou']:.1f}",
            flush=True,
        )
    spread = cosine_spread(model, folder, names, split, config.inference, min(args.max_images or 100, 100))
    if folder.proxy is not None:
        print(
            f"\nproxy: held-out seen classes {', '.join(folder.proxy.held_out)} as U; the benchmark's unseen "
            "classes left out"
        )
    print(
        f"\n{args.checkpoint} ({split}, {args.max_images or 'all'} images), seen calibration "
        f"{config.inference.seen_calibration:g}, tau {model.query_decoder.temperature}:\n"
    )
    print(format_table(results))
    print(
        f"confident candidates ({spread['count']}), medians: cosine with the top class {spread['top1']}, "
        f"top-1 minus top-2 {spread['margin']}, top-1 minus lowest {spread['range']}; cosine with the "
        f"no-object embedding {spread['no_object_cosine']}, no-object probability {spread['no_object_probability']}; "
        f"top class probability over the classes alone {spread['top1_probability']}"
    )
    print(f"{time.time() - started:.0f} s")
    if args.json:
        keys = ("miou_seen", "miou_unseen", "hiou", "miou", "pixel_acc")
        summary = {name: {k: m[k] for k in keys} for name, m in results.items()}
        with open(args.json, "w", encoding="utf-8") as out:
            proxy = folder.proxy.summary() if folder.proxy is not None else None
            json.dump({"split": split, "proxy": proxy, "variants": summary, "cosines": spread}, out, indent=2)


if __name__ == "__main__":
    main()
