"""The training state a step checkpoint carries beside the weights, and a run's step checkpoints.

The training state is what a killed run needs to go on as if it had not stopped: the
optimizer's tensors and hyper-parameters, the schedule, every process's random generators and
the fp16 gradient scaler. Step checkpoints are ``step_<step>.safetensors`` files in the run
folder's ``checkpoints`` folder, in the file format of :mod:`splitmatch.model.checkpoint`.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from splitmatch import distributed as dist
from splitmatch.config import ExperimentConfig
from splitmatch.data.classes import ClassSplit
from splitmatch.model.checkpoint import CheckpointError, checkpoint_contents, write_checkpoint

_NAME = re.compile(r"^step_(\d+)\.safetensors$")


def save_training_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    config: ExperimentConfig,
    classes: ClassSplit,
    train_classes: list[str],
    step: int,
    optimizer: torch.optim.Optimizer,
    schedule=None,
    rng: dict[str, torch.Tensor] | None = None,
    grad_scaler: dict | None = None,
) -> Path:
    """Writes a checkpoint atomically that holds the weights and the training state.

    The training state: the optimizer, the schedule, every process's random generators
    (``rng``, from :func:`rng_states`; this process's alone when ``None``) and the fp16
    gradient scaler's state (``grad_scaler``, when it is in use).
    """
    tensors, record = checkpoint_contents(model, config, classes, train_classes, step)
    optimizer_tensors, groups = _optimizer_tensors(optimizer)
    tensors.update(optimizer_tensors)
    record["optimizer_groups"] = groups
    record["schedule"] = schedule.state_dict() if schedule is not None else None
    tensors.update(rng if rng is not None else _local_rng_state(0, None))
    if grad_scaler:
        record["grad_scaler"] = grad_scaler
    return write_checkpoint(path, tensors, record)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    state = optimizer.state_dict()
    tensors = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state["param_groups"]]
    return tensors, groups


def _local_rng_state(rank: int, device: torch.device | None) -> dict[str, torch.Tensor]:
    """This process's CPU generator and, on a CUDA device, its CUDA generator, keyed by ``rank``."""
    states = {f"rng.rank{rank}.cpu": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        states[f"rng.rank{rank}.cuda"] = torch.cuda.get_rng_state(device)
    return states


def rng_states(device: torch.device) -> dict[str, torch.Tensor]:
    """Every process's generator states: ``rng.rank<r>.cpu`` and, on CUDA, ``rng.rank<r>.cuda``.

    Each process draws its own random points, so each resumes from its own state. A collective
    call under ``torchrun``: every process makes it, and every process receives all states.
    """
    states = {}
    for key, state in _local_rng_state(0, device).items():
        kind = key.rsplit(".", 1)[1]
        for rank, gathered in enumerate(dist.all_gather(state, device)):
            states[f"rng.rank{rank}.{kind}"] = gathered
    return states


def _restore_rng(tensors: dict, rank: int, device: torch.device | None) -> None:
    """Sets this process's generators from the checkpoint; keeps them (with a warning) when it has none."""
    cpu = tensors.get(f"rng.rank{rank}.cpu")
    if cpu is None and rank == 0:
        cpu = tensors.get("rng.torch")  # format of checkpoints that kept one process's state
    if cpu is None:
        warnings.warn(
            f"the checkpoint holds no random state for process {rank} (it was written by fewer processes): "
            "its random points will differ from those of an uninterrupted run",
            stacklevel=3,
        )
        return
    torch.set_rng_state(cpu)
    cuda = tensors.get(f"rng.rank{rank}.cuda")
    if cuda is not None and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(cuda, device)


def restore_training_state(
    tensors: dict,
    record: dict,
    optimizer: torch.optim.Optimizer,
    schedule,
    grad_scaler: torch.amp.GradScaler | None = None,
    rank: int = 0,
    device: torch.device | None = None,
) -> int:
    """Restores optimizer, schedule, this process's random generators (``rank`` on ``device``) and
    the gradient scaler; returns the step to continue from."""
    if "optimizer_groups" not in record:
        raise CheckpointError("this checkpoint holds weights only; it cannot resume training")
    state: dict = {"state": {}, "param_groups": record["optimizer_groups"]}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state["state"].setdefault(int(index), {})[name] = value
    optimizer.load_state_dict(state)
    if record.get("schedule") is not None:
        schedule.load_state_dict(record["schedule"])
    _restore_rng(tensors, rank, device)
    if grad_scaler is not None and grad_scaler.is_enabled() and record.get("grad_scaler"):
        grad_scaler.load_state_dict(record["grad_scaler"])
    return int(record["step"])


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"step_{step:08d}.safetensors"


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoints in a folder, oldest step first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def prune_checkpoints(directory: str | Path, keep: int) -> None:
    """Deletes all but the newest ``keep`` step checkpoints."""
    for path in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        path.unlink(missing_ok=True)
