"""Mask helpers shared by the generator, the writers and the readers: tight boxes and COCO RLE."""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight xyxy box of a non-empty mask in continuous pixel coordinates (x1, y1 exclusive)."""
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def coco_bbox(mask: np.ndarray) -> list[float]:
    """[x, y, w, h] of a mask's tight box (the COCO convention, as pycocotools' toBbox computes it)."""
    x0, y0, x1, y1 = mask_box(mask)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of a bool [H,W] mask, with `counts` as str (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


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
