"""Grounding relation head: re-scores a sentence's candidate queries against each other (not in GLEE).

A superlative or a side ("the leftmost circle", "the largest object", "the square on the left") is a
statement about a *set*: the answer is the candidate that matches the noun and beats every other such
candidate on one box coordinate. GLEE scores each query alone (its projection against the pooled
sentence), and the demo model's linear box term (``ObjectDecoder.box_term``) only adds a per-query
position score, which spans about one logit across the image — as much as content logits differ.

This head lets the last layer's queries look at each other. Each query becomes one token

    x_i = W_q q_i + MLP([sine(box_i), sqrt(area_i), sqrt(m_i), z_i, r_i])    (z = logit / s, s: logit scale)

and ``layers`` post-norm blocks of (self-attention over the queries -> cross-attention to the sentence's
tokens -> FFN) turn it into a logit change Δ_i = w · x_i + b, with w, b zero-initialised: a model starts
as plain GLEE grounding. The box enters as DETR's sine embedding: with the raw coordinates (O(0.1) beside
an O(10) query vector) a toy version of the task needed ~2x the examples to reach the same accuracy.

m_i is the share of the (padded) frame that query i's mask covers (``mask_areas``: mask logit > 0 at
stride 4, inside the box grown by ``mask_box_margin`` as the output masks are). Size sentences are about
mask areas ("the largest object" is the one with the most visible pixels), which the box area misjudges
across shapes: a triangle fills half its box, a square all of it (by the held-out ground truth's own
boxes, 13 % of the "largest / smallest object" answers are not the extreme box).

r_i are *soft ranks*, the comparison itself written down rather than learned: for each quantity
g in ``RANKED`` (cx, cy, sqrt(area), sqrt(m)), each step width t in ``RANK_STEPS`` and each temperature τ in
``RANK_TEMPERATURES``,

    r_i^± = Σ_j softmax_j(z / τ) · σ(±(g_j - g_i) / t),

the share of the sentence's likely candidates (weighted by their plain grounding logits) that lie beyond
query i on that quantity, in each direction. "The leftmost circle" is then the well-matching query whose
share of candidates further left is ~0, which one linear read-out of x_i can express; without r_i one
self-attention layer had to learn the comparison from examples (top-1 of held-out cached samples with
spatial sentences 0.86 -> 0.89, tuning REC 0.863 -> 0.890: TRAINING.md, "Soft ranks"; the mask-area
quantity: "Mask areas"). The duplicates of
query i itself sit at g_j ≈ g_i and add ~half their weight to both directions, which the read-out learns
to discount.

It applies to the matching queries of the last decoder layer only (denoising queries carry ground truth
and never reach it; earlier layers keep plain grounding), so one layer adds 0.33 M parameters and ~1 ms,
and the mask areas 1.4 ms at the demo's 256 px (2 threads).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glee.model.layers import MLP, box_region, box_xyxy, sine_box_embed

# What grounding reads of a query's box (``box_features``), here and in ``ObjectDecoder.box_term``.
BOX_FEATURES = ("cx", "cy", "w", "h", "sqrt_area")
# The quantities that superlatives and sides compare (``soft_ranks``, ``ranked_quantities``): three of
# BOX_FEATURES, then the square root of the mask area. The last two are the sizes the head also reads.
BOX_RANKED = ("cx", "cy", "sqrt_area")
RANKED = (*BOX_RANKED, "sqrt_mask_area")
# Step widths of "beyond" in box units and temperatures of the candidate weights (cosine units).
RANK_STEPS = (0.02, 0.05)
RANK_TEMPERATURES = (0.05, 0.15)


def box_features(boxes: Tensor) -> Tensor:
    """[..., 4] cxcywh in 0..1 -> [..., 5] (cx - 0.5, cy - 0.5, w, h, sqrt(area)): the position and size
    that grounding sentences talk about, centred so that a zero weight means "anywhere"."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5, cy - 0.5, w, h, (w * h).clamp_min(0).sqrt()], -1)


def mask_areas(embed: Tensor, features: Tensor, boxes: Tensor, margin: float | None) -> Tensor:
    """[B, Q] share of the frame covered by each query's mask: mask embeddings [B, Q, D] against the
    stride-4 mask features [B, D, h, w] of the padded frame, logit > 0, inside the query's box [B, Q, 4]
    (cxcywh in 0..1 of the same frame) grown by ``margin`` per side (None: anywhere), like the output
    masks before their upsampling. A count, not a differentiable area: the head reads it as an input."""
    b, q = boxes.shape[:2]
    h, w = features.shape[-2:]
    inside = torch.einsum("bqc,bchw->bqhw", embed, features) > 0
    if margin is not None:
        cells = box_xyxy(boxes.float()).flatten(0, 1) * boxes.new_tensor([w, h, w, h], dtype=torch.float32)
        inside = inside & box_region(cells, margin, h, w).view(b, q, h, w)
    return inside.flatten(2).float().mean(-1)


