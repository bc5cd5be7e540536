"""The built-in zero-shot splits are ZegCLIP's: its configs give the unseen classes as indices into
its dataset's class list (``configs/voc12/vpt_seg_zero_vit-b_512x512_20k_12_10.py`` line 11,
``configs/coco/vpt_seg_zero_vit-b_512x512_80k_12_100_multi.py`` line 19), read here against the
built-in class order, which is the one its dataset files load (mmseg's)."""

from __future__ import annotations

from splitmatch.data.class_lists import BUILTIN_SPLITS

ZEGCLIP_VOC_UNSEEN_IDS = [15, 16, 17, 18, 19]
ZEGCLIP_COCO_STUFF_UNSEEN_IDS = [19, 23, 28, 29, 36, 51, 76, 88, 94, 112, 133, 136, 137, 157, 160]


def test_voc_unseen_classes_are_zegclips_indices() -> None:
    voc = BUILTIN_SPLITS["voc"]
    assert len(voc.names) == 20 and voc.names[0] == "aeroplane"  # background is void, not a class
    assert sorted(voc.unseen_ids) == ZEGCLIP_VOC_UNSEEN_IDS
    assert [voc.names[i] for i in ZEGCLIP_VOC_UNSEEN_IDS] == ["pottedplant", "sheep", "sofa", "train", "tvmonitor"]


def test_coco_stuff_unseen_classes_are_zegclips_indices() -> None:
    coco = BUILTIN_SPLITS["coco-stuff"]
    assert len(coco.names) == 171 and coco.names[:2] == ("person", "bicycle") and coco.names[-1] == "wood"
    assert sorted(coco.unseen_ids) == ZEGCLIP_COCO_STUFF_UNSEEN_IDS
    assert [coco.names[i] for i in ZEGCLIP_COCO_STUFF_UNSEEN_IDS] == [
        "cow",
        "giraffe",
        "suitcase",
        "frisbee",
        "skateboard",
        "carrot",
        "scissors",
        "cardboard",
        "clouds",
        "grass",
        "playingfield",
        "river",
        "road",
        "tree",
        "wall-concrete",
    ]
