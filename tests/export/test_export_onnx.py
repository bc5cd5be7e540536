"""`splitmatch export --onnx`: the file onnxruntime runs computes what `Predictor` computes.

The packaged world model is exported once for the world's 13 classes; world images rendered at
the exported size are labelled by onnxruntime and by `Predictor.predict`. Skipped only where
onnxruntime is not installed (CI installs the `onnx` extra).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")

from splitmatch import __version__  # noqa: E402
from splitmatch.cli import main  # noqa: E402
from splitmatch.export.fixed_vocabulary import FixedVocabularySegmentation  # noqa: E402
from splitmatch.export.metadata import read_export_metadata  # noqa: E402
from splitmatch.inference.images import predict_scores  # noqa: E402
from splitmatch.model.checkpoint import read_record, save_checkpoint  # noqa: E402
from splitmatch.predict.packaged_model import PACKAGED_MODEL_NAME, checkpoint_file  # noqa: E402
from splitmatch.predict.predictor import Predictor  # noqa: E402
from splitmatch.world.generator import DEFAULT_SPEC, image_rng, render_image  # noqa: E402

WORLD_NAMES = (
    "background",
    "circle",
    "square",
    "triangle",
    "star",
    "heart",
    "ring",
    "cross",
    "hexagon",
    "crescent",
    "diamond",
    "arrow",
    "bolt",
)
SIZE = 96  # the packaged model's inference.short_side: the default export size
# Two classes whose top PyTorch scores lie this close are a tie: float32 reordering between
# runtimes (~1e-5 on these scores) may pick either.
TIE_TOLERANCE = 1e-4


def _session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _world_images(count: int) -> np.ndarray:
    """``uint8 [count, SIZE, SIZE, 3]`` validation images of the world, drawn at the exported size."""
    spec = dataclasses.replace(DEFAULT_SPEC, size_range=(SIZE, SIZE), size_mode=SIZE)
    return np.stack([render_image(image_rng(0, "val", index), spec)[0] for index in range(count)])


def _as_input(images: np.ndarray) -> np.ndarray:
    """``uint8 [B, H, W, 3]`` -> the exported graph's input, ``float32 [B, 3, H, W]`` 0..255."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)


def _ties(scores: torch.Tensor) -> np.ndarray:
    """``[C, H, W]`` -> ``[H, W]`` bool: where the two best classes are within TIE_TOLERANCE."""
    best = scores.topk(2, dim=0).values  # [2, H, W]
    return (best[0] - best[1] <= TIE_TOLERANCE).numpy()


