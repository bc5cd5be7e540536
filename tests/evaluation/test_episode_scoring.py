"""`splitmatch eval --episodes`: a fold checkpoint on its binary test episodes, checked against an
independent computation (the predictor's labels, areas summed by hand) on hand-made episodes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fold_folder import EPISODE_COUNT, EPISODES, FOLDS, make_fold_folder

from splitmatch.cli import main
from splitmatch.data.folder import read_label


@pytest.fixture(scope="module")
def fold_run(tmp_path_factory):
    """A tiny model trained two steps on fold 0 (red, green unseen) of the hand-made fold folder."""
    from splitmatch.config.presets import preset
    from splitmatch.train.trainer import train

    root = tmp_path_factory.mktemp("fold_run")
    folder = make_fold_folder(root / "data")
    config = preset("tiny")
    config.data.root = str(folder.root)
    config.data.unseen = list(FOLDS[0])
    config.train.iterations = 2
    config.train.checkpoint_every = 2
    config.validate()
    metrics = train(config, root / "run", progress=False)
    return folder, root / "run" / "model.safetensors", metrics


def run_eval(capsys, *arguments) -> tuple[int, str, str]:
    code = main(["eval", *map(str, arguments), "--device", "cpu", "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_episodes(capsys, checkpoint, *extra) -> tuple[int, str, str]:
    """``eval --episodes`` of ``checkpoint`` on the fold folder's lists of ``EPISODE_COUNT`` episodes."""
    return run_eval(capsys, "--checkpoint", checkpoint, "--episodes", "--episode-count", EPISODE_COUNT, *extra)


def hsnet_resized(array: np.ndarray, size: int) -> np.ndarray:
    """HSNet's test.py at 400: the query mask through F.interpolate(mode='nearest') to size x size."""
    import torch
    import torch.nn.functional as F

    resized = F.interpolate(torch.from_numpy(array.astype(np.float32))[None, None], (size, size), mode="nearest")
    return resized[0, 0].numpy().astype(array.dtype)


def by_hand(folder, checkpoint, episodes, fold_classes, background="background", size=None):
    """The metric computed independently: the predictor labels each image with [background, class],
    and intersections and unions are summed here in plain numpy (at ``size x size`` as HSNet's test)."""
    from splitmatch.predict.predictor import Predictor

    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    names = folder.classes.names
    per_class = {name: [0, 0] for name in fold_classes}
    totals = np.zeros((2, 2), dtype=np.int64)  # [background, foreground] x [intersection, union]
    cases = {"empty": 0, "full": 0}
    wrong = {"other_classes": 0, "background_class": 0}
    for stem, class_name in episodes:
        label = read_label(folder.root / "labels" / f"{stem}.png", len(names))
        labels = predictor.predict(folder.root / "images" / f"{stem}.png", [background, class_name])
        if size is not None:
            label, labels = hsnet_resized(label, size), hsnet_resized(labels, size)
        valid = label != 255
        truth = (label == names.index(class_name)) & valid
        cases["empty"] += int(not truth.any())
        cases["full"] += int(truth.all())
        predicted = (labels == 1) & valid
        for side, (p, t) in enumerate(((~predicted & valid, ~truth & valid), (predicted, truth))):
            totals[side] += [(p & t).sum(), (p | t).sum()]
        wrong["background_class"] += int((predicted & ~truth & (label == 0)).sum())
        wrong["other_classes"] += int((predicted & ~truth & (label != 0)).sum())
        per_class[class_name][0] += int((predicted & truth).sum())
        per_class[class_name][1] += int((predicted | truth).sum())
    iou = {name: 100.0 * i / max(u, 1) for name, (i, u) in per_class.items()}
    fb = np.mean([100.0 * totals[s, 0] / totals[s, 1] for s in (0, 1)])
    return iou, float(np.mean(list(iou.values()))), float(fb), cases | {"wrong": wrong}


def test_episode_scores_match_an_independent_computation(fold_run, tmp_path, capsys) -> None:
    folder, checkpoint, _ = fold_run
    out = tmp_path / "episodes.json"
    code, stdout, _ = run_episodes(capsys, checkpoint, "--json", out)
    assert code == 0
    result = json.loads(out.read_text())
    assert result["fold"] == 0 and result["fold_classes"] == list(FOLDS[0])  # found from the checkpoint's split
    assert result["episodes"] == len(EPISODES[0]) and result["background_name"] == "background"
    iou, miou, fb, cases = by_hand(folder, checkpoint, EPISODES[0], FOLDS[0])
    assert result["false_positives"] == cases.pop("wrong")
    assert cases == {"empty": 1, "full": 1}  # the hand-made cases are there: no foreground, all foreground
    assert result["per_class_iou"] == pytest.approx(iou, abs=1e-9)
    assert result["miou"] == pytest.approx(miou, abs=1e-9)
    assert result["fb_iou"] == pytest.approx(fb, abs=1e-9)
    assert "episodes of fold 0 of tiny-2i" in stdout and "FB-IoU" in stdout and "other classes' objects" in stdout
    assert "transductive" not in stdout


def test_episodes_scored_at_hsnets_size(fold_run, tmp_path, capsys) -> None:
    folder, checkpoint, _ = fold_run
    out = tmp_path / "sized.json"
    code, stdout, _ = run_episodes(capsys, checkpoint, "--episode-size", 40, "--json", out)
    assert code == 0 and "scored at 40 x 40" in stdout
    result = json.loads(out.read_text())
    iou, miou, fb, cases = by_hand(folder, checkpoint, EPISODES[0], FOLDS[0], size=40)
    assert result["episode_size"] == 40 and result["false_positives"] == cases["wrong"]
    assert result["per_class_iou"] == pytest.approx(iou, abs=1e-9) and result["fb_iou"] == pytest.approx(fb, abs=1e-9)


