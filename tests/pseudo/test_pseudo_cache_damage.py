"""Damaged pseudo-mask cache entries are named and recomputed (filling) or refused (reading)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from splitmatch.cli import main
from splitmatch.data.dataset import SegmentationDataset
from splitmatch.pseudo.cache import PseudoMaskCacheError


def fill(capsys, data_root) -> tuple[str, str]:
    assert main(["pseudo-masks", "--preset", "tiny", "--quiet", "--set", f"data.root={data_root}"]) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def rewrite(path, **changes) -> None:
    """Rewrites an entry with some arrays changed (a well-formed file with wrong contents)."""
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    arrays.update(changes)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


def flip_a_byte(path) -> None:
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:  # inside the compressed embeddings, not in zip bookkeeping
        info = archive.getinfo("embeddings.npy")
    data[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0x40
    path.write_bytes(bytes(data))


DAMAGE = {
    "train_000": ("flipped byte", flip_a_byte, "damaged"),
    "train_001": ("truncated", lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "damaged"),
    "train_002": ("zero bytes", lambda p: p.write_bytes(b""), "empty (0 bytes)"),
    "train_003": ("wrong shape", lambda p: rewrite(p, index_map=np.zeros((3, 5, 5), np.uint8)), "grid is [3, 8, 8]"),
    "train_004": ("NaN embeddings", lambda p: rewrite(p, embeddings=np.full((2, 32), np.nan, np.float16)), "NaN"),
    "train_005": ("another image's entry", None, "holds the pseudo masks of 'train_006'"),
    "train_007": ("older format", lambda p: rewrite(p, stem=None), "lacks stem"),
}


def damage(cache_dir) -> None:
    for stem, (_, how, _) in DAMAGE.items():
        path = cache_dir / f"{stem}.npz"
        if how is None:
            path.write_bytes((cache_dir / "train_006.npz").read_bytes())
        elif stem == "train_007":
            with np.load(path) as data:
                arrays = {key: data[key] for key in data.files if key != "stem"}
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **arrays)
            path.write_bytes(buffer.getvalue())
        else:
            how(path)


def test_each_damaged_entry_is_named_and_recomputed(tiny_dataset, capsys):
    fill(capsys, tiny_dataset.root)
    (cache_dir,) = [p for p in (tiny_dataset.root / "pseudo_masks").iterdir() if p.is_dir()]
    good = {stem: (cache_dir / f"{stem}.npz").read_bytes() for stem in DAMAGE}
    damage(cache_dir)
    out, err = fill(capsys, tiny_dataset.root)
    assert f"computed {len(DAMAGE)}," in out
    for stem, (what, _, reason) in DAMAGE.items():
        line = next((line for line in err.splitlines() if f"{stem}.npz" in line), "")
        assert reason in line, f"{what}: {line or err}"
        with np.load(cache_dir / f"{stem}.npz") as fresh, np.load(io.BytesIO(good[stem])) as before:
            assert all(np.array_equal(fresh[key], before[key]) for key in before.files), what  # the same entry again
    assert "computed 0," in fill(capsys, tiny_dataset.root)[0]  # all sound now


def test_a_damaged_entry_met_while_training_is_refused_by_name(tiny_dataset, capsys):
    from splitmatch.config.presets import preset
    from splitmatch.model.build import build_segmentor
    from splitmatch.pseudo.build_cache import open_cache
    from splitmatch.train.reproducibility import seed_everything

    fill(capsys, tiny_dataset.root)
    config = preset("tiny")
    seed_everything(config.train.seed)  # as the command does: the same random-init CLIP, the same cache
    cache = open_cache(
        config.pseudo, config.clip, tiny_dataset, build_segmentor(config.clip, config.decoder).image_encoder
    )
    dataset = SegmentationDataset(tiny_dataset, "train", inductive=True, pseudo_masks=cache)
    assert dataset[0]["pseudo_index"].ndim == 3
    rewrite(cache.path("train_001"), image_size=np.array([10, 12]))  # made for another image size
    with pytest.raises(PseudoMaskCacheError, match=r"train_001\.npz is unusable: it was made for a 12x10 image"):
        dataset[1]
    flip_a_byte(cache.path("train_002"))
    with pytest.raises(PseudoMaskCacheError, match=r"train_002\.npz is unusable: it is damaged"):
        dataset[2]
