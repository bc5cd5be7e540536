"""On-disk cache of pseudo masks: one compressed ``.npz`` per training image plus a fingerprint.

Each file holds ``index_map`` (uint8 ``[S, h, w]`` on the patch grid) and ``embeddings``
(float16 ``[K, D]``). ``meta.json`` records what made the cache (CLIP weights, pseudo-mask
settings, class split); a cache made with other settings is refused rather than silently
mixed. Files are written atomically, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from splitmatch.data.folder import atomic_write_bytes


class PseudoMaskCacheError(ValueError):
    """The cache is missing an entry or was made with other settings."""


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class PseudoMaskCache:
    """A folder of cached pseudo masks.

    Args:
        directory: the cache folder (created if needed).
        fingerprint: JSON-ready description of everything the pseudo masks depend on.
    """

    def __init__(self, directory: str | Path, fingerprint: dict) -> None:
        self.directory = Path(directory)
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True))
        meta = self.directory / "meta.json"
        if meta.is_file():
            try:
                recorded = json.loads(meta.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise PseudoMaskCacheError(f"pseudo-mask cache record {meta} is not valid JSON: {error}") from None
            if recorded != self.fingerprint:
                changed = sorted(
                    k for k in set(recorded) | set(self.fingerprint) if recorded.get(k) != self.fingerprint.get(k)
                )
                raise PseudoMaskCacheError(
                    f"pseudo-mask cache {self.directory} was made with other settings (differs in: "
                    f"{', '.join(changed)}); use another pseudo.cache_dir or delete that folder"
                )
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(meta, (json.dumps(self.fingerprint, indent=2, sort_keys=True) + "\n").encode())

    def path(self, stem: str) -> Path:
        return self.directory / f"{stem}.npz"

    def has(self, stem: str) -> bool:
        return self.path(stem).is_file()

    def save(self, stem: str, index_map: np.ndarray, embeddings: np.ndarray) -> None:
        """Stores ``index_map`` (uint8 ``[S, h, w]``) and ``embeddings`` (``[K, D]``)."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, index_map=index_map.astype(np.uint8), embeddings=embeddings.astype(np.float16))
        atomic_write_bytes(self.path(stem), buffer.getvalue())

    def load(self, stem: str) -> tuple[np.ndarray, np.ndarray]:
        """Returns ``index_map`` uint8 ``[S, h, w]`` and ``embeddings`` float32 ``[K, D]``."""
        path = self.path(stem)
        if not path.is_file():
            raise PseudoMaskCacheError(
                f"no pseudo masks for '{stem}' in {self.directory}; run `splitmatch pseudo-masks` first"
            )
        try:
            with np.load(path, allow_pickle=False) as data:
                return data["index_map"].astype(np.uint8), data["embeddings"].astype(np.float32)
        except (OSError, KeyError, ValueError) as error:
            raise PseudoMaskCacheError(f"pseudo-mask file {path} is damaged ({error}); delete it and rerun") from None

    def missing(self, stems: list[str]) -> list[str]:
        return [s for s in stems if not self.has(s)]
