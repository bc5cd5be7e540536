"""A run's images are checked before its first step (splitmatch.data.check): a bad one stops it then."""

from __future__ import annotations

import re

import numpy as np
import pytest
from command_lines import tiny_train_args
from PIL import Image

from splitmatch.cli import main
from splitmatch.data.check import check_run_images, check_sample
from splitmatch.data.folder import DatasetFormatError


def train(capsys, root, out) -> tuple[int, str]:
    code = main(tiny_train_args(root, out))
    return code, capsys.readouterr().err


def test_a_clean_dataset_passes_and_every_sample_is_checked(tiny_dataset):
    assert check_run_images(tiny_dataset, ["train", "val"], decode=["val"]) == 12


def test_a_truncated_validation_image_stops_training_before_its_first_step(tiny_dataset, tmp_path, capsys):
    path = tiny_dataset.root / "images" / "val_001.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header survives: only decoding finds it
    code, err = train(capsys, tiny_dataset.root, tmp_path / "run")
    assert code == 2 and "val_001.png" in err and "split 'val'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # found before anything was written


@pytest.mark.parametrize("damage", ["garbage", "size", "mode"])
def test_bad_training_files_are_named_by_their_headers(tiny_dataset, tmp_path, damage):
    sample = tiny_dataset.samples("train")[3]
    if damage == "garbage":
        sample.image_path.write_bytes(b"not an image at all")
    elif damage == "size":
        Image.fromarray(np.zeros((7, 9), np.uint8)).save(sample.label_path)
    else:
        Image.fromarray(np.zeros((*np.asarray(Image.open(sample.label_path)).shape, 3), np.uint8)).save(
            sample.label_path
        )
    message = {"garbage": "corrupt or truncated", "size": "9x7 (WxH) but its image", "mode": "has mode RGB"}[damage]
    with pytest.raises(DatasetFormatError, match=re.escape(message)):
        check_sample(sample)


def test_an_image_header_claiming_too_many_pixels_is_refused_without_decoding(tiny_dataset):
    sample = tiny_dataset.samples("train")[0]
    Image.new("L", (40, 30)).save(sample.image_path)
    from splitmatch.data import check

    with pytest.raises(DatasetFormatError, match="40x30 = 1,200 pixels, more than the 1,000"):
        check.header_size(sample.image_path, "image", max_pixels=1000)


def test_an_upright_exif_rotation_compares_the_label_with_the_image_as_shown(tiny_dataset):
    sample = tiny_dataset.samples("train")[1]
    image = Image.open(sample.image_path).convert("RGB")
    height, width = image.height, image.width
    rotated = image.transpose(Image.Transpose.ROTATE_90)  # stored sideways, shown upright by its tag
    exif = Image.Exif()
    exif[0x0112] = 6
    path = sample.image_path.with_suffix(".jpg")
    sample.image_path.unlink()
    rotated.save(path, exif=exif)
    (checked,) = [s for s in tiny_dataset.samples("train") if s.stem == sample.stem]
    assert (height, width) != (width, height)
    check_sample(checked)  # the label is drawn on the upright image: no size mismatch
