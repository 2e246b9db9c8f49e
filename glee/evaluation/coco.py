"""COCO box / mask AP through pycocotools, and the derived "colour-phrase" ground truth.

Colour-phrase AP asks whether a "<colour> <shape>" query finds only objects of that colour and shape.
COCO AP already measures exactly that once every (colour, shape) pair is its own category, so the
ground truth is rewritten with one category per pair and evaluated by the same COCOeval.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from glee.data.masks import encode_rle
from glee.evaluation.iou import xyxy_to_xywh
from glee.model.types import ImageResult

# Names of COCOeval.stats entries that we report, with their index in ``stats``.
AP_FIELDS: dict[str, int] = {"AP": 0, "AP50": 1, "AP75": 2, "APs": 3, "APm": 4, "APl": 5, "AR100": 8}
IOU_TYPES = ("bbox", "segm")


def result_to_detections(
    result: ImageResult, image_id: int, category_ids: Mapping[str, int]
) -> list[dict[str, Any]]:
    """One COCO result record per row of ``result``, with both ``bbox`` and an RLE ``segmentation``.

    Rows whose label is not a known category name are dropped: the model was asked for these names
    only, so anything else cannot be scored against the ground truth.
    """
    detections = []
    for row, label in enumerate(result.labels):
        if label not in category_ids:
            continue
        detections.append(
            {
                "image_id": int(image_id),
                "category_id": int(category_ids[label]),
                "score": float(result.scores[row]),
                "bbox": xyxy_to_xywh(result.boxes[row]),
                "segmentation": encode_rle(result.masks[row]),
            }
        )
    return detections


def _quiet_coco(dataset: dict[str, Any]) -> COCO:
    """A COCO index over a private copy (COCOeval rewrites annotations in place) without its prints.

    COCOeval reads each annotation's ``area`` (APs/m/l); a file that leaves it out (the readers do not
    need it) gets the area of the annotation's mask, which is what COCO's area is.
    """
    coco = COCO()
    coco.dataset = copy.deepcopy(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    for ann in coco.dataset.get("annotations", []):
        if "area" not in ann:
            ann["area"] = float(mask_utils.area(coco.annToRLE(ann)))
    return coco


def _results_for(gt: COCO, detections: Sequence[dict[str, Any]], iou_type: str) -> COCO:
    """The result index for one IoU type.

    Only the field being evaluated is kept, so that pycocotools derives each detection's area from it
    (box area for ``bbox``, mask area for ``segm``) exactly as the official evaluation does.
    """
    field = "bbox" if iou_type == "bbox" else "segmentation"
    records = [
        {k: det[k] for k in ("image_id", "category_id", "score")} | {field: det[field]} for det in detections
    ]
    if records:
        with contextlib.redirect_stdout(io.StringIO()):
            return gt.loadRes(records)
    # loadRes cannot take an empty list; an empty index scores 0 wherever there is ground truth.
    return _quiet_coco(
        {"images": gt.dataset["images"], "categories": gt.dataset["categories"], "annotations": []}
    )


def coco_ap(
    gt: dict[str, Any],
    detections: Sequence[dict[str, Any]],
    iou_types: Iterable[str] = IOU_TYPES,
    image_ids: Iterable[int] | None = None,
) -> dict[str, dict[str, float | None]]:
    """AP, AP50, AP75, APs/m/l and AR@100 per IoU type, as fractions in [0, 1].

    ``gt`` is a COCO dataset dict (not modified); ``detections`` are COCO result records (see
    ``result_to_detections``). ``image_ids`` restricts the evaluation to the images actually run, so
    that ground truth of images never shown to the model does not count as missed. A metric that COCO
    leaves undefined (no ground truth in that size range) is ``None``.
    """
    gt_index = _quiet_coco(gt)
    out: dict[str, dict[str, float | None]] = {}
    for iou_type in iou_types:
        evaluator = COCOeval(gt_index, _results_for(gt_index, detections, iou_type), iou_type)
        if image_ids is not None:
            evaluator.params.imgIds = sorted(int(i) for i in image_ids)
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        stats = np.asarray(evaluator.stats)
        out[iou_type] = {name: (float(stats[i]) if stats[i] >= 0 else None) for name, i in AP_FIELDS.items()}
    return out


def annotation_colour(ann: Mapping[str, Any]) -> str | None:
    """The annotation's colour attribute (``colour``, or ``color`` as other generators may spell it)."""
    attributes = ann.get("attributes") or {}
    return attributes.get("colour", attributes.get("color"))


def has_colours(gt: Mapping[str, Any]) -> bool:
    """True when every annotation carries a colour attribute (colour-phrase AP is defined)."""
    anns = gt.get("annotations", [])
    return bool(anns) and all(annotation_colour(a) for a in anns)


def colour_phrase_gt(gt: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``gt`` whose categories are the "<colour> <shape>" pairs present in its annotations.

    Category ids are 1..K in sorted name order; each annotation is re-labelled with its pair.
    """
    shape_of = {c["id"]: c["name"] for c in gt["categories"]}
    anns = gt["annotations"]
    missing = [a["id"] for a in anns if not annotation_colour(a)]
    if missing:
        raise ValueError(f"annotations without a colour attribute: {missing[:5]}")
    phrase_of_ann = {a["id"]: f"{annotation_colour(a)} {shape_of[a['category_id']]}" for a in anns}
    phrases = sorted(set(phrase_of_ann.values()))
    phrase_ids = {p: i + 1 for i, p in enumerate(phrases)}
    return {
        "images": copy.deepcopy(gt["images"]),
        "categories": [{"id": phrase_ids[p], "name": p} for p in phrases],
        "annotations": [copy.deepcopy(a) | {"category_id": phrase_ids[phrase_of_ann[a["id"]]]} for a in anns],
    }
