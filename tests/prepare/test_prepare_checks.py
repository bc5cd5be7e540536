"""What every prepare checks and says: protocol sizes, --dst outside --src, odd names, oversized
headers, the read-back with the training readers, and the report of what was written."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from fabricate import snapshot, write_jpeg, write_label, write_list

from splitmatch.cli import main
from splitmatch.data.folder import DatasetFormatError, open_image, read_label
from splitmatch.data.names import stem_problem as reader_stem_problem
from splitmatch.prepare import PartialDatasetWarning, prepare_ade20k, prepare_voc
from splitmatch.prepare.protocol_sizes import PROTOCOL_SIZES, check_split_sizes
from splitmatch.prepare.readback import PIXEL_COUNTS_FILE, read_pixel_counts
from splitmatch.prepare.safety import check_stems

pytestmark = pytest.mark.filterwarnings("ignore::splitmatch.prepare.PartialDatasetWarning")


def prepare_cli(dataset: str, src: Path, dst: Path, *extra: str) -> int:
    return main(["prepare", dataset, "--src", str(src), "--dst", str(dst), "--quiet", *extra])


def test_a_split_of_another_size_is_refused_in_one_line_before_anything_is_written(voc_src, tmp_path, capsys):
    dst = tmp_path / "out"
    with pytest.raises(DatasetFormatError, match=r"split 'train' has 3 images, not 10,582; split 'val' has 2"):
        prepare_voc(voc_src, dst, progress=False)
    assert prepare_cli("voc", voc_src, dst) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("splitmatch: error: voc: split 'train' has 3 images")
    assert "--allow-partial" in err
    assert not dst.exists()


def test_allow_partial_warns_loudly_and_the_report_says_what_was_written(voc_src, tmp_path, capsys):
    assert prepare_cli("voc", voc_src, tmp_path / "out", "--allow-partial") == 0
    out, err = capsys.readouterr()
    assert "splitmatch: WARNING: PARTIAL DATASET voc: split 'train' has 3 images, not 10,582" in err
    assert "do not compare with published ones" in err
    lines = out.splitlines()
    assert lines[0] == f"prepared voc in {tmp_path / 'out'}:"
    # train: official 2 (bicycle), SBD 15 (person) and 20 (tvmonitor), SBD 5 (bottle); val: 1, 19, 7.
    assert lines[1].startswith(
        "  train: 3 images, 4 of 20 classes (absent: aeroplane, bird, boat, bus, car and 11 more)"
    )
    assert lines[1].endswith("unseen classes present: 1 of 5 (tvmonitor)")
    assert lines[2].startswith("  val: 2 images, 3 of 20 classes") and lines[2].endswith("1 of 5 (train)")


def test_every_protocol_size_and_the_size_check_itself() -> None:
    assert {name: dict(p.sizes) for name, p in PROTOCOL_SIZES.items()} == {
        "voc": {"train": 10_582, "val": 1_449},
        "voc21": {"train": 10_582, "val": 1_449},
        "pascal-5i": {"train": 10_582, "val": 1_449},
        "coco-stuff": {"train": 118_287, "val": 5_000},
        "context": {"train": 4_996, "val": 5_104},
        "context-459": {"train": 4_996, "val": 5_104},
        "ade20k-150": {"train": 20_210, "val": 2_000},
        "coco-20i": {"train": 82_783, "val": 40_504},
    }
    check_split_sizes("context-459", {"val": range(5_104)}, allow_partial=False)  # train is optional there
    check_split_sizes("voc", {"train": range(10_582), "val": range(1_449)}, allow_partial=False)
    with pytest.raises(DatasetFormatError, match="'val' is missing"):
        check_split_sizes("context", {"train": range(4_996)}, allow_partial=False)
    with pytest.warns(PartialDatasetWarning, match="'val' has 1,450 images, not 1,449"):
        check_split_sizes("voc", {"train": range(10_582), "val": range(1_450)}, allow_partial=True)


def test_dst_equal_to_or_inside_src_is_refused_and_the_source_is_untouched(voc_src, tmp_path, capsys):
    before = snapshot(voc_src)
    for dst in (voc_src, voc_src / "converted", voc_src / "JPEGImages" / ".." / "x"):
        with pytest.raises(DatasetFormatError, match="the source is never modified"):
            prepare_voc(voc_src, dst, progress=False, allow_partial=True)
    assert prepare_cli("voc", voc_src, voc_src / "out", "--allow-partial") == 2
    assert "is inside --src" in capsys.readouterr().err
    assert snapshot(voc_src) == before
    (tmp_path / "sibling").mkdir()
    prepare_voc(voc_src, tmp_path / "sibling", progress=False, allow_partial=True)  # beside the source is fine


def test_names_the_folder_format_cannot_hold_are_refused_up_front(voc_src, tmp_path) -> None:
    check_stems(["2007_000032", "with inner space"], "here")
    bad = ["../escape", " leading", "tab\there", ".hidden", "a\\b", "bad\udcff"]
    with pytest.raises(DatasetFormatError, match=r"6 image name\(s\) in here") as caught:
        check_stems(["fine", *bad], "here")
    message = str(caught.value)
    assert "\n" not in message and "'../escape' (a path separator)" in message
    assert "' leading' (leading or trailing white space)" in message and "and 1 more" in message
    write_list(voc_src / "ImageSets" / "Segmentation" / "train.txt", ["2007_000032", "../../outside"])
    with pytest.raises(
        DatasetFormatError, match=r"train\.txt cannot be written .*: '\.\./\.\./outside' \(a path separator\)"
    ):
        prepare_voc(voc_src, tmp_path / "out", progress=False, allow_partial=True)
    (voc_src / "ImageSets" / "Segmentation" / "train.txt").write_bytes(b"2007_000032\n2007_\xff\n")
    with pytest.raises(DatasetFormatError, match=r"train\.txt is not UTF-8 text \(line 2: byte 0xff\)"):
        prepare_voc(voc_src, tmp_path / "out", progress=False, allow_partial=True)
    assert not (tmp_path / "out").exists()


def test_file_names_that_are_not_utf8_are_refused_and_inner_spaces_work(ade_src, tmp_path) -> None:
    training = ade_src / "images" / "training"
    (training / "ADE_train_00000002.jpg").rename(training / "ADE train 2.jpg")
    (ade_src / "annotations" / "training" / "ADE_train_00000002.png").rename(
        ade_src / "annotations" / "training" / "ADE train 2.png"
    )
    folder = prepare_ade20k(ade_src, tmp_path / "out", progress=False, allow_partial=True)
    assert "ADE train 2" in folder.stems("train") and len(folder.samples("train")) == 2
    write_jpeg(Path(os.fsdecode(os.fsencode(training) + b"/ADE_\xff.jpg")), 9)
    write_label(Path(os.fsdecode(os.fsencode(ade_src / "annotations" / "training") + b"/ADE_\xff.png")), [3])
    with pytest.raises(DatasetFormatError, match=r"'ADE_\\udcff' \(not valid UTF-8\)"):
        prepare_ade20k(ade_src, tmp_path / "out2", progress=False, allow_partial=True)


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that claims ``width x height`` pixels and holds none: what a decompression bomb's header says."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def test_an_image_header_of_14000_by_13000_is_refused_in_one_line(voc_src, tmp_path, capsys) -> None:
    image = voc_src / "JPEGImages" / "2007_000039.jpg"
    png_header_only(image, 14_000, 13_000)  # a PNG under a .jpg name: Pillow reads the header either way
    with pytest.raises(DatasetFormatError, match=r"image .*2007_000039\.jpg is too large to decode safely"):
        prepare_voc(voc_src, tmp_path / "out", progress=False, allow_partial=True)
    assert prepare_cli("voc", voc_src, tmp_path / "out", "--allow-partial") == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("splitmatch: WARNING")]
    assert len(errors) == 1 and "2007_000039.jpg" in errors[0] and errors[0].startswith("splitmatch: error: ")
    small = tmp_path / "small.png"
    png_header_only(small, 16, 12)
    with pytest.raises(DatasetFormatError, match=r"small\.png is 16x12 = 192 pixels, more than the 100"):
        open_image(small, "image", max_pixels=100)


def test_a_label_header_too_large_is_refused_with_its_name(voc_src, tmp_path) -> None:
    png_header_only(voc_src / "SegmentationClassAug" / "2008_000002.png", 14_000, 13_000)
    with pytest.raises(DatasetFormatError, match=r"label .*2008_000002\.png is too large to decode safely"):
        prepare_voc(voc_src, tmp_path / "out", progress=False, allow_partial=True)


def test_prepare_does_not_report_a_folder_training_cannot_read(voc_src, tmp_path, capsys) -> None:
    image = voc_src / "JPEGImages" / "2007_000032.jpg"
    image.write_bytes(image.read_bytes()[:-100])  # the header reads, the pixels do not
    with pytest.raises(DatasetFormatError, match=r"2007_000032\.jpg is corrupt or truncated"):
        prepare_voc(voc_src, tmp_path / "out", progress=False, allow_partial=True)
    assert prepare_cli("voc", voc_src, tmp_path / "out2", "--allow-partial") == 2
    out, err = capsys.readouterr()
    assert "prepared" not in out and "corrupt or truncated" in err


def test_class_pixel_counts_match_the_labels_and_are_recounted_after_a_kill(voc_src, tmp_path) -> None:
    folder = prepare_voc(voc_src, tmp_path / "out", progress=False, allow_partial=True)
    counts = read_pixel_counts(folder.root)
    for stem in folder.stems("train") + folder.stems("val"):
        label = read_label(folder.root / "labels" / f"{stem}.png", 20)
        values, pixels = np.unique(label[label != 255], return_counts=True)
        assert counts[stem] == dict(zip(values.tolist(), pixels.tolist()))
    text = (folder.root / PIXEL_COUNTS_FILE).read_text()
    (folder.root / PIXEL_COUNTS_FILE).unlink()  # as if the run had been killed before saving them
    prepare_voc(voc_src, folder.root, progress=False, allow_partial=True)
    assert (folder.root / PIXEL_COUNTS_FILE).read_text() == text
    (folder.root / PIXEL_COUNTS_FILE).write_text(json.dumps({"counts": {"x": {"a": 1}}}))
    with pytest.raises(DatasetFormatError, match=r"class_pixels\.json is damaged"):
        prepare_voc(voc_src, folder.root, progress=False, allow_partial=True)


@pytest.mark.parametrize("name", ["line\u2028separator", "paragraph\u2029separator", "escape\x1b[2J"])
def test_prepare_refuses_up_front_every_name_the_readers_refuse(name) -> None:
    assert reader_stem_problem(name) is not None  # a split list holding it would not be read back
    with pytest.raises(DatasetFormatError, match=r"a control character"):
        check_stems([name], "here")
