"""Peak resident memory of `splitmatch predict` with CLIP ViT-B/16: at 512 px, and whether it grows with image size.

Method: a ``voc-vitb16`` model with random CLIP weights is saved with
``splitmatch.model.checkpoint.save_checkpoint`` next to a random 512x512 PNG, then the real
command line runs in a child process::

    python -m splitmatch predict --checkpoint model.safetensors --classes <20 VOC names> --out DIR img.png

(the checkpoint's inference settings: sliding 512 windows, i.e. one window for this image).
Its peak RSS is ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` read right after it exits
(it is the first child waited for), cross-checked with ``os.wait4``. Target: <= 2 GB (10^9
bytes). The children are started by a lean launcher process (no torch): on Linux a child
created by fork or vfork inherits its parent's RSS high-water mark across ``exec``, so
launching from this script, which has just built the model, would report this script's peak.

Reference, in the same run: a child that builds the bare open_clip ViT-B/16 CLIP (both
towers, as the checkpoint holds both) for 512 inputs and encodes the image and the 20
prompts: the floor for any CLIP-based predictor. Reported for context: the peak of a child
that only imports what ``predict`` imports, the model's parameter and buffer memory and the
checkpoint's size.

Growth with the input: the same command with 300 class names on a 6000x6000 image (a
36-megapixel photo; blocks of colour so that the PNG stays small) against the same on a
512x512 image, each peak read with ``os.wait4`` for that child alone. Target: the large image
within 1.2x of the small one, i.e. memory does not grow with image size times class count
(upsampling all 300 score maps to 6000x6000 before the argmax would take 43 GB). ``--quick``:
224 and 2000 pixels.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import Result, parse_args, print_results, vitb16_config
from PIL import Image

from splitmatch.data.class_lists import BUILTIN_SPLITS
from splitmatch.model.build import build_segmentor
from splitmatch.model.checkpoint import save_checkpoint

TARGET_GB = 2.0
TARGET_GROWTH = 1.2
GB = 1e9
REFERENCE = """
import os, sys
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, {bench!r})
import torch
from bench_inference import bare_clip
from splitmatch.clip.loading import clip_tokenizer
clip = bare_clip("ViT-B-16-quickgelu", {size})
with torch.no_grad():
    clip.encode_image(torch.zeros(1, 3, {size}, {size}))
    clip.encode_text(clip_tokenizer("ViT-B-16-quickgelu")([f"a photo of a {{n}}." for n in {names!r}]))
