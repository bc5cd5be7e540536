"""The built-in world end to end: the small CLIP and `splitmatch demo --quick`."""

from __future__ import annotations

import json
import math

import pytest
import torch

from splitmatch.cli import main
from splitmatch.clip.image_encoder import ClipImageEncoder
from splitmatch.clip.loading import build_clip
from splitmatch.world.demo import world_spec
from splitmatch.world.generator import WorldSpec, generate_world
from splitmatch.world.toy_clip import ToyClipSpec, read_toy_clip_record, train_toy_clip

pytestmark = pytest.mark.slow


def test_small_clip_trains_and_loads_through_the_real_loader(tmp_path):
    world = generate_world(
        tmp_path / "world", seed=1, spec=WorldSpec(num_train=4, num_val=6, num_captions=20), progress=False
    )
    path = tmp_path / "clip.safetensors"
    record = train_toy_clip(world.root, path, ToyClipSpec(steps=3, batch_size=8), progress=False)
    assert set(record["zero_shot"]) == {"image", "patch_value", "patch_tokens"}
    assert read_toy_clip_record(path)["spec"]["steps"] == 3
    model = build_clip("world-clip", str(path))  # the loader real CLIP weights go through
    encoder = ClipImageEncoder(model.visual)
    out = encoder(torch.rand(1, 3, 96, 80) * 255, value_features=True)
    assert out["dense_values"].shape == (1, 128, 12, 10)
    assert path.stat().st_size < 10 * 2**20


def test_demo_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick", "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"split", "hungarian"}
    for result in metrics.values():
        for key in ("miou_seen", "miou_unseen", "hiou", "pixel_acc"):
            assert result[key] is not None and math.isfinite(result[key])
        assert len(result["per_class_iou"]) == 13
        assert set(result["seen_calibration"]) == {"0", "0.1"}
    for figure in ("predictions.png", "pseudo_masks.png", "pseudo_mask_misses.png"):
        assert (out / "figures" / figure).stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "| split |" in report and "| hungarian |" in report
    assert "| split, seen calibration 0.1 |" in report
    quality = json.loads((out / "pseudo_masks.json").read_text())
    assert quality["split"] == "train" and quality["images"] == 160
    assert "## Pseudo masks" in report and f"| overall | {quality['overall']['unseen_coverage']:.1f} |" in report
    # The packaged small CLIP fits, so the world is made without the images that would train one.
    assert json.loads((out / "world" / "world.json").read_text())["spec"]["num_captions"] == 0
    # A second run reuses every stage.
    assert main(["demo", "--out", str(out), "--quick", "--quiet"]) == 0
    assert json.loads((out / "metrics.json").read_text()) == metrics
    # Changed settings train, report and draw in a folder of their own; the default demo's stay as they were.
    default_files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and "world" not in p.parts}
    capsys.readouterr()
    assert main(["demo", "--out", str(out), "--quick", "--quiet", "--set", "train.iterations=12"]) == 0
    changed = out / "runs-train.iterations=12"
    assert f"report: {changed / 'report.md'}" in capsys.readouterr().out
    assert json.loads((changed / "split" / "resolved.json").read_text())["train"]["iterations"] == 12
    assert json.loads((changed / "hungarian" / "resolved.json").read_text())["train"]["iterations"] == 12
    assert "Changed from the `world` preset in every run: `train.iterations=12`." in (changed / "report.md").read_text()
    assert set(json.loads((changed / "metrics.json").read_text())) == {"split", "hungarian"}
    assert (changed / "figures" / "predictions.png").is_file()
    assert {p: p.read_bytes() for p in default_files} == default_files


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.seed=3", "train.seed is set by --seed"),
        ("loss.matching=split", "loss.matching is set by the demo"),
        ("train.iterations=0", "train.iterations must be an integer"),
        ("train.itrations=5", "unknown config key 'train.itrations'"),
    ],
)
def test_demo_refuses_overrides_before_making_anything(tmp_path, capsys, override, message):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--quick", "--quiet", "--set", override]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_demo_world_skips_caption_images_unless_the_folder_has_them(tmp_path):
    spec = WorldSpec(num_train=3, num_val=2, num_captions=5)
    assert world_spec(tmp_path / "none", spec).num_captions == 0  # the packaged small CLIP fits
    made = generate_world(tmp_path / "made", seed=0, spec=spec, progress=False)
    assert world_spec(made.root, spec) == spec  # an earlier world with them is reused as it is
