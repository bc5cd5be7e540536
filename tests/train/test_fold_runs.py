"""`splitmatch folds`: one run per fold with the fold's classes unseen, both forms of scoring, the
mean, folds.json; a finished fold is not trained again. The world's folds and the shipped configs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from command_lines import cpu_eval_args, episodes_args, tiny_folds_args
from fold_folder import EPISODE_COUNT, EPISODES, FOLDS, SCHEME, make_fold_folder

from splitmatch.cli import main
from splitmatch.config.presets import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def run_folds(capsys, root, out, *extra) -> tuple[int, str, str]:
    """``folds`` on the tiny preset; with ``--episode-files`` in ``extra``, no ``--episode-count`` (a
    list scored as it stands refuses one)."""
    count = None if "--episode-files" in extra else EPISODE_COUNT
    code = main([*tiny_folds_args(root, out, "train.checkpoint_every=2", episode_count=count), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def folds_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("folds")
    folder = make_fold_folder(root / "data")
    code = main(tiny_folds_args(folder.root, root / "out", "train.checkpoint_every=2"))
    assert code == 0
    return folder, root / "out"


def test_each_fold_trains_with_its_classes_unseen_and_is_scored_both_ways(folds_run, capsys) -> None:
    folder, out = folds_run
    summary = json.loads((out / "folds.json").read_text())
    assert summary["scheme"] == SCHEME and summary["folds"] == [0, 1]
    for fold, classes in enumerate(FOLDS):
        run = out / f"fold_{fold}"
        split = json.loads((run / "split.json").read_text())
        assert split["classes"]["unseen"] == list(classes)
        result = summary["per_fold"][str(fold)]
        eval_json = json.loads((run / "eval.json").read_text())
        for key in ("miou_seen", "miou_unseen", "hiou", "miou"):
            assert result["generalized"][key] == pytest.approx(eval_json[key])
        # the episode form equals `eval --episodes` of the fold's checkpoint
        code = main(episodes_args(run / "model.safetensors", "--json", run / "check.json"))
        assert code == 0
        check = json.loads((run / "check.json").read_text())
        assert check["fold"] == fold
        assert result["episodes"]["miou"] == pytest.approx(check["miou"])
        assert result["episodes"]["fb_iou"] == pytest.approx(check["fb_iou"])
    mean = summary["mean"]
    per_fold = [summary["per_fold"][str(f)] for f in (0, 1)]
    assert mean["episode_miou"] == pytest.approx(sum(r["episodes"]["miou"] for r in per_fold) / 2)
    assert mean["hiou"] == pytest.approx(sum(r["generalized"]["hiou"] for r in per_fold) / 2)
    capsys.readouterr()


def test_a_finished_fold_is_not_trained_again(folds_run, capsys) -> None:
    folder, out = folds_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "folds.json"}
    summary = json.loads((out / "folds.json").read_text())
    code, stdout, _ = run_folds(capsys, folder.root, out)
    assert code == 0
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "folds.json"}
    assert after == before  # no file of a run written again: nothing trained, nothing rescored
    assert json.loads((out / "folds.json").read_text()) == summary
    assert "| mean of 2 |" in stdout and "episode mIoU" in stdout


def test_a_fold_trained_with_another_config_is_refused(folds_run, capsys) -> None:
    folder, out = folds_run
    code, _, stderr = run_folds(capsys, folder.root, out, "--set", "train.lr=0.5")
    assert code == 2 and "train.lr" in stderr and len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("damage", [b"{", b"[" * 100_000, b"[1, 2]", b'{"miou": "high"}', b"\xff\xfe"])
def test_stored_results_damaged_outside_the_program_are_computed_again(folds_run, damage, tmp_path, capsys) -> None:
    folder, finished = folds_run
    out = Path(shutil.copytree(finished, tmp_path / "out"))
    summary = json.loads((out / "folds.json").read_text())
    (out / "fold_0" / f"episodes_{SCHEME}_{EPISODE_COUNT}.json").write_bytes(damage)
    (out / "fold_1" / "eval.json").write_bytes(damage)
    code, _, stderr = run_folds(capsys, folder.root, out)
    assert code == 0 and stderr.count("is damaged") == 2, stderr
    again = json.loads((out / "folds.json").read_text())
    for fold in ("0", "1"):
        for form in ("episodes", "generalized"):
            for key, value in summary["per_fold"][fold][form].items():
                if isinstance(value, float):
                    assert again["per_fold"][fold][form][key] == pytest.approx(value, nan_ok=True), (fold, key)
    rescored = json.loads((out / "fold_1" / "eval.json").read_text())  # written whole again
    assert rescored["hiou"] == pytest.approx(summary["per_fold"]["1"]["generalized"]["hiou"], nan_ok=True)


def test_each_fold_scored_on_a_peers_list_as_eval_scores_it(folds_run, tmp_path, capsys) -> None:
    folder, finished = folds_run
    out = Path(shutil.copytree(finished, tmp_path / "out"))
    stored = {fold: (out / f"fold_{fold}" / f"episodes_{SCHEME}_{EPISODE_COUNT}.json").read_bytes() for fold in (0, 1)}
    lists = tmp_path / "lists"
    lists.mkdir()
    for fold, episodes in EPISODES.items():  # a shorter list per fold, in the <stem><TAB><class> form
        (lists / f"fold{fold}.txt").write_text("".join(f"{stem}\t{name}\n" for stem, name in episodes[1:4]))
    code, stdout, _ = run_folds(capsys, folder.root, out, "--episode-files", str(lists / "fold{fold}.txt"))
    assert code == 0 and "fold 0: the episode list fold0.txt, as it stands" in stdout
    summary = json.loads((out / "folds.json").read_text())
    assert summary["episode_files"] == str(lists / "fold{fold}.txt")
    for fold in (0, 1):
        episodes = summary["per_fold"][str(fold)]["episodes"]
        assert episodes["episodes"] == 3
        run = out / f"fold_{fold}"
        code = main(
            cpu_eval_args(
                run / "model.safetensors",
                "--episodes",
                "--episode-file",
                lists / f"fold{fold}.txt",
                "--json",
                tmp_path / "e.json",
            )
        )
        assert code == 0
        check = json.loads((tmp_path / "e.json").read_text())
        assert (episodes["miou"], episodes["fb_iou"]) == pytest.approx((check["miou"], check["fb_iou"]), nan_ok=True)
        # the stored list's scores stay beside the peer list's
        assert (run / f"episodes_{SCHEME}_{EPISODE_COUNT}.json").read_bytes() == stored[fold]
    capsys.readouterr()
    scores = sorted(out.rglob("episodes_*_file_*.json"))
    assert len(scores) == 2
    before = {path: path.stat().st_mtime_ns for path in scores}
    assert run_folds(capsys, folder.root, out, "--episode-files", str(lists / "fold{fold}.txt"))[0] == 0
    assert {path: path.stat().st_mtime_ns for path in scores} == before  # the same list is not scored again
    (lists / "fold1.txt").write_text("val_000\tyellow\n")  # a changed list is
    assert run_folds(capsys, folder.root, out, "--episode-files", str(lists / "fold{fold}.txt"))[0] == 0
    assert json.loads((out / "folds.json").read_text())["per_fold"]["1"]["episodes"]["episodes"] == 1


def test_peer_lists_are_checked_before_any_fold_trains(tmp_path, capsys) -> None:
    folder = make_fold_folder(tmp_path / "data")
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "fold0.txt").write_text("val_000\tred\n")
    (lists / "fold1.txt").write_text("val_000\tred\n")  # red is fold 0's class, not fold 1's
    for files, message in (
        (lists / "fold0.txt", "names one file for 2 folds: put {fold} where the fold number goes"),
        (lists / "missing{fold}.txt", "missing0.txt does not exist"),
        (lists / "fold{fold}.txt", "fold1.txt line 1: class 'red' is not one of this fold's classes"),
        (f"{lists / 'fold{fold}.txt'} --episode-count 5", "an episode count (5) would not be used"),
    ):
        path, *more = str(files).split(" ")
        code, _, stderr = run_folds(capsys, folder.root, tmp_path / "out", "--episode-files", path, *more)
        assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, (files, stderr)
        assert not (tmp_path / "out").exists()  # no fold trained, no folder made
    code, _, stderr = run_folds(
        capsys, folder.root, tmp_path / "out", "--folds", "0", "--episode-files", str(tmp_path / "out" / "folds.json")
    )
    assert code == 2 and "folds.json" in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "out").exists()


def test_every_fold_is_checked_before_the_first_trains(tmp_path, capsys) -> None:
    folder = make_fold_folder(tmp_path / "data")
    for extra, message in (
        (["--background-name", "red"], "an episode asks for 'red', which is also the background name"),
        (["--background-name", "x" * 300], "the background name (--background-name)"),
    ):
        code, _, stderr = run_folds(capsys, folder.root, tmp_path / "out", *extra)
        assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr
        assert not (tmp_path / "out").exists()  # no fold trained, no folder made
    (tmp_path / "out" / "fold_1").mkdir(parents=True)
    (tmp_path / "out" / "fold_1" / "metrics.jsonl").write_text("[" * 100_000 + "\n{}\n")  # fold 1's run is damaged
    code, _, stderr = run_folds(capsys, folder.root, tmp_path / "out")
    assert code == 2 and "fold_1/metrics.jsonl line 1 is not a JSON object" in stderr, stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fold_1"]  # fold 0 was not trained first


def test_one_fold_alone_and_bad_requests(tmp_path, capsys) -> None:
    folder = make_fold_folder(tmp_path / "data")
    code, stdout, _ = run_folds(capsys, folder.root, tmp_path / "one", "--folds", "1")
    assert code == 0 and "| mean of 1 |" in stdout
    assert not (tmp_path / "one" / "fold_0").exists()
    for extra, message in (
        (["--folds", "2"], "fold must be 0..1 for tiny-2i, got 2"),
        (["--set", "data.unseen=[red]"], "folds sets data.unseen to each fold's classes"),
        (["--fold-scheme", "other"], "has no fold scheme 'other'"),
    ):
        code, _, stderr = run_folds(capsys, folder.root, tmp_path / "bad", *extra)
        assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, (extra, stderr)
    assert not (tmp_path / "bad" / "fold_0").exists()
    with pytest.raises(SystemExit) as refused:  # the parser's refusal: usage, then one error line
        run_folds(capsys, folder.root, tmp_path / "bad", "--folds", "0,0")
    assert (
        refused.value.code == 2 and "--folds: must be distinct comma-separated fold numbers" in capsys.readouterr().err
    )


def test_the_world_in_four_folds_of_three(tmp_path, capsys) -> None:
    from splitmatch.data.episode_lists import read_episodes
    from splitmatch.data.fold_schemes import fold_class_split, read_fold_scheme
    from splitmatch.data.folder import read_label
    from splitmatch.world.fold_benchmark import WORLD_MIN_OBJECT_PIXELS, write_world_folds
    from splitmatch.world.generator import CLASS_NAMES, WorldSpec, generate_world

    world = generate_world(tmp_path / "world", spec=WorldSpec(num_train=0, num_val=40, num_captions=0), progress=False)
    before = {p: p.read_bytes() for p in world.root.rglob("*") if p.is_file()}
    write_world_folds(world, counts=(50,))
    after = {p: p.read_bytes() for p in world.root.rglob("*") if p.is_file()}
    assert {p: after[p] for p in before} == before  # images, labels, splits and classes as they were
    assert {p.relative_to(world.root).parts[0] for p in set(after) - set(before)} == {"folds.json", "episodes"}
    scheme = read_fold_scheme(world)
    assert scheme.name == "world-3i" and [len(f) for f in scheme.folds] == [3, 3, 3, 3]
    assert [c for fold in scheme.folds for c in fold] == list(CLASS_NAMES[1:])  # background in no fold
    assert fold_class_split(world, 1).unseen == ("star", "heart", "ring")

    for fold in range(4):
        episodes = read_episodes(world, fold, 50)
        assert len(episodes) == 50
        for episode in episodes[:10]:
            label = read_label(world.root / "labels" / f"{episode.stem}.png", len(CLASS_NAMES))
            assert (label == CLASS_NAMES.index(episode.class_name)).sum() >= WORLD_MIN_OBJECT_PIXELS


@pytest.mark.parametrize(
    ("name", "unseen_pixels", "transductive"),
    [
        ("pascal-5i", "ignore", False),
        ("pascal-5i-hsnet", "background", False),
        ("coco-20i", "ignore", False),
        ("coco-20i-hsnet", "background", False),
        ("voc-transductive", "ignore", True),
        ("coco-stuff-transductive", "ignore", True),
        ("world-3i", "ignore", False),
    ],
)
def test_protocol_configs_say_what_they_are(name, unseen_pixels, transductive) -> None:
    config = load_config(str(CONFIGS / f"{name}.yaml"), None, [])
    assert config.data.unseen_pixels == unseen_pixels and config.train.transductive == transductive
    assert config.data.unseen is None  # folds (or classes.json) choose the unseen classes
    if transductive:
        assert config.train.transductive_start == 0.5 and config.train.transductive_threshold == 0.0
        # ZegCLIP's rule and schedule (tests/train/test_transductive_rules.py)
        assert config.train.transductive_pixels == "unseen" and config.train.transductive_schedule == "restart"
