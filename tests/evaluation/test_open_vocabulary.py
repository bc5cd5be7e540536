"""Any checkpoint on any class list: other datasets, reordered, renamed, subsets, synonyms."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from command_lines import predict_args, tiny_train_args
from conftest import TINY_CLASSES, make_tiny_dataset
from PIL import Image

from splitmatch.cli import main
from splitmatch.config.presets import preset
from splitmatch.data.classes import ClassSplit, ClassSplitError, class_texts, parse_class_entries, parse_class_list
from splitmatch.data.folder import DatasetFolder, read_image, read_label, write_label
from splitmatch.data.vocabulary import Vocabulary, read_vocabulary, vocabulary_from_dict
from splitmatch.evaluation.evaluator import trained_mask
from splitmatch.model.build import build_segmentor
from splitmatch.predict.loading import names_trained_on
from splitmatch.predict.predictor import Predictor


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[DatasetFolder, Path]:
    """The tiny dataset and a checkpoint really trained on it (background, red, green, blue seen)."""
    root = tmp_path_factory.mktemp("vocab")
    folder = make_tiny_dataset(root / "data")
    out = root / "run"
    assert main(tiny_train_args(folder.root, out, iterations=10)) == 0
    return folder, out / "model.safetensors"


def evaluate_cli(checkpoint: Path, json_path: Path, *extra: str) -> dict:
    assert main(["eval", "--checkpoint", str(checkpoint), "--json", str(json_path), *extra]) == 0
    return json.loads(json_path.read_text())


def permuted_copy(folder: DatasetFolder, order: list[int], dst: Path) -> DatasetFolder:
    """The same dataset with its class list in another order: labels rewritten, images shared."""
    classes = folder.classes
    new_id = np.full(256, 255, np.uint8)
    new_id[order] = np.arange(len(order))  # old id order[k] -> new id k
    for split in folder.split_names():
        for sample in folder.samples(split):
            (dst / "images").mkdir(parents=True, exist_ok=True)
            shutil.copy(sample.image_path, dst / "images" / sample.image_path.name)
            write_label(dst / "labels" / f"{sample.stem}.png", new_id[read_label(sample.label_path, 5)])
        shutil.copytree(folder.root / "splits", dst / "splits", dirs_exist_ok=True)
    ClassSplit(tuple(classes.names[i] for i in order), classes.unseen, "tiny-permuted").write(dst / "classes.json")
    return DatasetFolder(dst)


def test_a_permuted_class_list_leaves_every_class_iou_unchanged(trained, tmp_path, capsys):
    folder, checkpoint = trained
    own = evaluate_cli(checkpoint, tmp_path / "own.json")
    order = [4, 2, 0, 3, 1]  # yellow, green, background, blue, red
    permuted = permuted_copy(folder, order, tmp_path / "permuted")
    by_folder = evaluate_cli(checkpoint, tmp_path / "folder.json", "--data-root", str(permuted.root))
    vocabulary = tmp_path / "order.json"
    vocabulary.write_text(json.dumps({"classes": [folder.classes.names[i] for i in order]}))
    by_file = evaluate_cli(checkpoint, tmp_path / "file.json", "--vocabulary", str(vocabulary))
    assert sum(v > 0 for v in own["per_class_iou"].values()) >= 2  # a model that does find classes
    for other in (by_folder, by_file):
        assert list(other["per_class_iou"]) == [folder.classes.names[i] for i in order]
        assert {k: other["per_class_iou"][k] for k in own["per_class_iou"]} == own["per_class_iou"]
        assert other["mistaken_for"] == own["mistaken_for"]
        for key in ("miou", "miou_seen", "miou_unseen", "hiou", "pixel_acc", "miou_trained", "miou_other"):
            assert other[key] == pytest.approx(own[key], abs=1e-9), key
        assert set(other["trained_names"]) == {"background", "red", "green", "blue"}


def test_a_subset_is_scored_with_its_own_names_only(trained, tmp_path):
    """Only the unseen name plus background: other classes' pixels are ignored, and the result
    equals a confusion matrix counted by hand from Predictor's labels."""
    folder, checkpoint = trained
    vocabulary = tmp_path / "subset.json"
    vocabulary.write_text(json.dumps({"classes": ["background", "yellow"]}))
    metrics = evaluate_cli(checkpoint, tmp_path / "m.json", "--vocabulary", str(vocabulary))
    assert metrics["vocabulary"]["left_out"] == ["red", "green", "blue"]
    assert metrics["trained_names"] == ["background"] and metrics["other_names"] == ["yellow"]
    assert metrics["miou_unseen"] == metrics["per_class_iou"]["yellow"]  # the dataset's unseen class, kept
    predictor = Predictor.from_checkpoint(checkpoint)
    hand = np.zeros((2, 2), np.int64)
    for sample in folder.samples("val"):
        label = read_label(sample.label_path, 5)
        predicted = predictor.predict(read_image(sample.image_path), ["background", "yellow"])
        keep = (label == 0) | (label == 4)
        np.add.at(hand, ((label[keep] == 4).astype(int), predicted[keep]), 1)
    for k, name in enumerate(["background", "yellow"]):
        union = hand[k].sum() + hand[:, k].sum() - hand[k, k]
        assert metrics["per_class_iou"][name] == pytest.approx(100 * hand[k, k] / union if union else None)


