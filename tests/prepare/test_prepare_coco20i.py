"""COCO-20i: the polygon rasteriser and RLE decoder (against hand-made masks and pycocotools when
installed), and prepare coco-20i on a fabricated COCO 2014 tree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fabricate import labels_of, snapshot
from PIL import Image

from splitmatch.cli import main
from splitmatch.data.episode_lists import read_episodes
from splitmatch.data.fold_schemes import COCO_CLASSES
from splitmatch.data.folder import DatasetFormatError
from splitmatch.prepare import prepare_coco20i
from splitmatch.prepare.coco_masks import decode_counts_string, polygon_mask, rle_mask, segmentation_mask
from splitmatch.prepare.coco_stuff import USED_RAW_IDS

pytestmark = pytest.mark.filterwarnings("ignore::splitmatch.prepare.PartialDatasetWarning")
CATEGORY_IDS = [raw + 1 for raw in USED_RAW_IDS if raw < 91]  # COCO's 80 category ids, 1..90 with gaps
COCO_CATEGORY_CLASS = {category_id: index + 1 for index, category_id in enumerate(CATEGORY_IDS)}


def runs_of(mask: np.ndarray) -> list[int]:
    """Column-major run lengths, background first (the RLE ``counts`` list)."""
    flat = np.asarray(mask, bool).T.ravel()
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    edges = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(edges).tolist()
    return [0, *runs] if flat.size and flat[0] else runs


def encode_counts_string(runs: list[int]) -> str:
    """pycocotools' rleToString, written from its description: differences to the run two back, 5-bit chunks."""
    out = []
    for i, run in enumerate(runs):
        value = run - runs[i - 2] if i > 2 else run
        more = True
        while more:
            chunk = value & 0x1F
            value >>= 5
            more = value != -1 if chunk & 0x10 else value != 0
            out.append(chr((chunk | (0x20 if more else 0)) + 48))
    return "".join(out)


def test_polygons_by_hand() -> None:
    square = polygon_mask([0, 0, 10, 0, 10, 10, 0, 10], 12, 12)
    assert square.sum() == 100 and square[:10, :10].all()
    # A right triangle over the centres: row r holds the columns c with c + 0.5 < 6 - (r + 0.5).
    triangle = polygon_mask([0, 0, 6, 0, 0, 6], 6, 6)
    assert triangle.sum(axis=1).tolist() == [5, 4, 3, 2, 1, 0]
    clipped = polygon_mask([-5, -5, 3, -5, 3, 3, -5, 3], 4, 4)
    assert clipped.sum() == 9 and clipped[:3, :3].all()
    two = segmentation_mask([[0, 0, 2, 0, 2, 2, 0, 2], [3, 3, 5, 3, 5, 5, 3, 5]], 6, 6)
    assert two.sum() == 8 and two[0, 0] and two[4, 4] and not two[2, 2]
    with pytest.raises(ValueError, match="at least 3 finite"):
        polygon_mask([0, 0, 1, 1], 4, 4)
    with pytest.raises(ValueError, match="list of polygons or an RLE"):
        segmentation_mask("polygon", 4, 4)


def test_rle_by_hand_and_round_trip() -> None:
    mask = rle_mask({"size": [2, 3], "counts": [1, 2, 3]}, 2, 3)  # column-major: 0 | 1 1 | 0 0 0
    assert mask.astype(int).tolist() == [[0, 1, 0], [1, 0, 0]]
    rng = np.random.default_rng(0)
    for _ in range(50):
        height, width = rng.integers(1, 40, size=2)
        random_mask = rng.random((height, width)) < rng.random()
        runs = runs_of(random_mask)
        assert decode_counts_string(encode_counts_string(runs)) == runs
        compressed = {"size": [int(height), int(width)], "counts": encode_counts_string(runs)}
        assert (rle_mask(compressed, height, width) == random_mask).all()
    with pytest.raises(ValueError, match=r"RLE size is \[2, 2\] but the image is \[2, 3\]"):
        rle_mask({"size": [2, 2], "counts": [4]}, 2, 3)
    with pytest.raises(ValueError, match="sum to 5 pixels"):
        rle_mask({"size": [2, 3], "counts": [1, 4]}, 2, 3)
    with pytest.raises(ValueError, match="cannot encode"):
        decode_counts_string("0 1")


def distance_to_outline(points: np.ndarray, polygon: list[float]) -> np.ndarray:
    """Distance of each point ``[N, 2]`` to the polygon's outline."""
    xs, ys = np.array(polygon[0::2]), np.array(polygon[1::2])
    x0, y0, dx, dy = xs, ys, np.roll(xs, -1) - xs, np.roll(ys, -1) - ys
    t = ((points[:, :1] - x0) * dx + (points[:, 1:] - y0) * dy) / np.maximum(dx * dx + dy * dy, 1e-12)
    t = np.clip(t, 0, 1)
    return np.hypot(x0 + t * dx - points[:, :1], y0 + t * dy - points[:, 1:]).min(axis=1)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' own numpy 2 notice
