"""K-Means against scikit-learn and a plain reference; the rho rule; index maps; the cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans

from splitmatch.pseudo.cache import PseudoMaskCache, PseudoMaskCacheError
from splitmatch.pseudo.kmeans import kmeans, window_seeds
from splitmatch.pseudo.proposals import (
    deduplicate,
    grid_components,
    index_map,
    keep_unannotated_clusters,
    masks_from_index_map,
    propose,
)
from splitmatch.pseudo.region_crops import crop_region_embeddings, crop_windows


def clustered_points(seed: int, n: int = 300, k: int = 6, dim: int = 16) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=generator) * 3
    points = centres[torch.randint(0, k, (n,), generator=generator)] + torch.randn(n, dim, generator=generator)
    return F.normalize(points, dim=-1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_euclidean_kmeans_equals_scikit_learn_from_the_same_seeds(seed):
    points = clustered_points(seed)
    seeds = points[torch.randperm(len(points), generator=torch.Generator().manual_seed(seed))[:6]]
    for iterations in (1, 3, 10):
        labels, centroids = kmeans(points[None], seeds[None], iterations, spherical=False)
        reference = KMeans(
            6, init=seeds.double().numpy(), n_init=1, max_iter=iterations, tol=0.0, algorithm="lloyd"
        ).fit(points.double().numpy())
        assert np.array_equal(labels[0].numpy(), reference.labels_)
        assert np.allclose(centroids[0].numpy(), reference.cluster_centers_, atol=1e-5)


def reference_spherical(points: np.ndarray, seeds: np.ndarray, iterations: int):
    centroids = seeds / np.linalg.norm(seeds, axis=1, keepdims=True)
    previous = None
    for _ in range(iterations):
        labels = (points @ centroids.T).argmax(1)
        for k in range(len(centroids)):
            members = points[labels == k]
            if len(members):
                total = members.sum(0)
                centroids[k] = total / np.linalg.norm(total)
        if previous is not None and np.array_equal(labels, previous):
            break
        previous = labels
    return (points @ centroids.T).argmax(1), centroids


def test_spherical_kmeans_matches_a_plain_loop_and_batches_independently():
    batch = [clustered_points(s) for s in range(3)]
    seeds = [p[:5] for p in batch]
    labels, centroids = kmeans(torch.stack(batch), torch.stack(seeds), 10, spherical=True)
    for b in range(3):
        want_labels, want_centroids = reference_spherical(batch[b].double().numpy(), seeds[b].double().numpy(), 10)
        assert np.array_equal(labels[b].numpy(), want_labels)
        assert np.allclose(centroids[b].numpy(), want_centroids, atol=1e-5)


def test_window_seeds_are_window_averages_at_half_stride():
    dense = torch.randn(1, 4, 32, 32)
    for window, count in ((4, 225), (8, 49), (16, 9)):
        seeds = window_seeds(dense, window)
        assert seeds.shape == (1, count, 4)
        stride = window // 2
        assert torch.allclose(seeds[0, 1], dense[0, :, 0:window, stride : stride + window].mean((1, 2)), atol=1e-6)


def test_rho_rule_keeps_mostly_unannotated_clusters_and_clips_them():
    # 8 patches: cluster 0 = patches 0-3 (all unannotated), cluster 1 = 4-7 (one unannotated).
    assignments = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]])
    unannotated = torch.tensor([[1.0, 1.0, 1.0, 0.6, 0.0, 0.0, 1.0, 0.0]])
    masks, keep = keep_unannotated_clusters(assignments, unannotated, rho=0.8, min_area=0.0)
    assert keep.tolist() == [[True, False]]
    assert masks[0, 0].tolist() == [True, True, True, True, False, False, False, False]
    masks, keep = keep_unannotated_clusters(assignments, unannotated, rho=0.2, min_area=0.0)
    assert keep.tolist() == [[True, True]]
    assert masks[0, 1].tolist() == [False, False, False, False, False, False, True, False]  # clipped


@pytest.mark.parametrize("diagonal", [True, False])
def test_grid_components_are_the_connected_pieces_of_each_cluster(diagonal):
    from scipy import ndimage

    generator = torch.Generator().manual_seed(int(diagonal))
    assignments = torch.randint(0, 4, (3, 9 * 7), generator=generator)
    pieces = grid_components(assignments, 9, 7, diagonal).view(3, 9, 7).numpy()
    structure = np.ones((3, 3)) if diagonal else None
    for b in range(3):
        clusters = assignments[b].view(9, 7).numpy()
        count = 0
        for cluster in np.unique(clusters):
            labelled, found = ndimage.label(clusters == cluster, structure=structure)
            for piece in range(1, found + 1):
                assert len(np.unique(pieces[b][labelled == piece])) == 1  # one piece, one id
            count += found
        assert len(np.unique(pieces[b])) == count  # and no two pieces share an id


def test_rho_rule_per_piece_keeps_an_object_whose_cluster_also_holds_distant_background():
    # One cluster: a 2x2 unannotated object in the top-left corner and, apart from it, four
    # annotated patches that look alike. As one cluster it is half annotated and fails rho = 0.8.
    dense = torch.zeros(1, 4, 6, 6)
    dense[0, 0] = 1.0
    dense[0, 1, 0:2, 0:2] = 5.0
    dense[0, 1, 4:6, 4:6] = 5.0
    unannotated = torch.zeros(1, 6, 6)
    unannotated[0, 0:2, 0:2] = 1.0
    args = ([3], 10, 0.8, 0.0, 0.7, 10)
    ((masks, _),) = propose(dense, unannotated, *args)
    assert masks.shape[0] == 0
    ((masks, _),) = propose(dense, unannotated, *args, components=True)
    assert masks.shape[0] == 1 and torch.equal(masks[0], unannotated[0].bool())


def test_proposals_stay_inside_unannotated_patches():
    torch.manual_seed(0)
    dense = torch.randn(2, 16, 16, 16)
    dense[:, :, 4:12, 4:12] += 5.0  # a distinct object
    unannotated = torch.zeros(2, 16, 16)
    unannotated[:, 3:13, 3:13] = 1.0
    results = propose(dense, unannotated, [2, 4, 8], 10, rho=0.8, min_area=0.01, dedup_iou=0.7, max_masks=20)
    results += propose(dense, unannotated, [2, 4, 8], 10, 0.5, 0.01, 0.7, 20, components=True)
    for masks, scales in results:
        assert masks.shape[0] > 0
        assert not (masks & (unannotated[0] < 0.5)).any()
        assert scales.max() <= 2


def test_deduplicate_drops_near_copies_and_keeps_largest_first():
    a = torch.zeros(3, 10, dtype=torch.bool)
    a[0, :6] = True
    a[1, :5] = True  # IoU with 0 = 5/6
    a[2, 7:] = True
    assert deduplicate(a, 0.7, 10).tolist() == [0, 2]
    assert deduplicate(a, 0.9, 10).tolist() == [0, 1, 2]
    assert deduplicate(a, 0.9, 2).tolist() == [0, 1]


def test_index_map_round_trip():
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[0, :2] = True
    masks[1, 2:] = True
    masks[2, :, :2] = True  # overlaps 0 and 1, from another scale
    packed = index_map(masks, torch.tensor([0, 0, 1]), 2)
    assert packed.dtype == torch.uint8 and packed.shape == (2, 4, 4)
    assert torch.equal(masks_from_index_map(packed, 3), masks)


def test_cache_round_trip_and_refuses_other_settings(tmp_path):
    cache = PseudoMaskCache(tmp_path / "c", {"clip": "abc", "rho": 0.8})
    index = np.random.randint(0, 3, size=(3, 8, 8), dtype=np.uint8)
    embeddings = np.random.randn(2, 16).astype(np.float32)
    cache.save("img_1", index, embeddings)
    got_index, got_embeddings = PseudoMaskCache(tmp_path / "c", {"rho": 0.8, "clip": "abc"}).load("img_1")
    assert np.array_equal(got_index, index)
    assert np.allclose(got_embeddings, embeddings, atol=1e-2)
    with pytest.raises(PseudoMaskCacheError, match="rho"):
        PseudoMaskCache(tmp_path / "c", {"clip": "abc", "rho": 0.5})
    with pytest.raises(PseudoMaskCacheError, match="pseudo-masks"):
        cache.load("missing")
    cache.path("broken").write_bytes(b"not a zip")
    with pytest.raises(PseudoMaskCacheError, match="damaged"):
        cache.load("broken")


def test_crop_windows_frame_each_mask_with_context_and_stay_inside():
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[0, 1:3, 1] = True  # box rows 8..24, cols 8..16 in pixels (8-pixel patches)
    masks[1, 0, 0] = True  # a corner patch: the window is shifted inside
    masks[2] = True  # the whole grid: the window cannot exceed the image
    windows = crop_windows(masks, (8, 8), (32, 32), context=1.5)
    assert windows[0].tolist() == [4, 0, 24]  # side 1.5 * 16, centred on (16, 12), shifted to x >= 0
    assert windows[1].tolist() == [0, 0, 12]
    assert windows[2].tolist() == [0, 0, 32]


def test_crop_region_embeddings_are_clip_image_embeddings_of_the_crops():
    from splitmatch.clip.image_encoder import ClipImageEncoder
    from splitmatch.clip.loading import build_clip

    torch.manual_seed(0)
    encoder = ClipImageEncoder(build_clip("tiny-test").visual).eval()
    images = torch.rand(2, 3, 64, 64) * 255
    grid = 64 // encoder.patch_size[0]
    masks = [torch.zeros(2, grid, grid, dtype=torch.bool), torch.zeros(0, grid, grid, dtype=torch.bool)]
    masks[0][0, 1:3, 1:4] = True
    masks[0][1, -1, -1] = True
    got = crop_region_embeddings(encoder, images, masks, context=1.3)
    assert [g.shape[0] for g in got] == [2, 0]
    size = tuple(encoder.visual.image_size)
    for k, (top, left, side) in enumerate(crop_windows(masks[0], encoder.patch_size, (64, 64), 1.3).tolist()):
        crop = F.interpolate(images[:1, :, top : top + side, left : left + side], size=size, mode="bilinear")
        want = encoder(crop, use_prompts=False)["cls_embedding"][0]
        assert torch.allclose(got[0][k], want, atol=1e-5)


def test_fill_cache_writes_every_entry_and_a_failed_fill_resumes(tiny_dataset, monkeypatch):
    from splitmatch.config import merge
    from splitmatch.config.presets import preset
    from splitmatch.model.build import build_segmentor
    from splitmatch.pseudo import cache as cache_module
    from splitmatch.pseudo.build_cache import fill_cache, open_cache

    config = merge(preset("tiny"), {"data": {"root": str(tiny_dataset.root)}})
    encoder = build_segmentor(config.clip, config.decoder).image_encoder
    cache = open_cache(config.pseudo, config.clip, tiny_dataset, encoder)
    stems = [s.stem for s in tiny_dataset.samples("train")]
    # The writer thread's error comes back to the caller; entries written before it are whole.
    save, calls = cache_module.PseudoMaskCache.save, []

    def failing_save(self, stem, *args):
        calls.append(stem)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        save(self, stem, *args)

    monkeypatch.setattr(cache_module.PseudoMaskCache, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        fill_cache(cache, encoder, config.pseudo, tiny_dataset, "train", batch_size=2, progress=False)
    monkeypatch.setattr(cache_module.PseudoMaskCache, "save", save)
    written = [stem for stem in stems if cache.has(stem)]
    assert 3 <= len(written) < len(stems) and calls[3] not in written
    assert all(cache.problem(stem) is None for stem in written)
    assert not [p for p in cache.directory.iterdir() if p.suffix not in (".npz", ".json")]
    # A second fill computes only the missing entries, and every one is flushed when it returns.
    computed = fill_cache(cache, encoder, config.pseudo, tiny_dataset, "train", batch_size=2, progress=False)
    assert computed == len(stems) - len(written)
    assert all(cache.has(stem) and cache.problem(stem) is None for stem in stems)
    first = {stem: cache.load(stem) for stem in stems}
    # The same masks as one uninterrupted fill of a fresh cache.
    elsewhere = merge(config, {"pseudo": {"cache_dir": str(tiny_dataset.root / "fresh")}})
    fresh = open_cache(elsewhere.pseudo, elsewhere.clip, tiny_dataset, encoder)
    assert fill_cache(fresh, encoder, config.pseudo, tiny_dataset, "train", batch_size=3, progress=False) == len(stems)
    for stem in stems:
        index_map, embeddings = fresh.load(stem)
        assert np.array_equal(index_map, first[stem][0]) and np.array_equal(embeddings, first[stem][1])


@pytest.mark.parametrize("features", ["sclip", "scclip"])
def test_pseudo_masks_cluster_the_dense_features_chosen_and_the_cache_key_says_which(
    tiny_dataset, features, monkeypatch
):
    from splitmatch.config import merge
    from splitmatch.config.presets import preset
    from splitmatch.model.build import build_segmentor
    from splitmatch.pseudo import generator
    from splitmatch.pseudo.build_cache import cache_fingerprint, open_cache

    config = merge(preset("tiny"), {"data": {"root": str(tiny_dataset.root)}})
    chosen = merge(config, {"pseudo": {"dense_features": features}})
    encoder = build_segmentor(config.clip, config.decoder).image_encoder
    default = open_cache(config.pseudo, config.clip, tiny_dataset, encoder)
    other = open_cache(chosen.pseudo, chosen.clip, tiny_dataset, encoder)
    assert default.directory != other.directory  # another key, another folder
    assert (
        cache_fingerprint(chosen.pseudo, chosen.clip, encoder, tiny_dataset.classes)["pseudo"]["dense_features"]
        == features
    )
    images = torch.randint(0, 256, (2, 3, 32, 32)).float()
    unannotated = torch.ones(2, 32, 32)
    seen = {}
    original = generator.propose

    def recording(dense, *args, **kwargs):
        seen["dense"] = dense
        return original(dense, *args, **kwargs)

    monkeypatch.setattr(generator, "propose", recording)
    generator.PseudoMaskGenerator(encoder, chosen.pseudo)(images, unannotated)
    expected = encoder(images, use_prompts=False, dense_recipe=features)["dense_recipe"]
    torch.testing.assert_close(seen["dense"], expected)
