"""Pixel decoder: early fusion + multi-scale deformable encoder + one FPN step to stride 4.

Encoder levels are ordered high -> low resolution: res3 (stride 8), res4, res5, and a strided 3x3 conv
of raw res5 (stride 64). No padding masks are used anywhere (padded pixels are image content, as in the
official model), so the reference points are plain pixel centres.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glee.model.config import GleeConfig
from glee.model.early_fusion import VLFuse
from glee.model.layers import NormConv2d, sine_position_map
from glee.model.ops.ms_deform_attn import MSDeformAttn


class EncoderLayer(nn.Module):
    """Post-norm: MSDA self-attention -> residual -> norm1 -> FFN -> residual -> norm2."""

    def __init__(self, d_model: int, d_ffn: int, n_levels: int, n_heads: int, n_points: int) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: Tensor, pos: Tensor, ref: Tensor, shapes: Tensor, starts: Tensor) -> Tensor:
        src = self.norm1(src + self.self_attn(src + pos, ref, src, shapes, starts))
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class Encoder(nn.Module):
    def __init__(self, cfg: GleeConfig) -> None:
        super().__init__()
        d = cfg.hidden_dim
        self.layers = nn.ModuleList(
            EncoderLayer(d, cfg.dim_feedforward, cfg.num_feature_levels, cfg.num_heads, cfg.n_points)
            for _ in range(cfg.enc_layers)
        )
        # Only the first slot holds a fusion block; the official model has nn.Identity in the others.
        self.vl_layers = nn.ModuleList([VLFuse(d, cfg.num_heads)] if cfg.early_fusion else [])


class EncoderTransformer(nn.Module):
    """Holds ``level_embed`` and ``encoder`` (checkpoint prefix ``pixel_decoder.transformer``)."""

    def __init__(self, cfg: GleeConfig) -> None:
        super().__init__()
        self.encoder = Encoder(cfg)
        self.level_embed = nn.Parameter(torch.randn(cfg.num_feature_levels, cfg.hidden_dim))


@dataclass
class PixelDecoderOutput:
    mask_features: Tensor  # [B, C, H/4, W/4]
    multi_scale_features: list[Tensor]  # encoder order, strides 8, 16, 32, 64


def level_geometry(shapes: list[tuple[int, int]], device: torch.device) -> tuple[Tensor, Tensor]:
    """(spatial_shapes [L, 2] int64, level_start_index [L] int64) for flattened multi-level maps."""
    spatial = torch.as_tensor(shapes, dtype=torch.long, device=device)
    starts = torch.cat([spatial.new_zeros(1), spatial.prod(1).cumsum(0)[:-1]])
    return spatial, starts


class PixelDecoder(nn.Module):
    def __init__(self, cfg: GleeConfig, in_channels: dict[str, int]) -> None:
        super().__init__()
        d = cfg.hidden_dim
        proj_in = [in_channels["res3"], in_channels["res4"], in_channels["res5"]]
        projs = [nn.Sequential(nn.Conv2d(c, d, 1), nn.GroupNorm(32, d)) for c in proj_in]
        projs.append(
            nn.Sequential(nn.Conv2d(in_channels["res5"], d, 3, stride=2, padding=1), nn.GroupNorm(32, d))
        )
        for proj in projs:
            nn.init.xavier_uniform_(proj[0].weight)
            nn.init.zeros_(proj[0].bias)
        self.input_proj = nn.ModuleList(projs)
        self.transformer = EncoderTransformer(cfg)
        self.adapter_1 = NormConv2d(in_channels["res2"], d, 1, norm=nn.GroupNorm(32, d))
        self.layer_1 = NormConv2d(d, d, 3, padding=1, norm=nn.GroupNorm(32, d), activation=F.relu)
        self.mask_features = nn.Conv2d(d, d, 1)
        self.hidden_dim = d

    def forward(
        self, features: dict[str, Tensor], lang: Tensor | None = None, lang_mask: Tensor | None = None
    ) -> PixelDecoderOutput:
        """features: backbone maps; lang [B, L, C] early-fusion tokens (None = no fusion)."""
        srcs = [self.input_proj[i](features[name]) for i, name in enumerate(("res3", "res4", "res5"))]
        srcs.append(self.input_proj[3](features["res5"]))
        b = srcs[0].shape[0]
        device = srcs[0].device
        shapes = [(s.shape[2], s.shape[3]) for s in srcs]
        spatial, starts = level_geometry(shapes, device)
        flat = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        pos = torch.cat(
            [
                sine_position_map(b, h, w, self.hidden_dim // 2, device).flatten(2).transpose(1, 2)
                + self.transformer.level_embed[lvl].view(1, 1, -1)
                for lvl, (h, w) in enumerate(shapes)
            ],
            1,
        )
        ref = _encoder_reference_points(shapes, device)[None, :, None, :].expand(b, -1, len(shapes), -1)
        encoder = self.transformer.encoder
        if lang is not None and len(encoder.vl_layers):
            flat = encoder.vl_layers[0](flat, lang, lang_mask)
        for layer in encoder.layers:
            flat = layer(flat, pos, ref, spatial, starts)
        maps = [
            part.transpose(1, 2).reshape(b, -1, h, w)
            for part, (h, w) in zip(flat.split([h * w for h, w in shapes], 1), shapes, strict=True)
        ]
        lateral = self.adapter_1(features["res2"])
        fpn = lateral + F.interpolate(maps[0], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
        return PixelDecoderOutput(self.mask_features(self.layer_1(fpn)), maps)


def _encoder_reference_points(shapes: list[tuple[int, int]], device: torch.device) -> Tensor:
    """Pixel centres ((j + 0.5) / W, (i + 0.5) / H) of every level, concatenated: [S, 2]."""
    refs = []
    for h, w in shapes:
        ys = torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device) / h
        xs = torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device) / w
        refs.append(torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], -1).reshape(-1, 2))
    return torch.cat(refs, 0)
