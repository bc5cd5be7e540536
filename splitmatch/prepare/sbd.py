"""The SBD augmented VOC labels, read directly from the official ``.mat`` files.

The Semantic Boundaries Dataset release (``benchmark.tgz``) unpacks to
``benchmark_RELEASE/dataset``; that folder is ``--sbd``::

    SBD/cls/<stem>.mat      MATLAB struct GTcls; its field Segmentation: uint8 [H, W], 0 background, 1..20
    SBD/train.txt           8,498 stems
    SBD/val.txt             2,857 stems

Together they are the "aug" set of VOC 2012 + SBD (the converters drop the VOC val images SBD
also holds). SBD's maps have no 255 borders: every pixel is background or a class. The files
are read with ``scipy.io.loadmat``, which decodes MATLAB arrays and never unpickles; this is
what mmseg's ``voc_aug.py`` reads to write its ``SegmentationClassAug`` PNGs, without the PNG
step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from splitmatch.data.folder import DatasetFormatError
from splitmatch.prepare.common import (
    SourceSample,
    apply_format,
    check_label_size,
    convert_label,
    read_list,
    require,
)

SBD_LAYOUT = (
    "SBD/cls/<stem>.mat (struct GTcls with field Segmentation), SBD/train.txt and SBD/val.txt; "
    "SBD is benchmark_RELEASE/dataset of the SBD release"
)


def sbd_stems(sbd: Path) -> list[str]:
    """SBD's train and val stems, in file order, each once."""
    require(sbd / "cls", "the SBD class label files (cls/*.mat)", SBD_LAYOUT)
    stems = read_list(sbd / "train.txt", SBD_LAYOUT) + read_list(sbd / "val.txt", SBD_LAYOUT)
    return list(dict.fromkeys(stems))


def read_sbd_segmentation(path: Path) -> np.ndarray:
    """``GTcls.Segmentation`` of an SBD ``cls/<stem>.mat``: integer ``[H, W]``, 0 background, 1..20."""
    try:
        mat = scipy.io.loadmat(str(path), variable_names=["GTcls"], squeeze_me=True, struct_as_record=False)
    except Exception as error:  # noqa: BLE001 (SciPy's parser fails on a damaged file in many ways)
        raise DatasetFormatError(f"cannot read {path} as an SBD label file: {error}") from None
    gt = mat.get("GTcls")
    values = getattr(gt, "Segmentation", None)
    if not isinstance(values, np.ndarray) or values.ndim != 2 or values.dtype.kind not in "ui":
        raise DatasetFormatError(
            f"{path} holds no struct 'GTcls' with a 2-D integer field 'Segmentation' (expected an SBD cls/*.mat)"
        )
    return values


def convert_sbd_or_png(sample: SourceSample) -> np.ndarray:
    """A VOC label from either source: an SBD ``.mat`` or a PNG (official or SegmentationClassAug)."""
    if sample.label.suffix != ".mat":
        return convert_label(sample)
    values = read_sbd_segmentation(sample.label)
    check_label_size(values, sample)
    return apply_format(values, sample)