def test_agrees_with_pycocotools_up_to_pixels_the_outline_passes_through() -> None:
    coco_mask = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(1)
    height, width = 60, 80
    for _ in range(100):
        count = int(rng.integers(3, 12))
        angles = np.sort(rng.uniform(0, 2 * np.pi, count))
        radii = rng.uniform(1, 30, count)
        centre = rng.uniform(-5, 85), rng.uniform(-5, 65)
        polygon = np.stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], 1).ravel().tolist()
        ours = polygon_mask(polygon, height, width)
        theirs = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects([polygon], height, width))).astype(bool)
        rows, cols = np.nonzero(ours != theirs)
        centres = np.stack([cols + 0.5, rows + 0.5], 1)
        assert (distance_to_outline(centres, polygon) < 0.5).all()
        encoded = coco_mask.encode(np.asfortranarray(theirs.astype(np.uint8)))
        assert (rle_mask({"size": encoded["size"], "counts": encoded["counts"]}, height, width) == theirs).all()


H, W = 24, 32


def box(x0: int, y0: int, x1: int, y1: int) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def category(class_id: int) -> int:
    """COCO's category id of contiguous class id 1..80."""
    return CATEGORY_IDS[class_id - 1]


@pytest.fixture()
def coco2014(tmp_path: Path) -> Path:
    src = tmp_path / "COCO2014"
    rng = np.random.default_rng(0)
    splits = {
        "train2014": {
            "COCO_train2014_000000000001.jpg": [
                {"category_id": category(28), "segmentation": box(5, 5, 8, 15)},  # a tie, listed before its person
                {"category_id": category(1), "segmentation": box(0, 0, 20, 20)},  # person, 400 px
                {
                    "category_id": category(1),
                    "iscrowd": 1,
                    "segmentation": {
                        "size": [H, W],
                        "counts": runs_of(np.pad(np.ones((24, 8), bool), ((0, 0), (16, 8)))),
                    },
                },  # crowd over columns 16..23
            ],
            "COCO_train2014_000000000002.jpg": [],  # no annotations: all background
        },
        "val2014": {
            f"COCO_val2014_00000000000{i}.jpg": [
                {
                    "category_id": category(class_id),
                    "segmentation": {
                        "size": [H, W],
                        "counts": encode_counts_string(runs_of(np.pad(np.ones((10, 10), bool), ((2, 12), (3, 19))))),
                    },
                },  # compressed RLE, 100 px
                {"category_id": category(other), "segmentation": box(20, 0, 32, 24)},  # 288 px
            ]
            for i, (class_id, other) in enumerate([(1, 22), (43, 64), (2, 22)])
        },
    }
    (src / "annotations").mkdir(parents=True)
    next_id = 1
    for split_dir, images in splits.items():
        categories = [{"id": cid, "name": name, "supercategory": "x"} for cid, name in zip(CATEGORY_IDS, COCO_CLASSES)]
        data = {"images": [], "annotations": [], "categories": categories}
        for image_id, (name, objects) in enumerate(images.items(), start=1):
            (src / split_dir).mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(src / split_dir / name)
            data["images"].append({"id": image_id, "file_name": name, "height": H, "width": W})
            for annotation in objects:
                data["annotations"].append({"id": next_id, "image_id": image_id, "iscrowd": 0, **annotation})
                next_id += 1
        (src / "annotations" / f"instances_{split_dir}.json").write_text(json.dumps(data))
    return src


def pfenet_mask(annotations: list[dict], height: int, width: int) -> np.ndarray:
    """PFENet's COCO parsing script with its default save_iscrowd=False (HSNet's masks), re-expressed
    for box polygons: crowd annotations skipped, objects painted in the file's order, later on top."""
    label = np.zeros((height, width), np.uint8)
    for annotation in annotations:
        if annotation.get("iscrowd", 0):
            continue
        x0, y0, x1, _, _, y1, _, _ = annotation["segmentation"][0]
        label[y0:y1, x0:x1] = COCO_CATEGORY_CLASS[annotation["category_id"]]
    return label


