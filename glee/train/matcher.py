"""Hungarian matching of queries to targets (scipy's ``linear_sum_assignment``)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from glee.model.layers import box_xyxy
from glee.train.losses import focal_cost, generalized_iou


@torch.no_grad()
def match(
    logits: Tensor,
    boxes: Tensor,
    target_classes: Tensor,
    target_boxes: Tensor,
    *,
    w_cls: float,
    w_l1: float,
    w_giou: float,
    scores: Tensor | None = None,
    w_conf: float = 0.0,
    alpha: float = 0.25,
) -> tuple[Tensor, Tensor]:
    """(query indices, target indices) of one image's optimal assignment.

    logits [Q, C] of the image's own C names; target_classes [N, C] multi-hot: an object described by
    several names costs the mean of their focal costs. scores [Q, 1]: the confidence head, matched too
    for visual prompts so that the query that fires is the one that owns the prompted object.
    """
    n = target_boxes.shape[0]
    if n == 0:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty
    cls = focal_cost(logits.float(), alpha) @ target_classes.T / target_classes.sum(1).clamp(min=1)[None]
    l1 = torch.cdist(boxes.float(), target_boxes, p=1)
    giou = generalized_iou(box_xyxy(boxes.float()), box_xyxy(target_boxes))
    cost = w_cls * cls + w_l1 * l1 - w_giou * giou
    if scores is not None:
        cost = cost + w_conf * focal_cost(scores.float(), alpha)
    cost = torch.nan_to_num(cost, nan=1e6, posinf=1e6, neginf=-1e6)
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(np.asarray(cols), dtype=torch.int64)
