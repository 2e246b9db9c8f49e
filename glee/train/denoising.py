"""Contrastive denoising queries (DINO / MaskDINO) built from the ground truth of a batch.

Each group holds a positive copy (box corners moved by less than half the box size) and a negative copy
(moved by one to two half-sizes) of every object, padded to the batch's largest object count. The
content of a query is a trainer-owned label embedding of the object's category, flipped to a random
category with probability ``label_noise``; none of this exists at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from glee.model.layers import box_cxcywh, box_xyxy, inverse_sigmoid
from glee.model.object_decoder import DenoisingQueries


@dataclass
class DenoisingPlan:
    queries: DenoisingQueries
    groups: int
    max_objects: int
    # Per image: (query rows of the positive copies [groups * n], object index of each row).
    positives: list[tuple[Tensor, Tensor]]
    # Per image: every real (non-padding) denoising row, positive or negative.
    rows: list[Tensor]


def build_denoising(
    label_embed: nn.Embedding,
    labels: list[Tensor],
    boxes: list[Tensor],
    num_queries: int,
    budget: int,
    label_noise: float,
    box_noise: float,
    generator: torch.Generator | None = None,
) -> DenoisingPlan | None:
    """labels [n_i] category indices, boxes [n_i, 4] cxcywh; None when the batch has no object."""
    n_max = max(len(b) for b in boxes)
    if n_max == 0 or budget < 2:
        return None
    groups = max(budget // (2 * n_max), 1)
    batch = len(boxes)
    per_group = 2 * n_max
    pad = groups * per_group
    d = label_embed.embedding_dim
    device = label_embed.weight.device
    tgt = torch.zeros(batch, pad, d, device=device)
    ref = torch.zeros(batch, pad, 4, device=device)
    positives, rows = [], []
    for b, (lab, box) in enumerate(zip(labels, boxes, strict=True)):
        n = len(lab)
        if n == 0:
            positives.append((torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)))
            rows.append(torch.zeros(0, dtype=torch.int64))
            continue
        lab_g = lab.repeat(2 * groups)
        flip = torch.rand(lab_g.shape, generator=generator) < label_noise
        lab_g = torch.where(
            flip, torch.randint(label_embed.num_embeddings, lab_g.shape, generator=generator), lab_g
        )
        box_g = box.repeat(2 * groups, 1)
        # Copies in order [group][positive n, negative n].
        negative = torch.arange(2 * groups).repeat_interleave(n) % 2 == 1
        magnitude = torch.rand(box_g.shape, generator=generator) + negative[:, None].float()
        sign = torch.randint(0, 2, box_g.shape, generator=generator).float() * 2 - 1
        half = torch.cat([box_g[:, 2:], box_g[:, 2:]], 1) / 2
        noisy = (box_xyxy(box_g) + sign * magnitude * half * box_noise).clamp(0, 1)
        slot = torch.arange(2 * groups).repeat_interleave(n) * n_max + torch.arange(n).repeat(2 * groups)
        tgt[b, slot] = label_embed(lab_g.to(device))
        ref[b, slot] = inverse_sigmoid(box_cxcywh(noisy)).to(device)
        pos = slot[~negative]
        positives.append((pos, torch.arange(n).repeat(groups)))
        rows.append(slot)
    total = pad + num_queries
    mask = torch.zeros(total, total, dtype=torch.bool, device=device)
    mask[pad:, :pad] = True
    for g in range(groups):
        lo, hi = g * per_group, (g + 1) * per_group
        mask[lo:hi, :lo] = True
        mask[lo:hi, hi:pad] = True
    return DenoisingPlan(DenoisingQueries(tgt, ref, mask), groups, n_max, positives, rows)
