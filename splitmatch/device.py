"""Which device a command runs on: ``auto`` picks the GPU when there is one."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from splitmatch.config import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_HELP = "cuda, cuda:N, cpu or auto (default: auto, the first GPU when CUDA is available, else the CPU)"


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` -> ``cuda:0`` when CUDA is available, else ``cpu``; ``cuda`` -> ``cuda:0``.

    Raises:
        ConfigError: the name is not a device, or names a GPU this machine does not have.
    """
    import torch  # here, not at the top: the command line's --help must not wait for torch

    if isinstance(name, torch.device):
        device = name
    elif isinstance(name, bool) or not isinstance(name, (str, int)):  # torch.device(None) is a TypeError of its own
        raise ConfigError(f"device {name!r} is not a device name; expected {DEVICE_HELP}")
    elif name == "auto":
        device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    else:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ConfigError(f"device '{name}' is not a device name; expected {DEVICE_HELP}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{name}' asked for, but CUDA is not available here; use --device cpu")
        index = 0 if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device '{name}' asked for, but this machine has {torch.cuda.device_count()} GPU(s)")
        device = torch.device("cuda", index)
    elif device.type != "cpu":
        raise ConfigError(f"device '{name}' is not supported; expected {DEVICE_HELP}")
    return device


def mixed_precision(device: torch.device, amp: str):
    """bf16/fp16 autocast on CUDA when ``amp`` asks for it; float32 everywhere else."""
    import torch

    if device.type != "cuda" or amp == "none":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