"""
IMPORTS = "import splitmatch.cli, splitmatch.predict.predictor, splitmatch.visualize"  # what predict imports
# The lean launcher: runs each command with its output in a log; prints exit codes and peak RSS (KiB).
LAUNCHER = """
import json, os, resource, subprocess, sys
report = {}
for name, command in json.loads(sys.argv[1]).items():
    with open(command["log"], "w") as out:
        process = subprocess.Popen(command["argv"], stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report[name] = {"code": os.waitstatus_to_exitcode(status), "wait4": usage.ru_maxrss, "children": children,
                    "seconds": usage.ru_utime + usage.ru_stime}

print(json.dumps(report))
"""


def predict_command(checkpoint: Path, names: list[str], out: Path, image: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "splitmatch",
        "predict",
        "--checkpoint",
        str(checkpoint),
        "--classes",
        ",".join(names),
        "--out",
        str(out),
        str(image),
    ]


def blocky_image(side: int, seed: int) -> np.ndarray:
    """``uint8 [side, side, 3]``: random colours in 64-pixel blocks (a PNG of a large one stays small)."""
    blocks = np.random.default_rng(seed).integers(0, 256, (-(-side // 64), -(-side // 64), 3), dtype=np.uint8)
    return np.ascontiguousarray(blocks.repeat(64, 0).repeat(64, 1)[:side, :side])


def main() -> None:
    args = parse_args(__doc__, repeats=1)
    size = 224 if args.quick else 512
    large = 2000 if args.quick else 6000
    classes = BUILTIN_SPLITS["voc"]
    names = list(classes.names)
    many = [f"thing {i}" for i in range(300)]
    with tempfile.TemporaryDirectory(prefix="splitmatch-bench-memory-") as tmp:
        root = Path(tmp)
        config = vitb16_config()
        model = build_segmentor(config.clip, config.decoder)
        parameters = sum(p.numel() * p.element_size() for p in model.parameters())
        buffers = sum(b.numel() * b.element_size() for b in model.buffers())
        checkpoint = save_checkpoint(root / "model.safetensors", model, config, classes, classes.seen_names, 0)
        del model
        image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / "image.png")
        Image.fromarray(blocky_image(size, 1)).save(root / "small.png")
        Image.fromarray(blocky_image(large, 1)).save(root / "large.png")

        predict = predict_command(checkpoint, names, root / "out", root / "image.png")
        script = REFERENCE.format(bench=str(Path(__file__).resolve().parent), size=size, names=names)
        commands = {  # predict first: RUSAGE_CHILDREN right after it is its peak alone
            "predict": {"argv": predict, "log": str(root / "predict.log")},
            "reference": {"argv": [sys.executable, "-c", script], "log": str(root / "reference.log")},
            "imports": {"argv": [sys.executable, "-c", IMPORTS], "log": str(root / "imports.log")},
            "small": {
                "argv": predict_command(checkpoint, many, root / "out300", root / "small.png"),
                "log": str(root / "small.log"),
            },
            "large": {
                "argv": predict_command(checkpoint, many, root / "out300", root / "large.png"),
                "log": str(root / "large.log"),
            },
        }
        launched = subprocess.run(
            [sys.executable, "-c", LAUNCHER, json.dumps(commands)], capture_output=True, text=True
        )
        if launched.returncode != 0:
            raise SystemExit(f"launcher failed:\n{launched.stderr}")
        report = json.loads(launched.stdout)
        for name, command in commands.items():
            if report[name]["code"] != 0:
                raise SystemExit(f"{name} failed ({report[name]['code']}):\n{Path(command['log']).read_text()}")
        if not (root / "out" / "image_labels.png").is_file():
            raise SystemExit("splitmatch predict wrote no label map")
        with Image.open(root / "out300" / "large_labels.png") as written:
            if written.size != (large, large) or not written.mode.startswith("I;16"):
                raise SystemExit(f"the large prediction is {written.mode} {written.size}, not 16-bit {large}x{large}")
        checkpoint_bytes = checkpoint.stat().st_size

    kib = 1024 / GB
    peak, reference = report["predict"]["children"] * kib, report["reference"]["wait4"] * kib
    results = [
        Result(
            f"predict peak RSS, {size}px",
            peak,
            "GB",
            reference,
            "bare CLIP child",
            f"<= {TARGET_GB} GB",
            peak <= TARGET_GB,
        ),
        Result(
            f"predict peak RSS, 300 names, {large}x{large}",
            report["large"]["wait4"] * kib,
            "GB",
            report["small"]["wait4"] * kib,
            f"300 names, {size}x{size}",
            f"<= {TARGET_GROWTH}x",
            report["large"]["wait4"] <= TARGET_GROWTH * report["small"]["wait4"],
        ),
        Result("imports alone (torch, open_clip, splitmatch)", report["imports"]["wait4"] * kib, "GB"),
        Result("model parameters + buffers", (parameters + buffers) / GB, "GB"),
        Result("checkpoint file", checkpoint_bytes / GB, "GB"),
    ]
    notes = [
        f"predict: RUSAGE_CHILDREN {peak:.3f} GB, os.wait4 {report['predict']['wait4'] * kib:.3f} GB",
        f"parameters {parameters / GB:.3f} GB, buffers {buffers / GB:.3f} GB; 1 GB = 10^9 bytes; "
        f"torch threads {torch.get_num_threads()}",
        f"CPU seconds of predict with 300 names: {report['small']['seconds']:.1f} at {size} px, "
        f"{report['large']['seconds']:.1f} at {large} px",
    ]
    print_results("bench_memory: peak RSS of `splitmatch predict`", results, notes)


if __name__ == "__main__":
    main()
