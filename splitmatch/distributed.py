"""The few distributed helpers the library needs; everything works without torch.distributed."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import torch
import torch.distributed as dist


def all_ranks_ok(ok: bool) -> bool:
    """True when every process reports ``ok`` (a collective: every rank must call it; True alone)."""
    if not is_distributed():
        return ok
    flag = torch.tensor([1 if ok else 0], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum over processes (a copy; the identity in a single process)."""
    value = value.detach().clone()
    if is_distributed():
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def all_reduce_min(value: torch.Tensor) -> torch.Tensor:
    """Minimum over processes (a copy; the identity in a single process)."""
    value = value.detach().clone()
    if is_distributed():
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return value


def all_gather(value: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
    """Every process's ``value`` (equal shapes on all), on the CPU, by rank; ``[value]`` in a single process.

    ``device`` is where the collective runs (NCCL needs CUDA tensors).
    """
    if not is_distributed():
        return [value.detach().cpu()]
    local = value.detach().to(device)
    gathered = [torch.empty_like(local) for _ in range(world_size())]
    dist.all_gather(gathered, local)
    return [tensor.cpu() for tensor in gathered]


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def setup_from_environment() -> torch.device:
    """Initialises the process group when started by ``torchrun``; returns this process's device.

    NCCL on CUDA, gloo on the CPU. A single process (no ``torchrun``) is left alone.
    """
    use_cuda = torch.cuda.is_available()
    if not launched_by_torchrun():
        return torch.device("cuda" if use_cuda else "cpu")
    local_rank = int(os.environ["LOCAL_RANK"])
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not is_distributed():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()


# Where a failing rank leaves its reason, in the process group's key-value store.
FAILURE_KEY = "splitmatch/failure"


class Terminated(Exception):
    """``torchrun`` stopped this process (SIGTERM), usually because another rank failed."""


def _store():
    """The default process group's store, or ``None`` (single process, or no store to reach)."""
    if not is_distributed():
        return None
    try:
        return dist.distributed_c10d._get_default_store()
    except (AttributeError, RuntimeError, ValueError):  # a private accessor: absent in some releases
        return None


def publish_failure(message: str) -> None:
    """Leaves ``rank N: message`` for the other ranks (the first failure is kept); best effort."""
    store = _store()
    if store is None:
        return
    with contextlib.suppress(RuntimeError, ValueError, OSError):  # the store's host is gone: nobody to tell
        store.compare_set(FAILURE_KEY, "", f"rank {rank()}: {message}")


def peer_failure(wait_seconds: float = 2.0) -> str | None:
    """The reason another rank left with :func:`publish_failure` (waiting a moment for it), else ``None``."""
    store = _store()
    if store is None:
        return None
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            if store.check([FAILURE_KEY]):
                return store.get(FAILURE_KEY).decode("utf-8", "replace")
        except (RuntimeError, ValueError, OSError):
            return None
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)


def raise_on_termination() -> None:
    """Under ``torchrun``, SIGTERM raises :class:`Terminated`, so that the command can say why it stops."""

    def _terminated(signum, frame):
        raise Terminated("stopped by torchrun (SIGTERM)")

    if launched_by_torchrun():
        signal.signal(signal.SIGTERM, _terminated)


def ignore_termination() -> None:
    """While a failure is being reported: a second SIGTERM (torchrun repeats it) does not cut the report short."""
    if launched_by_torchrun():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
