"""The pseudo-unseen proxy: held-out seen classes behave exactly as unseen ones, from the training split alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_CLASSES

from splitmatch.config.presets import load_config
from splitmatch.data.class_lists import BUILTIN_SPLITS
from splitmatch.data.classes import ClassSplit, ClassSplitError
from splitmatch.data.dataset import SegmentationDataset
from splitmatch.data.experiment_folder import ExperimentFolder, open_dataset
from splitmatch.data.folder import DatasetFolder, DatasetFormatError, read_label
from splitmatch.data.proxy import PROXY_VAL_SPLIT, build_proxy, default_held_out_count
from splitmatch.matching.target_maps import dense_masks
from splitmatch.model.build import build_segmentor
from splitmatch.model.segmentor import SplitMatchSegmentor
from splitmatch.pseudo.build_cache import fill_cache, open_cache
from splitmatch.train import trainer
from splitmatch.train.data import build_train_dataset
from splitmatch.train.targets import build_targets
from splitmatch.world.generator import WorldSpec, generate_world

VOC = BUILTIN_SPLITS["voc"]
STEMS = [f"img_{i:03d}" for i in range(40)]


def test_a_drawn_proxy_holds_out_seen_classes_and_training_images():
    proxy = build_proxy(VOC, STEMS, "train", val_fraction=0.25, seed=0)
    assert len(proxy.held_out) == default_held_out_count(VOC) == 4  # 15 seen x 5 / 20 unseen, rounded
    assert set(proxy.held_out) <= set(VOC.seen_names)
    assert proxy.proxy_seen == [n for n in VOC.seen_names if n not in proxy.held_out] and len(proxy.proxy_seen) == 11
    assert len(proxy.val_stems) == 10 and set(proxy.val_stems) <= set(STEMS)
    reversed_list = build_proxy(VOC, STEMS[::-1], "train", val_fraction=0.25, seed=0)
    assert set(reversed_list.val_stems) == set(proxy.val_stems)  # the seed's alone, whatever the file's order
    assert build_proxy(VOC, STEMS, "train", val_fraction=0.25, seed=1) != proxy
    training = proxy.training_classes
    assert set(training.unseen) == set(proxy.held_out) | set(VOC.unseen) and training.names == VOC.names


def test_a_draw_never_holds_out_the_background():
    held = {build_proxy(TINY_CLASSES, STEMS, "train", count=2, seed=seed).held_out for seed in range(20)}
    assert len(held) > 1 and all("background" not in pair for pair in held)
    listed = build_proxy(TINY_CLASSES, STEMS, "train", held_out=["background"])
    assert listed.held_out == ("background",)  # named on purpose, it is held out


def test_the_proxys_scoring_leaves_the_benchmarks_unseen_classes_out():
    proxy = build_proxy(VOC, STEMS, "train", held_out=["cat", "bus"])
    vocabulary = proxy.vocabulary()
    assert proxy.held_out == ("bus", "cat")  # label-id order
    assert vocabulary.classes.names == tuple(VOC.seen_names) and vocabulary.classes.unseen == ("bus", "cat")
    assert vocabulary.left_out == list(VOC.unseen) == proxy.left_out
    label = np.array([[VOC.names.index("sheep"), VOC.names.index("cat"), VOC.names.index("aeroplane"), 255]], np.uint8)
    relabelled = vocabulary.relabel(label)
    assert relabelled.tolist() == [[255, vocabulary.classes.names.index("cat"), 0, 255]]  # sheep is void


@pytest.mark.parametrize(
    "held_out, count, message",
    [
        (["sheep"], None, r"names unseen classes \(sheep\): a proxy holds out seen classes only"),
        (["unicorn"], None, r"data.proxy.classes names 1 class\(es\) that 'voc' does not have: unicorn"),
        (list(VOC.seen_names), None, "none would be left to train on"),
        (None, 15, "a proxy keeps at least one to train on"),
    ],
)
def test_a_proxy_that_is_not_one_is_refused_in_one_line(held_out, count, message):
    with pytest.raises(ClassSplitError, match=message):
        build_proxy(VOC, STEMS, "train", held_out=held_out, count=count)


def test_a_proxy_needs_two_training_images():
    with pytest.raises(DatasetFormatError, match="a proxy needs at least two"):
        build_proxy(VOC, STEMS[:1], "train")


def test_the_proxy_folder_splits_the_training_images_and_leaves_the_files_alone(tiny_dataset):
    config = load_config(
        None, "tiny", [f"data.root={tiny_dataset.root}", "data.proxy.enabled=true", "data.proxy.val_fraction=0.25"]
    )
    folder = open_dataset(config.data)
    on_disk = DatasetFolder(tiny_dataset.root)
    train, val = folder.stems("train"), folder.stems(PROXY_VAL_SPLIT)
    assert len(val) == 2 and set(train).isdisjoint(val) and sorted(train + val) == sorted(on_disk.stems("train"))
    assert folder.stems("val") == on_disk.stems("val") and PROXY_VAL_SPLIT in folder.split_names()
    assert folder.evaluation_split("val") == PROXY_VAL_SPLIT
    assert folder.classes.unseen == tuple(n for n in TINY_CLASSES.names if n in {*folder.proxy.held_out, "yellow"})
    assert folder.dataset_classes == on_disk.classes == TINY_CLASSES
    (tiny_dataset.root / "splits" / f"{PROXY_VAL_SPLIT}.txt").write_text("train_000\n")
    with pytest.raises(DatasetFormatError, match="names the proxy's validation images"):
        open_dataset(config.data)


@pytest.fixture(scope="module")
def world_proxy(tmp_path_factory):
    """A small world, the world preset with a proxy holding out three seen shapes, and its pseudo masks."""
    root = tmp_path_factory.mktemp("world")
    world = generate_world(
        root / "world", seed=5, spec=WorldSpec(num_train=24, num_val=4, num_captions=0), progress=False
    )
    overrides = [
        f"data.root={world.root}",
        "data.proxy.enabled=true",
        "data.proxy.classes=[circle, star, ring]",
        "train.iterations=2",
        "train.batch_size=2",
        "data.num_workers=0",
    ]
    return load_config(None, "world", overrides), world


def _pseudo_dataset(config, folder: ExperimentFolder):
    """The training dataset of ``folder`` with its pseudo masks, computed by the world's CLIP."""
    model = build_segmentor(config.clip, config.decoder)
    cache = open_cache(config.pseudo, config.clip, folder, model.image_encoder)
    fill_cache(cache, model.image_encoder, config.pseudo, folder, config.data.train_split, progress=False)
    return build_train_dataset(config.data, folder, cache, 0, (0, 0, 0)), cache


