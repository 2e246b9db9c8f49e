"""Mask and box helpers shared by the generator, readers, model and metrics: tight boxes, box and mask
IoU, RLE."""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight xyxy box of a non-empty mask in continuous pixel coordinates (x1, y1 exclusive)."""
    if not mask.any():
        raise ValueError("an empty mask has no box")
    x0, y0, x1, y1 = mask_boxes(mask[None])[0]
    return int(x0), int(y0), int(x1), int(y1)


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """[N, 4] float32 tight xyxy boxes of bool masks [N, H, W] (as :func:`mask_box`); zeros for empty ones."""
    h, w = masks.shape[1:]
    cols, rows = masks.any(1), masks.any(2)
    boxes = np.stack(
        [cols.argmax(1), rows.argmax(1), w - cols[:, ::-1].argmax(1), h - rows[:, ::-1].argmax(1)], 1
    ).astype(np.float32)
    boxes[~cols.any(1)] = 0
    return boxes


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes ``a`` [N,4] and ``b`` [M,4] -> [N,M] (0 for empty boxes)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def coco_bbox(mask: np.ndarray) -> list[float]:
    """[x, y, w, h] of a mask's tight box (the COCO convention, as pycocotools' toBbox computes it)."""
    x0, y0, x1, y1 = mask_box(mask)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of a bool [H,W] mask, with `counts` as str (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [N, M] between bool masks ``a`` [N, H, W] and ``b`` [M, H, W]."""
    return _rle_overlap(a, b, crowd=False)


def mask_cover(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, M]: the fraction of each mask of ``a`` that lies inside each mask of ``b`` (0 for empty ones)."""
    return _rle_overlap(a, b, crowd=True)


def _rle_overlap(a: np.ndarray, b: np.ndarray, crowd: bool) -> np.ndarray:
    """Through pycocotools' RLE (what COCO evaluation itself uses): cheap in memory for many full-resolution
    masks, and the tracker's overlaps agree exactly with the metrics' matching. COCO's "crowd" IoU divides
    the intersection by the first mask's area instead of the union."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    ious = mask_utils.iou([encode_rle(m) for m in a], [encode_rle(m) for m in b], [int(crowd)] * len(b))
    return np.asarray(ious, np.float64).reshape(len(a), len(b))


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Bool [H,W] mask of any COCO segmentation: compressed or uncompressed RLE, or polygons."""
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        counts = segmentation["counts"]
        rle = {
            "size": segmentation["size"],
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
        }
    return mask_utils.decode(rle).astype(bool)
