"""COCO / RefCOCO / YouTube-VIS 2019 records of generated scenes and videos.

Records are built without ids; the writer numbers them in dataset order so that the ids do not depend
on how the work was split between processes.
"""

from __future__ import annotations

from typing import Any

from glee.data.masks import coco_bbox, encode_rle
from glee.data.scenes import Scene
from glee.data.videos import Video


def _attributes(values: dict[str, object]) -> dict[str, object]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()}


def scene_records(scene: Scene, file_name: str) -> dict[str, Any]:
    """{"image": image record, "annotations": [...], "sentences": [[...] per annotation]}, no ids."""
    height, width = scene.image.shape[:2]
    annotations = [
        {
            "category_id": obj.category_id,
            "bbox": coco_bbox(obj.visible),
            "area": obj.area,
            "segmentation": encode_rle(obj.visible),
            "iscrowd": 0,
            "attributes": {"colour": obj.look.colour},
        }
        for obj in scene.objects
    ]
    image = {
        "file_name": file_name,
        "width": width,
        "height": height,
        "attributes": _attributes(scene.attributes),
    }
    return {"image": image, "annotations": annotations, "sentences": scene.expressions}


def video_records(video: Video, file_names: list[str]) -> dict[str, Any]:
    """{"video": record, "annotations": [...]} in YouTube-VIS 2019 layout (null where absent), no ids."""
    height, width = video.frames[0].shape[:2]
    annotations = []
    for track in video.tracks:
        annotations.append(
            {
                "category_id": track.category_id,
                "iscrowd": 0,
                "width": width,
                "height": height,
                "segmentations": [None if m is None else encode_rle(m) for m in track.masks],
                "bboxes": [None if m is None else coco_bbox(m) for m in track.masks],
                "areas": [None if m is None else int(m.sum()) for m in track.masks],
                "attributes": {"colour": track.look.colour},
                "expressions": track.expressions,
            }
        )
    record = {
        "file_names": file_names,
        "length": len(file_names),
        "width": width,
        "height": height,
        "attributes": _attributes(video.attributes),
    }
    return {"video": record, "annotations": annotations}
