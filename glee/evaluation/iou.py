"""Overlap helpers of the metrics. The IoU matrices (``glee.data.masks.box_iou`` and ``mask_iou``) live
with the mask helpers, since the model's tracker uses them too; this module adds the DAVIS convention for
one pair of masks and COCO's box layout."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def xyxy_to_xywh(box: Sequence[float]) -> list[float]:
    """``[x1, y1, x2, y2]`` to COCO ``[x, y, w, h]`` as plain floats (JSON-ready)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def mask_pair_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two bool masks; 1.0 when both are empty (DAVIS: nothing to find and nothing found)."""
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, gt).sum() / union)