def ranked_quantities(boxes: Tensor, mask_area: Tensor) -> Tensor:
    """[B, Q, 4] cxcywh boxes and [B, Q] mask areas -> [B, Q, len(RANKED)] the compared quantities."""
    g = box_features(boxes)[..., [BOX_FEATURES.index(name) for name in BOX_RANKED]]
    return torch.cat([g, mask_area.clamp_min(0).sqrt()[..., None]], -1)


def soft_ranks(g: Tensor, z: Tensor) -> Tensor:
    """[B, Q, G] compared quantities (``ranked_quantities``) and [B, Q] plain grounding logits in cosine
    units -> [B, Q, R] soft ranks: for every step width and temperature, the weighted share of candidates
    beyond each query on every quantity, first in the increasing then in the decreasing direction (module
    docstring)."""
    rel = g[:, None, :, :] - g[:, :, None, :]  # [B, i, j, G]: g_j - g_i
    both = torch.cat([rel, -rel], -1)
    weights = [torch.softmax(z / tau, -1)[:, None, :, None] for tau in RANK_TEMPERATURES]
    return torch.cat([(torch.sigmoid(both / t) * w).sum(2) for t in RANK_STEPS for w in weights], -1)


RANK_FEATURES = 2 * len(RANKED) * len(RANK_STEPS) * len(RANK_TEMPERATURES)


class RelationLayer(nn.Module):
    """Self-attention over the candidates -> cross-attention to the sentence -> FFN, post-norm."""

    def __init__(self, d: int, n_heads: int, d_ffn: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, n_heads, batch_first=True)
        self.norm1 = nn.LayerNorm(d)
        self.cross_attn = nn.MultiheadAttention(d, n_heads, batch_first=True)
        self.norm2 = nn.LayerNorm(d)
        self.linear1 = nn.Linear(d, d_ffn)
        self.linear2 = nn.Linear(d_ffn, d)
        self.norm3 = nn.LayerNorm(d)

    def forward(self, x: Tensor, tokens: Tensor, pad: Tensor | None) -> Tensor:
        """x [B, Q, D]; tokens [B, T, D]; pad [B, T] True = padding (not attended)."""
        x = self.norm1(x + self.self_attn(x, x, x, need_weights=False)[0])
        x = self.norm2(x + self.cross_attn(x, tokens, tokens, key_padding_mask=pad, need_weights=False)[0])
        return self.norm3(x + self.linear2(F.relu(self.linear1(x))))


class GroundingRelation(nn.Module):
    """Checkpoint prefix ``predictor.ground_relation``; see the module docstring."""

    def __init__(self, d: int, n_heads: int, d_ffn: int, layers: int) -> None:
        super().__init__()
        self.query_proj = nn.Linear(d, d)
        self.sine_feats = d // 2
        self.box_embed = MLP(4 * self.sine_feats + 3 + RANK_FEATURES, d, d, 2)
        self.layers = nn.ModuleList(RelationLayer(d, n_heads, d_ffn) for _ in range(layers))
        self.out = nn.Linear(d, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self,
        queries: Tensor,
        boxes: Tensor,
        mask_area: Tensor,
        logits: Tensor,
        scale: Tensor | float,
        tokens: Tensor,
        mask: Tensor | None,
    ) -> Tensor:
        """Δ logits [B, Q] of queries [B, Q, D] (decoder-normed) with boxes [B, Q, 4], mask areas [B, Q]
        (``mask_areas``) and grounding logits [B, Q], against the sentence tokens [B, T, D] (mask [B, T],
        True = real; None = all real)."""
        g = ranked_quantities(boxes, mask_area)
        sizes = g[..., RANKED.index("sqrt_area") :]
        sine = sine_box_embed(boxes, self.sine_feats)
        z = logits / scale
        geometry = torch.cat([sine, sizes, z[..., None], soft_ranks(g, z)], -1)
        x = self.query_proj(queries) + self.box_embed(geometry)
        pad = None if mask is None else ~mask
        for layer in self.layers:
            x = layer(x, tokens, pad)
        return self.out(x)[..., 0]
