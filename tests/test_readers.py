"""The dataset readers' one validation pass: a malformed COCO or YouTube-VIS file is refused when it is
opened, with its path, the entry and the field named, before any image is decoded or any inference runs
(pycocotools would otherwise fail on it with a bare ``TypeError`` after the whole evaluation)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from glee.data.masks import encode_rle
from glee.data.readers import CocoDataset, FileFormatError, YtvisDataset

MASK = np.zeros((4, 4), bool)
MASK[1:3, 1:3] = True
COCO: dict[str, Any] = {
    "images": [{"id": 1, "file_name": "a.png", "height": 4, "width": 4}],
    "annotations": [
        {"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2], "segmentation": encode_rle(MASK)}
    ],
    "categories": [{"id": 1, "name": "square"}],
}
YTVIS: dict[str, Any] = {
    "videos": [{"id": 1, "file_names": ["v/0.png", "v/1.png"], "height": 4, "width": 4}],
    "annotations": [{"id": 3, "video_id": 1, "category_id": 1, "segmentations": [encode_rle(MASK), None]}],
    "categories": [{"id": 1, "name": "square"}],
}


def _write(tmp_path: Path, base: dict[str, Any], edit: dict[str, Any]) -> Path:
    """``base`` with ``edit`` applied: "list.index.key" paths set a value, a value of ... deletes it."""
    data = copy.deepcopy(base)
    for where, value in edit.items():
        *parents, last = where.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is ...:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(data))
    return path


COCO_CASES = [
    (
        {"annotations.0.segmentation": "bogus"},
        "annotation 7 has 'segmentation' \"bogus\", which is not polygons or an RLE of size [4, 4]",
    ),
    (
        {"annotations.0.segmentation": {"size": [8, 8], "counts": "abc"}},
        "which is not polygons or an RLE of size [4, 4]",
    ),
    ({"annotations.0.segmentation": [[1, 1, 2]]}, "which is not polygons"),
    ({"annotations.0.category_id": 999}, "annotation 7 has 'category_id' 999, which is not in 'categories'"),
    ({"annotations.0.image_id": 5}, "annotation 7 has 'image_id' 5, which is not in 'images'"),
    ({"annotations.0.bbox": ...}, "annotation 7 has no 'bbox'"),
    ({"annotations.0.bbox": [1, 2]}, "annotation 7 has 'bbox' [1, 2], which is not [x, y, w, h]"),
    ({"annotations.0.segmentation": ...}, "annotation 7 has no 'segmentation'; glee needs instance masks"),
    ({"annotations.0.id": ...}, "annotation at index 0 has no 'id'"),
    ({"annotations.0": "x"}, 'annotation at index 0 is "x", not an object'),
    ({"images.0.height": ...}, "image at index 0 has no 'height'"),
    ({"images.0.width": "4"}, "image at index 0 has 'width' \"4\", which is not a positive integer"),
    ({"categories.0.name": 5}, "category at index 0 has 'name' 5, which is not a string"),
]
YTVIS_CASES = [
    (
        {"annotations.0.segmentations": 5},
        "annotation 3 has 'segmentations' 5, which is not a list of one mask",
    ),
    ({"annotations.0.segmentations": [None]}, "or null per frame (2)"),
    ({"annotations.0.segmentations": [None, "bogus"]}, "an RLE of size [4, 4]) or null per frame (2)"),
    ({"annotations.0.category_id": 999}, "annotation 3 has 'category_id' 999, which is not in 'categories'"),
    ({"annotations.0.video_id": 2}, "annotation 3 has 'video_id' 2, which is not in 'videos'"),
    ({"videos.0.file_names": []}, "video at index 0 has 'file_names' [], which is not a list of file names"),
]


@pytest.mark.parametrize(
    ("reader", "edit", "reason"),
    [("coco", *case) for case in COCO_CASES] + [("ytvis", *case) for case in YTVIS_CASES],
)
def test_a_malformed_dataset_is_refused_naming_the_entry_and_field(
    reader: str, edit: dict[str, Any], reason: str, tmp_path: Path
) -> None:
    base, dataset = {"coco": (COCO, CocoDataset), "ytvis": (YTVIS, YtvisDataset)}[reader]
    path = _write(tmp_path, base, edit)
    with pytest.raises(FileFormatError, match=f"{re.escape(str(path))}: .*{re.escape(reason)}"):
        dataset(path)


@pytest.mark.parametrize(
    "segmentation",
    [encode_rle(MASK), [[1, 1, 3, 1, 3, 3, 1, 3]], {"size": [4, 4], "counts": [5, 2, 2, 2, 5]}],
    ids=["compressed RLE", "polygon", "uncompressed RLE"],
)
def test_every_coco_segmentation_form_is_read(segmentation: Any, tmp_path: Path) -> None:
    path = _write(tmp_path, COCO, {"annotations.0.segmentation": segmentation})
    masks = CocoDataset(path).get(0, image=False).masks
    assert masks is not None and masks.shape == (1, 4, 4) and masks[0, 1:3, 1:3].all()
