r"""Multi-scale deformable attention (MSDA) as one registered op plus the module that uses it.

Math. For a query q with (normalized) reference point r_q, each head m gathers P samples from each of
the L feature levels and mixes them with softmaxed weights:

    out[q, m] = sum_{l=0}^{L-1} sum_{p=0}^{P-1}  A[q, m, l, p] * V_l[m]( loc[q, m, l, p] )

V_l[m] is the head-m slice of level l's value map (H_l x W_l x D), ``loc`` is an (x, y) location in
[0, 1] image-normalized coordinates, and V_l(loc) is bilinear interpolation with zeros outside the map
and pixel centres at ((j + 0.5) / W_l, (i + 0.5) / H_l) -- i.e. exactly
``grid_sample(V_l, 2 * loc - 1, align_corners=False, padding_mode="zeros")``. The weights A are
softmax-normalized over the L*P entries of each head. Locations come from the module:

* 2-d reference points (encoder): loc = r + offset / (W_l, H_l)
* 4-d reference boxes (decoder):  loc = r_xy + offset / P * r_wh * 0.5

Why a custom op: ``glee::ms_deform_attn`` is the single dispatch point that exporters and GPU backends
replace (ONNX custom node / TensorRT ``MultiscaleDeformableAttnPlugin_TRT`` / a CUDA kernel); its CPU
kernel below is the grid_sample reference. The fake (meta) kernel makes it traceable by torch.compile
and torch.export. Training calls :func:`ms_deform_attn_reference` directly so autograd differentiates
the same math without a hand-written backward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def ms_deform_attn_reference(
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Pure-PyTorch MSDA (per-level ``grid_sample``).

    value [N, S, M, D]; spatial_shapes [L, 2] int64 (H, W); level_start_index [L] int64;
    sampling_locations [N, Lq, M, L, P, 2] (x, y in [0, 1]); attention_weights [N, Lq, M, L, P].
    Returns [N, Lq, M * D].
    """
    n, _, m, d = value.shape
    _, lq, _, num_levels, num_points, _ = sampling_locations.shape
    grids = 2.0 * sampling_locations - 1.0
    # [N, Lq, M, L, P] -> [L, N*M, 1, Lq, P], contiguous so that the product below runs over Lq*P at once
    weights = attention_weights.permute(3, 0, 2, 1, 4).reshape(num_levels, n * m, 1, lq, num_points)
    out = None
    for lvl in range(num_levels):
        h, w = int(spatial_shapes[lvl, 0]), int(spatial_shapes[lvl, 1])
        start = int(level_start_index[lvl])
        # [N, H*W, M, D] -> [N*M, D, H, W]
        v = value[:, start : start + h * w].permute(0, 2, 3, 1).reshape(n * m, d, h, w)
        # [N, Lq, M, P, 2] -> [N*M, Lq, P, 2]
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)
        sampled = F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)
        # Weighted per level and accumulated: no [N*M, D, Lq, L*P] stack (the step's largest tensor).
        part = (sampled * weights[lvl]).sum(-1)  # [N*M, D, Lq]
        out = part if out is None else out + part
    return out.view(n, m * d, lq).transpose(1, 2).contiguous()


@torch.library.custom_op("glee::ms_deform_attn", mutates_args=())
def ms_deform_attn(
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Registered MSDA op (see the module docstring); the CPU kernel is the grid_sample reference."""
    return ms_deform_attn_reference(
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights
    )


@ms_deform_attn.register_fake
def _(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    n, _, m, d = value.shape
    return value.new_empty((n, sampling_locations.shape[1], m * d))


class MSDeformAttn(nn.Module):
    """Deformable attention block: offsets and weights predicted from the query, values from the memory.

    Parameter names and row layouts follow Deformable-DETR so official checkpoints load unchanged:
    ``sampling_offsets`` rows are (head, level, point, xy), ``attention_weights`` rows (head, level*point).
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} not divisible by n_heads {n_heads}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable-DETR init: offsets start on a ring of directions, growing with the point index."""
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self,
        query: Tensor,
        reference_points: Tensor,
        memory: Tensor,
        spatial_shapes: Tensor,
        level_start_index: Tensor,
    ) -> Tensor:
        """query [N, Lq, C]; reference_points [N, Lq, L, 2|4]; memory [N, S, C] -> [N, Lq, C]."""
        n, lq, _ = query.shape
        heads, levels, points = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(memory).view(n, memory.shape[1], heads, self.d_model // heads)
        offsets = self.sampling_offsets(query).view(n, lq, heads, levels, points, 2)
        weights = self.attention_weights(query).view(n, lq, heads, levels * points).softmax(-1)
        weights = weights.view(n, lq, heads, levels, points)
        if reference_points.shape[-1] == 2:
            normalizer = torch.stack([spatial_shapes[:, 1], spatial_shapes[:, 0]], -1).to(query.dtype)
            locations = (
                reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None]
            )
        elif reference_points.shape[-1] == 4:
            ref = reference_points[:, :, None, :, None]
            locations = ref[..., :2] + offsets / points * ref[..., 2:] * 0.5
        else:
            raise ValueError(f"reference_points must end in 2 or 4, got {tuple(reference_points.shape)}")
        if torch.is_grad_enabled() and self.training:
            out = ms_deform_attn_reference(value, spatial_shapes, level_start_index, locations, weights)
        else:
            out = ms_deform_attn(value, spatial_shapes, level_start_index, locations, weights)
        return self.output_proj(out)
