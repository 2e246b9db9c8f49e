"""Mirror images of referring sentences, and grounding fused over an image and its mirror image.

A referring sentence describes the same object in the image flipped left-right once its direction words are
swapped ("the leftmost star" -> "the rightmost star"). The trainer uses that to augment, and grounding can
use it as a second view: the model's errors on the two views are not the same ones (TRAINING.md, "A second,
mirrored view for grounding"), so a candidate that both views rank high is more often the referent.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from glee.data.masks import box_iou
from glee.model.layers import box_xyxy

_HFLIP = {"left": "right", "right": "left", "leftmost": "rightmost", "rightmost": "leftmost"}
_VFLIP = {"topmost": "bottommost", "bottommost": "topmost", "top": "bottom", "bottom": "top"}
_WORD = re.compile(r"[A-Za-z]+")

# Box IoU at which a query of the mirrored view counts as the same object as a query of the first view.
SAME_OBJECT_IOU = 0.5


def flip_words(sentence: str, flip: tuple[bool, bool]) -> str:
    """The sentence that describes the same object in the image flipped left-right (flip[0]) and/or
    top-bottom (flip[1]); other words, case and punctuation are kept."""
    table = {**(_HFLIP if flip[0] else {}), **(_VFLIP if flip[1] else {})}

    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        new = table.get(word.lower())
        if new is None:
            return word
        return new.upper() if word.isupper() else new.capitalize() if word[0].isupper() else new

    return _WORD.sub(swap, sentence)


def fuse_mirrored(logits: Tensor, boxes: Tensor, mirrored_logits: Tensor, mirrored_boxes: Tensor,
                  width: float, weight: float) -> Tensor:  # fmt: skip
    """[Q] the grounding order of one sentence's queries fused with its mirrored view's.

    ``logits`` [Q] and ``boxes`` [Q, 4] (cxcywh in 0..1 of the padded frame) are the first view's,
    ``mirrored_*`` those of the image flipped left-right with the sentence's words swapped, ``width`` the
    image's width in that frame (the padding stays on the right, so x mirrors to ``width - x``). Each
    query's probability (softmax over the queries: the relation head is fitted with one) gains ``weight``
    times the probability of the mirrored query that covers the same object (box IoU >= SAME_OBJECT_IOU,
    the best such), or nothing when none does.
    """
    mirrored = mirrored_boxes.float().clone()
    mirrored[:, 0] = width - mirrored[:, 0]
    iou = box_iou(box_xyxy(boxes.float()).cpu().numpy(), box_xyxy(mirrored).cpu().numpy())  # [Q, Q]
    best, index = torch.from_numpy(iou).to(logits.device).max(1)
    other = mirrored_logits.float().softmax(0)[index] * (best >= SAME_OBJECT_IOU)
    return logits.float().softmax(0) + weight * other
