"""The relation stage: train only the grounding relation head of a finished model, on cached outputs.

Everything below the head is frozen, so the frozen model's last-layer outputs for a grounding sample never
change: they are computed once (one no-grad forward per sample; the expensive part) and the head trains on
them for many passes (milliseconds per step). Trained online instead, the head saw each sample once at
~1 s per 16 and had not learned the relations after 6400 samples; the same number of cached samples,
visited ~10 times, lifted top-1 on other samples' spatial sentences from 0.55 to 0.76 (TRAINING.md).

The loss is :func:`glee.train.losses.referring_loss`: softmax cross-entropy over the 100 queries whose
positives are the queries with box IoU >= ``loss.refer_iou`` to the referred object, i.e. what REC
accuracy counts.

More samples is what the head needs (TRAINING.md), and forwards are what samples cost. A sample's mirror
images cost none: flipping the image left-right mirrors every box inside the image and swaps "left" and
"right" in the sentence, and the object referred to stays the same query, with the same mask area and the
same match logit. :meth:`GroundingSamples.mirrored` builds them from the cached outputs (only the flipped
sentence is encoded again). The queries' own features are not mirrored, so a mirror is an approximation
that asks the head to read positions from the boxes it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from glee.model.glee import GleeModel, TextPrompt
from glee.model.mirror import flip_words
from glee.train.losses import referred_positives, referring_loss

# The parameters the relation stage trains (all others are frozen).
RELATION_PREFIX = "predictor.ground_relation"
# The three mirror images of a sample: (left-right, top-bottom).
MIRRORS = ((True, False), (False, True), (True, True))

# A grounding batch: normalized images [B, 3, H, W], one sentence each, each referred box [1, 4] (cxcywh in
# 0..1 of the canvas) and each image's valid (h, w) as a share of the canvas [B, 2].
GroundingBatch = tuple[Tensor, list[str], list[Tensor], Tensor]
# A sentence's real tokens [T, D] as the grounding head reads them.
Encoder = Callable[[str], Tensor]


@dataclass
class GroundingSamples:
    """Frozen last-layer outputs of N grounding samples (stored in fp16 where large)."""

    normed: Tensor  # [N, Q, D] single-normed queries
    boxes: Tensor  # [N, Q, 4]
    mask_area: Tensor  # [N, Q] share of the frame each query's mask covers (``relation.mask_areas``)
    logits: Tensor  # [N, Q] grounding logits without the relation head
    tokens: Tensor  # [N, T, D] the sentence's real tokens, zero-padded
    token_mask: Tensor  # [N, T] True = real
    positive: Tensor  # [N, Q] box IoU >= the threshold with the referred object
    extent: Tensor  # [N, 2] the image's valid (h, w) as a share of the canvas (images sit top-left)
    sentences: list[str]

    def __len__(self) -> int:
        return self.normed.shape[0]

    def take(self, index: Tensor) -> GroundingSamples:
        return GroundingSamples(
            *(getattr(self, f)[index] for f in self.__dataclass_fields__ if f != "sentences"),
            sentences=[self.sentences[i] for i in index.tolist()],
        )

    @staticmethod
    def cat(parts: list[GroundingSamples]) -> GroundingSamples:
        """One set of samples from several (tokens padded to the longest sentence)."""
        longest = max(p.tokens.shape[1] for p in parts)
        joined = {
            f: torch.cat([getattr(p, f) for p in parts])
            for f in GroundingSamples.__dataclass_fields__
            if f not in ("tokens", "token_mask", "sentences")
        }
        return GroundingSamples(
            **joined,
            tokens=torch.cat([F.pad(p.tokens, (0, 0, 0, longest - p.tokens.shape[1])) for p in parts]),
            token_mask=torch.cat([F.pad(p.token_mask, (0, longest - p.token_mask.shape[1])) for p in parts]),
            sentences=[s for p in parts for s in p.sentences],
        )

    def mirrored(self, flip: tuple[bool, bool], encode: Encoder) -> GroundingSamples:
        """The samples of the images flipped left-right (``flip[0]``) and/or top-bottom (``flip[1]``):
        boxes mirrored inside each image, direction words swapped and the sentences encoded again."""
        boxes = self.boxes.clone()
        for axis, flipped in enumerate(flip):
            if flipped:  # cx (axis 0) about the image's width, cy (axis 1) about its height
                boxes[..., axis] = self.extent[:, None, 1 - axis] - boxes[..., axis]
        sentences = [flip_words(s, flip) for s in self.sentences]
        encoded = {s: encode(s).half() for s in dict.fromkeys(sentences)}
        tokens, token_mask = _padded([encoded[s] for s in sentences])
        return GroundingSamples(
            normed=self.normed,
            boxes=boxes,
            mask_area=self.mask_area,
            logits=self.logits,
            tokens=tokens,
            token_mask=token_mask,
            positive=self.positive,
            extent=self.extent,
            sentences=sentences,
        )

    def with_mirrors(self, encode: Encoder) -> GroundingSamples:
        """These samples followed by their three mirror images."""
        return GroundingSamples.cat([self, *(self.mirrored(flip, encode) for flip in MIRRORS)])

    def logits_after(self, model: GleeModel) -> Tensor:
        """[n, Q] grounding logits of these samples with the model's relation head."""
        return model.predictor.relate(
            self.normed.float(),
            self.boxes,
            self.mask_area,
            self.logits,
            self.tokens.float(),
            self.token_mask,
        )

    def top1_accuracy(self, logits: Tensor) -> float:
        """Fraction of samples whose highest logit is a positive query."""
        hit = self.positive.gather(1, logits.argmax(1, keepdim=True))
        return float(hit.float().mean()) if len(self) else 0.0