def test_coco20i_rasterises_as_hsnets_masks_by_default_and_the_options(coco2014, tmp_path) -> None:
    folder = prepare_coco20i(coco2014, tmp_path / "out", progress=False, allow_partial=True, min_object_pixels=50)
    assert folder.classes.names == ("background", *COCO_CLASSES) and not folder.classes.unseen
    assert folder.stems("train") == ["COCO_train2014_000000000001", "COCO_train2014_000000000002"]
    annotations = json.loads((coco2014 / "annotations" / "instances_train2014.json").read_text())["annotations"]
    first = labels_of(folder, "COCO_train2014_000000000001")
    expected = pfenet_mask([a for a in annotations if a["image_id"] == 1], H, W)
    assert (first == expected).all() and (first[5:15, 5:8] == 1).all()  # the tie, listed first, under its person
    assert (first[20:, 16:24] == 0).all() and 255 not in first  # crowd pixels no object covers: background
    assert json.loads((folder.root / "conversion.json").read_text()) == {
        "crowd": "background",
        "object_order": "annotation",
    }
    assert (labels_of(folder, "COCO_train2014_000000000002") == 0).all()
    val = labels_of(folder, "COCO_val2014_000000000000")
    assert (val[2:12, 3:13] == 1).all() and val[2:12, 3:13].size == 100 and (val[:, 20:] == 22).all()
    before = snapshot(folder.root)
    prepare_coco20i(coco2014, folder.root, progress=False, allow_partial=True, min_object_pixels=50)
    assert snapshot(folder.root) == before

    ours = prepare_coco20i(
        coco2014,
        tmp_path / "ours",
        progress=False,
        allow_partial=True,
        min_object_pixels=50,
        crowd="ignore",
        object_order="largest-first",
    )
    first = labels_of(ours, "COCO_train2014_000000000001")
    assert (first[5:15, 5:8] == 28).all() and first[0, 0] == 1 and (first[:20, :20] != 0).all()  # tie on the person
    assert (first[:20, 16:20] == 1).all()  # the crowd does not cover an object
    assert (first[20:, 16:24] == 255).all() and (first[:, 24:] == 0).all()  # elsewhere it is ignore


def test_coco20i_refuses_a_folder_converted_otherwise(coco2014, tmp_path) -> None:
    options = {"progress": False, "allow_partial": True, "min_object_pixels": 50}
    folder = prepare_coco20i(coco2014, tmp_path / "out", **options)
    with pytest.raises(
        DatasetFormatError,
        match=r"conversion\.json already exists with different content; pass the "
        "--crowd and --object-order it was prepared with",
    ):
        prepare_coco20i(coco2014, folder.root, crowd="ignore", **options)
    (folder.root / "conversion.json").unlink()  # a folder of an earlier splitmatch: crowd ignore, largest first
    before = snapshot(folder.root)
    with pytest.raises(DatasetFormatError, match="prepared by an earlier splitmatch, with crowd regions ignore"):
        prepare_coco20i(coco2014, folder.root, **options)
    assert snapshot(folder.root) == before
    prepare_coco20i(coco2014, folder.root, crowd="ignore", object_order="largest-first", **options)
    with pytest.raises(DatasetFormatError, match="crowd must be one of background, ignore"):
        prepare_coco20i(coco2014, tmp_path / "other", crowd="void", **options)


def test_coco20i_episodes_for_both_conventions(coco2014, tmp_path) -> None:
    folder = prepare_coco20i(coco2014, tmp_path / "out", progress=False, allow_partial=True, min_object_pixels=50)
    fold0 = read_episodes(folder, 0)  # interleaved fold 0: person (1) ... ; 22 is in fold 1
    assert len(fold0) == 1000 and {e.class_name for e in fold0} == {"person"}
    assert {e.stem for e in fold0} == {"COCO_val2014_000000000000"}
    fold1 = read_episodes(folder, 1)  # bicycle (2) and bear (22)
    assert {e.class_name for e in fold1} == {COCO_CLASSES[1], COCO_CLASSES[21]}
    consecutive0 = read_episodes(folder, 0, scheme="coco-20i-consecutive")  # person, bicycle (ids 1..20)
    assert {e.class_name for e in consecutive0} == {"person", "bicycle"}
    assert {e.class_name for e in read_episodes(folder, 3, scheme="coco-20i-consecutive")} == {COCO_CLASSES[63]}
    other_seed = prepare_coco20i(
        coco2014, tmp_path / "seed1", progress=False, allow_partial=True, min_object_pixels=50, episode_seed=1
    )
    assert read_episodes(other_seed, 1) != fold1 and set(read_episodes(other_seed, 1)) == set(fold1)


