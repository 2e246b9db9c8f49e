"""Early vision-language fusion (VLFuse): image tokens attend to the prompt tokens once, before the encoder.

Official quirks kept on purpose (they change outputs of official weights if "fixed"):

* the residual is added to the *normalized* visual tokens: ``v' = LN(v) + gamma_v * delta_v``;
* attention scale is ``head_dim ** -0.5`` with head_dim = model width (2048 / 8 = 256 for Lite);
* logits are clamped to +-50000;
* the official text mask never masks anything (a bool mask filled with -9e15 stays all-True), so every
  prompt token, grounding padding included, is attended. ``key_mask`` here exists only for our own batching,
  where it removes tokens that a lone request would not have had -- which is exact, since a softmax over
  masked keys equals the softmax over the unpadded sequence.

The language branch of the official bi-attention block (``values_v_proj``, ``out_l_proj``, ``gamma_l``)
is computed there but its output is discarded; its parameters are kept so checkpoints load strictly,
and it is not computed here.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class BiMultiHeadAttention(nn.Module):
    def __init__(self, dim: int, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scale = self.head_dim**-0.5
        self.v_proj = nn.Linear(dim, embed_dim)
        self.l_proj = nn.Linear(dim, embed_dim)
        self.values_v_proj = nn.Linear(dim, embed_dim)
        self.values_l_proj = nn.Linear(dim, embed_dim)
        self.out_v_proj = nn.Linear(embed_dim, dim)
        self.out_l_proj = nn.Linear(embed_dim, dim)
        for lin in (
            self.v_proj,
            self.l_proj,
            self.values_v_proj,
            self.values_l_proj,
            self.out_v_proj,
            self.out_l_proj,
        ):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, v: Tensor, lang: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """v [B, N, C], lang [B, L, C], key_mask [B, L] bool (True = real token) -> delta_v [B, N, C]."""
        b, n, _ = v.shape
        heads, hd = self.num_heads, self.head_dim
        q = (self.v_proj(v) * self.scale).view(b, n, heads, hd).transpose(1, 2)
        k = self.l_proj(lang).view(b, -1, heads, hd).transpose(1, 2)
        val = self.values_l_proj(lang).view(b, -1, heads, hd).transpose(1, 2)
        logits = torch.matmul(q, k.transpose(-1, -2)).clamp(-50000.0, 50000.0)
        if key_mask is not None:
            logits = logits.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        out = torch.matmul(logits.softmax(-1), val).transpose(1, 2).reshape(b, n, heads * hd)
        return self.out_v_proj(out)


class BiAttentionBlock(nn.Module):
    def __init__(self, dim: int, embed_dim: int, num_heads: int, init_gamma: float = 1.0 / 6) -> None:
        super().__init__()
        self.layer_norm_v = nn.LayerNorm(dim)
        self.layer_norm_l = nn.LayerNorm(dim)
        self.attn = BiMultiHeadAttention(dim, embed_dim, num_heads)
        self.gamma_v = nn.Parameter(torch.full((dim,), init_gamma))
        self.gamma_l = nn.Parameter(torch.full((dim,), init_gamma))

    def forward(self, v: Tensor, lang: Tensor, key_mask: Tensor | None = None) -> Tensor:
        v = self.layer_norm_v(v)
        return v + self.gamma_v * self.attn(v, self.layer_norm_l(lang), key_mask)


class VLFuse(nn.Module):
    """Holds ``b_attn`` so names match ``pixel_decoder.transformer.encoder.vl_layers.0.b_attn.*``."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.b_attn = BiAttentionBlock(dim, dim * num_heads, num_heads)

    def forward(self, v: Tensor, lang: Tensor, key_mask: Tensor | None = None) -> Tensor:
        return self.b_attn(v, lang, key_mask)