def test_in_the_world_held_out_pixels_are_ignored_and_carried_by_pseudo_masks(world_proxy):
    config, world = world_proxy
    folder = open_dataset(config.data)
    held = [world.classes.names.index(name) for name in ("circle", "star", "ring")]
    dataset, cache = _pseudo_dataset(config, folder)
    _, benchmark_cache = _pseudo_dataset(config, ExperimentFolder(world.root))
    assert cache.directory != benchmark_cache.directory  # another unannotated region, another cache
    assert len(dataset) == len(folder.stems("train")) == 24 - len(folder.proxy.val_stems)
    candidate_pixels = 0
    for i in range(len(dataset)):
        item = dataset[i]  # as training reads it: cropped, flipped, unseen and held-out pixels ignored
        assert not np.isin(item["label"].numpy(), held + world.classes.unseen_ids).any()
        target = build_targets(
            item["label"][None], folder.classes.seen_ids, item["pseudo_index"][None], [item["pseudo_embeddings"]]
        )[0]
        masks = dense_masks(target["pseudo_index"], target["pseudo_ids"])  # [K, H, W]
        candidate_pixels += int(masks.any(0).sum())  # what the candidate queries learn
    assert candidate_pixels > 0
    # Whole images, pseudo masks clipped to the unannotated pixels as training clips them.
    raw = DatasetFolder(world.root)
    proxy_view = SegmentationDataset(folder, "train", inductive=True, pseudo_masks=cache)
    benchmark_view = SegmentationDataset(raw, "train", inductive=True, pseudo_masks=benchmark_cache)
    benchmark_items = {benchmark_view.samples[i].stem: i for i in range(len(benchmark_view))}
    held_pixels = carried = benchmark_carried = 0
    for i in range(len(proxy_view)):
        item = proxy_view[i]
        full = read_label(raw.root / "labels" / f"{item['stem']}.png", raw.classes.num_classes)
        on_held = torch.from_numpy(np.isin(full, held))
        held_pixels += int(on_held.sum())
        carried += int(((item["pseudo_index"] > 0).any(0) & on_held).sum())
        benchmark = benchmark_view[benchmark_items[item["stem"]]]
        benchmark_carried += int(((benchmark["pseudo_index"] > 0).any(0) & on_held).sum())
    assert held_pixels > 0 and carried > 0.2 * held_pixels  # the proxy's masks find the held-out objects
    assert benchmark_carried == 0  # annotated in the benchmark run: no pseudo mask may lie there


def test_in_the_world_held_out_and_unseen_names_never_reach_the_model_in_training(world_proxy, tmp_path, monkeypatch):
    config, world = world_proxy
    calls: list[tuple[str, list[str]]] = []
    phase = ["train"]
    encode = SplitMatchSegmentor.encode_classes

    def recording(self, names):
        calls.append((phase[0], [n if isinstance(n, str) else n[0] for n in names]))
        return encode(self, names)

    evaluate = trainer.evaluate

    def evaluating(*args, **kwargs):
        phase[0] = "eval"
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(SplitMatchSegmentor, "encode_classes", recording)
    monkeypatch.setattr(trainer, "evaluate", evaluating)
    metrics = trainer.train(config, tmp_path / "run", progress=False)
    held, unseen = {"circle", "star", "ring"}, set(world.classes.unseen)
    training = [names for when, names in calls if when == "train"]
    assert training and all(set(names) == set(world.classes.seen_names) - held for names in training)
    scoring = [names for when, names in calls if when == "eval"]
    assert scoring and all(held <= set(names) for names in scoring)  # the proxy's test time names them
    assert all(not unseen & set(names) for _, names in calls)  # the benchmark's unseen names: never, anywhere
    assert metrics["proxy"]["held_out"] == ["circle", "star", "ring"]
    assert set(metrics["per_class_iou"]) == set(world.classes.names) - unseen
    assert metrics["trained_names"] == sorted(set(world.classes.seen_names) - held, key=world.classes.names.index)


def test_only_seen_classes_may_make_a_proxy(tiny_dataset):
    config = load_config(
        None, "tiny", [f"data.root={tiny_dataset.root}", "data.proxy.enabled=true", "data.proxy.classes=[yellow]"]
    )
    with pytest.raises(ClassSplitError, match=r"names unseen classes \(yellow\)"):
        open_dataset(config.data)
    one_seen = ClassSplit(("a", "b"), ("b",))
    with pytest.raises(ClassSplitError, match="has 1 seen class"):
        build_proxy(one_seen, STEMS, "train")