def test_another_fold_and_background_name_and_the_warning(fold_run, tmp_path, capsys) -> None:
    folder, checkpoint, _ = fold_run
    out = tmp_path / "fold1.json"
    code, stdout, _ = run_episodes(capsys, checkpoint, "--fold", 1, "--background-name", "others", "--json", out)
    assert code == 0
    assert "were seen in training: not a zero-shot score" in stdout  # blue and yellow were trained on
    result = json.loads(out.read_text())
    iou, miou, fb, _ = by_hand(folder, checkpoint, EPISODES[1], FOLDS[1], background="others")
    assert result["per_class_iou"] == pytest.approx(iou, abs=1e-9)
    assert result["miou"] == pytest.approx(miou, abs=1e-9) and result["fb_iou"] == pytest.approx(fb, abs=1e-9)
    assert result["background_name"] == "others"


def test_a_peers_episode_file_is_scored_as_it_stands(fold_run, tmp_path, capsys) -> None:
    from splitmatch.data.episode_lists import Episode, episode_file_text

    _, checkpoint, _ = fold_run
    stored, given, peer = tmp_path / "stored.json", tmp_path / "given.json", tmp_path / "peer.txt"
    assert run_episodes(capsys, checkpoint, "--json", stored)[0] == 0
    peer.write_text(episode_file_text([Episode(*pair) for pair in reversed(EPISODES[0])], ["a peer's list"]))
    code, stdout, _ = run_eval(
        capsys, "--checkpoint", checkpoint, "--episodes", "--episode-file", peer, "--json", given
    )
    assert code == 0 and "from the episode list peer.txt, as it stands" in stdout
    expected, got = json.loads(stored.read_text()), json.loads(given.read_text())
    assert got["per_class_iou"] == expected["per_class_iou"] and got["miou"] == expected["miou"]
    assert got["episode_count"] == len(EPISODES[0]) and "peer.txt" in got["episode_source"]
    peer.write_text("val_000\tred\nval_999\tgreen\n")
    code, _, stderr = run_eval(capsys, "--checkpoint", checkpoint, "--episodes", "--episode-file", peer)
    assert code == 2 and "peer.txt line 2: image 'val_999' is not in the val split" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_the_generalized_form_is_eval_of_the_fold_checkpoint(fold_run, capsys) -> None:
    _, checkpoint, metrics = fold_run
    code, stdout, _ = run_eval(capsys, "--checkpoint", checkpoint)
    assert code == 0
    assert "red" in stdout and "unseen" in stdout
    assert sorted(metrics["other_names"]) == sorted(FOLDS[0])  # the fold's classes are U, every other class S


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fold", "1"], "--fold is an option of eval --episodes"),
        (["--episode-file", "x.txt"], "--episode-file is an option of eval --episodes"),
        (["--episodes", "--split", "train"], "not with --split"),
        (["--episodes", "--max-images", "2"], "not with --max-images"),
        (["--episodes", "--episode-count", "7"], "no list of 7 episodes for fold 0 of tiny-2i"),
        (["--episodes", "--fold", "5", "--episode-count", "5"], "fold must be 0..1 for tiny-2i, got 5"),
        (["--episodes", "--background-name", "red", "--episode-count", "5"], "also the background name"),
    ],
)
def test_bad_episode_options_are_one_line(fold_run, capsys, extra, message) -> None:
    _, checkpoint, _ = fold_run
    code, _, stderr = run_eval(capsys, "--checkpoint", checkpoint, *extra)
    assert code == 2
    assert message in stderr and len(stderr.strip().splitlines()) == 1


def test_a_checkpoint_of_no_fold_needs_the_fold_named(tmp_path, capsys) -> None:
    from splitmatch.config.presets import preset
    from splitmatch.model.build import build_segmentor
    from splitmatch.model.checkpoint import save_checkpoint

    folder = make_fold_folder(tmp_path / "data")
    config = preset("tiny")
    config.data.root = str(folder.root)
    classes = folder.classes
    model = build_segmentor(config.clip, config.decoder)
    checkpoint = save_checkpoint(tmp_path / "model.safetensors", model, config, classes, classes.seen_names, 1)
    code, _, stderr = run_episodes(capsys, checkpoint)
    assert code == 2 and "which is no fold of tiny-2i; pass --fold N (0..1)" in stderr


def test_a_scoring_size_beyond_the_bound_is_refused_before_any_image_is_scored(fold_run, capsys) -> None:
    from splitmatch.errors import ArgumentValueError
    from splitmatch.evaluation.episode_scoring import check_score_size

    check_score_size(None)
    check_score_size(400)
    for bad in (0, 4097, 10**9, 400.0, True):
        with pytest.raises(ArgumentValueError, match=r"integer in 1\.\.4096"):
            check_score_size(bad)
    _, checkpoint, _ = fold_run
    with pytest.raises(SystemExit) as refused:  # the parser refuses it, before the checkpoint is read
        run_eval(capsys, "--checkpoint", checkpoint, "--episodes", "--episode-size", "1000000000")
    assert refused.value.code == 2
    assert "must be a side in 1..4096 pixels" in capsys.readouterr().err.strip().splitlines()[-1]