@pytest.fixture(scope="module")
def world_export(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "world.onnx"
    assert main(["export", "--onnx", str(path), "--classes", ",".join(WORLD_NAMES)]) == 0
    return path


@pytest.fixture(scope="module")
def world_predictor() -> Predictor:
    return Predictor.packaged(device="cpu")


@pytest.mark.slow
def test_onnxruntime_labels_equal_predictor_labels_but_for_ties(world_export, world_predictor):
    images = _world_images(6)
    scores, labels = _session(world_export).run(None, {"images": _as_input(images)})
    assert scores.shape == (6, len(WORLD_NAMES), SIZE, SIZE) and labels.shape == (6, SIZE, SIZE)
    embeddings, seen = world_predictor.encode_vocabulary(WORLD_NAMES)
    agree = differ_off_ties = ties = 0
    for index, image in enumerate(images):
        expected = world_predictor.predict(image, WORLD_NAMES)  # [H, W], what `splitmatch predict` writes
        reference = predict_scores(
            world_predictor.inference, image, embeddings, seen, world_predictor.config, world_predictor.device
        )  # [C, H, W]
        np.testing.assert_allclose(scores[index], reference.numpy(), rtol=0, atol=1e-4)
        same = labels[index] == expected
        tie = _ties(reference)
        agree += int(same.sum())
        differ_off_ties += int((~same & ~tie).sum())
        ties += int(tie.sum())
    pixels = images.shape[0] * SIZE * SIZE
    share = agree / pixels
    print(f"argmax agreement with Predictor.predict: {share:.6f} of {pixels} pixels ({ties} ties)")
    assert differ_off_ties == 0, f"{differ_off_ties} pixels differ where PyTorch's best class leads clearly"
    assert ties / pixels < 1e-3  # ties are rare: the comparison above is not vacuous
    assert share >= 1 - ties / pixels


@pytest.mark.slow
def test_batch_of_three_gives_each_image_what_batch_one_gives(world_export):
    session = _session(world_export)
    batch = _as_input(_world_images(3))
    scores, labels = session.run(None, {"images": batch})
    for index in range(3):
        one_scores, one_labels = session.run(None, {"images": batch[index : index + 1]})
        np.testing.assert_allclose(scores[index], one_scores[0], rtol=0, atol=1e-5)
        tie = _ties(torch.from_numpy(one_scores[0]))
        assert ((labels[index] == one_labels[0]) | tie).all()


@pytest.mark.slow
def test_the_graph_computes_the_predictors_window_scores_exactly(world_predictor):
    """In PyTorch, the exported module is Predictor's own computation, bit for bit."""
    image = _world_images(1)[0]
    module = FixedVocabularySegmentation(world_predictor, WORLD_NAMES)
    with torch.no_grad():
        scores, labels = module(torch.from_numpy(_as_input(image[None])))
    embeddings, seen = world_predictor.encode_vocabulary(WORLD_NAMES)
    reference = predict_scores(
        world_predictor.inference, image, embeddings, seen, world_predictor.config, world_predictor.device
    )
    assert torch.equal(scores[0], reference)
    assert np.array_equal(labels[0].numpy(), world_predictor.predict(image, WORLD_NAMES))


@pytest.mark.slow
def test_metadata_says_what_was_exported(world_export, world_predictor):
    metadata = read_export_metadata(world_export)
    assert metadata["classes"] == [[name] for name in WORLD_NAMES]
    assert metadata["input_size"] == [SIZE, SIZE]
    assert metadata["checkpoint"] == PACKAGED_MODEL_NAME
    assert metadata["checkpoint_digest"] == read_record(checkpoint_file(PACKAGED_MODEL_NAME))["digest"]
    assert metadata["version"] == __version__
    encoder = world_predictor.model.image_encoder
    assert metadata["normalisation"]["mean"] == pytest.approx(encoder.pixel_mean.flatten().tolist(), abs=1e-5)
    assert metadata["normalisation"]["std"] == pytest.approx(encoder.pixel_std.flatten().tolist(), abs=1e-5)
    assert metadata["seen_classes"] == sorted(metadata["seen_classes"], key=WORLD_NAMES.index)
    assert "square" not in metadata["seen_classes"] and "circle" in metadata["seen_classes"]
    assert metadata["inference"]["short_side"] == SIZE
    # onnxruntime shows the same keys to a user without splitmatch.
    stored = _session(world_export).get_modelmeta().custom_metadata_map
    assert {f"splitmatch.{key}" for key in metadata} == set(stored)
    inputs = _session(world_export).get_inputs()
    assert [(i.name, i.type, i.shape[1:]) for i in inputs] == [("images", "tensor(float)", [3, SIZE, SIZE])]
    assert isinstance(inputs[0].shape[0], str)  # the batch dimension is dynamic


@pytest.mark.slow
def test_a_checkpoint_with_calibration_synonyms_a_wide_size_and_an_opset(tiny_dataset, tmp_path, capsys):
    from splitmatch.config.presets import preset
    from splitmatch.model.build import build_segmentor

    config = preset("tiny")
    config.inference.seen_calibration = 0.1  # folded into the graph: seen classes lose 0.1
    classes = tiny_dataset.classes
    checkpoint = save_checkpoint(
        tmp_path / "model.safetensors",
        build_segmentor(config.clip, config.decoder),
        config,
        classes,
        classes.seen_names,
        1,
    )
    out = tmp_path / "exports" / "tiny.onnx"
    names = "background,red|crimson,yellow"
    argv = ["export", "--onnx", str(out), "--checkpoint", str(checkpoint), "--classes", names, "--size", "32", "48"]
    assert main([*argv, "--opset", "18"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "opset 18" in printed and "scores [batch, 3, 32, 48]" in printed
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny.onnx"]  # no temporary file left
    metadata = read_export_metadata(out)
    assert metadata["classes"] == [["background"], ["red", "crimson"], ["yellow"]]
    assert metadata["input_size"] == [32, 48] and metadata["checkpoint"] == "model.safetensors"
    assert metadata["seen_classes"] == ["background", "red"]  # yellow is the tiny split's unseen class
    import onnx

    assert [o.version for o in onnx.load(str(out)).opset_import if o.domain in ("", "ai.onnx")] == [18]
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    images = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        expected, _ = FixedVocabularySegmentation(predictor, [("background",), ("red", "crimson"), "yellow"])(images)
    scores, _ = _session(out).run(None, {"images": images.numpy()})
    np.testing.assert_allclose(scores, expected.numpy(), rtol=0, atol=1e-4)
    # Calibrated: each pixel's scores normalised to sum 1, then 0.1 taken off each of the 2 seen classes.
    np.testing.assert_allclose(scores.sum(1), 1 - 0.1 * 2, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--size", "95"], "95"),
        (["--size", "0"], "0"),
        (["--size", "96", "-8"], "-8"),
        (["--size", "96", "96", "96"], "96 96 96"),
        (["--size", "big"], "big"),
        (["--opset", "11"], "11"),
        (["--classes", " ,"], "class list ' ,'"),  # an empty --classes is refused by the parser
        (["--classes", "circle,,star"], "circle,,star"),
        (["--classes", "circle,circle"], "circle"),
    ],
)
def test_bad_values_are_one_line_naming_them(extra, named, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    argv = ["export", "--onnx", str(out), "--classes", "circle,star", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("splitmatch: error:") and named in err, err
    assert not out.exists()


@pytest.mark.parametrize("where", ["folder", "under_a_file"])
def test_an_unwritable_output_is_named_before_the_export(where, tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    out = tmp_path if where == "folder" else tmp_path / "file.txt" / "model.onnx"
    assert main(["export", "--onnx", str(out), "--classes", "circle,star"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path) in err, err
    assert (tmp_path / "file.txt").read_text() == "x"
