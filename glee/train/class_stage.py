"""The class stage: fit only the class refinement head of a finished model, on cached detection outputs.

The same idea as :mod:`glee.train.relation_stage`: everything below the head is frozen, so the frozen
model's last-layer queries for a detection sample never change; they are computed once (no grad; the
expensive part) and the head fits them for many passes. On the demo model the boxes were there and the
names were not: re-labelling its detections with the label of the ground truth they overlap lifted box
AP50 from 0.870 to 0.921 on the tuning images (TRAINING.md, "The class stage").

Targets are GLEE's: each image's ground truth is matched to the frozen last layer's queries by the
trainer's Hungarian matcher (focal class + L1 + GIoU costs), a matched query's targets are the names of
its object's list entries, every other query's are zero; the loss is the sigmoid focal loss normalized
by the number of matched queries.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from glee.model.glee import GleeModel, TextPrompt
from glee.model.object_decoder import QueryPrompt
from glee.train.config import LossWeights
from glee.train.criterion import Targets
from glee.train.losses import focal_loss
from glee.train.matcher import match

# The parameters the class stage trains (all others are frozen).
CLASS_PREFIX = "predictor.class_refine"


@dataclass
class DetectionSamples:
    """Frozen last-layer queries of N detection samples with their category lists and targets."""

    normed: Tensor  # [N, Q, D] single-normed queries (fp16)
    shape: Tensor  # [N, Q, S * S] their mask crops (fp16; S = 0 when the head reads none)
    embeds: Tensor  # [N, C, D] the list's class embeddings, zero-padded to the longest list
    class_mask: Tensor  # [N, C] True = a real list entry
    logits: Tensor  # [N, Q, C] the frozen model's category logits (fp16, 0 at padding; for the report)
    target: Tensor  # [N, Q, C] bool: the names of the object matched to the query

    def __len__(self) -> int:
        return self.normed.shape[0]

    def take(self, index: Tensor) -> DetectionSamples:
        return DetectionSamples(*(getattr(self, f)[index] for f in self.__dataclass_fields__))

    def logits_after(self, model: GleeModel) -> Tensor:
        """[n, Q, C] category logits of these samples with the model's class refinement."""
        prompt = QueryPrompt(class_embeddings=self.embeds, class_mask=self.class_mask)
        shape = self.shape.float() if self.shape.shape[-1] else None
        return model.predictor.refined_class_logits(self.normed.float(), prompt, shape)

    def loss(self, logits: Tensor, alpha: float) -> Tensor:
        """Focal loss of ``logits`` [n, Q, C] over the real list entries, per matched query."""
        real = self.class_mask[:, None, :].expand_as(self.target)
        matched = self.target.any(-1).sum().clamp(min=1)
        return focal_loss(logits[real].float(), self.target[real].float(), alpha).sum() / matched


def collect(
    model: GleeModel,
    batches: Callable[[], tuple[Tensor, list[TextPrompt], list[Targets]]],
    count: int,
    weights: LossWeights,
    progress: Callable[[int], None],
    precision: Callable[[], AbstractContextManager[object]],
) -> DetectionSamples:
    """Run the frozen model (eval mode, no grad, inside ``precision()``) on detection batches until
    ``count`` samples are collected. ``batches()`` gives normalized images [B, 3, H, W], one category prompt
    per image and its targets; the last layer is matched to them as in training."""
    parts: dict[str, list[Tensor]] = {f: [] for f in DetectionSamples.__dataclass_fields__}
    with torch.no_grad():
        while len(parts["normed"]) < count:
            images, prompts, targets = batches()
            with precision():
                out = model.run(images, prompts).decoder
            for b, (prompt, target) in enumerate(zip(prompts, targets, strict=True)):
                if len(parts["normed"]) >= count:
                    break
                names = prompt.class_embeddings.shape[0]
                logits, boxes = out.last.logits[b, :, :names].float(), out.last.boxes[b].float()
                rows, objects = match(
                    logits,
                    boxes,
                    target.classes,
                    target.boxes,
                    w_cls=weights.cls,
                    w_l1=weights.l1,
                    w_giou=weights.giou,
                    alpha=weights.focal_alpha,
                )
                matched = torch.zeros(logits.shape[0], names, dtype=torch.bool)
                matched[rows] = target.classes[objects] > 0
                parts["normed"].append(out.track_embed[b].half())
                shape = out.mask_shape[b] if out.mask_shape is not None else logits.new_zeros(len(logits), 0)
                parts["shape"].append(shape.half())
                parts["embeds"].append(prompt.class_embeddings.float())
                parts["class_mask"].append(torch.ones(names, dtype=torch.bool))
                parts["logits"].append(logits.half())
                parts["target"].append(matched)
            progress(len(parts["normed"]))
    return DetectionSamples(
        normed=torch.stack(parts["normed"]),
        shape=torch.stack(parts["shape"]),
        embeds=pad_sequence(parts["embeds"], batch_first=True),
        class_mask=pad_sequence(parts["class_mask"], batch_first=True, padding_value=False),
        logits=_pad_last(parts["logits"]),
        target=_pad_last(parts["target"]),
    )


def _pad_last(rows: list[Tensor]) -> Tensor:
    """[N, Q, C_max]: [Q, C_i] tensors zero-padded along their last dimension."""
    return pad_sequence([r.transpose(0, 1) for r in rows], batch_first=True).transpose(1, 2)


def class_loss(model: GleeModel, samples: DetectionSamples, alpha: float) -> Tensor:
    """Focal loss of a batch of cached samples through the model's class refinement."""
    return samples.loss(samples.logits_after(model), alpha)
