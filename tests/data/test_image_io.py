"""Images are read the way viewers show them; label maps of more than 255 classes are 16-bit."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from splitmatch.data.augmentation import RandomCrop
from splitmatch.data.classes import ClassSplit, ClassSplitError, ignore_index_for, label_dtype_for
from splitmatch.data.dataset import SegmentationDataset
from splitmatch.data.folder import (
    DatasetFolder,
    DatasetFormatError,
    read_image,
    read_label,
    write_label,
    write_sample,
    write_split,
)
from splitmatch.data.transforms import pad
from splitmatch.evaluation.metrics import ConfusionMatrix
from splitmatch.matching.target_maps import dense_masks
from splitmatch.train.targets import build_targets


def _with_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation  # the EXIF Orientation tag
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif, quality=100, subsampling=0)
    return buffer.getvalue()


def test_exif_orientation_is_applied(tmp_path):
    # A 40x20 (W x H) picture whose left half is red, stored with "rotate 90 CW to display".
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)
    path = tmp_path / "phone.jpg"
    path.write_bytes(_with_orientation(Image.fromarray(stored), 6))
    shown = read_image(path)
    assert shown.shape == (40, 20, 3)  # viewers show it upright: 20 wide, 40 high
    # Rotating the stored image 90 degrees clockwise puts its left half at the top.
    assert shown[:18, :, 0].mean() > 200 and shown[22:, :, 0].mean() < 50


def test_sixteen_bit_grayscale_image_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 100], [257 * 200, 65535]], dtype=np.uint16)
    path = tmp_path / "depth.png"
    Image.fromarray(values).save(path)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (2, 2, 3)
    assert image[..., 0].tolist() == [[0, 100], [200, 255]]
    assert (image[..., 0] == image[..., 2]).all()


def test_transparent_pixels_are_shown_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:2, :, :] = (10, 20, 30, 255)  # top half opaque, bottom half fully transparent (black)
    path = tmp_path / "logo.png"
    Image.fromarray(rgba, "RGBA").save(path)
    image = read_image(path)
    assert image[0, 0].tolist() == [10, 20, 30] and image[3, 3].tolist() == [255, 255, 255]


def test_images_too_large_to_decode_safely_are_refused_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(path)
    with pytest.raises(DatasetFormatError, match=r"big.png is 40x30 = 1,200 pixels, more than the 1,000"):
        read_image(path, max_pixels=1000)
    with pytest.raises(DatasetFormatError, match="folder"):
        read_image(tmp_path)


def test_label_dtype_and_ignore_follow_the_class_count():
    assert (ignore_index_for(255), label_dtype_for(255)) == (255, np.uint8)
    assert (ignore_index_for(256), label_dtype_for(256)) == (65535, np.uint16)
    names = tuple(f"class {i}" for i in range(459))
    split = ClassSplit(names, ("class 300",))
    assert split.ignore_index == 65535 and split.to_dict()["ignore_index"] == 65535
    assert ClassSplit.from_dict(split.to_dict()) == split
    with pytest.raises(ClassSplitError, match="ignore_index must be 65535 for 459 classes"):
        ClassSplit.from_dict({**split.to_dict(), "ignore_index": 255})


def test_sixteen_bit_labels_round_trip_and_are_checked(tmp_path):
    label = np.array([[0, 255, 300], [458, 65535, 1]], dtype=np.uint16)
    path = tmp_path / "l.png"
    write_label(path, label)
    assert Image.open(path).mode == "I;16"
    read = read_label(path, 459, (2, 3))
    assert read.dtype == np.uint16 and (read == label).all()  # 255 is class 255 here, 65535 ignore
    with pytest.raises(DatasetFormatError, match=r"values \[300, 458\] outside the 300 classes"):
        read_label(path, 300)
    write_label(path, np.zeros((2, 3), np.uint8))
    with pytest.raises(DatasetFormatError, match="8-bit PNG, but the dataset has 459 classes"):
        read_label(path, 459)


def test_a_sixteen_bit_file_serves_a_small_dataset_with_either_ignore_value(tmp_path):
    path = tmp_path / "l.png"
    write_label(path, np.array([[0, 4, 255, 65535]], dtype=np.uint16))
    read = read_label(path, 5)
    assert read.dtype == np.uint8 and read.tolist() == [[0, 4, 255, 255]]


def test_transforms_pad_and_crop_sixteen_bit_labels_with_their_ignore():
    sample = {"image": np.zeros((4, 4, 3), np.uint8), "label": np.full((4, 4), 300, np.uint16)}
    padded = pad(sample, (6, 6))
    assert padded["label"].dtype == np.uint16 and padded["label"][5, 5] == 65535 and padded["label"][0, 0] == 300
    # 255 is an ordinary class in a uint16 map: a window of classes 255 and 300 is balanced.
    label = np.full((8, 8), 300, np.uint16)
    label[:, :4] = 255
    crop = RandomCrop((8, 8), cat_max_ratio=0.75)
    assert crop._balanced(label) and not crop._balanced(np.where(label == 255, 65535, label).astype(np.uint16))


def test_more_than_255_classes_end_to_end_through_dataset_targets_and_metrics(tmp_path):
    names = tuple(f"class {i}" for i in range(300))
    classes = ClassSplit(names, ("class 290",), "wide")
    label = np.full((8, 8), 255, np.uint16)  # class 255, seen
    label[:4] = 290  # unseen
    label[0, 0] = 65535
    write_sample(tmp_path, "a", np.zeros((8, 8, 3), np.uint8), label)
    write_split(tmp_path, "train", ["a"])
    classes.write(tmp_path / "classes.json")
    folder = DatasetFolder(tmp_path)

    item = SegmentationDataset(folder, "train", inductive=True)[0]["label"]
    assert set(item.unique().tolist()) == {255, 65535}  # unseen 290 became ignore, class 255 kept
    targets = build_targets(item[None], classes.seen_ids, ignore_index=classes.ignore_index)
    assert targets[0]["labels"].tolist() == [classes.seen_ids.index(255)]
    assert dense_masks(targets[0]["label_map"], targets[0]["label_ids"]).sum() == 32

    confusion = ConfusionMatrix(classes.num_classes, classes.ignore_index)
    truth = read_label(folder.samples("train")[0].label_path, classes.num_classes)
    confusion.update(np.full((8, 8), 290), truth)
    assert confusion.matrix[290, 290] == 31 and confusion.matrix[255, 290] == 32
    assert torch.is_tensor(item)


def test_an_image_over_pillows_own_limit_is_called_too_large_not_corrupt(tmp_path):
    # A PNG header declaring 20,000 x 10,000 pixels; Pillow refuses it inside Image.open.
    buffer = io.BytesIO()
    Image.new("1", (20000, 10000)).save(buffer, format="PNG")
    path = tmp_path / "huge.png"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(DatasetFormatError, match="huge.png is too large to decode safely"):
        read_image(path)
