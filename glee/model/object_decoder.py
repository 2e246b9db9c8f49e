"""Object decoder: two-stage query selection, deformable decoder with box refinement, and the heads.

Official behaviours kept (see the architecture notes, section 1.5):

* decoder memory is the encoder maps in *reverse* order (stride 64 first); proposal sizes 0.05 * 2**lvl
  follow that order, so the stride-64 level gets 0.05 and stride 8 gets 0.4;
* proposals with a coordinate outside (0.01, 0.99) are invalid: memory zeroed, logit-space box +inf;
* the stored layer output is ``decoder_norm(out)`` and the class / confidence / mask heads apply
  ``decoder_norm`` *again*; boxes and track embeddings use the single-normed output;
* reference boxes are refined from the un-normed layer output (and detached);
* class logits are raw dot products with the pooled text embeddings (no normalization, no scale);
  a config may choose a scaled cosine instead (``class_logits="cosine"``, the demo model), never Lite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glee.model.config import GleeConfig
from glee.model.layers import MLP, inverse_sigmoid, mask_crops, sine_box_embed
from glee.model.ops.ms_deform_attn import MSDeformAttn
from glee.model.pixel_decoder import level_geometry
from glee.model.relation import BOX_FEATURES, GroundingRelation, box_features, mask_areas

# Logit of the focal-loss prior 0.01 (RetinaNet's initial bias): what from-scratch heads start at.
FOCAL_PRIOR_LOGIT = -math.log(99.0)


@dataclass
class QueryPrompt:
    """What the queries are matched against.

    class_embeddings [B, C, D] with class_mask [B, C] (False = padding class, for batched vocabularies);
    sentence [B, D] (grounding: logits are against the sentence, class_embeddings unused) and its tokens
    sentence_tokens [B, T, D] with sentence_mask [B, T] (True = real; read by the grounding box term);
    tokens: per decoder layer the extra self-attention tokens [B, T, D] with token_mask [B, T]
    (True = real); ``tokens_per_layer`` maps layer k to an index into ``tokens``.
    select_by_confidence: visual-prompt mode ranks proposals with the confidence head.
    """

    class_embeddings: Tensor | None = None
    class_mask: Tensor | None = None
    sentence: Tensor | None = None
    sentence_tokens: Tensor | None = None
    sentence_mask: Tensor | None = None
    tokens: list[Tensor] = field(default_factory=list)
    token_masks: list[Tensor] = field(default_factory=list)
    tokens_per_layer: list[int] = field(default_factory=list)
    select_by_confidence: bool = False


class DecoderLayer(nn.Module):
    """Self-attention (norm2) -> deformable cross-attention (norm1) -> FFN (norm3), all post-norm."""

    def __init__(self, d_model: int, d_ffn: int, n_levels: int, n_heads: int, n_points: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=0.0)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(
        self,
        tgt: Tensor,
        pos: Tensor,
        ref: Tensor,
        memory: Tensor,
        shapes: Tensor,
        starts: Tensor,
        extra: Tensor | None,
        attn_mask: Tensor | None,
    ) -> Tensor:
        """tgt/pos [B, Q, C]; extra [B, T, C] prompt tokens appended for self-attention only."""
        q_len = tgt.shape[1]
        seq, seq_pos = tgt, pos
        if extra is not None:
            # Prompt tokens are their own positional term (q = k = 2 * token, v = token).
            seq = torch.cat([tgt, extra], 1)
            seq_pos = torch.cat([pos, extra], 1)
        qk = (seq + seq_pos).transpose(0, 1)
        out = self.self_attn(qk, qk, seq.transpose(0, 1), attn_mask=attn_mask, need_weights=False)[0]
        tgt = self.norm2(seq + out.transpose(0, 1))[:, :q_len]
        tgt = self.norm1(tgt + self.cross_attn(tgt + pos, ref, memory, shapes, starts))
        return self.norm3(tgt + self.linear2(F.relu(self.linear1(tgt))))


class TransformerDecoder(nn.Module):
    """Container matching ``predictor.decoder.{layers, ref_point_head}``."""

    def __init__(self, cfg: GleeConfig) -> None:
        super().__init__()
        d = cfg.hidden_dim
        self.layers = nn.ModuleList(
            DecoderLayer(d, cfg.dim_feedforward, cfg.num_feature_levels, cfg.num_heads, cfg.n_points)
            for _ in range(cfg.dec_layers)
        )
        self.ref_point_head = MLP(2 * d, d, d, 2)


@dataclass
class DenoisingQueries:
    """Training-only extra queries placed before the matching queries (contrastive denoising)."""

    tgt: Tensor  # [B, N, D]
    ref_unsigmoid: Tensor  # [B, N, 4]
    attn_mask: Tensor  # [N + Q, N + Q] bool, True = blocked


@dataclass
class LayerPrediction:
    logits: Tensor  # [B, Q, C]
    scores: Tensor  # [B, Q, 1] confidence
    mask_embed: Tensor  # [B, Q, D]
    boxes: Tensor  # [B, Q, 4] cxcywh sigmoid, normalized to the padded input
    class_proj: Tensor  # [B, Q, D] the queries projected for classification (what ``logits`` compare)


@dataclass
class DecoderOutput:
    last: LayerPrediction
    track_embed: Tensor  # [B, Q, D]
    selected_index: Tensor  # [B, Q] memory token each query came from
    selection_scores: Tensor  # [B, S] two-stage score of every memory token
    aux: list[LayerPrediction] = field(default_factory=list)  # initial + layers 0..n-2 (training)
    interm: LayerPrediction | None = None  # encoder proposals (training)
    num_denoising: int = 0
    denoising: LayerPrediction | None = None  # last layer's rows of the denoising queries (training)
    mask_area: Tensor | None = None  # [B, Q] what the relation head read (``relation.mask_areas``)
    ground_logits: Tensor | None = None  # [B, Q] the grounding logits the relation head changed
    # [B, Q] each query's match to the sentence on the sigmoid scale of the grounding loss: the grounding
    # logits with the class refinement's share but without the relation head, whose change only ranks the
    # queries against each other (fitted over queries, its level is arbitrary). None unless grounding.
    match_logits: Tensor | None = None
    mask_shape: Tensor | None = None  # [B, Q, S * S] what the class refinement read (``layers.mask_crops``)


class ObjectDecoder(nn.Module):
    """Checkpoint prefix ``predictor``."""

    def __init__(self, cfg: GleeConfig) -> None:
        super().__init__()
        d = cfg.hidden_dim
        self.num_queries = cfg.num_queries
        self.n_heads = cfg.num_heads
        self.category_embed = nn.Parameter(torch.empty(d, d))
        nn.init.trunc_normal_(self.category_embed, std=0.02)
        self.enc_output = nn.Linear(d, d)
        self.enc_output_norm = nn.LayerNorm(d)
        self.confidence_score = MLP(d, d, 1, 2)
        # From scratch, start at the focal prior 0.01: at 0.5 the confidence loss of ~100 negative queries
        # swamps the clipped gradient of visual-prompt steps for hundreds of steps.
        nn.init.constant_(self.confidence_score.layers[-1].bias, FOCAL_PRIOR_LOGIT)
        self.mask_embed = MLP(d, d, d, 3)
        self.decoder_norm = nn.LayerNorm(d)
        self.decoder = TransformerDecoder(cfg)
        self._bbox_embed = MLP(d, d, 4, 3)
        nn.init.zeros_(self._bbox_embed.layers[-1].weight)
        nn.init.zeros_(self._bbox_embed.layers[-1].bias)
        self.cosine_logits = cfg.class_logits == "cosine"
        if self.cosine_logits:
            # CLIP's initial temperature 1/0.07 and the same focal prior.
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
            self.logit_bias = nn.Parameter(torch.tensor(FOCAL_PRIOR_LOGIT))
        self.ground_box: MLP | None = None
        if cfg.ground_box_term:
            # Zero-initialised: a model starts as plain GLEE grounding and learns how each sentence weighs
            # position and size.
            self.ground_box = MLP(d, d, len(BOX_FEATURES), 2)
            nn.init.zeros_(self.ground_box.layers[-1].weight)
            nn.init.zeros_(self.ground_box.layers[-1].bias)
        # The relation head's mask areas are cut to the same grown box as the output masks.
        self.mask_box_margin = cfg.mask_box_margin
        self.ground_relation: GroundingRelation | None = None
        if cfg.ground_relation_layers > 0:
            self.ground_relation = GroundingRelation(
                d, cfg.num_heads, cfg.dim_feedforward, cfg.ground_relation_layers
            )
        self.class_refine: MLP | None = None
        self.class_refine_shape = cfg.class_refine_shape if cfg.class_refine else 0
        self.ground_refine_weight = cfg.ground_refine_weight
        if cfg.class_refine:
            # Zero-initialised: the model's category logits are unchanged until the head is trained.
            self.class_refine = MLP(d + self.class_refine_shape**2, d, d, 2)
            nn.init.zeros_(self.class_refine.layers[-1].weight)
            nn.init.zeros_(self.class_refine.layers[-1].bias)

    def similarity(self, proj: Tensor, embeds: Tensor) -> Tensor:
        """[B, Q, N] logits of projected queries [B, Q, D] against embeddings [B, N, D]: the official raw
        dot product, or for ``class_logits="cosine"`` exp(logit_scale) * cosine + logit_bias."""
        if self.cosine_logits:
            proj, embeds = F.normalize(proj, dim=-1), F.normalize(embeds, dim=-1)
        logits = torch.einsum("bqc,bnc->bqn", proj, embeds)
        if self.cosine_logits:
            logits = logits * self.logit_scale.exp() + self.logit_bias
        return logits

    def class_logits(self, proj: Tensor, prompt: QueryPrompt, boxes: Tensor | None = None) -> Tensor:
        """[B, Q, C] logits of projected queries against the sentence (C = 1) or the class embeddings;
        with ``ground_box_term`` and the queries' boxes [B, Q, 4], grounding adds the box term."""
        embeds = prompt.sentence[:, None] if prompt.sentence is not None else prompt.class_embeddings
        logits = self.similarity(proj, embeds)
        if prompt.sentence is None and prompt.class_mask is not None:
            logits = logits.masked_fill(~prompt.class_mask[:, None, :], float("-inf"))
        grounding = prompt.sentence is not None and prompt.sentence_tokens is not None
        if grounding and self.ground_box is not None and boxes is not None:
            logits = logits + self.box_term(prompt.sentence_tokens, prompt.sentence_mask, boxes)[..., None]
        return logits

    def box_term(self, tokens: Tensor, mask: Tensor | None, boxes: Tensor) -> Tensor:
        """[B, Q] sentence-conditioned linear score of each query's box [B, Q, 4] (cxcywh in 0..1).

        The feature weights are a sum over the sentence's tokens [B, T, D] (mask [B, T], True = real) of a
        per-token MLP: the pooled sentence barely tells "leftmost" from "rightmost" (cosine 0.92 in v8),
        while a word's own token does. Scaled like the cosine logits, so that a position difference of a
        tenth of the image can outweigh a small content difference.
        """
        features = box_features(boxes)
        per_token = self.ground_box(tokens)
        if mask is not None:
            per_token = per_token * mask[..., None].to(per_token.dtype)
        scale = self.logit_scale.exp() if self.cosine_logits else 1.0
        return torch.einsum("bqf,bf->bq", features, per_token.sum(1)) * scale

    def refined_class_logits(self, normed: Tensor, prompt: QueryPrompt, shape: Tensor | None) -> Tensor:
        """[B, Q, C] category logits of single-normed queries [B, Q, D] with the class refinement added to
        their projection (category prompts only; visual prompts rank by confidence and keep theirs);
        ``shape`` [B, Q, S * S] are their mask crops when ``class_refine_shape`` is set, else None."""
        assert self.class_refine is not None
        d = self.decoder_norm(normed)
        inputs = d if shape is None else torch.cat([d, shape.to(d.dtype)], -1)
        return self.class_logits(d @ self.category_embed + self.class_refine(inputs), prompt)

    def refinement_change(
        self, normed: Tensor, plain: LayerPrediction, prompt: QueryPrompt, shape: Tensor | None
    ) -> Tensor:
        """[B, Q] what the class refinement changes in the sentence logits of single-normed queries
        [B, Q, D] whose plain head outputs are ``plain`` (``ground_refine_weight``): the refined projection's
        match to the sentence minus the plain one's, box terms left out (they are the same in both)."""
        refined = self.refined_class_logits(normed, prompt, shape)
        return (refined - self.class_logits(plain.class_proj, prompt))[..., 0]

    def relate(
        self,
        normed: Tensor,
        boxes: Tensor,
        mask_area: Tensor,
        logits: Tensor,
        tokens: Tensor,
        mask: Tensor | None,
    ) -> Tensor:
        """Grounding logits [B, Q] after the relation head, from the last layer's single-normed queries
        [B, Q, D], boxes [B, Q, 4], mask areas [B, Q] and grounding logits [B, Q] and the sentence tokens
        [B, T, D] (mask [B, T], True = real). The change is in cosine units, scaled like the logits."""
        assert self.ground_relation is not None
        scale = self.logit_scale.exp() if self.cosine_logits else 1.0
        delta = self.ground_relation(self.decoder_norm(normed), boxes, mask_area, logits, scale, tokens, mask)
        return logits + delta * scale

    def heads(self, hidden: Tensor, prompt: QueryPrompt, boxes: Tensor) -> LayerPrediction:
        """All head outputs of a single-normed hidden state (normed once more here) and its boxes."""
        d = self.decoder_norm(hidden)
        proj = d @ self.category_embed
        return LayerPrediction(
            self.class_logits(proj, prompt, boxes), self.confidence_score(d), self.mask_embed(d), boxes, proj
        )

    def forward(
        self,
        maps: list[Tensor],
        prompt: QueryPrompt,
        *,
        mask_features: Tensor | None = None,
        denoising: DenoisingQueries | None = None,
        return_aux: bool = False,
    ) -> DecoderOutput:
        """maps: encoder-order multi-scale features [B, C, H_l, W_l] (stride 8 first); mask_features: the
        pixel decoder's [B, D, H/4, W/4], which the relation head needs (grounding with one)."""
        rev = maps[::-1]
        d = rev[0].shape[1]
        shapes = [(m.shape[2], m.shape[3]) for m in rev]
        spatial, starts = level_geometry(shapes, rev[0].device)
        memory = torch.cat([m.flatten(2).transpose(1, 2) for m in rev], 1)

        proposals, valid = _proposals(shapes, memory.device)
        out_memory = self.enc_output_norm(self.enc_output(memory.masked_fill(~valid[None, :, None], 0.0)))
        if prompt.select_by_confidence:
            select = self.confidence_score(out_memory).max(-1)[0]
        else:
            select = self.class_logits(out_memory @ self.category_embed, prompt).max(-1)[0]
        coords = self._bbox_embed(out_memory) + proposals[None]
        k = min(self.num_queries, select.shape[1])
        topk = torch.topk(select, k, dim=1)[1]
        ref_undetached = torch.gather(coords, 1, topk[..., None].expand(-1, -1, 4))
        tgt_undetached = torch.gather(out_memory, 1, topk[..., None].expand(-1, -1, d))
        tgt, ref_unsig = tgt_undetached.detach(), ref_undetached.detach()

        interm = None
        if return_aux:
            interm = self.heads(tgt_undetached, prompt, ref_undetached.sigmoid())

        num_dn = 0
        self_mask = None
        if denoising is not None:
            num_dn = denoising.tgt.shape[1]
            tgt = torch.cat([denoising.tgt, tgt], 1)
            ref_unsig = torch.cat([denoising.ref_unsigmoid, ref_unsig], 1)
            self_mask = denoising.attn_mask

        aux: list[LayerPrediction] = []
        if return_aux:
            aux.append(self.heads(tgt, prompt, ref_unsig.sigmoid()))

        ref = ref_unsig.sigmoid()
        q = tgt.shape[1]
        hidden = tgt
        n_layers = len(self.decoder.layers)
        for i, layer in enumerate(self.decoder.layers):
            pos = self.decoder.ref_point_head(sine_box_embed(ref, d // 2))
            extra, attn_mask = None, self_mask
            if prompt.tokens:
                t = prompt.tokens_per_layer[i]
                extra = prompt.tokens[t]
                attn_mask = _prompt_attention_mask(q, prompt.token_masks[t], self_mask, self.n_heads)
            ref_input = ref[:, :, None, :].expand(-1, -1, len(shapes), -1)
            hidden = layer(hidden, pos, ref_input, memory, spatial, starts, extra, attn_mask)
            normed = self.decoder_norm(hidden)
            new_ref = (self._bbox_embed(hidden) + inverse_sigmoid(ref)).sigmoid()
            if return_aux or i == n_layers - 1:
                boxes = (self._bbox_embed(normed) + inverse_sigmoid(ref)).sigmoid()
                pred = self.heads(normed, prompt, boxes)
                if i < n_layers - 1:
                    aux.append(pred)
            ref = new_ref.detach()
        last = plain = slice_queries(pred, num_dn, None)
        queries = normed[:, num_dn:]
        grounding = prompt.sentence_tokens is not None
        mask_area = ground_logits = None
        match = last.logits[..., 0] if grounding else None
        if self.ground_relation is not None and grounding:
            if mask_features is None:
                raise ValueError("the grounding relation head needs the mask features")
            mask_area = mask_areas(last.mask_embed, mask_features, last.boxes, self.mask_box_margin)
            ground_logits = last.logits[..., 0]
            related = self.relate(
                queries, last.boxes, mask_area, ground_logits, prompt.sentence_tokens, prompt.sentence_mask
            )
            last = replace(last, logits=related[..., None])
        refine_classes = prompt.class_embeddings is not None and not prompt.select_by_confidence
        refine_ground = grounding and self.ground_refine_weight > 0
        mask_shape = None
        if self.class_refine is not None and (refine_classes or refine_ground):
            if self.class_refine_shape:
                if mask_features is None:
                    raise ValueError("the class refinement's mask crops need the mask features")
                mask_shape = mask_crops(last.mask_embed, mask_features, last.boxes, self.class_refine_shape)
            if refine_classes:
                last = replace(last, logits=self.refined_class_logits(queries, prompt, mask_shape))
            else:
                shift = self.ground_refine_weight * self.refinement_change(queries, plain, prompt, mask_shape)
                last = replace(last, logits=last.logits + shift[..., None])
                match = match + shift
        return DecoderOutput(
            last=last,
            track_embed=queries,
            selected_index=topk,
            selection_scores=select,
            aux=aux,
            interm=interm,
            num_denoising=num_dn,
            denoising=slice_queries(pred, 0, num_dn) if num_dn else None,
            mask_area=mask_area,
            ground_logits=ground_logits,
            match_logits=match,
            mask_shape=mask_shape,
        )


def slice_queries(pred: LayerPrediction, start: int, end: int | None) -> LayerPrediction:
    """Rows start:end of every field (denoising queries come first, then the matching queries)."""
    if start == 0 and end is None:
        return pred
    rows = slice(start, end)
    return LayerPrediction(*(getattr(pred, f.name)[:, rows] for f in fields(LayerPrediction)))


def _proposals(shapes: list[tuple[int, int]], device: torch.device) -> tuple[Tensor, Tensor]:
    """Logit-space anchor boxes for every memory token and their validity ([S, 4], [S])."""
    boxes = []
    for lvl, (h, w) in enumerate(shapes):
        ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
        cx = xs[None, :].expand(h, w)
        cy = ys[:, None].expand(h, w)
        size = torch.full((h, w), 0.05 * (2.0**lvl), dtype=torch.float32, device=device)
        boxes.append(torch.stack([cx, cy, size, size], -1).reshape(-1, 4))
    props = torch.cat(boxes, 0)
    valid = ((props > 0.01) & (props < 0.99)).all(-1)
    logit = torch.log(props / (1 - props)).masked_fill(~valid[:, None], float("inf"))
    return logit, valid


def _prompt_attention_mask(q: int, token_mask: Tensor, base: Tensor | None, n_heads: int) -> Tensor:
    """[B*heads, Q+T, Q+T] bool mask: queries and padded prompt slots never see each other."""
    b, t = token_mask.shape
    mask = torch.zeros(b, q + t, q + t, dtype=torch.bool, device=token_mask.device)
    if base is not None:
        mask[:, :q, :q] = base
    pad = ~token_mask
    mask[:, :q, q:] = pad[:, None, :]
    mask[:, q:, :q] = pad[:, :, None]
    return mask.repeat_interleave(n_heads, dim=0)