def test_renamed_classes_are_split_by_the_names_the_checkpoint_knows(trained, tmp_path, capsys):
    folder, checkpoint = trained
    other = json.loads((folder.root / "classes.json").read_text())
    renamed = tmp_path / "renamed"
    shutil.copytree(folder.root, renamed)
    other["classes"][1] = other["seen"][1] = "crimson"  # a class the checkpoint knows as 'red'
    other["dataset"] = "tiny-renamed"
    (renamed / "classes.json").write_text(json.dumps(other))
    capsys.readouterr()
    metrics = evaluate_cli(checkpoint, tmp_path / "m.json", "--data-root", str(renamed))
    out = capsys.readouterr().out
    assert metrics["trained_names"] == ["background", "green", "blue"]
    assert metrics["other_names"] == ["crimson", "yellow"]
    iou = metrics["per_class_iou"]
    assert metrics["miou_other"] == pytest.approx(np.nanmean([iou["crimson"], iou["yellow"]]))
    assert "3 of these 5 class names were trained on (background, green, blue)" in out
    assert "crimson  " in out and "| mIoU(trained names) |" in out
    # A vocabulary file gives the old name back as a synonym: the class counts as trained on again.
    vocabulary = tmp_path / "synonym.json"
    vocabulary.write_text(json.dumps({"classes": other["classes"], "synonyms": {"crimson": ["red"]}}))
    extra = ["--data-root", str(renamed), "--vocabulary", str(vocabulary)]
    metrics = evaluate_cli(checkpoint, tmp_path / "s.json", *extra)
    assert "crimson" in metrics["trained_names"]


def test_a_checkpoint_that_cannot_be_used_is_still_refused(trained, tmp_path, capsys):
    folder, checkpoint = trained
    damaged = tmp_path / "damaged.safetensors"
    data = bytearray(checkpoint.read_bytes())
    data[-100] ^= 0xFF
    damaged.write_bytes(bytes(data))
    permuted = permuted_copy(folder, [1, 0, 2, 3, 4], tmp_path / "permuted")
    assert main(["eval", "--checkpoint", str(damaged), "--data-root", str(permuted.root)]) == 2
    assert "damaged" in capsys.readouterr().err


