"""The proxy from the command line on a prepared VOC layout: train --proxy, eval, pseudo-masks --evaluate --proxy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from command_lines import predict_args, tiny_train_args
from fabricate import fabricate_voc
from PIL import Image

from splitmatch.cli import main
from splitmatch.data.class_lists import BUILTIN_SPLITS
from splitmatch.data.folder import DatasetFolder
from splitmatch.model.checkpoint import read_record
from splitmatch.pseudo.quality import PROXY_NOTE, UNSEEN_NAMES_NOTE

VOC = BUILTIN_SPLITS["voc"]
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "candidate_scoring.py"
# The fabricated training images hold aeroplane, bicycle, bird and boat (one each) and an unseen block.
PROXY = ["--proxy", "--set", "data.proxy.classes=[aeroplane, bird]", "--set", "data.proxy.val_fraction=0.25"]


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("voc")
    fabricate_voc(root / "VOC2012", count=6)
    assert (
        main(
            ["prepare", "voc", "--src", str(root / "VOC2012"), "--dst", str(root / "voc"), "--quiet", "--allow-partial"]
        )
        == 0
    )
    return root / "voc"


def _run(voc: Path, out: Path, *extra: str) -> list[str]:
    return [*tiny_train_args(voc, out, "train.checkpoint_every=2"), *extra]


@pytest.fixture(scope="module")
def proxy_run(voc, tmp_path_factory) -> tuple[Path, list[str]]:
    """A proxy run on the fabricated VOC, and the splits of the folder it read while it trained."""
    asked: list[str] = []
    stems = DatasetFolder.stems

    def recording(self, split):
        asked.append(split)
        return stems(self, split)

    DatasetFolder.stems = recording
    try:
        out = tmp_path_factory.mktemp("runs") / "proxy"
        assert main(_run(voc, out, *PROXY)) == 0
    finally:
        DatasetFolder.stems = stems
    return out, asked


def test_a_proxy_run_never_reads_the_benchmarks_validation_split(proxy_run):
    _, asked = proxy_run
    assert set(asked) == {"train"}  # the split lists read from disk: the training split's alone, never 'val'


def test_a_proxy_run_records_what_it_held_out(proxy_run):
    out, _ = proxy_run
    split = json.loads((out / "split.json").read_text())
    assert split["proxy"]["held_out"] == ["aeroplane", "bird"] and split["proxy"]["left_out"] == list(VOC.unseen)
    assert len(split["proxy"]["val_stems"]) == 1 and set(split["classes"]["unseen"]) == {
        "aeroplane",
        "bird",
        *VOC.unseen,
    }
    record = read_record(out / "model.safetensors")
    assert record["config"].data.proxy.enabled and record["config"].data.proxy.classes == ["aeroplane", "bird"]
    assert not {"aeroplane", "bird", *VOC.unseen} & set(record["train_classes"])
    evaluated = json.loads((out / "eval.json").read_text())
    assert evaluated["proxy"]["held_out"] == ["aeroplane", "bird"]
    assert set(evaluated["per_class_iou"]) == set(VOC.seen_names)  # the benchmark's unseen classes: left out


def test_eval_names_a_proxy_checkpoint_and_scores_its_proxy(proxy_run, tmp_path, capsys):
    out, _ = proxy_run
    capsys.readouterr()
    assert (
        main(["eval", "--checkpoint", str(out / "model.safetensors"), "--quiet", "--json", str(tmp_path / "m.json")])
        == 0
    )
    printed = capsys.readouterr().out
    assert "proxy run: seen classes aeroplane, bird held out as pseudo-unseen (U)" in printed
    assert "not a benchmark model" in printed and "scored on split 'proxy-val'" in printed
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["proxy"]["scored_split"] == "proxy-val"
    assert metrics["hiou"] == json.loads((out / "eval.json").read_text())["hiou"]  # as training scored it
    assert main(["eval", "--checkpoint", str(out / "model.safetensors"), "--quiet", "--split", "val"]) == 0
    assert "proxy run:" in capsys.readouterr().out  # on any split, a proxy checkpoint says what it is


def test_a_proxy_run_resumes_with_the_classes_it_drew(voc, tmp_path):
    out = tmp_path / "drawn"
    assert main(_run(voc, out, "--proxy")) == 0
    held = read_record(out / "model.safetensors")["config"].data.proxy.classes
    assert held and len(held) == 4  # 15 seen x 5 unseen / 20 classes, rounded
    resumed = _run(voc, out, "--proxy", "--resume")
    resumed[resumed.index("train.iterations=2")] = "train.iterations=3"
    assert main(resumed) == 0
    assert read_record(out / "model.safetensors")["config"].data.proxy.classes == held


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "data.proxy.classes=[sheep]"], "data.proxy.classes names unseen classes (sheep)"),
        (["--set", "data.proxy.classes=[aeroplane, unicorn]"], "does not have: unicorn"),
    ],
)
def test_a_proxy_of_unseen_or_unknown_classes_is_refused_in_one_line(voc, tmp_path, capsys, extra, message):
    capsys.readouterr()
    assert main(_run(voc, tmp_path / "run", "--proxy", *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not (tmp_path / "run").exists()


def _pseudo(voc: Path, tmp_path: Path, capsys, *extra: str) -> tuple[dict, str]:
    capsys.readouterr()
    report = tmp_path / f"report{len(list(tmp_path.glob('report*')))}.json"
    args = [
        "pseudo-masks",
        "--preset",
        "tiny",
        "--quiet",
        "--set",
        f"data.root={voc}",
        "--evaluate",
        "--json",
        str(report),
        *extra,
    ]
    assert main(args) == 0
    return json.loads(report.read_text()), capsys.readouterr().out


def test_pseudo_masks_of_a_proxy_are_scored_on_its_held_out_classes_only(voc, tmp_path, capsys):
    proxy, printed = _pseudo(voc, tmp_path, capsys, *PROXY)
    assert list(proxy["per_class"]) == ["aeroplane", "bird"] and proxy["note"] == PROXY_NOTE
    assert proxy["scored_classes"] == VOC.seen_names and proxy["images"] == 3  # one of 4 kept for proxy-val
    assert proxy["overall"]["objects"] == 2  # one aeroplane, one bird
    assert "against the proxy's held-out seen classes (aeroplane, bird)" in printed and UNSEEN_NAMES_NOTE not in printed
    benchmark, printed = _pseudo(voc, tmp_path, capsys)
    assert set(benchmark["per_class"]) == set(VOC.unseen)
    assert printed.count(UNSEEN_NAMES_NOTE) == 1  # said once: a diagnostic, not a way to choose


def test_a_proxys_pseudo_mask_scores_do_not_depend_on_the_unseen_labels(voc, tmp_path, capsys):
    import shutil

    copy = tmp_path / "voc"
    shutil.copytree(voc, copy, ignore=shutil.ignore_patterns("pseudo_masks"))
    proxy, _ = _pseudo(copy, tmp_path, capsys, *PROXY)
    benchmark, _ = _pseudo(copy, tmp_path, capsys)
    # Relabel every unseen pixel as another unseen class: the unannotated region stays the same.
    unseen = VOC.unseen_ids
    for path in (copy / "labels").glob("*.png"):
        label = np.array(Image.open(path))
        moved = label.copy()
        for i, class_id in enumerate(unseen):
            moved[label == class_id] = unseen[(i + 1) % len(unseen)]
        Image.fromarray(moved).save(path)
    proxy_again, _ = _pseudo(copy, tmp_path, capsys, *PROXY)
    benchmark_again, _ = _pseudo(copy, tmp_path, capsys)
    assert proxy_again == proxy
    assert benchmark_again["per_class"] != benchmark["per_class"]  # the diagnostic reads those labels


def test_pseudo_masks_with_a_proxy_refuse_the_test_split_and_the_full_label_figure(voc, tmp_path, capsys):
    base = ["pseudo-masks", "--preset", "tiny", "--quiet", "--set", f"data.root={voc}", "--evaluate", "--proxy"]
    assert main([*base, "--split", "val"]) == 2
    assert "the benchmark's validation (test) split, which never chooses a setting" in capsys.readouterr().err
    assert main([*base, "--figure", str(tmp_path / "f.png")]) == 2
    assert "not with --proxy" in capsys.readouterr().err and not (tmp_path / "f.png").exists()


def _score(checkpoint: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(SCRIPT.parent.parent))
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--checkpoint",
            str(checkpoint),
            "--max-images",
            "1",
            "--json",
            str(tmp_path / "scores.json"),
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.mark.slow
def test_candidate_scoring_compares_variants_on_the_proxy_and_refuses_a_benchmark_model(proxy_run, voc, tmp_path):
    out, _ = proxy_run
    done = _score(out / "model.safetensors", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["split"] == "proxy-val" and scores["proxy"]["held_out"] == ["aeroplane", "bird"]
    assert len(scores["variants"]) == 9
    benchmark = tmp_path / "benchmark"
    assert main(_run(voc, benchmark)) == 0
    refused = _score(benchmark / "model.safetensors", tmp_path)
    assert refused.returncode != 0 and "is not a proxy model" in refused.stderr


def test_predict_names_a_proxy_model(proxy_run, voc, tmp_path, capsys):
    out, _ = proxy_run
    image = next((voc / "images").iterdir())
    capsys.readouterr()
    assert (
        main(predict_args(out / "model.safetensors", "background,sheep", tmp_path / "pred", "--quiet", str(image))) == 0
    )
    printed = capsys.readouterr().out
    assert "a pseudo-unseen proxy model (seen classes held out in training: aeroplane, bird)" in printed
