"""A training run's folder: one run at a time, no run overwritten, every check before any write.

``splitmatch train --out DIR`` holds an exclusive advisory lock on ``DIR/run.lock`` for as long
as it runs (``flock``; the kernel drops it when the process ends, ``kill -9`` included, so a
stale lock never blocks anyone). Before anything in the folder changes, :func:`open_run` checks
what the folder holds against what was asked:

* a folder that holds any run is refused unless the run is to be continued (``--resume``);
* ``--resume`` reads the newest checkpoint whole (digest included) and refuses a config that
  differs from the checkpoint's in anything but :data:`RESUMABLE_KEYS`, a dataset of other
  classes, and ``train.iterations`` below the checkpoint's step;
* ``metrics.jsonl`` is read up to its last whole line (a line torn by a kill or a full disk is
  dropped) and a damaged line elsewhere is refused.

A refused start leaves the folder as it was, byte for byte; temporary files that a killed run
left (``.*.tmp``) are removed once the run really starts.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from splitmatch import distributed as dist
from splitmatch.config import ExperimentConfig
from splitmatch.config.rules import config_fields
from splitmatch.data.classes import ClassSplit
from splitmatch.data.folder import list_some
from splitmatch.errors import SplitmatchError
from splitmatch.model import checkpoint as ckpt
from splitmatch.storage import files
from splitmatch.train.state import list_checkpoints

LOCK_FILE = "run.lock"
METRICS_FILE = "metrics.jsonl"
RUN_FILES = ("config.yaml", "environment.json", "split.json", METRICS_FILE, "model.safetensors", "eval.json")
# What may change when a run continues: how long it runs, how it logs and keeps checkpoints,
# where the data and caches are, and how it is evaluated. Everything else shapes the weights.
# train.accumulate_steps cuts the same global batch into other micro-batches (a run moved to fewer
# GPUs continues with more of them); train.deterministic and train.compile pick kernels, not what
# they compute.
RESUMABLE_KEYS = (
    "name",
    "train.iterations",
    "train.log_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.eval_every",
    "train.tensorboard",
    "train.accumulate_steps",
    "train.deterministic",
    "train.compile",
    "data.root",
    "data.num_workers",
    "pseudo.cache_dir",
    "inference.",
    "given_paths",
)


class RunFolderError(SplitmatchError, ValueError):
    """The run folder is in use, holds another run, or cannot be continued as asked."""


class RunLock:
    """An exclusive advisory lock on ``<folder>/run.lock`` naming its holder (pid, host, start).

    Use as a context manager around a run and call :meth:`acquire` inside it; on leaving, the lock
    is released and its file removed, and if the run never reached :meth:`commit` the folder is
    put back as it was (the lock file's earlier bytes, or no lock file and no folder if they were
    made here). Only a killed process leaves ``run.lock`` behind; it holds nothing, and names the
    dead holder until the next run takes it.
    ``active=False`` (ranks other than 0 under torchrun) makes every method a no-op.
    """

    def __init__(self, folder: str | Path, active: bool = True) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.active = active
        self.committed = False
        self._file = None
        self._previous: bytes | None = None
        self._made_folders: list[Path] = []

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release(restore=not self.committed)

    def acquire(self) -> None:
        """Takes the lock or raises :class:`RunFolderError` naming the run that holds it."""
        if not self.active:
            return
        if self.folder.exists() and not self.folder.is_dir():
            raise RunFolderError(f"--out {self.folder} exists and is not a folder")
        self._made_folders = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            existed = self.path.exists()
            handle = open(self.path, "a+b")  # noqa: SIM115 (held open for the life of the run)
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read()
                handle.close()
                raise RunFolderError(
                    f"run folder {self.folder} is in use by {describe_holder(holder)}; wait for that run to end "
                    "or choose another --out"
                ) from None
            except OSError as error:
                if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    handle.close()
                    raise
                warnings.warn(
                    f"{self.folder}: the file system cannot lock files; two runs into it would collide", stacklevel=2
                )
            # A holder that gave up may have removed the file between our open and our lock.
            if self.path.exists() and os.path.samefile(self.path, handle.name):
                break
            handle.close()
        handle.seek(0)
        self._previous = handle.read() if existed else None
        self._file = handle  # from here on, leaving puts the folder back as it was
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv),
        }
        try:
            self._rewrite(handle, (json.dumps(holder) + "\n").encode())
        except OSError as error:  # a full disk: the lock file is named
            raise files.naming_path(error, self.path) from None

    def commit(self) -> None:
        """The run really starts: from here on the folder is the run's, and stays when the run fails."""
        self.committed = True

    def release(self, restore: bool = False) -> None:
        if self._file is None:
            return
        if not restore:  # the run ran, and ended (finished or failed): the lock file is not left behind
            self.path.unlink(missing_ok=True)
        else:
            if self._previous is None:
                self.path.unlink(missing_ok=True)
                for folder in self._made_folders:  # innermost first; only those still empty
                    with contextlib.suppress(OSError):
                        folder.rmdir()
            else:
                with contextlib.suppress(OSError):  # a full disk: the error that stopped the run is the one to see
                    self._rewrite(self._file, self._previous)
        fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        with contextlib.suppress(OSError):  # unwritten bytes of a failed rewrite on a full disk
            self._file.close()
        self._file = None

    @staticmethod
    def _rewrite(handle, data: bytes) -> None:
        handle.seek(0)
        handle.truncate()
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def describe_holder(content: bytes) -> str:
    """``pid 123 on host h since 2026-...`` from a lock file's content (or a vaguer phrase)."""
    try:
        holder = json.loads(content)
        return (
            f"pid {holder['pid']} on host {holder['host']} since {holder['started']} "
            f"(command: {holder.get('command', '?')})"
        )
    except (ValueError, KeyError, TypeError):
        return "another process"


