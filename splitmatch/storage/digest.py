"""Content digests: what a checkpoint records of its tensors and what a pseudo-mask cache keys on.

A digest covers each tensor's name, dtype, shape and bytes, in name order, so two files with
equal digests hold the same tensors bit for bit, whatever order they were written in.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch


def add_tensor(digest: hashlib._Hash, name: str, tensor: torch.Tensor) -> None:
    """Feeds one named tensor (any shape, any dtype, any device) into a running SHA-256."""
    tensor = tensor.detach().cpu().contiguous().reshape(-1)
    digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
    if tensor.numel():
        digest.update(memoryview(tensor.view(torch.uint8).numpy()))  # the tensor's own bytes, no copy


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex) over names, dtypes, shapes and bytes of all tensors, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        add_tensor(digest, name, tensors[name])
    return digest.hexdigest()


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
