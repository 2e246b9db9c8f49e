"""Small building blocks shared by the GLEE modules (names match the official checkpoints)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (parameters at ``layers.{i}``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, outs, strict=True))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """logit with the official clamping (to [0, 1], then eps on both sides)."""
    x = x.clamp(0.0, 1.0)
    return torch.log(x.clamp(min=eps) / (1.0 - x).clamp(min=eps))


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters (detectron2 semantics, eps 1e-5).

    The four tensors are buffers so that they are saved and loaded but never trained.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)


def make_norm(kind: str, channels: int) -> nn.Module:
    """Norm layer by name: ``frozen_bn`` / ``bn`` (backbone) or ``gn`` (GroupNorm(32), pixel decoder)."""
    if kind == "frozen_bn":
        return FrozenBatchNorm2d(channels)
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        return nn.GroupNorm(32, channels)
    raise ValueError(f"unknown norm {kind!r}")


class NormConv2d(nn.Conv2d):
    """Conv2d followed by an optional norm stored at ``<conv>.norm`` and an optional activation.

    This is detectron2's checkpoint layout (``res2.0.conv1.weight`` + ``res2.0.conv1.norm.*``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
        norm: nn.Module | None = None,
        activation: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self.norm = norm
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


def sine_position_map(batch: int, height: int, width: int, num_feats: int, device: torch.device) -> Tensor:
    """Normalized 2-D sine embedding of a padding-free map: [B, 2*num_feats, H, W] (y features first).

    Positions are 1..H (1..W) divided by H (W) times 2*pi, as in DETR's ``normalize=True`` variant.
    """
    eps = 1e-6
    y = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    x = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    y = y / (y[-1:] + eps) * (2 * math.pi)
    x = x / (x[-1:] + eps) * (2 * math.pi)
    dim_t = _sine_frequencies(num_feats, device)
    pos_y = _interleave_sin_cos(y[:, None] / dim_t)  # [H, F]
    pos_x = _interleave_sin_cos(x[:, None] / dim_t)  # [W, F]
    pos = torch.cat(
        [
            pos_y[:, None, :].expand(height, width, num_feats),
            pos_x[None, :, :].expand(height, width, num_feats),
        ],
        dim=-1,
    )
    return pos.permute(2, 0, 1).unsqueeze(0).expand(batch, -1, -1, -1)


def sine_box_embed(boxes: Tensor, num_feats: int = 128) -> Tensor:
    """Sine embedding of normalized boxes [..., 4] (cx, cy, w, h) -> [..., 4*num_feats], order y, x, w, h."""
    dim_t = _sine_frequencies(num_feats, boxes.device)
    parts = [_interleave_sin_cos(boxes[..., i, None] * (2 * math.pi) / dim_t) for i in range(boxes.shape[-1])]
    order = [1, 0, 2, 3][: len(parts)]
    return torch.cat([parts[i] for i in order], dim=-1)


def _sine_frequencies(num_feats: int, device: torch.device) -> Tensor:
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    return 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)


def _interleave_sin_cos(x: Tensor) -> Tensor:
    """[..., F] -> [..., F]: sin of even and cos of odd columns, interleaved (sin0, cos1, sin2, ...)."""
    return torch.stack([x[..., 0::2].sin(), x[..., 1::2].cos()], dim=-1).flatten(-2)


def box_region(boxes: Tensor, margin: float, h: int, w: int) -> Tensor:
    """[N, h, w] bool: the cells whose centres lie in each xyxy box (in cells) grown by ``margin`` x its
    size per side; how far an output mask may reach from its box (``GleeConfig.mask_box_margin``)."""
    grow = (boxes[:, 2:] - boxes[:, :2]) * margin
    lo, hi = boxes[:, :2] - grow, boxes[:, 2:] + grow
    xs = torch.arange(w, device=boxes.device, dtype=boxes.dtype) + 0.5
    ys = torch.arange(h, device=boxes.device, dtype=boxes.dtype) + 0.5
    cols = (xs[None] >= lo[:, :1]) & (xs[None] <= hi[:, :1])
    rows = (ys[None] >= lo[:, 1:]) & (ys[None] <= hi[:, 1:])
    return rows[:, :, None] & cols[:, None, :]


def mask_crops(embed: Tensor, features: Tensor, boxes: Tensor, side: int) -> Tensor:
    """[B, Q, side * side] each query's mask probability sampled on a side x side grid over its box: mask
    embeddings [B, Q, D] against the stride-4 mask features [B, D, h, w] of the padded frame, boxes
    [B, Q, 4] cxcywh in 0..1 of the same frame. The mask's outline in its box's frame is what tells a
    hexagon from a circle once the object is found, and the queries alone name it wrong (TRAINING.md)."""
    b, q = boxes.shape[:2]
    logits = torch.einsum("bqc,bchw->bqhw", embed, features).flatten(0, 1)[:, None].float()
    steps = (torch.arange(side, device=boxes.device, dtype=torch.float32) + 0.5) / side - 0.5
    cx, cy, w, h = boxes.float().flatten(0, 1).unbind(-1)
    xs = cx[:, None] + w[:, None] * steps  # [BQ, side]
    ys = cy[:, None] + h[:, None] * steps
    grid = torch.stack([xs[:, None, :].expand(-1, side, -1), ys[:, :, None].expand(-1, -1, side)], -1)
    crops = F.grid_sample(logits, grid * 2 - 1, align_corners=False, padding_mode="border")
    return crops.sigmoid().view(b, q, side * side)


def box_xyxy(boxes: Tensor) -> Tensor:
    """[..., 4] cxcywh -> [..., 4] xyxy (the model's boxes are cxcywh; crops, IoUs and GIoU need corners)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def box_cxcywh(boxes: Tensor) -> Tensor:
    """[..., 4] xyxy -> [..., 4] cxcywh, the inverse of :func:`box_xyxy`."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], -1)
