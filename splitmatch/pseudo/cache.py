"""On-disk cache of pseudo masks: one compressed ``.npz`` per training image plus a fingerprint.

Each file holds ``index_map`` (uint8 ``[S, h, w]`` on the patch grid), ``embeddings``
(float16 ``[K, D]``), the ``stem`` of the image it belongs to and that image's ``image_size``
``(H, W)``. ``meta.json`` records what made the cache (CLIP weights, pseudo-mask settings,
class split); a cache made with other settings is refused rather than silently mixed. Files are
written atomically, so an interrupted run resumes where it stopped.

Every entry is checked when it is read: a damaged file (flipped bytes fail the zip's CRC, a
truncated or empty file fails to open), another image's entry, shapes that do not fit the
cache's grid or the image, and non-finite embeddings are all named.
:func:`splitmatch.pseudo.build_cache.fill_cache` recomputes such entries; reading one during
training refuses it.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from splitmatch.data.names import outside, printable, stem_problem
from splitmatch.errors import SplitmatchError
from splitmatch.storage.files import InvalidJsonError, TextFileError, atomic_write_bytes, read_json, write_json


class PseudoMaskCacheError(SplitmatchError, ValueError):
    """The cache is missing an entry or was made with other settings."""


def differing_keys(recorded: dict, expected: dict, prefix: str = "") -> list[str]:
    """The dotted keys (``pseudo.rho``) whose values differ between two nested fingerprints, sorted."""
    changed = []
    for key in sorted(set(recorded) | set(expected), key=str):
        old, new = recorded.get(key), expected.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changed += differing_keys(old, new, f"{prefix}{key}.")
        elif old != new:
            changed.append(f"{prefix}{key}")
    return changed


class PseudoMaskCache:
    """A folder of cached pseudo masks.

    Args:
        directory: the cache folder (created if needed).
        fingerprint: JSON-ready description of everything the pseudo masks depend on.
        grid: ``(S, h, w)`` every index map must have (scales, patch grid), checked when given.
        embed_dim: D of every embedding, checked when given.
    """

    def __init__(
        self,
        directory: str | Path,
        fingerprint: dict,
        grid: tuple[int, int, int] | None = None,
        embed_dim: int | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True))
        self.grid = tuple(grid) if grid is not None else None
        self.embed_dim = embed_dim
        meta = self.directory / "meta.json"
        if meta.is_file():
            try:
                recorded = read_json(meta, "pseudo-mask cache record")
            except (InvalidJsonError, TextFileError) as error:
                raise PseudoMaskCacheError(f"{error}; delete {self.directory} to compute the cache again") from None
            if not isinstance(recorded, dict):
                raise PseudoMaskCacheError(f"pseudo-mask cache record {meta} is not a JSON object")
            if recorded != self.fingerprint:
                changed = differing_keys(recorded, self.fingerprint)
                raise PseudoMaskCacheError(
                    f"pseudo-mask cache {self.directory} was made with other settings (differs in: "
                    f"{', '.join(changed)}); use another pseudo.cache_dir or delete that folder"
                )
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            write_json(meta, self.fingerprint, sort_keys=True)

    def path(self, stem: str) -> Path:
        """``<directory>/<stem>.npz``; a stem is a name (``a/b`` a sub-folder), never a way out.

        Raises:
            PseudoMaskCacheError: ``stem`` is not a name (:func:`splitmatch.data.names.stem_problem`),
                or the entry would lie outside the cache folder (through a link).
        """
        problem = stem_problem(stem)
        if problem:
            raise PseudoMaskCacheError(f"no pseudo-mask entry can be named '{printable(str(stem), 80)}': {problem}")
        path = self.directory / f"{stem}.npz"
        if outside(self.directory, path):
            raise PseudoMaskCacheError(
                f"pseudo-mask cache entry {path} links to {path.resolve()}, outside the cache {self.directory}"
            )
        return path

    def has(self, stem: str) -> bool:
        return self.path(stem).is_file()

    def save(
        self, stem: str, index_map: np.ndarray, embeddings: np.ndarray, image_size: tuple[int, int] | None = None
    ) -> None:
        """Stores ``index_map`` (uint8 ``[S, h, w]``) and ``embeddings`` (``[K, D]``) of image ``stem``.

        Raises:
            PseudoMaskCacheError: the entry would not pass :meth:`load`'s checks (e.g. non-finite
                embeddings from a broken CLIP): nothing is written.
        """
        arrays = {
            "index_map": np.asarray(index_map).astype(np.uint8),
            "embeddings": np.asarray(embeddings),
            "stem": np.array(stem),
        }
        if image_size is not None:
            arrays["image_size"] = np.array(image_size, dtype=np.int64)
        problem = self._problem(stem, arrays, image_size)
        if problem:
            raise PseudoMaskCacheError(f"pseudo masks computed for '{stem}' are unusable: {problem}")
        arrays["embeddings"] = arrays["embeddings"].astype(np.float16)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        atomic_write_bytes(self.path(stem), buffer.getvalue())

    def load(self, stem: str, image_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Returns ``index_map`` uint8 ``[S, h, w]`` and ``embeddings`` float32 ``[K, D]``, checked.

        Args:
            image_size: ``(H, W)`` of the image now; an entry made for another size is refused.

        Raises:
            PseudoMaskCacheError: the entry is missing or unusable (named, with the reason).
        """
        path = self.path(stem)
        if not path.is_file():
            raise PseudoMaskCacheError(
                f"no pseudo masks for '{stem}' in {self.directory}; run `splitmatch pseudo-masks` first"
            )
        arrays, problem = self._read(path)
        problem = problem or self._problem(stem, arrays, image_size)
        if problem:
            raise PseudoMaskCacheError(
                f"pseudo-mask file {path} is unusable: {problem}; delete it and run `splitmatch pseudo-masks` "
                "(or train, which recomputes it)"
            )
        return arrays["index_map"], arrays["embeddings"].astype(np.float32)

    def problem(self, stem: str) -> str | None:
        """Why the cached entry of ``stem`` cannot be used, or ``None`` when it can (or is absent)."""
        if not self.has(stem):
            return None
        arrays, problem = self._read(self.path(stem))
        return problem or self._problem(stem, arrays, None)

    def missing(self, stems: list[str]) -> list[str]:
        return [s for s in stems if not self.has(s)]

    @staticmethod
    def _read(path: Path) -> tuple[dict[str, np.ndarray], str | None]:
        with open(path, "rb") as handle:
            magic = handle.read(4)
        if not magic:
            return {}, "it is damaged: the file is empty (0 bytes)"
        if magic != b"PK\x03\x04":
            return {}, "it is damaged: not a zip archive (.npz)"
        try:
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}, None
        except (
            OSError,
            ValueError,
            EOFError,
            KeyError,
            AttributeError,
            TypeError,
            zipfile.BadZipFile,
            zlib.error,
        ) as error:
            return {}, f"it is damaged: {type(error).__name__}: {error}"

    def _problem(self, stem: str, arrays: dict[str, np.ndarray], image_size: tuple[int, int] | None) -> str | None:
        """The first reason the arrays of an entry do not fit ``stem``, the cache and the image."""
        missing = sorted({"index_map", "embeddings", "stem"} - set(arrays))
        if missing:
            return f"it lacks {', '.join(missing)} (made by an older splitmatch, or damaged)"
        index_map, embeddings, owner = arrays["index_map"], arrays["embeddings"], arrays["stem"]
        if owner.shape != () or str(owner) != stem:
            return f"it holds the pseudo masks of '{owner}', not of '{stem}'"
        made_for = arrays.get("image_size")
        if image_size is not None and made_for is not None and tuple(made_for.tolist()) != tuple(image_size):
            return (
                f"it was made for a {made_for[1]}x{made_for[0]} image, but the image is {image_size[1]}x{image_size[0]}"
            )
        if index_map.dtype != np.uint8 or index_map.ndim != 3:
            return f"its index map is {index_map.dtype} {list(index_map.shape)}, expected uint8 [S, h, w]"
        if self.grid is not None and tuple(index_map.shape) != self.grid:
            return f"its index map is {list(index_map.shape)}, but this cache's grid is {list(self.grid)}"
        if embeddings.ndim != 2 or not np.issubdtype(embeddings.dtype, np.floating):
            return f"its embeddings are {embeddings.dtype} {list(embeddings.shape)}, expected float [K, D]"
        if self.embed_dim is not None and embeddings.shape[1] != self.embed_dim:
            return f"its embeddings have D={embeddings.shape[1]}, expected {self.embed_dim}"
        if not np.isfinite(embeddings).all():
            return "its embeddings hold NaN or infinite values"
        if index_map.size and int(index_map.max()) > embeddings.shape[0]:
            return f"its index map refers to mask {int(index_map.max())} but it has {embeddings.shape[0]} embeddings"
        return None
