"""``splitmatch predict`` over many images: label maps, overlays, a progress bar and ``summary.json``.

An image that cannot be read is named and skipped; the others are still done. ``summary.json``
records, per image, its size, the classes present with their share of the image and the time
the model took, with the class list, the checkpoint, the device and the inference settings.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from splitmatch.data.classes import ClassEntry, class_texts, label_dtype_for
from splitmatch.data.folder import DatasetFormatError, read_image, write_label, write_png
from splitmatch.data.names import printable
from splitmatch.inference.none_rule import NoneOfThese
from splitmatch.predict.predictor import Predictor
from splitmatch.storage.files import write_json
from splitmatch.visualize import class_pixel_counts, prediction_figure

SUMMARY_NAME = "summary.json"


def class_areas(labels: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """The classes present in ``labels [H, W]`` (indices into ``names``) -> percent of the image,
    largest first (ties in the order of ``names``), to two decimals."""
    shares = class_pixel_counts(labels, len(names)) / labels.size
    order = np.argsort(-shares, kind="stable")
    return {names[i]: round(100.0 * float(shares[i]), 2) for i in order if shares[i] > 0}


def predict_images(
    predictor: Predictor,
    outputs: dict[Path, Path],
    entries: Sequence[ClassEntry],
    out: Path,
    checkpoint: str,
    progress: bool = True,
    batch_size: int = 1,
    none: NoneOfThese | None = None,
) -> dict:
    """Predicts every input, writes ``<target>_labels.png``, ``<target>_overlay.png`` and
    ``out/summary.json``; prints one line per image. Returns the summary.

    Args:
        outputs: input image -> output path without suffix (:func:`splitmatch.predict.outputs.prediction_outputs`).
        entries: the class names, each a name or a name and its synonyms; label value ``i`` is
            the ``i``-th entry.
        checkpoint: how the model was named (a path or ``packaged:world-model``), for the summary.
        batch_size: images run through the model together (:meth:`Predictor.predict` on a list:
            the same labels as one by one); each image's ``seconds`` is then its batch's share.
        none: a "none of these" rule; its label is the last class of the maps and the summary.
    """
    texts = class_texts(entries)
    names = [names[0] for names in texts]  # shown and written; synonyms only shape the text embedding
    names += [none.label] if none else []
    dtype = label_dtype_for(len(names))  # 16-bit above 255 names
    images, failed = [], []
    started = time.perf_counter()
    bar = tqdm(total=len(outputs), desc="predict", unit="image", disable=not progress, leave=False, file=sys.stderr)
    pending: list[tuple[Path, Path, np.ndarray]] = []

    def run_batch() -> None:
        mark = time.perf_counter()
        all_labels = predictor.predict([image for _, _, image in pending], entries, batch_size=len(pending), none=none)
        seconds = (time.perf_counter() - mark) / len(pending)
        for (path, target, image), labels in zip(pending, all_labels):
            images.append(_write_outputs(path, target, image, labels.astype(dtype, copy=False), names, out, seconds))
        bar.update(len(pending))
        pending.clear()

    for path, target in outputs.items():
        try:
            image = read_image(path)
        except DatasetFormatError as error:  # one bad image does not stop the others
            failed.append({"input": str(path), "error": str(error)})
            tqdm.write(f"splitmatch: skipped: {printable(str(error), 2000)}", file=sys.stderr)
            bar.update(1)
            continue
        pending.append((path, target, image))
        if len(pending) == batch_size:
            run_batch()
    if pending:
        run_batch()
    bar.close()
    summary = {
        "checkpoint": checkpoint,
        "trained_on": predictor.classes.dataset if hasattr(predictor, "classes") else None,
        "classes": names,
        "synonyms": {names[0]: list(names[1:]) for names in texts if len(names) > 1},
        "none_of_these": dataclasses.asdict(none) if none else None,
        "device": str(predictor.device),
        "settings": dataclasses.asdict(predictor.config),
        "images": images,
        "failed": failed,
        "seconds": round(time.perf_counter() - started, 3),
    }
    write_json(out / SUMMARY_NAME, summary)
    return summary


def _write_outputs(
    path: Path, target: Path, image: np.ndarray, labels: np.ndarray, names: list[str], out: Path, seconds: float
) -> dict:
    """Writes one image's label map and overlay, prints its line; returns its entry of ``summary.json``."""
    label_path = target.with_name(f"{target.name}_labels.png")
    overlay_path = target.with_name(f"{target.name}_overlay.png")
    write_label(label_path, labels)
    write_png(overlay_path, prediction_figure(image, labels, names))
    areas = class_areas(labels, names)
    shown = ", ".join(f"{name} {percent:.0f}%" for name, percent in areas.items() if percent >= 0.5)
    tqdm.write(f"{printable(str(path), 2000)}: {shown}", file=sys.stdout)
    return {
        "input": str(path),
        "labels": label_path.relative_to(out).as_posix(),
        "overlay": overlay_path.relative_to(out).as_posix(),
        **({"shortened_from": path.stem} if target.name != path.stem else {}),
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "classes": areas,
        "seconds": round(seconds, 4),
    }
