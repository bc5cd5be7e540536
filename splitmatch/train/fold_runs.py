"""The four folds of a fold benchmark (PASCAL-5i, COCO-20i, the world's): train, score both ways, average.

``splitmatch folds --config C --out DIR`` trains fold i into ``DIR/fold_<i>`` with
``data.unseen`` = the fold's classes (``folds.json`` of ``data.root``), then scores its model

* on the fold's binary test episodes (:mod:`splitmatch.evaluation.episode_scoring`): episode
  mIoU and FB-IoU, HSNet's protocol, and
* in the **generalized** form: every class of the folder, the fold's as unseen, on the val
  split: mIoU(S), mIoU(U), hIoU (the run's own ``eval.json``),

and writes ``DIR/folds.json`` with every fold's results and the means over the folds. A
folder whose run finished (its ``model.safetensors`` at ``train.iterations`` and its
``eval.json``, trained with this config) is not trained again, and stored episode scores of
the same model and settings are not recomputed; an unfinished run continues as ``--resume``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from splitmatch.config import ConfigError, ExperimentConfig, merge, resolve_paths
from splitmatch.data.episode_lists import DEFAULT_EPISODE_COUNT
from splitmatch.data.fold_schemes import FoldScheme, read_fold_scheme
from splitmatch.data.folder import DatasetFolder
from splitmatch.data.published_episodes import fold_episodes
from splitmatch.device import resolve_device
from splitmatch.evaluation.episode_scoring import (
    DEFAULT_BACKGROUND_NAME,
    check_episode_names,
    check_score_size,
    evaluate_episodes,
    evaluation_dict,
)
from splitmatch.evaluation.metrics import SUMMARY_KEYS
from splitmatch.inference.segmentation import candidate_scoring
from splitmatch.model import checkpoint as ckpt
from splitmatch.model.build import build_segmentor
from splitmatch.storage.digest import file_digest
from splitmatch.storage.files import read_stored_result, write_json
from splitmatch.train.run_folder import check_resumable
from splitmatch.train.trainer import check_run, train

RESULTS_FILE = "folds.json"
FALSE_POSITIVE_KEYS = ("other_classes", "background_class")
GENERALIZED_KEYS = ("miou_seen", "miou_unseen", "hiou", "miou")


def fold_config(config: ExperimentConfig, scheme: FoldScheme, fold: int) -> ExperimentConfig:
    """``config`` with fold ``fold``'s classes unseen (``data.unseen``) and the fold in its name.

    Raises:
        ConfigError: the config chooses unseen classes itself, or is a proxy.
    """
    data = config.data
    if data.unseen is not None or data.unseen_fraction is not None or data.proxy.enabled:
        raise ConfigError(
            "folds sets data.unseen to each fold's classes; the config sets data.unseen, data.unseen_fraction "
            "or data.proxy.enabled itself (leave them unset)"
        )
    update = {"name": f"{config.name}-{scheme.name}-fold{fold}", "data": {"unseen": list(scheme.fold(fold))}}
    return merge(config, update).validate()


def finished_metrics(run_dir: Path, config: ExperimentConfig) -> dict | None:
    """The ``eval.json`` of a run that finished with ``config`` in ``run_dir``; ``None`` if it did not
    finish, or if its ``eval.json`` was damaged (said on stderr): ``train(resume=True)`` then scores
    the finished model again from its last checkpoint.

    Raises:
        RunFolderError: the folder holds a run trained with another config.
        CheckpointError: its ``model.safetensors`` is damaged.
    """
    model, metrics = run_dir / "model.safetensors", run_dir / "eval.json"
    if not (model.is_file() and metrics.is_file()):
        return None
    record = ckpt.read_record(model)
    if int(record["step"]) != config.train.iterations:
        return None  # trained for fewer steps: continued by train(resume=True)
    check_resumable(record["config"], resolve_paths(config), int(record["step"]), model)
    return read_stored_result(metrics, SUMMARY_KEYS, "it is scored again")


def episode_scores(
    run_dir: Path,
    config: ExperimentConfig,
    folder: DatasetFolder,
    scheme: FoldScheme,
    fold: int,
    count: int | None,
    background_name: str,
    device,
    progress: bool,
    episode_size: int | None = None,
    episode_file: Path | None = None,
) -> dict:
    """The fold's episode scores of ``run_dir/model.safetensors``, stored beside it and reused while
    the model, the settings and the episode list are the same.

    ``episode_file``: a peer's list for this fold (``folds --episode-files``), scored as
    ``eval --episodes --episode-file`` scores it; ``None``: the folder's stored list."""
    given_count, count = count, DEFAULT_EPISODE_COUNT if count is None else count
    path = run_dir / "model.safetensors"
    record = ckpt.read_record(path)
    settings = {
        "model_digest": record["digest"],
        "scheme": scheme.name,
        "fold": fold,
        "episode_count": count,
        "background_name": background_name,
        "seen_calibration": config.inference.seen_calibration,
        "episode_size": episode_size,
    }
    stored = run_dir / f"episodes_{scheme.name}_{count}.json"
    if episode_file is not None:  # its own record, so that the stored list's scores stay
        settings["episode_file_sha256"] = file_digest(episode_file)
        stored = run_dir / f"episodes_{scheme.name}_{count}_file_{settings['episode_file_sha256'][:12]}.json"
    result = read_stored_result(stored, ("miou", "fb_iou"), "the episodes are scored again")
    if result is not None and all(result.get(key) == value for key, value in settings.items()):
        wrong = result.get("false_positives")
        if isinstance(wrong, dict) and all(_is_count(wrong.get(key)) for key in FALSE_POSITIVE_KEYS):
            return result
    model = build_segmentor(config.clip, config.decoder)
    ckpt.load_model_weights(model, path, record)
    model = model.to(device).eval()
    fold_classes = scheme.fold(fold)
    episodes, source = fold_episodes(folder, scheme, fold, given_count, episode_file)
    evaluation = evaluate_episodes(
        model,
        folder,
        episodes,
        fold_classes,
        config.inference,
        background_name,
        _trained_names(record),
        candidate_scoring(config),
        progress=progress,
        score_size=episode_size,
    )
    result = settings | {"fold_classes": list(fold_classes), "episode_source": source} | evaluation_dict(evaluation)
    write_json(stored, result)
    return result


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _trained_names(record: dict) -> set[str]:
    """The names a checkpoint was trained on, with their synonyms."""
    trained = set(record["train_classes"])
    synonyms = record["classes"].synonyms
    return trained | {more for name in trained for more in synonyms.get(name, ())}


