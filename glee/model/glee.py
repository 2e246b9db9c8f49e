"""The GLEE model: backbone + CLIP text + pixel decoder + object decoder + visual prompter.

Attribute names equal the official ``GLEE_Model`` checkpoint prefixes (``backbone``, ``text_encoder``,
``lang_projection``, ``pixel_decoder``, ``predictor``, ``sot_fuser``, ``mask_sptial_embed``,
``pn_indicator``), so converted official weights load key-for-key.

``forward_raw`` is the parity interface (one prompt for the whole batch, all queries, raw logits);
``run`` is what predictors and trainers use: per-image prompts, optional aux outputs, masks on demand.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from glee.model.backbone import ResNet
from glee.model.config import GleeConfig, get_config
from glee.model.object_decoder import DecoderOutput, DenoisingQueries, ObjectDecoder, QueryPrompt
from glee.model.pixel_decoder import PixelDecoder
from glee.model.prompter import FeatureFuser, mask_points, point_tokens, template_crops
from glee.model.text_encoder import CLIPTextEncoder, ClipTokenizer


@dataclass
class TextPrompt:
    """One image's text side, already projected to the model width D.

    Category mode: ``class_embeddings`` [C, D] and ``fusion`` = all names' real tokens [L, D].
    Grounding mode: ``sentence`` [D], ``fusion`` = all 77 tokens (padding included, as officially), and
    ``grounding_tokens`` [77, D] with ``grounding_mask`` [77] (True = real token) for the decoder.
    """

    fusion: Tensor
    class_embeddings: Tensor | None = None
    sentence: Tensor | None = None
    grounding_tokens: Tensor | None = None
    grounding_mask: Tensor | None = None


@dataclass
class VisualPrompt:
    """Prompt masks at padded-input resolution [B, H_pad, W_pad] and how each was drawn.

    ``prompt_types``: one of point / box / scribble / mask per image (point and scribble overlay the
    mask on the template crop). ``negative`` [B, H_pad, W_pad]: optional negative-click areas; they become
    decoder tokens tagged with ``pn_indicator[1]`` (the official model carries that embedding but only
    ever passes empty negative masks).
    """

    masks: Tensor
    prompt_types: list[str]
    negative: Tensor | None = None


@dataclass
class ModelOutput:
    decoder: DecoderOutput
    mask_features: Tensor  # [B, D, H_pad/4, W_pad/4]

    def masks_for(self, batch_index: int, query_index: Tensor) -> Tensor:
        """Mask logits of selected queries of one image at stride 4 — never all queries at full size."""
        embed = self.decoder.last.mask_embed[batch_index, query_index]
        return torch.einsum("qc,chw->qhw", embed, self.mask_features[batch_index])


class GleeModel(nn.Module):
    def __init__(self, cfg: GleeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_dim
        self.backbone = ResNet(cfg.backbone)
        self.text_encoder = CLIPTextEncoder(cfg.text)
        self.lang_projection = nn.Parameter(torch.empty(cfg.text.width, d))
        nn.init.normal_(self.lang_projection, std=cfg.text.width**-0.5)
        self.pixel_decoder = PixelDecoder(cfg, self.backbone.out_channels)
        self.predictor = ObjectDecoder(cfg)
        # Point-token embeddings exist in every official checkpoint (Stage-1 too); only the
        # template fuser is specific to the visual-prompt (Stage-2/3) configs.
        self.mask_sptial_embed = nn.ParameterList(
            [nn.Parameter(torch.randn(d, d) * 0.02) for _ in range(cfg.num_feature_levels)]
        )
        self.pn_indicator = nn.Embedding(2, d)
        if cfg.visual_prompt:
            chans = self.backbone.out_channels
            self.sot_fuser = FeatureFuser([chans["res3"], chans["res4"], chans["res5"]], d)
        self.register_buffer("pixel_mean", torch.tensor(cfg.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.pixel_std).view(1, 3, 1, 1), persistent=False)
        self.tokenizer = ClipTokenizer(cfg.text.context_length)

    # ----------------------------------------------------------------- inputs
    def normalize_and_pad(self, pixels: Tensor) -> Tensor:
        """RGB 0..255 [B,3,H,W] -> normalized, zero-padded (after normalization) to /size_divisibility."""
        x = (pixels.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std
        div = self.cfg.size_divisibility
        h, w = x.shape[-2:]
        return F.pad(x, (0, (-w) % div, 0, (-h) % div), value=0.0)

    def encode_names(self, names: list[str]) -> list[Tensor]:
        """Projected CLIP tokens of each name at its real length (BOS + words + EOS): list of [L_i, D].

        Encoded at real length: the causal mask makes this equal to the 77-padded encoding.
        """
        ids, attn = self.tokenizer(names, pad_to=None)
        ids, attn = ids.to(self.lang_projection.device), attn.to(self.lang_projection.device)
        tokens = self.text_encoder(ids, attn) @ self.lang_projection
        return [tokens[i, : int(attn[i].sum())] for i in range(len(names))]

    @staticmethod
    def category_prompt(name_tokens: list[Tensor]) -> TextPrompt:
        """Class embedding = mean of each name's tokens; fusion = all tokens of all names in order."""
        return TextPrompt(
            fusion=torch.cat(name_tokens, 0),
            class_embeddings=torch.stack([t.mean(0) for t in name_tokens]),
        )

    def expression_prompt(self, expression: str) -> TextPrompt:
        ids, attn = self.tokenizer([expression], pad_to=self.cfg.text.context_length)
        ids, attn = ids.to(self.lang_projection.device), attn.to(self.lang_projection.device)
        tokens = (self.text_encoder(ids, attn) @ self.lang_projection)[0]
        valid = attn[0].bool()
        return TextPrompt(
            fusion=tokens,
            sentence=tokens[valid].mean(0),
            grounding_tokens=tokens,
            grounding_mask=valid,
        )

    # ----------------------------------------------------------------- forward
    def run(
        self,
        images: Tensor,
        prompts: list[TextPrompt],
        visual: VisualPrompt | None = None,
        *,
        denoising: DenoisingQueries | None = None,
        return_aux: bool = False,
    ) -> ModelOutput:
        """images: normalized + padded [B,3,H,W]; one TextPrompt per image (all of one mode)."""
        if len(prompts) != images.shape[0]:
            raise ValueError(f"{len(prompts)} prompts for a batch of {images.shape[0]} images")
        features = self.backbone(images)
        fusion, fusion_mask = _pad_sequences([p.fusion for p in prompts])
        if visual is not None:
            if not self.cfg.visual_prompt:
                raise ValueError(f"model {self.cfg.name!r} was built without visual prompts")
            template = self._template_tokens(images, visual)
            fusion = torch.cat([fusion, template], 1)
            if fusion_mask is not None:
                fusion_mask = torch.cat([fusion_mask, fusion_mask.new_ones(template.shape[:2])], 1)
        pix = self.pixel_decoder(features, fusion if self.cfg.early_fusion else None, fusion_mask)
        query_prompt = self._query_prompt(prompts, pix.multi_scale_features, visual)
        out = self.predictor(
            pix.multi_scale_features,
            query_prompt,
            mask_features=pix.mask_features,
            denoising=denoising,
            return_aux=return_aux,
        )
        return ModelOutput(out, pix.mask_features)

    def _template_tokens(self, images: Tensor, visual: VisualPrompt) -> Tensor:
        crops = template_crops(images, visual.masks, visual.prompt_types, self.cfg.template_size)
        with torch.no_grad():
            feats = self.backbone(crops)
        fused = self.sot_fuser([feats["res3"], feats["res4"], feats["res5"]])
        return fused.flatten(2).transpose(1, 2)

    def _query_prompt(
        self, prompts: list[TextPrompt], maps: list[Tensor], visual: VisualPrompt | None
    ) -> QueryPrompt:
        qp = QueryPrompt()
        n_layers = self.cfg.dec_layers
        if prompts[0].sentence is not None:
            qp.sentence = torch.stack([p.sentence for p in prompts])
            tokens, mask = _pad_sequences(
                [p.grounding_tokens for p in prompts], [p.grounding_mask for p in prompts]
            )
            qp.tokens, qp.token_masks, qp.tokens_per_layer = [tokens], [mask], [0] * n_layers
            qp.sentence_tokens, qp.sentence_mask = tokens, mask
        else:
            qp.class_embeddings, qp.class_mask = _pad_sequences([p.class_embeddings for p in prompts])
        if visual is not None:
            qp.select_by_confidence = True
            levels = min(3, len(maps))
            points, valid = mask_points(visual.masks, self.cfg.max_prompt_points)
            qp.tokens = [
                point_tokens(maps[i], self.mask_sptial_embed[i], points, self.pn_indicator.weight[0])
                for i in range(levels)
            ]
            if visual.negative is not None and bool(visual.negative.any()):
                neg_points, neg_valid = mask_points(visual.negative, self.cfg.max_prompt_points)
                qp.tokens = [
                    torch.cat(
                        [
                            t,
                            point_tokens(
                                maps[i], self.mask_sptial_embed[i], neg_points, self.pn_indicator.weight[1]
                            ),
                        ],
                        1,
                    )
                    for i, t in enumerate(qp.tokens)
                ]
                valid = torch.cat([valid, neg_valid], 1)
            qp.token_masks = [valid] * levels
            qp.tokens_per_layer = [k % levels for k in range(n_layers)]
        return qp

    @torch.no_grad()
    def forward_raw(
        self,
        pixels: Tensor,
        categories: list[str] | None = None,
        expression: str | None = None,
        prompt_mask: Tensor | None = None,
        prompt_type: str = "scribble",
    ) -> dict[str, Tensor]:
        """Official last-layer outputs for one prompt applied to every image of the batch.

        pixels: float [B,3,H,W] RGB 0..255 (not normalized, padded or resized). Visual prompts need
        ``prompt_mask`` bool [B,H,W] at image size; their class logits use ``categories`` (default
        ``["object"]``, like the official demo).
        """
        if (categories is None) == (expression is None) and prompt_mask is None:
            raise ValueError("give exactly one of categories= or expression= (or a prompt_mask)")
        images = self.normalize_and_pad(pixels)
        b = images.shape[0]
        if expression is not None:
            prompt = self.expression_prompt(expression)
        else:
            prompt = self.category_prompt(self.encode_names(categories or ["object"]))
        visual = None
        if prompt_mask is not None:
            h, w = pixels.shape[-2:]
            padded = F.pad(
                prompt_mask.bool(), (0, images.shape[-1] - w, 0, images.shape[-2] - h), value=False
            )
            visual = VisualPrompt(padded, [prompt_type] * b)
        out = self.run(images, [prompt] * b, visual)
        last = out.decoder.last
        return {
            "pred_logits": last.logits,
            "pred_boxes": last.boxes,
            "pred_scores": last.scores,
            "pred_masks": torch.einsum("bqc,bchw->bqhw", last.mask_embed, out.mask_features),
            "pred_track_embed": out.decoder.track_embed,
            "selected_index": out.decoder.selected_index,
            "selection_scores": out.decoder.selection_scores,
        }


def _pad_sequences(seqs: list[Tensor], masks: list[Tensor] | None = None) -> tuple[Tensor, Tensor | None]:
    """Stack [L_i, D] (or [L_i]) into [B, L_max, ...]; the mask is None when nothing needed padding
    and no input masks were given (so single-prompt batches take exactly the official, unmasked path)."""
    lengths = [s.shape[0] for s in seqs]
    n = max(lengths)
    if masks is None and all(length == n for length in lengths):
        return torch.stack(seqs), None
    out = seqs[0].new_zeros((len(seqs), n, *seqs[0].shape[1:]))
    valid = torch.zeros(len(seqs), n, dtype=torch.bool, device=seqs[0].device)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
        valid[i, : len(s)] = True if masks is None else masks[i]
    return out, valid


def build_glee(name_or_config: str | GleeConfig = "lite") -> GleeModel:
    """A randomly initialized GLEE in eval mode (load weights with ``load_checkpoint``)."""
    cfg = get_config(name_or_config) if isinstance(name_or_config, str) else name_or_config
    return GleeModel(cfg).eval()