@dataclass
class RunStart:
    """Where a run starts: step 0, or a checkpoint already read and checked."""

    step: int = 0
    checkpoint: Path | None = None
    tensors: dict | None = None
    record: dict | None = None


def open_run(config: ExperimentConfig, folder: Path, resume: bool, lock: RunLock, classes: ClassSplit) -> RunStart:
    """Takes the lock (rank 0) and checks the folder against the request; writes nothing.

    Under torchrun every rank calls this; all of them fail together if any does, so that no rank
    waits forever for one that stopped.
    """
    problem: BaseException | None = None
    start = RunStart()
    try:
        lock.acquire()
        start = inspect_run(config, folder, resume, classes)
    except Exception as error:  # noqa: BLE001 (re-raised below, after the other ranks have heard)
        problem = error
    everyone_ok = dist.all_ranks_ok(problem is None)
    if problem is not None:
        raise problem
    if not everyone_ok:
        raise RunFolderError(f"another process of this torchrun job could not start the run in {folder}")
    return start


def existing_run(folder: Path) -> list[str]:
    """What of a run a folder holds: the names of run files and checkpoints present."""
    found = [name for name in RUN_FILES if (folder / name).exists()]
    checkpoints = list_checkpoints(folder / "checkpoints")
    if checkpoints:
        found.append(f"checkpoints/ ({len(checkpoints)})")
    return found


def inspect_run(config: ExperimentConfig, folder: Path, resume: bool, classes: ClassSplit) -> RunStart:
    """The checks of :func:`open_run` for one process."""
    held = existing_run(folder)
    if held and not resume:
        raise RunFolderError(
            f"{folder} already holds a run ({', '.join(held)}); pass --resume to continue it or choose another --out"
        )
    read_metrics(folder / METRICS_FILE)  # refuses a damaged log before anything is written
    checkpoints = list_checkpoints(folder / "checkpoints")
    if not checkpoints:
        if (folder / "model.safetensors").exists():
            raise RunFolderError(
                f"{folder} holds a finished run (model.safetensors) but no checkpoint to continue from; "
                "choose another --out"
            )
        return RunStart()  # nothing to continue: a fresh start (a killed run's log is cut to step 0)
    path = checkpoints[-1]
    tensors, record = ckpt.read_checkpoint(path)
    if "optimizer_groups" not in record:
        raise RunFolderError(f"checkpoint {path} holds weights only; it cannot continue a run")
    check_resumable(record["config"], config, int(record["step"]), path)
    if record["classes"] != classes:
        raise RunFolderError(
            f"checkpoint {path} was trained with classes {list(record['classes'].names)} (unseen "
            f"{list(record['classes'].unseen)}), but {config.data.root} has {list(classes.names)} (unseen "
            f"{list(classes.unseen)})"
        )
    return RunStart(int(record["step"]), path, tensors, record)


def check_resumable(saved: ExperimentConfig, config: ExperimentConfig, step: int, path: Path) -> None:
    """Refuses to continue a run with a config that would change what its weights mean."""
    old, new = config_fields(saved), config_fields(config)
    changed = [key for key in new if old.get(key, (None,))[0] != new[key][0] and not key.startswith(RESUMABLE_KEYS)]
    if changed:
        shown = [f"{key}: {old[key][0]!r} -> {new[key][0]!r}" for key in changed]
        allowed = ", ".join(key + "*" if key.endswith(".") else key for key in RESUMABLE_KEYS)
        raise RunFolderError(
            f"--resume: the config differs from the one checkpoint {path} was trained with ({list_some(shown, 4)}); "
            f"a continued run may change only {allowed}"
        )
    if config.train.iterations < step:
        raise RunFolderError(
            f"--resume: train.iterations={config.train.iterations} is below step {step} of checkpoint {path}; "
            "a run cannot be cut short after the fact (its weights are those of step "
            f"{step}); continue with train.iterations >= {step}"
        )


def read_metrics(path: Path) -> list[tuple[bytes, dict]]:
    """The whole lines of a ``metrics.jsonl`` with their entries, in order.

    The last line may be torn (a kill or a full disk during the append): it is left out. Any
    other line that is not a JSON object is refused, naming the line.
    """
    if not path.is_file():
        return []
    lines = path.read_bytes().split(b"\n")
    entries = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            entry = files.parse_json(raw)
        except (UnicodeDecodeError, files.InvalidJsonError):  # nested too deep, a 5,000-digit number too
            entry = None
        if not isinstance(entry, dict):
            if all(not rest.strip() for rest in lines[number:]):
                break  # the torn last line
            raise RunFolderError(f"{path} line {number} is not a JSON object: the log is damaged")
        entries.append((raw, entry))
    return entries


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Removes what a killed run's interrupted writes left in the run folder and its checkpoints;
    safe only while the lock is held."""
    return files.remove_stale_temporaries(folder, folder / "checkpoints")