def run_folds(
    config: ExperimentConfig,
    out: str | Path,
    folds: Sequence[int] | None = None,
    scheme: str | None = None,
    episode_count: int | None = None,
    background_name: str = DEFAULT_BACKGROUND_NAME,
    progress: bool = True,
    episode_size: int | None = None,
    episode_files: str | None = None,
) -> dict:
    """Trains and scores each fold in ``out/fold_<i>`` and writes ``out/folds.json``; returns its content.

    Args:
        config: the experiment; ``data.root`` is a folder with ``folds.json`` and episode lists.
        folds: which folds (default all, in order).
        scheme: the fold scheme of ``folds.json`` (default the folder's).
        episode_count: which stored list, by length, or how many episodes a peer's pairs file or
            pickle stands for (``None``: 1,000; refused beside a list scored as it stands).
        episode_size: score the episodes at ``N x N`` (HSNet's 400), not at the label's size.
        episode_files: score each fold on a peer's list instead of the stored one: a path in
            which ``{fold}`` stands for the fold number (HSNet's ``fold{fold}.txt``); a path
            without it only when one fold is chosen (:func:`episode_files_of_folds`).
    """
    check_score_size(episode_size)  # before any fold trains
    out = Path(out)
    config = resolve_paths(config)
    folder = DatasetFolder(config.data.root)
    fold_scheme = read_fold_scheme(folder, scheme)
    files = episode_files_of_folds(episode_files, fold_scheme, folds)
    configs, finished = fold_plan(config, out, folder, fold_scheme, folds, episode_count, background_name, files)
    chosen = list(configs)
    device = resolve_device("auto")
    results = {}
    for fold in chosen:
        run_dir = out / f"fold_{fold}"
        generalized = finished[fold]
        if generalized is None:
            generalized = train(configs[fold], run_dir, resume=True, progress=progress)
        episodes = episode_scores(
            run_dir,
            configs[fold],
            folder,
            fold_scheme,
            fold,
            episode_count,
            background_name,
            device,
            progress,
            episode_size,
            files[fold],
        )
        results[fold] = {
            "classes": list(fold_scheme.fold(fold)),
            "episodes": episodes,
            "generalized": {key: generalized[key] for key in SUMMARY_KEYS},
        }
    summary = {
        "scheme": fold_scheme.name,
        "folds": chosen,
        "episode_count": DEFAULT_EPISODE_COUNT if episode_count is None else episode_count,
        "background_name": background_name,
        "episode_size": episode_size,
        "episode_files": episode_files,
        "unseen_pixels": config.data.unseen_pixels,
        "transductive": config.train.transductive,
        "mean": mean_over(results),
        "per_fold": {str(fold): result for fold, result in results.items()},
    }
    write_json(out / RESULTS_FILE, summary)
    return summary


