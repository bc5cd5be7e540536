"""Seen / unseen splits from config: a list of unseen names, none (the fully supervised bound), a seeded share."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from command_lines import tiny_train_args
from conftest import TINY_CLASSES

from splitmatch.cli import main
from splitmatch.config.presets import load_config
from splitmatch.data.class_lists import BUILTIN_SPLITS
from splitmatch.data.class_selection import draw, select_unseen, share_of
from splitmatch.data.classes import ClassSplitError
from splitmatch.data.experiment_folder import open_dataset
from splitmatch.data.folder import read_label
from splitmatch.model.checkpoint import read_record
from splitmatch.train.data import build_train_dataset

REPO = Path(__file__).resolve().parents[2]
VOC = BUILTIN_SPLITS["voc"]


def test_a_draw_is_the_seeds_alone_whatever_the_order_of_the_names():
    names = list(VOC.names)
    chosen = draw(names, 5, seed=0, salt="unseen")
    shuffled = names[:]
    random.Random(1).shuffle(shuffled)
    assert set(draw(shuffled, 5, seed=0, salt="unseen")) == set(chosen)
    assert list(chosen) == [n for n in names if n in set(chosen)]  # in the order of the names given
    assert len({draw(names, 5, seed, "unseen") for seed in range(6)}) > 1  # another seed, another draw
    assert draw(names, 5, 0, "other") != chosen  # salts keep draws of different things apart
    # Pinned: a change of the draw would move every seeded split and proxy of every user.
    assert select_unseen(VOC, unseen_fraction=0.75, seed=0).seen_names == [
        "aeroplane",
        "diningtable",
        "horse",
        "motorbike",
        "tvmonitor",
    ]


@pytest.mark.parametrize(
    "total, fraction, count", [(20, 0.75, 15), (20, 0.5, 10), (20, 0.25, 5), (10, 0.01, 1), (10, 0.99, 9), (5, 0.5, 3)]
)
def test_a_share_rounds_half_up_and_leaves_each_side_one(total, fraction, count):
    assert share_of(total, fraction) == count


def test_unseen_names_from_config_replace_the_datasets_split():
    split = select_unseen(VOC, ["sofa", "aeroplane"])
    assert split.unseen == ("aeroplane", "sofa") and split.names == VOC.names  # label-id order
    assert select_unseen(VOC, []).unseen == ()  # every class seen
    assert select_unseen(VOC) is VOC  # nothing asked: classes.json's split
    with pytest.raises(
        ClassSplitError, match=r"data.unseen names 2 class\(es\) that 'voc' does not have: unicorn, sofas"
    ):
        select_unseen(VOC, ["sofa", "unicorn", "sofas"])
    fraction = select_unseen(VOC, unseen_fraction=0.5, seed=3)
    assert len(fraction.unseen) == 10 and fraction == select_unseen(VOC, unseen_fraction=0.5, seed=3)


def test_an_unknown_unseen_name_stops_training_in_one_line_before_the_run_folder(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(tiny_train_args(tiny_dataset.root, out, "data.unseen=[green, unicorn]", iterations=None))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "data.unseen names 1 class(es) that 'tiny' does not have: unicorn" in err[0]
    assert not out.exists()
    code = main(
        tiny_train_args(tiny_dataset.root, out, "data.unseen=[green]", "data.unseen_fraction=0.5", iterations=None)
    )
    assert code == 2 and "both choose the unseen classes" in capsys.readouterr().err and not out.exists()


def _seen_ids_in_training(config, folder) -> set[int]:
    dataset = build_train_dataset(config.data, folder, None, 0, (0, 0, 0))
    found: set[int] = set()
    for i in range(len(dataset)):
        found |= set(np.unique(dataset[i]["label"].numpy()).tolist())
    return found - {folder.classes.ignore_index}


def test_a_configured_split_is_what_training_ignores_records_and_scores(tiny_dataset, tmp_path, capsys):
    config = load_config(None, "tiny", [f"data.root={tiny_dataset.root}", "data.unseen=[green]"])
    folder = open_dataset(config.data)
    assert folder.classes.unseen == ("green",) and folder.dataset_classes == TINY_CLASSES
    on_disk = set()
    for stem in folder.stems("train"):
        on_disk |= set(np.unique(read_label(tiny_dataset.root / "labels" / f"{stem}.png", 5)).tolist())
    assert {2, 4} <= on_disk  # the files hold green and yellow ...
    assert 2 not in _seen_ids_in_training(config, folder)  # ... training does not see green
    assert 4 in _seen_ids_in_training(config, folder)  # and yellow, unseen in classes.json, is seen here

    run = tmp_path / "run"
    assert main(tiny_train_args(tiny_dataset.root, run, "data.unseen=[green]")) == 0
    record = read_record(run / "model.safetensors")
    assert record["classes"].unseen == ("green",) and "green" not in record["train_classes"]
    assert json.loads((run / "split.json").read_text())["classes"]["unseen"] == ["green"]
    assert json.loads((run / "split.json").read_text())["proxy"] is None
    evaluated = json.loads((run / "eval.json").read_text())
    assert evaluated["other_names"] == ["green"]
    capsys.readouterr()
    assert (
        main(["eval", "--checkpoint", str(run / "model.safetensors"), "--quiet", "--json", str(tmp_path / "m.json")])
        == 0
    )
    out = capsys.readouterr().out
    assert "trained on exactly the seen classes above" in out and "proxy" not in out
    assert json.loads((tmp_path / "m.json").read_text())["miou_unseen"] == evaluated["miou_unseen"]


def test_the_fully_supervised_bound_trains_on_every_class_and_is_scored_on_the_benchmarks_split(tiny_dataset, tmp_path):
    config = load_config(None, "tiny", [f"data.root={tiny_dataset.root}", "data.unseen=[]"])
    folder = open_dataset(config.data)
    assert folder.classes.unseen == () and _seen_ids_in_training(config, folder) >= {4}  # yellow is trained on
    run = tmp_path / "run"
    assert main(tiny_train_args(tiny_dataset.root, run, "data.unseen=[]", "loss.matching=hungarian")) == 0
    evaluated = json.loads((run / "eval.json").read_text())
    assert evaluated["trained_names"] == list(TINY_CLASSES.names) and evaluated["other_names"] == []
    assert set(evaluated["per_class_iou"]) == set(TINY_CLASSES.names)
    # mIoU(U) is yellow's IoU: the bound is scored with classes.json's split, though trained on every class.
    iou = evaluated["per_class_iou"]
    assert iou["yellow"] is not None and evaluated["miou_unseen"] == pytest.approx(iou["yellow"])
    seen = [iou[name] for name in TINY_CLASSES.seen_names if iou[name] is not None]
    assert evaluated["miou_seen"] == pytest.approx(sum(seen) / len(seen))


@pytest.mark.parametrize("benchmark", ["voc", "coco-stuff", "context"])
def test_each_benchmark_has_a_supervised_config_that_differs_only_in_its_split_and_matching(benchmark):
    zero_shot = load_config(REPO / "configs" / f"{benchmark}.yaml")
    bound = load_config(REPO / "configs" / f"{benchmark}-supervised.yaml")
    assert bound.data.unseen == [] and bound.loss.matching == "hungarian"
    bound.data.unseen, bound.loss.matching = zero_shot.data.unseen, zero_shot.loss.matching
    assert bound == zero_shot


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.unseen=[sofa, sofa]"], "data.unseen must be a list of distinct, non-empty names or null"),
        (["data.unseen_fraction=1"], "data.unseen_fraction must be a finite number in (0, 1) or null"),
        (["data.proxy.classes=[cat]", "data.proxy.count=2"], "data.proxy.count (2) differs from the 1 classes"),
        (["data.proxy.classes=[]"], "data.proxy.classes is empty"),
        (["data.proxy.count=0"], "data.proxy.count must be an integer in 1..100000 or null"),
        (["data.proxy.val_fraction=0"], "data.proxy.val_fraction must be a finite number in (0, 1)"),
    ],
)
def test_split_and_proxy_keys_follow_their_rules(overrides, message):
    from splitmatch.config import ConfigError

    with pytest.raises(ConfigError) as refused:
        load_config(None, "tiny", overrides)
    assert message in str(refused.value)