@pytest.mark.parametrize(
    "vocabulary, message",
    [
        ({"classes": ["background", "violet"]}, "'violet' name no class of dataset 'tiny'"),
        ({"classes": ["a", "b"], "renamed": {"a": "red", "b": "red"}}, r"\['red'\] are taken by more than one"),
        ({"classes": ["red"], "renamed": {"blue": "green"}}, r"'renamed' gives \['blue'\]"),
        ({"classes": ["red", "blue"], "synonyms": {"red": ["blue"]}}, "are names of other classes"),
        ({"classes": "red"}, "'classes' must be a list"),
    ],
)
def test_bad_vocabulary_files_are_named(trained, tmp_path, capsys, vocabulary, message):
    _, checkpoint = trained
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(vocabulary))
    assert main(["eval", "--checkpoint", str(checkpoint), "--vocabulary", str(path)]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and re.search(message, err), err


def test_vocabulary_relabels_by_name_and_inherits_unseen_and_synonyms():
    dataset = ClassSplit(("background", "red", "tv", "yellow"), ("yellow",), "d", {"tv": ("television",)})
    vocabulary = vocabulary_from_dict(
        {"classes": ["monitor", "yellow", "background"], "renamed": {"monitor": "tv"}}, dataset
    )
    assert vocabulary.classes.names == ("monitor", "yellow", "background")
    assert vocabulary.classes.unseen == ("yellow",)
    assert vocabulary.classes.synonyms == {"monitor": ("television",)}
    assert vocabulary.left_out == ["red"]
    label = np.array([[0, 1, 2, 3, 255]], np.uint8)
    assert vocabulary.relabel(label).tolist() == [[2, 255, 0, 1, 255]]
    explicit = vocabulary_from_dict({"classes": ["red", "yellow"], "unseen": []}, dataset)
    assert explicit.classes.unseen == ()
    same = Vocabulary.of_dataset(dataset)
    assert same.is_identity and same.relabel(label) is label


def test_vocabulary_over_more_than_255_classes_relabels_16_bit_labels(tmp_path):
    many = ClassSplit(tuple(f"class {i}" for i in range(300)), (), "many")
    subset = vocabulary_from_dict({"classes": ["class 299", "class 3"]}, many)
    label = np.array([[299, 3, 255, 65535, 0]], np.uint16)
    relabelled = subset.relabel(label)
    assert relabelled.dtype == np.uint8 and relabelled.tolist() == [[0, 1, 255, 255, 255]]
    path = tmp_path / "v.json"
    path.write_text('{"classes": ["class 7"]')
    with pytest.raises(ClassSplitError, match="v.json is not valid JSON"):
        read_vocabulary(path, many)


def test_synonyms_in_classes_json_round_trip_and_are_checked(tmp_path):
    split = ClassSplit(("tvmonitor", "cat"), ("cat",), "s", {"tvmonitor": ["tv monitor", "television"]})
    split.write(tmp_path / "classes.json")
    data = json.loads((tmp_path / "classes.json").read_text())
    assert data["synonyms"] == {"tvmonitor": ["tv monitor", "television"]}
    assert ClassSplit.read(tmp_path / "classes.json") == split
    assert split.texts == (("tvmonitor", "tv monitor", "television"), ("cat",))
    assert "synonyms" not in ClassSplit(("a", "b"), ()).to_dict()  # files without synonyms stay as they were
    for bad, message in [
        ({"dog": ["puppy"]}, r"\['dog'\], which are not classes"),
        ({"cat": ["kitty", "kitty"]}, "appears twice"),
        ({"cat": [" "]}, "empty name"),
    ]:
        with pytest.raises(ClassSplitError, match=message):
            ClassSplit(("tvmonitor", "cat"), (), "s", bad)
    data["synonyms"] = {"cat": "kitty"}
    (tmp_path / "classes.json").write_text(json.dumps(data))
    with pytest.raises(ClassSplitError, match="'synonyms' must map class names to lists"):
        ClassSplit.read(tmp_path / "classes.json")


def test_class_list_syntax_with_synonyms():
    text = "cat, tv monitor | television,sofa"
    assert parse_class_entries(text) == [("cat",), ("tv monitor", "television"), ("sofa",)]
    assert parse_class_list(text) == ["cat", "tv monitor", "sofa"]
    with pytest.raises(ClassSplitError, match="appears twice"):
        parse_class_entries("cat,dog|puppy|dog")
    with pytest.raises(ClassSplitError, match=r"\['cat'\] of class 'dog' are names of other classes"):
        parse_class_list("cat,dog|cat")
    with pytest.raises(ClassSplitError, match="empty name"):
        parse_class_entries("cat,|dog")
    assert class_texts(["a", ("b", "c")]) == (("a",), ("b", "c"))
    from splitmatch.app.segment import parse_entries, parse_names  # the app's name box reads the same syntax

    assert parse_entries("background, tv monitor|television") == [("background",), ("tv monitor", "television")]
    assert parse_names("background, tv monitor|television") == ["background", "tv monitor"]


def test_a_class_of_several_names_embeds_as_the_mean_of_its_names():
    torch.manual_seed(0)
    model = build_segmentor(preset("tiny").clip, preset("tiny").decoder).eval()
    single = model.encode_classes(["tv monitor", "television", "cat"])
    mixed = model.encode_classes([("tv monitor", "television"), "cat"])
    assert torch.allclose(mixed[0], F.normalize(single[0] + single[1], dim=0), atol=1e-6)
    assert torch.equal(mixed[1], single[2])  # a plain name is embedded exactly as before
    assert torch.equal(model.encode_classes(["tv monitor", "cat"])[0], single[0])
    assert model.encode_classes([("tv monitor", "television"), "cat"]) is mixed  # cached per list
    assert torch.allclose(model.encode_classes([("television", "tv monitor"), "cat"])[0], mixed[0], atol=1e-6)


def test_predict_takes_synonyms_on_the_command_line_and_in_python(trained, tmp_path, capsys):
    folder, checkpoint = trained
    image_path = folder.samples("val")[0].image_path
    out = tmp_path / "pred"
    capsys.readouterr()
    assert main(predict_args(checkpoint, "background,crimson|red,green", out, str(image_path))) == 0
    written = np.array(Image.open(out / f"{image_path.stem}_labels.png"))
    predictor = Predictor.from_checkpoint(checkpoint)
    labels = predictor.predict(read_image(image_path), ["background", ("crimson", "red"), "green"])
    assert np.array_equal(written, labels)
    assert "crimson|red" not in capsys.readouterr().out  # classes are shown by their first name


def test_the_seen_calibration_follows_the_names_trained_on(trained):
    _, checkpoint = trained
    from splitmatch.model.checkpoint import read_record

    record = read_record(checkpoint)
    assert names_trained_on(record) == {"background", "red", "green", "blue"}
    vocabulary = ClassSplit(("yellow", "crimson", "ruby"), (), "v", {"ruby": ("red",)})
    assert trained_mask(vocabulary, names_trained_on(record)).tolist() == [False, False, True]
    assert trained_mask(TINY_CLASSES).tolist() == [True, True, True, True, False]


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).resolve().parents[2] / "configs" / "vocabularies").glob("*.json"))
)
def test_shipped_world_vocabularies_fit_the_world(path):
    from splitmatch.world.generator import world_class_split

    world = world_class_split()
    vocabulary = read_vocabulary(path, world)
    assert set(vocabulary.classes.names) <= set(world.names)
    assert vocabulary.classes.unseen == tuple(n for n in vocabulary.classes.names if n in world.unseen)
