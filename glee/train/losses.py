"""Loss terms and box helpers of the GLEE trainer (DETR / DINO / MaskDINO / IDOL formulations)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from glee.model.layers import box_xyxy


def _overlap(a: Tensor, b: Tensor, pairwise: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """IoU and union of xyxy boxes, and the boxes broadcast against each other (for the hull)."""
    if pairwise:
        a, b = a[:, None], b[None]
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area_a + area_b - inter
    return inter / union.clamp(min=1e-7), union, a, b


def box_iou(a: Tensor, b: Tensor, pairwise: bool = True) -> Tensor:
    """IoU of xyxy boxes: [N, M] for all pairs, or [N] for aligned rows (``pairwise=False``)."""
    return _overlap(a, b, pairwise)[0]


def generalized_iou(a: Tensor, b: Tensor, pairwise: bool = True) -> Tensor:
    """GIoU of xyxy boxes: [N, M] for all pairs, or [N] for aligned rows (``pairwise=False``)."""
    iou, union, a, b = _overlap(a, b, pairwise)
    hull = (
        (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).clamp(min=0).prod(-1)
    )
    return iou - (hull - union) / hull.clamp(min=1e-7)


def referred_positives(boxes: Tensor, referred: Tensor, iou: float) -> Tensor:
    """[Q] bool: which predicted boxes [Q, 4] overlap a referred box [n, 4] (both cxcywh) at IoU >= ``iou``:
    the queries a grounding answer may be."""
    return (box_iou(box_xyxy(boxes), box_xyxy(referred)) >= iou).any(1)


def referring_loss(logits: Tensor, positive: Tensor) -> Tensor:
    """-log of the softmax mass of sentences' logits [..., Q] on their positive queries [..., Q] (bool, not
    all False), per sentence: small exactly when the top-1 query, which grounding answers with, is a
    positive."""
    masked = logits.masked_fill(~positive, float("-inf"))
    return torch.logsumexp(logits, -1) - torch.logsumexp(masked, -1)


def focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Element-wise sigmoid focal loss (RetinaNet); callers sum and normalize."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    return (alpha * targets + (1 - alpha) * (1 - targets)) * loss


def focal_cost(logits: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Matching cost of predicting each class as positive (DETR-family focal cost), element-wise."""
    prob = logits.sigmoid()
    neg = (1 - alpha) * prob**gamma * -(1 - prob + 1e-8).log()
    pos = alpha * (1 - prob) ** gamma * -(prob + 1e-8).log()
    return pos - neg


def point_coords(boxes_xyxy: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
    """[N, num, 2] sample points in [0, 1]: two thirds inside each object's box grown by 25 %,
    one third over the whole image, so small objects get as many points as large ones."""
    n = boxes_xyxy.shape[0]
    inner = num * 2 // 3
    centre = (boxes_xyxy[:, :2] + boxes_xyxy[:, 2:]) / 2
    half = (boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]).clamp(min=1e-3) * 0.625
    local = centre[:, None] + (torch.rand(n, inner, 2, generator=generator) * 2 - 1) * half[:, None]
    spread = torch.rand(n, num - inner, 2, generator=generator)
    return torch.cat([local, spread], 1).clamp(0, 1)


def sample_at(maps: Tensor, coords: Tensor) -> Tensor:
    """Bilinear values of [N, H, W] maps at [N, P, 2] points in [0, 1] (pixel-centre convention)."""
    grid = coords[:, None] * 2 - 1
    return F.grid_sample(maps[:, None], grid, mode="bilinear", align_corners=False)[:, 0, 0]


def mask_losses(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Summed sigmoid BCE (mean over points) and dice over sampled points, for [N, P] logits / targets."""
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1).sum()
    prob = logits.sigmoid()
    dice = 1 - (2 * (prob * targets).sum(1) + 1) / (prob.sum(1) + targets.sum(1) + 1)
    return bce, dice.sum()


def track_contrastive_loss(
    keys: Tensor, key_ids: Tensor, refs: Tensor, ref_ids: Tensor, temperature: float
) -> tuple[Tensor, int]:
    """IDOL-style multi-positive contrastive loss on cosine similarities, summed over keys.

    keys [K, D] (ids [K]) from one frame, refs [R, D] (ids [R], -1 = background query) from the other:
    each key with a same-id ref pulls it above every other ref: log(1 + sum_pos sum_neg exp(s_neg - s_pos)).
    Returns (sum, number of keys that had a positive).
    """
    sim = F.normalize(keys, dim=-1) @ F.normalize(refs, dim=-1).T / temperature
    pos = (key_ids[:, None] == ref_ids[None]) & (key_ids[:, None] >= 0)
    has = pos.any(1)
    if not bool(has.any()):
        return sim.sum() * 0.0, 0
    sim, pos = sim[has], pos[has]
    neg = ~pos
    diff = sim[:, None, :] - sim[:, :, None]  # [K, pos r, neg r'] = s_r' - s_r
    valid = pos[:, :, None] & neg[:, None, :]
    diff = diff.masked_fill(~valid, float("-inf")).flatten(1)
    zero = diff.new_zeros(diff.shape[0], 1)
    return torch.logsumexp(torch.cat([zero, diff], 1), 1).sum(), int(has.sum())
