"""Grounding relation head: re-scores a sentence's candidate queries against each other (not in GLEE).

A superlative or a side ("the leftmost circle", "the largest object", "the square on the left") is a
statement about a *set*: the answer is the candidate that matches the noun and beats every other such
candidate on one box coordinate. GLEE scores each query alone (its projection against the pooled
sentence), and the demo model's linear box term (``ObjectDecoder.box_term``) only adds a per-query
position score, which spans about one logit across the image — as much as content logits differ.

This head lets the last layer's queries look at each other. Each query becomes one token

    x_i = W_q q_i + MLP([sine(box_i), sqrt(area_i), logit_i / s])      (s = the logit scale)

and ``layers`` post-norm blocks of (self-attention over the queries -> cross-attention to the sentence's
tokens -> FFN) turn it into a logit change Δ_i = w · x_i + b, with w, b zero-initialised: a model starts
as plain GLEE grounding. One self-attention layer can already express "is some matching candidate further
left than me": its attention logits q_i·k_j can weigh candidate j by its logit and by its position in the
direction the sentence names, and the FFN compares the attended position with the query's own. The box
enters as DETR's sine embedding: with the raw coordinates (O(0.1) beside an O(10) query vector) a toy
version of the task needed ~2x the examples to reach the same accuracy.

It applies to the matching queries of the last decoder layer only (denoising queries carry ground truth
and never reach it; earlier layers keep plain grounding), so one layer adds 0.33 M parameters and ~1 ms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glee.model.layers import MLP, sine_box_embed

# What grounding reads of a query's box (``box_features``), here and in ``ObjectDecoder.box_term``.
BOX_FEATURES = ("cx", "cy", "w", "h", "sqrt_area")


def box_features(boxes: Tensor) -> Tensor:
    """[..., 4] cxcywh in 0..1 -> [..., 5] (cx - 0.5, cy - 0.5, w, h, sqrt(area)): the position and size
    that grounding sentences talk about, centred so that a zero weight means "anywhere"."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5, cy - 0.5, w, h, (w * h).clamp_min(0).sqrt()], -1)


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
        self.box_embed = MLP(4 * self.sine_feats + 2, d, d, 2)
        self.layers = nn.ModuleList(RelationLayer(d, n_heads, d_ffn) for _ in range(layers))
        self.out = nn.Linear(d, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self,
        queries: Tensor,
        boxes: Tensor,
        logits: Tensor,
        scale: Tensor | float,
        tokens: Tensor,
        mask: Tensor | None,
    ) -> Tensor:
        """Δ logits [B, Q] of queries [B, Q, D] (decoder-normed) with boxes [B, Q, 4] and grounding logits
        [B, Q], against the sentence tokens [B, T, D] (mask [B, T], True = real; None = all real)."""
        area = box_features(boxes)[..., BOX_FEATURES.index("sqrt_area"), None]
        sine = sine_box_embed(boxes, self.sine_feats)
        geometry = torch.cat([sine, area, (logits / scale)[..., None]], -1)
        x = self.query_proj(queries) + self.box_embed(geometry)
        pad = None if mask is None else ~mask
        for layer in self.layers:
            x = layer(x, tokens, pad)
        return self.out(x)[..., 0]
