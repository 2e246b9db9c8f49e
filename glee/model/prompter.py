"""Visual prompter: points / boxes / scribbles reach the model as one binary mask per image.

Two injection points, as in the official model:

1. Template tokens for early fusion: a square crop of side ``ceil(2 * sqrt(w * h))`` around the mask's
   box (w, h = max - min, no +1; left/top clamped at 0 with Python's half-to-even ``round``; right/bottom
   truncated at the padded border, never shifted), bilinearly resized to ``template_size``, run through the
   same backbone (no grad) and fused by ``sot_fuser`` into (template_size/8)^2 tokens. Point and scribble
   prompts add +1.0 to the normalized image under the mask first; boxes use the image unchanged.
2. Point tokens for decoder self-attention: every mask pixel (row, col) becomes the point
   (row / H_pad, col / W_pad), sampled with ``grid_sample(align_corners=True)`` from the encoder level map
   projected by ``mask_sptial_embed[level]``, plus ``pn_indicator[0]``. Decoder layer k uses level k mod 3.
   Masks with more pixels than ``max_prompt_points`` are subsampled; the official code draws a random
   subset per forward, here the subset comes from a fixed-seed generator so serving is deterministic.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PROMPT_TYPES = ("point", "box", "scribble", "mask")


def aligned_bilinear(x: Tensor, factor: int) -> Tensor:
    """CondInst-style x``factor`` upsampling that keeps pixel corners aligned (replicate pad, corners)."""
    if factor == 1:
        return x
    h, w = x.shape[-2:]
    x = F.pad(x, (0, 1, 0, 1), mode="replicate")
    x = F.interpolate(x, size=(factor * h + 1, factor * w + 1), mode="bilinear", align_corners=True)
    x = F.pad(x, (factor // 2, 0, factor // 2, 0), mode="replicate")
    return x[:, :, : factor * h, : factor * w]


class FeatureFuser(nn.Module):
    """``sot_fuser``: 3x3 convs on res3/res4/res5 summed at res3 resolution."""

    def __init__(self, in_channels: list[int], channels: int) -> None:
        super().__init__()
        self.refine = nn.ModuleList(nn.Conv2d(c, channels, 3, padding=1) for c in in_channels)

    def forward(self, features: list[Tensor]) -> Tensor:
        x = self.refine[0](features[0])
        for conv, f in zip(self.refine[1:], features[1:], strict=True):
            y = conv(f)
            x = x + aligned_bilinear(y, x.shape[-2] // y.shape[-2])
        return x


def template_crops(images: Tensor, masks: Tensor, prompt_types: list[str], size: int) -> Tensor:
    """Crops [B, 3, size, size] around each prompt mask (images normalized+padded, masks [B,H,W])."""
    crops = []
    for image, mask, prompt_type in zip(images, masks, prompt_types, strict=True):
        src = image + mask.to(image.dtype) if prompt_type in ("point", "scribble") else image
        rows = torch.nonzero(mask.any(1)).flatten()
        cols = torch.nonzero(mask.any(0)).flatten()
        if len(rows) == 0:
            raise ValueError("empty prompt mask")
        x, y = int(cols[0]), int(rows[0])
        w, h = int(cols[-1]) - x, int(rows[-1]) - y
        side = math.ceil(math.sqrt(w * h) * 2)
        x1 = max(0, round(x + 0.5 * w - side * 0.5))
        y1 = max(0, round(y + 0.5 * h - side * 0.5))
        crop = src[:, y1 : y1 + side, x1 : x1 + side]
        if crop.shape[-1] == 0 or crop.shape[-2] == 0:
            crop = src
        crops.append(F.interpolate(crop[None], (size, size), mode="bilinear", align_corners=False))
    return torch.cat(crops, 0)


def mask_points(masks: Tensor, max_points: int) -> tuple[Tensor, Tensor]:
    """Normalized (row/H, col/W) points of each mask, padded: ([B, P, 2], valid [B, P])."""
    b, h, w = masks.shape
    divisor = torch.tensor([h, w], dtype=torch.float32, device=masks.device)
    per_image = []
    for mask in masks:
        idx = torch.nonzero(mask)
        if len(idx) > max_points:
            gen = torch.Generator().manual_seed(0)
            keep = torch.randperm(len(idx), generator=gen)[:max_points].sort()[0]
            idx = idx[keep.to(idx.device)]
        per_image.append(idx.to(torch.float32) / divisor)
    n = max(len(p) for p in per_image)
    points = torch.zeros(b, n, 2, device=masks.device)
    valid = torch.zeros(b, n, dtype=torch.bool, device=masks.device)
    for i, p in enumerate(per_image):
        points[i, : len(p)] = p
        valid[i, : len(p)] = True
    return points, valid


def point_tokens(level_map: Tensor, embed: Tensor, points: Tensor, positive: Tensor) -> Tensor:
    """Sample ``level_map @ embed`` at (row, col)-normalized points: [B, P, C] (+ positive indicator)."""
    projected = (level_map.permute(0, 2, 3, 1) @ embed).permute(0, 3, 1, 2)
    grid = points.flip(-1)[:, :, None, :] * 2.0 - 1.0  # (x, y) in [-1, 1]
    sampled = F.grid_sample(projected, grid, mode="bilinear", align_corners=True)  # [B, C, P, 1]
    return sampled[..., 0].transpose(1, 2) + positive
