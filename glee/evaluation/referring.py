"""Metrics for answers that name exactly one object: referring expressions and visual prompts."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from glee.data.masks import box_iou
from glee.data.spec import COLOUR_NAMES, SHAPES
from glee.evaluation.iou import mask_pair_iou

_SIDE = re.compile(r"\bon the (left|right)$")
_EXTREME = re.compile(r"\b(leftmost|rightmost|topmost|bottommost)\b")
_SIZE = re.compile(r"\b(largest|biggest|smallest)\b")


def expression_kind(sentence: str) -> str:
    """The demo grammar's family of a referring expression, for the per-kind REC breakdown.

    colour_shape ("the red circle"), shape ("the star"), colour_object ("the blue object/shape"),
    size ("the largest square"), extreme ("the leftmost object"), side ("the cross on the left"),
    other (anything outside the grammar). Inferred from the text because datasets carry no kind.
    """
    text = " ".join(sentence.lower().split()).removeprefix("the ")
    words = text.split()
    if _SIDE.search(text):
        return "side"
    if _EXTREME.search(text):
        return "extreme"
    if _SIZE.search(text):
        return "size"
    if len(words) == 2 and words[0] in COLOUR_NAMES:
        return "colour_shape" if words[1] in SHAPES else "colour_object"
    if len(words) == 1 and words[0] in SHAPES:
        return "shape"
    return "other"


def rec_accuracy(
    pred_boxes: Sequence[np.ndarray | None],
    gt_boxes: Sequence[np.ndarray],
    kinds: Sequence[str] | None = None,
    iou_threshold: float = 0.5,
) -> dict[str, object]:
    """REC accuracy@IoU: the share of expressions whose top-1 box (xyxy) overlaps the referred box enough.

    ``None`` stands for "the model returned nothing", which counts as a miss. With ``kinds`` (one label
    per expression, e.g. from ``expression_kind``) the accuracy is also broken down per kind.
    """
    if len(pred_boxes) != len(gt_boxes) or (kinds is not None and len(kinds) != len(gt_boxes)):
        raise ValueError("pred_boxes, gt_boxes and kinds must have one entry per expression")
    hits = [
        pred is not None and box_iou(np.asarray(pred)[None], np.asarray(gt)[None])[0, 0] >= iou_threshold
        for pred, gt in zip(pred_boxes, gt_boxes, strict=True)
    ]
    out: dict[str, object] = {"accuracy": _mean(hits), "count": len(hits)}
    if kinds is not None:
        by_kind: dict[str, list[bool]] = defaultdict(list)
        for kind, hit in zip(kinds, hits, strict=True):
            by_kind[kind].append(hit)
        out["by_kind"] = {k: {"accuracy": _mean(v), "count": len(v)} for k, v in sorted(by_kind.items())}
    return out


def prompt_ious(pred_masks: Sequence[np.ndarray | None], gt_masks: Sequence[np.ndarray]) -> list[float]:
    """IoU of each prompt's predicted mask with the prompted object's mask (``None`` = no answer = 0).

    Kept per prompt so that a runner can reduce as it goes instead of holding every mask.
    """
    if len(pred_masks) != len(gt_masks):
        raise ValueError("pred_masks and gt_masks must have one entry per prompt")
    return [
        0.0 if pred is None else mask_pair_iou(pred, gt)
        for pred, gt in zip(pred_masks, gt_masks, strict=True)
    ]


def mean_iou(ious: Sequence[float]) -> dict[str, object]:
    """Prompt mIoU over all prompts of a task."""
    return {"mIoU": _mean(ious), "count": len(ious)}


def _mean(values: Sequence[float]) -> float | None:
    """Mean as a plain float; ``None`` when there is nothing to average (the metric is undefined)."""
    return float(np.mean(values)) if len(values) else None