def test_coco20i_refuses_bad_annotation_files_by_name(coco2014, tmp_path) -> None:
    path = coco2014 / "annotations" / "instances_val2014.json"
    data = json.loads(path.read_text())
    broken = json.loads(json.dumps(data))
    broken["annotations"][0]["segmentation"] = {"size": [H, W], "counts": [5]}
    path.write_text(json.dumps(broken))
    with pytest.raises(
        DatasetFormatError,
        match=r"instances_val2014\.json image COCO_val2014_000000000000\.jpg: "
        r"annotation \d+: RLE runs sum to 5 pixels",
    ):
        prepare_coco20i(coco2014, tmp_path / "a", progress=False, allow_partial=True, min_object_pixels=50)
    broken = json.loads(json.dumps(data))
    broken["categories"][0]["name"] = "human"
    path.write_text(json.dumps(broken))
    with pytest.raises(DatasetFormatError, match=r"categories, by id, are not COCO's 80 classes"):
        prepare_coco20i(coco2014, tmp_path / "b", progress=False, allow_partial=True)
    broken = json.loads(json.dumps(data))
    broken["annotations"][0]["category_id"] = 12  # a category COCO never annotated
    path.write_text(json.dumps(broken))
    with pytest.raises(DatasetFormatError, match=r"annotation \d+ has category_id 12, not a COCO class"):
        prepare_coco20i(coco2014, tmp_path / "c", progress=False, allow_partial=True)
    broken = json.loads(json.dumps(data))
    broken["images"].append(broken["images"][0] | {"file_name": "COCO_val2014_000000000009.jpg"})
    path.write_text(json.dumps(broken))  # the second image of id 1 silently replaced the first
    with pytest.raises(DatasetFormatError, match=r"instances_val2014\.json: image id 1 is listed twice"):
        prepare_coco20i(coco2014, tmp_path / "f", progress=False, allow_partial=True)
    path.write_text(json.dumps(data))
    (coco2014 / "val2014" / "COCO_val2014_000000000001.jpg").unlink()
    with pytest.raises(DatasetFormatError, match=r"listed by .*instances_val2014\.json are missing: val2014/COCO_val"):
        prepare_coco20i(coco2014, tmp_path / "d", progress=False, allow_partial=True)
    path.write_text("{not json")
    with pytest.raises(DatasetFormatError, match=r"instances_val2014\.json is not valid JSON"):
        prepare_coco20i(coco2014, tmp_path / "e", progress=False, allow_partial=True)


def test_coco20i_on_the_command_line_refuses_partial_and_reports_both_schemes(coco2014, tmp_path, capsys) -> None:
    args = ["prepare", "coco-20i", "--src", str(coco2014), "--dst", str(tmp_path / "out"), "--quiet"]
    assert main(args) == 2
    assert "coco-20i: split 'train' has 2 images, not 82,783" in capsys.readouterr().err
    assert (
        main(
            [
                *args,
                "--allow-partial",
                "--min-object-pixels",
                "50",
                "--episode-seed",
                "4",
                "--crowd",
                "ignore",
                "--object-order",
                "largest-first",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "  fold scheme coco-20i (default), interleaved:" in out
    assert "  fold scheme coco-20i-consecutive, consecutive:" in out
    assert "    fold 0: person, airplane, boat, parking meter, dog," in out
    assert "crowd pixels no object covers: ignore; objects painted largest-first" in out
    assert json.loads((tmp_path / "out" / "conversion.json").read_text())["crowd"] == "ignore"


@pytest.mark.parametrize(
    "change, extra, message",
    [
        (lambda image: image.update(height=-24), "", "size -24 x 32 is not an image size"),
        (lambda image: image.update(width=0), "", "size 24 x 0 is not an image size"),
        (lambda image: image.update(height=10**6, width=10**6), "", "is not an image size"),
        (None, "[" * 100_000 + "]" * 100_000, "nested deeper than the JSON parser can follow"),
        (None, "9" * 5000, "Exceeds the limit"),
    ],
    ids=["negative height", "zero width", "a trillion pixels", "nested 100,000 deep", "a 5000-digit number"],
)
def test_coco20i_instances_out_of_range_or_beyond_the_parser_are_one_line(
    coco2014, tmp_path, capsys, change, extra, message
) -> None:
    path = coco2014 / "annotations" / "instances_val2014.json"
    data = json.loads(path.read_text())
    if change is not None:
        change(data["images"][0])
    text = json.dumps(data)
    if extra:  # raw JSON text in a field of its own, past what Python's parser takes
        text = text[:-1] + ', "extra": ' + extra + "}"
    path.write_text(text)
    assert (
        main(
            [
                "prepare",
                "coco-20i",
                "--src",
                str(coco2014),
                "--dst",
                str(tmp_path / "out"),
                "--allow-partial",
                "--quiet",
            ]
        )
        == 2
    )
    lines = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(lines) == 1 and "instances_val2014.json" in lines[0] and message in lines[0], lines
    assert len(lines[0]) < 2200
