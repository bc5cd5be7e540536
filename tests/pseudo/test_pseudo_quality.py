"""The pseudo-mask diagnostic: hand-counted scores, and `pseudo-masks --evaluate` on real layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fabricate import fabricate_voc
from PIL import Image

from splitmatch.cli import main
from splitmatch.data.classes import ClassSplit
from splitmatch.pseudo.quality import METRICS, UNSEEN_NAMES_NOTE, _Tally, score_image, unseen_objects
from splitmatch.world.generator import WorldSpec, generate_world

CLASSES = ClassSplit(("background", "a", "b", "c"), ("b", "c"), dataset="hand")


def hand_case() -> tuple[np.ndarray, np.ndarray]:
    """An 8x8 label and a 2-channel index map on a 4x4 grid (2-pixel patches).

    b (id 2) fills rows 0-3, cols 0-3 except a lone c pixel at (0, 0) and a void pixel at (3, 0);
    seen class a fills rows 0-1, cols 4-7 except a lone c pixel at (0, 7); c fills rows 4-7,
    cols 4-7. Mask 1 (scale 0) is the b block, mask 2 (scale 1) a corner of the c block, mask 3
    (scale 1) lies on seen pixels but for the lone c pixel at (0, 7).
    """
    label = np.zeros((8, 8), np.uint8)
    label[0:4, 0:4] = 2
    label[0, 0] = 3
    label[3, 0] = 255
    label[0:2, 4:8] = 1
    label[0, 7] = 3
    label[4:8, 4:8] = 3
    index = np.zeros((2, 4, 4), np.uint8)
    index[0, 0:2, 0:2] = 1
    index[1, 3, 3] = 2
    index[1, 0, 2:4] = 3
    return label, index


def test_scores_match_a_hand_count():
    label, index = hand_case()
    text = np.eye(4, dtype=np.float32)  # class c's text embedding is row c
    embeddings = text[[2, 2, 3]]  # mask 1 read as b (right), mask 2 as b (wrong: it lies on c), mask 3 as c
    tallies: dict[str, _Tally] = {}
    score = score_image(label, index, embeddings, text, CLASSES, min_area=0.05, tallies=tallies, stem="x")
    counts = {key: tally.counts for key, tally in tallies.items()}
    # b: 14 pixels (one void), all covered; c: 18 pixels, covered 1 (by mask 1) + 4 + 1.
    assert counts["overall"]["unseen_coverage"] == [20, 32]
    assert counts["class b"]["unseen_coverage"] == [14, 14] and counts["class c"]["unseen_coverage"] == [6, 18]
    assert counts["scale 1"]["unseen_coverage"] == [5, 32]
    # Mask 1 keeps 14 b + 1 c pixels (the void pixel and nothing seen); masks 2 and 3 are all c.
    assert counts["overall"]["mask_precision"] == [19, 20]
    assert counts["class b"]["mask_precision"] == [14, 15] and counts["class c"]["mask_precision"] == [5, 5]
    # Objects of at least 3.2 pixels: b (IoU 14/15 with mask 1: found) and the c block (IoU 4/16: missed).
    assert counts["overall"]["object_recall"] == [1, 2]
    assert counts["scale 0"]["object_recall"] == [1, 2] and counts["scale 1"]["object_recall"] == [0, 2]
    assert counts["overall"]["region_accuracy"] == [2, 3]
    assert counts["class c"]["region_accuracy"] == [1, 2]
    assert tallies["overall"].summary()["object_recall"] == 50.0
    assert score.objects == 2 and score.objects_missed == 1
    assert score.uncovered_share == pytest.approx(12 / 64)


def test_unseen_objects_are_eight_connected_components_above_the_minimum():
    label = np.zeros((6, 6), np.uint8)
    label[0:2, 0:2] = 2
    label[2, 2] = 2  # touches the block diagonally: the same object
    label[5, 5] = 2  # alone and too small
    label[4, 0:3] = 3
    objects, classes = unseen_objects(label, [2, 3], min_pixels=3)
    assert classes == [2, 3]
    assert (objects == 1).sum() == 5 and (objects == 2).sum() == 3 and objects[5, 5] == 0


def run_evaluate(data, tmp_path, capsys, preset: str = "tiny", extra: list[str] | None = None) -> dict:
    out = tmp_path / "quality.json"
    figure = tmp_path / "misses.png"
    args = [
        "pseudo-masks",
        "--preset",
        preset,
        "--quiet",
        "--set",
        f"data.root={data}",
        "--evaluate",
        "--json",
        str(out),
        "--figure",
        str(figure),
        *(extra or []),
    ]
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert UNSEEN_NAMES_NOTE in printed and "object_recall" in printed
    report = json.loads(out.read_text())
    assert report["note"] == UNSEEN_NAMES_NOTE
    for group in [report["overall"], *report["per_class"].values(), *report["per_scale"].values()]:
        for metric in METRICS:
            assert group[metric] is None or 0.0 <= group[metric] <= 100.0
    if report["worst_misses"]:
        assert Image.open(figure).width > 400
    return report


def test_evaluate_on_the_tiny_dataset(tiny_dataset, tmp_path, capsys):
    report = run_evaluate(tiny_dataset.root, tmp_path, capsys)
    assert report["split"] == "train" and report["images"] == 8
    assert list(report["per_class"]) == ["yellow"] and list(report["per_scale"]) == ["window 2", "window 4", "window 8"]
    unseen_pixels = sum(
        int((np.array(Image.open(tiny_dataset.root / "labels" / f"{stem}.png")) == 4).sum())
        for stem in tiny_dataset.stems("train")
    )
    assert (unseen_pixels > 0) == (report["overall"]["unseen_coverage"] is not None)
    # Another split is computed into the same cache and scored on request.
    val = run_evaluate(tiny_dataset.root, tmp_path, capsys, extra=["--split", "val"])
    assert val["split"] == "val" and val["images"] == 4


def test_evaluate_on_a_prepared_voc_layout(tmp_path, capsys):
    fabricate_voc(tmp_path / "VOC2012", count=6)
    data = tmp_path / "voc"
    assert (
        main(["prepare", "voc", "--src", str(tmp_path / "VOC2012"), "--dst", str(data), "--quiet", "--allow-partial"])
        == 0
    )
    report = run_evaluate(data, tmp_path, capsys)
    assert set(report["per_class"]) == {"pottedplant", "sheep", "sofa", "train", "tvmonitor"}
    # Each training image holds one unseen block (14 x 20 pixels) and VOC's void rows stay out.
    assert report["overall"]["objects"] == 4
    # The switches of docs/pseudo-masks.md make their own cache and are scored the same way.
    switches = ["--set", "pseudo.components=true", "--set", "pseudo.rho=0.5", "--set", "pseudo.region_embedding=crop"]
    other = run_evaluate(data, tmp_path, capsys, extra=switches)
    assert other["overall"]["objects"] == 4 and len(list((data / "pseudo_masks").iterdir())) == 2


def test_json_and_figure_need_evaluate(tiny_dataset, capsys):
    code = main(["pseudo-masks", "--preset", "tiny", "--set", f"data.root={tiny_dataset.root}", "--json", "x.json"])
    assert code == 2
    assert capsys.readouterr().err.strip() == "splitmatch: error: --json and --figure need --evaluate"


def test_evaluate_on_a_small_world(tmp_path, capsys):
    spec = WorldSpec(num_train=12, num_val=2, num_captions=0)
    world = generate_world(tmp_path / "world", seed=3, spec=spec, progress=False)
    report = run_evaluate(world.root, tmp_path, capsys, preset="world")  # with the packaged small CLIP
    assert list(report["per_class"]) == ["square", "heart", "cross", "bolt"]
    assert report["overall"]["objects"] > 0
    # The packaged small CLIP finds some of the unseen objects, and names masks far above chance
    # (one of the 13 class names: 7.7%); 73% over the whole training split (docs/pseudo-masks.md).
    chance = 100 / len(world.classes.names)
    assert report["overall"]["object_recall"] > 0 and report["overall"]["region_accuracy"] > 3 * chance
