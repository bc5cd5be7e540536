"""The command lines many tests give ``splitmatch``, built in one place: the tiny preset on a dataset
folder (``train``, ``folds``, ``seeds``)."""

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


def tiny_folds_args(root: Path, out: Path, *settings: str, iterations: int = 2) -> list[str]:
    """``splitmatch folds`` with :func:`tiny_options` on a folder of ``make_fold_folder``, scored on its
    lists of ``EPISODE_COUNT`` episodes, into ``out``."""
    options = tiny_options(root, *settings, iterations=iterations)
    return ["folds", *options, "--episode-count", str(EPISODE_COUNT), "--out", str(out)]