def fold_plan(
    config: ExperimentConfig,
    out: Path,
    folder: DatasetFolder,
    scheme: FoldScheme,
    folds: Sequence[int] | None,
    episode_count: int | None,
    background_name: str,
    episode_files: dict[int, Path | None] | None = None,
) -> tuple[dict[int, ExperimentConfig], dict[int, dict | None]]:
    """Each chosen fold's config and its finished run's metrics (``None``: to train), after every
    check a fold would make before it trains or is scored: the fold numbers, the fold configs, every
    episode list and the names the episodes give the model (the background name), and each fold's
    run folder (a finished run of this config, or one :func:`~splitmatch.train.trainer.check_run`
    accepts). Nothing is trained or written."""
    chosen = list(range(len(scheme.folds))) if folds is None else list(folds)
    for fold in chosen:
        scheme.fold(fold)  # an unknown fold is refused before anything trains
    configs = {fold: fold_config(config, scheme, fold) for fold in chosen}
    for fold in chosen:  # every episode list, and the names given with it, before anything trains
        episode_file = (episode_files or {}).get(fold)
        episodes, _ = fold_episodes(folder, scheme, fold, episode_count, episode_file)
        check_episode_names(folder.classes, episodes, background_name)
    finished = {fold: finished_metrics(out / f"fold_{fold}", configs[fold]) for fold in chosen}
    images_checked = False
    for fold in chosen:
        if finished[fold] is None:
            check_run(configs[fold], out / f"fold_{fold}", resume=True, images=not images_checked)
            images_checked = True
    return configs, finished


FOLD_FIELD = "{fold}"


def episode_files_of_folds(
    episode_files: str | Path | None, scheme: FoldScheme, folds: Sequence[int] | None
) -> dict[int, Path | None]:
    """Each chosen fold's peer list from ``folds --episode-files`` (``{fold}`` replaced by the fold
    number), or ``None`` per fold when none is given. A path without ``{fold}`` would score every
    fold on one fold's list, so it is taken only when one fold is chosen."""
    chosen = list(range(len(scheme.folds))) if folds is None else list(folds)
    if episode_files is None:
        return dict.fromkeys(chosen)
    episode_files = str(episode_files)
    if FOLD_FIELD not in episode_files and len(chosen) != 1:
        raise ConfigError(
            f"--episode-files {episode_files!r} names one file for {len(chosen)} folds: put {FOLD_FIELD} "
            "where the fold number goes (e.g. splits/pascal/val/fold{fold}.txt), or choose one fold with --folds"
        )
    return {fold: Path(episode_files.replace(FOLD_FIELD, str(fold))) for fold in chosen}


def mean_over(results: dict[int, dict]) -> dict:
    """Means over the folds: episode mIoU and FB-IoU (HSNet's benchmark number), and the generalized metrics."""
    mean = {
        "episode_miou": _mean([r["episodes"]["miou"] for r in results.values()]),
        "episode_fb_iou": _mean([r["episodes"]["fb_iou"] for r in results.values()]),
    }
    for key in GENERALIZED_KEYS:
        mean[key] = _mean([r["generalized"][key] for r in results.values()])
    return mean


def _mean(values: list) -> float:
    finite = [float(v) for v in values if v is not None and v == v]
    return float(np.mean(finite)) if len(finite) == len(values) and finite else float("nan")


def format_folds_table(summary: dict, digits: int = 1) -> str:
    """Per fold and the mean: episode mIoU and FB-IoU, then the generalized mIoU(S), mIoU(U), hIoU."""

    def cell(value) -> str:
        return "n/a" if value is None or value != value else f"{value:.{digits}f}"

    header = (
        f"| fold ({summary['scheme']}) | unseen classes | episode mIoU | episode FB-IoU | mIoU(S) | mIoU(U) | hIoU |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for fold, result in summary["per_fold"].items():
        episodes, generalized = result["episodes"], result["generalized"]
        rows.append(
            f"| {fold} | {', '.join(result['classes'])} | {cell(episodes['miou'])} | "
            f"{cell(episodes['fb_iou'])} | {cell(generalized['miou_seen'])} | "
            f"{cell(generalized['miou_unseen'])} | {cell(generalized['hiou'])} |"
        )
    mean = summary["mean"]
    rows.append(
        f"| mean of {len(summary['per_fold'])} | | {cell(mean['episode_miou'])} | "
        f"{cell(mean['episode_fb_iou'])} | {cell(mean['miou_seen'])} | {cell(mean['miou_unseen'])} | "
        f"{cell(mean['hiou'])} |"
    )
    shares = []
    for fold, result in summary["per_fold"].items():
        wrong = result["episodes"]["false_positives"]
        total = wrong["other_classes"] + wrong["background_class"]
        shares.append(f"fold {fold} {100.0 * wrong['other_classes'] / total:.1f}%" if total else f"fold {fold} n/a")
    note = "pixels wrongly predicted as an episode's class that are other classes' objects: " + ", ".join(shares)
    return header + "\n".join(rows) + "\n\n" + note + "\n"
