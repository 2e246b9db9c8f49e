"""The relation stage: train only the grounding relation head of a finished model, on cached outputs.

Everything below the head is frozen, so the frozen model's last-layer outputs for a grounding sample never
change: they are computed once (one no-grad forward per sample; the expensive part) and the head trains on
them for many passes (milliseconds per step). Trained online instead, the head saw each sample once at
~1 s per 16 and had not learned the relations after 6400 samples; the same number of cached samples,
visited ~10 times, lifted top-1 on other samples' spatial sentences from 0.55 to 0.76 (TRAINING.md).

The loss is :func:`glee.train.losses.referring_loss`: softmax cross-entropy over the 100 queries whose
positives are the queries with box IoU >= ``loss.refer_iou`` to the referred object, i.e. what REC
accuracy counts.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from glee.model.glee import GleeModel
from glee.train.losses import referred_positives, referring_loss

# The parameters the relation stage trains (all others are frozen).
RELATION_PREFIX = "predictor.ground_relation"


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

    def __len__(self) -> int:
        return self.normed.shape[0]

    def take(self, index: Tensor) -> GroundingSamples:
        return GroundingSamples(*(getattr(self, f)[index] for f in self.__dataclass_fields__))

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


def collect(
    model: GleeModel,
    batches: Callable[[], tuple[Tensor, list[str], list[Tensor]]],
    count: int,
    iou: float,
    progress: Callable[[int], None],
    precision: Callable[[], AbstractContextManager[object]],
) -> GroundingSamples:
    """Run the frozen model (eval mode, no grad) on grounding batches until ``count`` samples with at least
    one positive query are collected. ``batches()`` gives normalized images [B, 3, H, W], their sentences
    and each image's referred box [1, 4] (cxcywh in 0..1). The forwards dominate the stage's time;
    they run inside ``precision()`` (the trainer's autocast for the config's "precision"). Boxes, mask
    areas and logits are kept in fp32, queries and tokens in fp16."""
    parts: dict[str, list[Tensor]] = {f: [] for f in GroundingSamples.__dataclass_fields__}
    found = 0
    with torch.no_grad():
        while found < count:
            images, sentences, targets = batches()
            with precision():
                prompts = [model.expression_prompt(s) for s in sentences]
                out = model.run(images, prompts).decoder
            assert out.mask_area is not None  # the stage needs a model with a relation head
            for b, (prompt, target) in enumerate(zip(prompts, targets, strict=True)):
                boxes = out.last.boxes[b].float()
                positive = referred_positives(boxes, target, iou)
                if not bool(positive.any()) or found >= count:
                    continue
                tokens = prompt.grounding_tokens[prompt.grounding_mask]
                parts["normed"].append(out.track_embed[b].half())
                parts["boxes"].append(boxes)
                parts["mask_area"].append(out.mask_area[b].float())
                parts["logits"].append(out.last.logits[b, :, 0].float())
                parts["tokens"].append(tokens.half())
                parts["token_mask"].append(torch.ones(len(tokens), dtype=torch.bool))
                parts["positive"].append(positive)
                found += 1
            progress(found)
    return GroundingSamples(
        normed=torch.stack(parts["normed"]),
        boxes=torch.stack(parts["boxes"]),
        mask_area=torch.stack(parts["mask_area"]),
        logits=torch.stack(parts["logits"]),
        tokens=pad_sequence(parts["tokens"], batch_first=True),
        token_mask=pad_sequence(parts["token_mask"], batch_first=True, padding_value=False),
        positive=torch.stack(parts["positive"]),
    )


def relation_loss(model: GleeModel, samples: GroundingSamples) -> Tensor:
    """Mean referring loss of a batch of cached samples through the model's relation head."""
    return referring_loss(samples.logits_after(model), samples.positive).mean()
