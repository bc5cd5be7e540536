"""How many loader worker processes a training process gets (``data.num_workers: auto``).

Each worker builds whole step batches (the sampler hands out one per step), so ``B`` workers
already load ``B`` batches in the time one worker needs for one: more than the per-process
batch only adds memory. Below that, the cores decide: the cores this process may run on
(``os.sched_getaffinity``, which honours ``taskset``, cgroups and schedulers' CPU sets, where
``os.cpu_count`` counts the whole machine), shared by the processes ``torchrun`` started on the
node, with one core kept for the training process itself (it builds targets, launches kernels
and solves the matchings).
"""

from __future__ import annotations

import os

AUTO = "auto"


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def local_processes() -> int:
    """Training processes on this node (``LOCAL_WORLD_SIZE`` under ``torchrun``, else 1)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def auto_num_workers(per_process_batch: int, cores: int | None = None, processes: int | None = None) -> int:
    """Loader workers for one training process.

    Args:
        per_process_batch: images this process loads per step (``train.batch_size`` / processes).
        cores: cores this process may use; :func:`available_cores` when ``None``.
        processes: training processes sharing them; :func:`local_processes` when ``None``.

    Returns:
        ``min(cores // processes - 1, per_process_batch)``, at least 0 (0 loads in the training
        process itself).
    """
    cores = available_cores() if cores is None else cores
    processes = local_processes() if processes is None else processes
    return max(0, min(cores // max(processes, 1) - 1, per_process_batch))


def resolve_num_workers(setting: int | str, per_process_batch: int) -> int:
    """``data.num_workers`` as the loader takes it: a count as given, or ``"auto"`` chosen here.

    Raises:
        ValueError: neither a count >= 0 nor ``"auto"`` (named).
    """
    if setting == AUTO:
        return auto_num_workers(per_process_batch)
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 0:
        raise ValueError(f"data.num_workers must be a count >= 0 or {AUTO!r}, got {setting!r}")
    return setting
