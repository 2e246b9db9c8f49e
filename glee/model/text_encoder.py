"""CLIP BPE tokenizer and text tower, matching the HF ``CLIPTokenizer`` / ``CLIPTextModel`` GLEE uses.

GLEE feeds category names and referring expressions through OpenAI CLIP ViT-B/32's text transformer and
keeps every token's ``last_hidden_state`` (no pooling, no ``text_projection``). Parameter names mirror HF's
``CLIPTextModel`` so the ``text_encoder.*`` tensors of official checkpoints load without renaming, and we
avoid a run-time dependency on ``transformers``.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from instant_clip_tokenizer import Tokenizer
from torch import nn

from glee.model.config import TextConfig

BOS_ID = 49406
EOS_ID = 49407
# GLEE's tokenizer sets pad_token = "<|endoftext|>", so padding repeats EOS (not 0 as OpenAI CLIP does).
PAD_ID = EOS_ID
CONTEXT_LENGTH = 77


@functools.cache
def _bpe() -> Tokenizer:
    """Loading the vocabulary is the expensive part of the tokenizer, so do it once per process."""
    return Tokenizer()


class ClipTokenizer:
    """Turns texts into ``(input_ids, attention_mask)`` exactly like GLEE's ``CLIPTokenizer`` call.

    GLEE calls ``batch_encode_plus(texts, max_length=77, padding="max_length", truncation=True)``:
    BOS + BPE tokens of the lower-cased text + EOS, truncated so that EOS stays last, padded with EOS.
    """

    def __init__(self, context_length: int = CONTEXT_LENGTH) -> None:
        self.context_length = context_length

    def length(self, text: str) -> int:
        """Tokens of ``text`` with BOS and EOS, before any cut: more than ``context_length`` means that
        encoding it reads only its beginning."""
        return len(_bpe().encode(text.lower())) + 2

    def __call__(
        self, texts: list[str], pad_to: int | None = CONTEXT_LENGTH
    ) -> tuple[torch.LongTensor, torch.LongTensor]:
        """Tokenize ``texts`` into ``[n, L]`` ids and a mask that is 1 on real tokens (BOS/EOS included).

        ``pad_to=None`` pads only to the longest text in the batch: encoding category names at their real
        length is cheaper and, thanks to the causal mask, gives the same features for their real tokens.
        Texts longer than ``pad_to`` (or the context length) are cut, keeping BOS first and EOS last.
        """
        if isinstance(texts, str) or not texts:
            raise ValueError("texts must be a non-empty list of strings")
        for text in texts:
            if not isinstance(text, str):
                raise ValueError(f"every text must be a str, got {type(text).__name__}")
        limit = self.context_length if pad_to is None else pad_to
        if not 2 <= limit <= self.context_length:
            raise ValueError(f"pad_to must be in [2, {self.context_length}], got {pad_to}")
        bpe = _bpe()
        rows = [[BOS_ID, *bpe.encode(text.lower())[: limit - 2], EOS_ID] for text in texts]
        length = limit if pad_to is not None else max(len(r) for r in rows)
        input_ids = torch.full((len(rows), length), PAD_ID, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, : len(row)] = 1
        return input_ids, attention_mask


class _Embeddings(nn.Module):
    """Token + learned absolute position embeddings.

    HF also registers a ``position_ids`` buffer; positions are simply ``0..L-1`` here, so we slice the
    table instead and keep the state dict free of that non-parameter.
    """

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.position_embedding = nn.Embedding(cfg.context_length, cfg.width)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]
        return self.token_embedding(input_ids) + self.position_embedding.weight[:length]


class _Attention(nn.Module):
    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        if cfg.width % cfg.heads:
            raise ValueError(f"text width {cfg.width} is not divisible by {cfg.heads} heads")
        self.heads = cfg.heads
        self.q_proj = nn.Linear(cfg.width, cfg.width)
        self.k_proj = nn.Linear(cfg.width, cfg.width)
        self.v_proj = nn.Linear(cfg.width, cfg.width)
        self.out_proj = nn.Linear(cfg.width, cfg.width)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor) -> torch.Tensor:
        n, length, width = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(n, length, self.heads, width // self.heads).transpose(1, 2)

        # SDPA's default scale is head_dim**-0.5, the same as HF CLIPAttention.
        out = F.scaled_dot_product_attention(
            split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)), attn_mask=attn_bias
        )
        return self.out_proj(out.transpose(1, 2).reshape(n, length, width))


class _MLP(nn.Module):
    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.width, cfg.mlp_dim)
        self.fc2 = nn.Linear(cfg.mlp_dim, cfg.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        # quick_gelu, the activation OpenAI CLIP was trained with (not exact GELU).
        return self.fc2(h * torch.sigmoid(1.702 * h))


class _EncoderLayer(nn.Module):
    """Pre-LN transformer block."""

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.self_attn = _Attention(cfg)
        self.layer_norm1 = nn.LayerNorm(cfg.width, eps=1e-5)
        self.mlp = _MLP(cfg)
        self.layer_norm2 = nn.LayerNorm(cfg.width, eps=1e-5)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), attn_bias)
        return x + self.mlp(self.layer_norm2(x))


class _Encoder(nn.Module):
    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_EncoderLayer(cfg) for _ in range(cfg.layers))

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, attn_bias)
        return x


class _TextTransformer(nn.Module):
    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.embeddings = _Embeddings(cfg)
        self.encoder = _Encoder(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg.width, eps=1e-5)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(input_ids)
        return self.final_layer_norm(self.encoder(x, _attention_bias(attention_mask, x.dtype)))


def _attention_bias(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive ``[n, 1, L, L]`` bias: query ``i`` may see key ``j`` iff ``j <= i`` and key ``j`` is real.

    Causal AND key-padding are combined into one mask before turning it into a bias, and the bias uses the
    dtype's finite minimum rather than ``-inf``: a row whose keys are all masked (only possible if a caller
    marks BOS as padding) then softmaxes to finite values instead of NaN. For every other row the masked
    weights underflow to exactly 0, as in HF, including on padding queries, whose outputs GLEE uses too.
    """
    length = attention_mask.shape[1]
    pos = torch.arange(length, device=attention_mask.device)
    causal = pos[None, :] <= pos[:, None]
    allowed = causal[None, None] & attention_mask[:, None, None, :].bool()
    zero = torch.zeros((), dtype=dtype, device=attention_mask.device)
    return torch.where(allowed, zero, torch.finfo(dtype).min)


class CLIPTextEncoder(nn.Module):
    """CLIP text transformer returning every token's feature ``[n, L, width]`` after the final LayerNorm.

    The attention is causal, so token ``i`` only depends on tokens ``0..i``. Padding sits after the real
    tokens, hence the real tokens' features do not depend on how much padding follows: encoding a text at
    its real length gives exactly the first tokens of its 77-padded encoding. Padding positions still get
    features (they attend to the real tokens only) because GLEE's early fusion consumes all 77 of them.
    """

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.text_model = _TextTransformer(cfg)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] > self.cfg.context_length:
            raise ValueError(f"sequence length {input_ids.shape[1]} exceeds {self.cfg.context_length}")
        return self.text_model(input_ids, attention_mask)
