"""J&F for video object segmentation (DAVIS definition), used for both VOS and RVOS.

J is the region IoU. F is the F-measure between the two masks' boundary maps, where a boundary pixel
counts as matched if the other boundary lies within a disk of ``ceil(bound_th * image diagonal)``
pixels (``bound_th >= 1`` is taken as pixels directly). The boundary map follows DAVIS: a pixel is on
the boundary when its right, lower or lower-right neighbour has the other value, so results are
comparable with the DAVIS toolkit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from glee.evaluation.iou import mask_pair_iou

DEFAULT_BOUND_TH = 0.008


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """Bool [H, W]: pixels whose right, lower or lower-right neighbour differs (outside counts as 0).

    On the last row / column only the in-image neighbour is compared, and the bottom-right pixel is
    never a boundary, as in DAVIS.
    """
    seg = np.asarray(mask, bool)
    padded = np.zeros((seg.shape[0] + 1, seg.shape[1] + 1), bool)
    padded[:-1, :-1] = seg
    east, south, south_east = padded[:-1, 1:], padded[1:, :-1], padded[1:, 1:]
    boundary = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    boundary[-1, :] = seg[-1, :] ^ east[-1, :]
    boundary[:, -1] = seg[:, -1] ^ south[:, -1]
    boundary[-1, -1] = False
    return boundary


def _disk(radius: int) -> np.ndarray:
    """Structuring element of the pixels within Euclidean ``radius`` of the centre."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return xx**2 + yy**2 <= radius**2


def boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = DEFAULT_BOUND_TH) -> float:
    """Boundary F-measure between two bool masks [H, W]; 1.0 when neither has a boundary."""
    pred_b = boundary_map(pred)
    gt_b = boundary_map(gt)
    n_pred, n_gt = int(pred_b.sum()), int(gt_b.sum())
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0
    radius = int(bound_th) if bound_th >= 1 else math.ceil(bound_th * math.hypot(*pred_b.shape))
    disk = _disk(radius)
    precision = (pred_b & ndimage.binary_dilation(gt_b, structure=disk)).sum() / n_pred
    recall = (gt_b & ndimage.binary_dilation(pred_b, structure=disk)).sum() / n_gt
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def j_and_f(
    pred_masks: Sequence[np.ndarray], gt_masks: Sequence[np.ndarray], bound_th: float = DEFAULT_BOUND_TH
) -> dict[str, float]:
    """Mean J, mean F and their average over the frames of one object's sequence.

    Frames where the object is absent carry an empty ground-truth mask; predicting nothing there
    scores 1 on both J and F, predicting something scores 0.
    """
    if len(pred_masks) != len(gt_masks) or not gt_masks:
        raise ValueError("pred_masks and gt_masks must be equally long and non-empty")
    j = float(np.mean([mask_pair_iou(p, g) for p, g in zip(pred_masks, gt_masks, strict=True)]))
    f = float(np.mean([boundary_f(p, g, bound_th) for p, g in zip(pred_masks, gt_masks, strict=True)]))
    return {"J": j, "F": f, "J&F": (j + f) / 2}


def mean_j_and_f(per_object: Sequence[dict[str, float]]) -> dict[str, float | int | None]:
    """Dataset-level J, F, J&F: the mean over objects (each object weighs the same, as in DAVIS)."""
    if not per_object:
        return {"J": None, "F": None, "J&F": None, "count": 0}
    out: dict[str, float | int | None] = {
        k: float(np.mean([o[k] for o in per_object])) for k in ("J", "F", "J&F")
    }
    out["count"] = len(per_object)
    return out