def _padded(tokens: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Sentences' tokens [T_i, D] zero-padded into [N, T, D], with the [N, T] mask of the real ones."""
    mask = [torch.ones(len(t), dtype=torch.bool) for t in tokens]
    return pad_sequence(tokens, batch_first=True), pad_sequence(mask, batch_first=True, padding_value=False)


def real_tokens(prompt: TextPrompt) -> Tensor:
    """[T, D] an expression prompt's real tokens, as the relation head reads them."""
    return prompt.grounding_tokens[prompt.grounding_mask]


def collect(
    model: GleeModel,
    batches: Callable[[], GroundingBatch],
    count: int,
    iou: float,
    progress: Callable[[int], None],
    precision: Callable[[], AbstractContextManager[object]],
) -> GroundingSamples:
    """Run the frozen model (eval mode, no grad) on grounding batches until ``count`` samples with at least
    one positive query are collected. The forwards dominate the stage's time; they run inside
    ``precision()`` (the trainer's autocast for the config's "precision"). Boxes, mask areas and logits are
    kept in fp32, queries and tokens in fp16."""
    # token_mask is derived from the tokens' lengths when they are padded, sentences are kept as strings.
    fields = [f for f in GroundingSamples.__dataclass_fields__ if f not in ("token_mask", "sentences")]
    parts: dict[str, list[Tensor]] = {f: [] for f in fields}
    kept: list[str] = []
    found = 0
    with torch.no_grad():
        while found < count:
            images, sentences, targets, extents = batches()
            with precision():
                prompts = [model.expression_prompt(s) for s in sentences]
                out = model.run(images, prompts).decoder
            # The stage needs a model with a relation head; its logits are the ones before that head.
            assert out.mask_area is not None and out.ground_logits is not None
            for b, (sentence, prompt, target) in enumerate(zip(sentences, prompts, targets, strict=True)):
                boxes = out.last.boxes[b].float()
                positive = referred_positives(boxes, target, iou)
                if not bool(positive.any()) or found >= count:
                    continue
                parts["normed"].append(out.track_embed[b].half())
                parts["boxes"].append(boxes)
                parts["mask_area"].append(out.mask_area[b].float())
                parts["logits"].append(out.ground_logits[b].float())
                parts["tokens"].append(real_tokens(prompt).half())
                parts["positive"].append(positive)
                parts["extent"].append(extents[b].float())
                kept.append(sentence)
                found += 1
            progress(found)
    tokens, token_mask = _padded(parts["tokens"])
    return GroundingSamples(
        normed=torch.stack(parts["normed"]),
        boxes=torch.stack(parts["boxes"]),
        mask_area=torch.stack(parts["mask_area"]),
        logits=torch.stack(parts["logits"]),
        tokens=tokens,
        token_mask=token_mask,
        positive=torch.stack(parts["positive"]),
        extent=torch.stack(parts["extent"]),
        sentences=kept,
    )


def relation_loss(model: GleeModel, samples: GroundingSamples) -> Tensor:
    """Mean referring loss of a batch of cached samples through the model's relation head."""
    return referring_loss(samples.logits_after(model), samples.positive).mean()
