"""Mask overlap measures shared by the metrics, so that mIoU, tracking and J&F agree on IoU (box IoU is
``glee.data.masks.box_iou``, the one the model uses too).

Masks go through pycocotools' RLE (the library COCO evaluation itself uses), which keeps IoU
matrices between many full-resolution masks cheap in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pycocotools import mask as mask_utils

from glee.data.masks import encode_rle


def xyxy_to_xywh(box: Sequence[float]) -> list[float]:
    """``[x1, y1, x2, y2]`` to COCO ``[x, y, w, h]`` as plain floats (JSON-ready)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [N, M] between bool masks ``a`` [N, H, W] and ``b`` [M, H, W]."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    ious = mask_utils.iou([encode_rle(m) for m in a], [encode_rle(m) for m in b], [0] * len(b))
    return np.asarray(ious, np.float64).reshape(len(a), len(b))


def mask_pair_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two bool masks; 1.0 when both are empty (DAVIS: nothing to find and nothing found)."""
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, gt).sum() / union)
