"""Records what the training step's host side computed before its rework, on the tests' own inputs.

The tests of the targets, the matcher, the criterion, the dataset and the transforms compare the
library with the code before the host-step rework through ``tests/fixtures/host_step_reference.safetensors``
(read by ``tests/host_step_fixture.py``), so that no test imports from ``benchmarks/``. This
script writes that file: it rebuilds the code before the rework from the git history
(``reference_code.py``, as ``bench_host_step.py`` does), builds every case's inputs with the
test files' own helpers and cases (imported from them) and records what the old code returns:
targets, assignments, losses and gradients, host synchronisations, dataset items, HSV steps,
photometric draws and pixels, transformed maps. Run it after changing one of those tests' cases
or inputs, from the repository root with the project's environment::

    python benchmarks/record_host_step_fixture.py
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np
import PIL
import torch
from reference_code import COMMIT, FOLDER, reference_modules

from splitmatch.testing import host_syncs

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))  # the test files import their helpers from there

from host_step_fixture import FIXTURE, save_recorded, targets_values, value_name  # noqa: E402


def load_test_module(relative: str):
    """The test module at ``tests/<relative>``, imported for its helpers and cases."""
    path = TESTS / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def array_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))  # a flip leaves negative strides


def pairs_values(prefix: str, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return targets_values(prefix, [{"rows": rows, "cols": cols} for rows, cols in pairs])


def record_targets(reference, maps) -> dict[str, torch.Tensor]:
    """``test_target_maps``: the unpacked targets of every label dtype and minimum pseudo-mask area."""
    values = {}
    for dtype, ignore in maps.TARGET_CASES:
        for min_area in maps.MIN_AREAS:
            batch = maps.reference_batch(dtype, ignore)
            args = (maps.train_ids(dtype), batch["pseudo_index"], batch["pseudo_embeddings"], ignore, min_area)
            targets = reference.targets.build_targets(batch["label"].long(), *args)
            values.update(targets_values(maps.targets_key(dtype, min_area), targets))
    return values


def record_criterion(reference, tests) -> dict[str, torch.Tensor]:
    """``test_criterion_reference``: assignments per read-out, loss terms and gradients, synchronisations
    per call, and the unpacked targets the criterion still reads."""
    code = (reference.matcher, reference.criterion.SetCriterion)
    values = {}
    for matching, map_size, points in tests.MATCH_CASES:
        data, out, coords = tests.matching_inputs(map_size, points)
        targets = tests.targets_of(data, matching, reference.targets)
        matcher = tests.matchers(reference.matcher, matching, points)
        for index, readout in enumerate([out, *out["aux_outputs"]]):
            before = matcher(readout, targets, coords)
            prefix = value_name("matchings", matching, map_size, points, index)
            values.update(pairs_values(value_name(prefix, "seen"), before.seen))
            if before.candidate is not None:
                values.update(pairs_values(value_name(prefix, "candidate"), before.candidate))
            values[value_name(prefix, "class_queries")] = before.class_queries
    for matching, sampling, layers in tests.LOSS_CASES:
        targets = tests.targets_of(tests.batch(64), matching, reference.targets)
        losses, gradients = tests.losses_and_gradients(
            tests.criterion_of(matching, 256, sampling, code), targets, layers
        )
        case = value_name("losses", matching, sampling, layers)
        values.update({value_name(case, "terms", name): term.detach() for name, term in losses.items()})
        values[value_name(case, "gradients")] = gradients
    for matching, layers in tests.SYNC_CASES:
        targets = tests.targets_of(tests.batch(32), matching, reference.targets)
        move = lambda targets: [{k: v.to(host_syncs.DEVICE) for k, v in t.items()} for t in targets]  # noqa: E731
        counts = tests.counted_call(tests.criterion_of(matching, 128, "uniform", code), targets, layers, move)
        values[value_name("syncs", matching, layers)] = torch.tensor(counts.total_syncs)
    values.update(targets_values("unpacked", tests.targets_of(tests.batch(24), "split", reference.targets)))
    return values


def record_items(reference, tests) -> dict[str, torch.Tensor]:
    """``test_dataset``: the training dataset's items (augmented, with pseudo masks) for every key."""
    values = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = tests.write_folder(Path(scratch))
        transform = reference.transforms.build_train_transform(*tests.TRAIN_TRANSFORM)
        dataset = reference.dataset.SegmentationDataset(folder, "train", transform, True, tests.FakePseudoMasks())
        for index in tests.ITEM_KEYS:
            item = dataset[index]
            values.update({value_name(tests.item_key(index), field): item[field] for field in tests.ITEM_FIELDS})
    return values


def record_transforms(reference, tests) -> dict[str, torch.Tensor]:
    """``test_transforms``: exact HSV steps, photometric distortions and their draws, the training
    transform's image, label and eagerly resized pseudo-index map."""
    values = {}
    image = tests.hsv_image()
    for saturation, hue in tests.HSV_CASES:
        values[value_name("hsv", saturation, hue)] = array_tensor(reference.colour.adjust_hsv(image, saturation, hue))
    sample = tests.distortion_sample()
    for seed in tests.DISTORTION_SEEDS:
        rng = np.random.default_rng(seed)
        values[value_name("distortion", seed, "image")] = array_tensor(
            reference.transforms.PhotometricDistortion()(sample, rng)["image"]
        )
        values[value_name("distortion", seed, "next_draw")] = torch.tensor(rng.random(), dtype=torch.float64)
    transform = reference.transforms.build_train_transform(*tests.MAPS_TRANSFORM)
    for seed in tests.MAPS_SEEDS:
        inputs = tests.maps_inputs(seed)
        pseudo_index = reference.transforms.resize_nearest(inputs["grid"], inputs["label"].shape)
        sample = {"image": inputs["image"], "label": inputs["label"], "pseudo_index": pseudo_index}
        out = transform(sample, np.random.default_rng(seed))
        values.update(
            {value_name("maps", seed, field): array_tensor(out[field]) for field in ("image", "label", "pseudo_index")}
        )
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=FIXTURE, help="where to write (default: the tests' fixture)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one reduction order, whatever the machine's cores
    with reference_modules() as reference:
        values = {
            **record_targets(reference, load_test_module("matching/test_target_maps.py")),
            **record_criterion(reference, load_test_module("losses/test_criterion_reference.py")),
            **record_items(reference, load_test_module("data/test_dataset.py")),
            **record_transforms(reference, load_test_module("data/test_transforms.py")),
        }
    about = {
        "source": f"{FOLDER} at commit {COMMIT}, run by benchmarks/record_host_step_fixture.py",
        "versions": f"torch {torch.__version__}, numpy {np.__version__}, Pillow {PIL.__version__}",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_recorded({name: value.detach().contiguous() for name, value in values.items()}, about, args.output)
    size = args.output.stat().st_size
    print(f"recorded {len(values)} values of the code before the rework in {args.output} ({size:,} bytes)")


if __name__ == "__main__":
    main()
