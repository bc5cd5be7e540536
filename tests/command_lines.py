"""The command lines many tests give ``splitmatch``, built in one place: the tiny preset on a dataset
folder (``train``, ``folds``, ``seeds``), ``eval`` and ``predict`` of a checkpoint."""

from __future__ import annotations

from pathlib import Path

from fold_folder import EPISODE_COUNT


def tiny_options(root: Path | str, *settings: str, iterations: int | None = 2, quiet: bool = True) -> list[str]:
    """``--preset tiny`` on the dataset folder ``root``: ``--quiet`` (unless ``quiet`` is false), then a
    ``--set`` for ``data.root``, for ``train.iterations`` (``None``: the preset's own) and for each
    ``key=value`` of ``settings``, in that order."""
    args = ["--preset", "tiny", *(["--quiet"] if quiet else []), "--set", f"data.root={root}"]
    if iterations is not None:
        args += ["--set", f"train.iterations={iterations}"]
    return args + [part for setting in settings for part in ("--set", setting)]


def tiny_train_args(
    root: Path | str, out: Path | str, *settings: str, iterations: int | None = 2, quiet: bool = True
) -> list[str]:
    """``splitmatch train`` with :func:`tiny_options` into the run folder ``out``."""
    return ["train", *tiny_options(root, *settings, iterations=iterations, quiet=quiet), "--out", str(out)]


def tiny_folds_args(
    root: Path, out: Path, *settings: str, iterations: int = 2, episode_count: int | None = EPISODE_COUNT
) -> list[str]:
    """``splitmatch folds`` with :func:`tiny_options` on a folder of ``make_fold_folder``, scored on its
    lists of ``episode_count`` episodes (``None``: no ``--episode-count``), into ``out``."""
    options = tiny_options(root, *settings, iterations=iterations)
    count = [] if episode_count is None else ["--episode-count", str(episode_count)]
    return ["folds", *options, *count, "--out", str(out)]


def cpu_eval_args(checkpoint: Path | str, *rest: Path | str) -> list[str]:
    """``splitmatch eval`` of ``checkpoint`` with ``rest``, on the CPU and without progress output."""
    return ["eval", "--checkpoint", str(checkpoint), *map(str, rest), "--device", "cpu", "--quiet"]


def episodes_args(checkpoint: Path | str, *rest: Path | str) -> list[str]:
    """:func:`cpu_eval_args` scoring a fold checkpoint on its fold's lists of ``EPISODE_COUNT`` episodes
    in a folder of ``make_fold_folder``."""
    return cpu_eval_args(checkpoint, "--episodes", "--episode-count", str(EPISODE_COUNT), *rest)


def predict_args(checkpoint: Path | str, classes: str, out: Path | str, *rest: Path | str) -> list[str]:
    """``splitmatch predict`` of ``checkpoint`` on the comma-separated ``classes`` into ``out``, then
    ``rest`` (options, then the images) as given."""
    return ["predict", "--checkpoint", str(checkpoint), "--classes", classes, "--out", str(out), *rest]
