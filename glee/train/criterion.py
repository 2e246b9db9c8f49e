"""The GLEE training objective over one batch's model output.

Every prediction layer (encoder proposals, the initial decoder state and every decoder layer) is matched
to the targets on its own and gets the focal class loss (against the image's text embeddings or the
sentence), L1 + GIoU box losses and — for decoder layers — BCE + dice mask losses on sampled points.
Visual-prompt batches add the focal confidence loss (matched query = 1, all others = 0), the signal the
predictor ranks prompted results by. Denoising rows get class / box / mask losses against the object they
were made from; video pairs add the contrastive track-embedding loss.

Optionally (``LossWeights.vocabulary`` > 0, not part of GLEE) every matched query of every decoder layer is
also classified against one fixed vocabulary (all shape names and colour phrases), whatever the step's
task: a step's own list may name one shape or none, so without it a small from-scratch model sees few
contrasts between shapes and learns to localize long before it learns to name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from glee.model.glee import ModelOutput
from glee.model.layers import box_xyxy
from glee.model.object_decoder import LayerPrediction, slice_queries
from glee.train.config import LossWeights
from glee.train.denoising import DenoisingPlan
from glee.train.losses import (
    focal_loss,
    generalized_iou,
    mask_losses,
    point_coords,
    referred_positives,
    referring_loss,
    sample_at,
    track_contrastive_loss,
)
from glee.train.matcher import match


@dataclass
class Targets:
    """One image's targets as tensors (see :class:`glee.train.tasks.ImageTargets`)."""

    classes: Tensor  # [n, C] multi-hot over the image's own names
    boxes: Tensor  # [n, 4] cxcywh in [0, 1]
    points: Tensor  # [n, P, 2] mask sample points in [0, 1]
    point_labels: Tensor  # [n, P] ground-truth mask values at those points
    tracks: Tensor  # [n]
    vocabulary: Tensor | None = None  # [n, V] multi-hot over the fixed vocabulary


def mask_targets(
    masks: Tensor, boxes_cxcywh: Tensor, num_points: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Sample points per object once per step (shared by all layers) and read the GT mask there."""
    if masks.shape[0] == 0:
        return torch.zeros(0, num_points, 2), torch.zeros(0, num_points)
    coords = point_coords(box_xyxy(boxes_cxcywh), num_points, generator)
    return coords, sample_at(masks.float(), coords)


def point_features(mask_features: Tensor, points: Tensor) -> Tensor:
    """[C, n, P]: one image's mask features [C, H, W] sampled bilinearly at its targets' points [n, P, 2].

    A query's mask logits are a linear map of the mask features and bilinear sampling is linear, so
    ``embed @ point_features`` equals sampling the query's full mask logits at the points, without
    computing whole [H, W] maps. Sampled once per step, it serves every layer's matched queries.
    """
    grid = points[None] * 2 - 1  # [1, n, P, 2], the pixel-centre convention of :func:`sample_at`
    return F.grid_sample(mask_features[None], grid, mode="bilinear", align_corners=False)[0]


def matched_point_logits(embeds: Tensor, q: Tensor, j: Tensor, feats: Tensor) -> tuple[Tensor, Tensor]:
    """Mask logits [k, P] of queries ``q`` at the points of their targets ``j``, and the target of each row.

    ``feats`` is :func:`point_features` [C, n, P]. Indexing it by ``j`` would make the backward pass
    scatter into a zeroed copy of it for every layer; when every target is matched equally often (one
    Hungarian match: once; denoising: once per group) the queries are reordered instead, target-major.
    """
    counts = torch.bincount(j, minlength=feats.shape[1])
    if bool((counts == counts[0]).all()) and int(counts[0]) > 0:
        order = torch.argsort(j, stable=True)
        e = embeds[q[order]].view(feats.shape[1], int(counts[0]), -1)  # [n, g, C]
        return torch.einsum("ngc,cnp->ngp", e, feats).flatten(0, 1), j[order]
    return torch.einsum("nc,cnp->np", embeds[q], feats[:, j]), j


class Criterion:
    def __init__(self, weights: LossWeights) -> None:
        self.w = weights

    def __call__(
        self,
        out: ModelOutput,
        targets: list[Targets],
        visual: bool,
        plan: DenoisingPlan | None = None,
        pairs: bool = False,
        vocabulary: Callable[[Tensor], Tensor] | None = None,
        grounding: bool = False,
    ) -> dict[str, Tensor]:
        """``grounding``: one referred object per image (the referring loss applies); ``vocabulary`` maps
        projected queries [n, D] to logits [n, V] over the fixed vocabulary."""
        w = self.w
        dec = out.decoder
        num = max(sum(len(t.boxes) for t in targets), 1)
        losses: dict[str, Tensor] = {}
        n_dn = dec.num_denoising
        layers: list[tuple[str, LayerPrediction, bool]] = []
        if dec.interm is not None:
            layers.append(("interm", dec.interm, False))
        layers += [(f"aux{i}", slice_queries(p, n_dn, None), True) for i, p in enumerate(dec.aux)]
        layers.append(("last", dec.last, True))
        last_match = None
        point_feats = [
            point_features(f, t.points) for f, t in zip(out.mask_features.unbind(0), targets, strict=True)
        ]
        for name, pred, with_masks in layers:
            indices = self._match(pred, targets, visual)
            self._add(
                losses,
                self._layer(pred, targets, indices, point_feats if with_masks else None, visual, num),
            )
            if name == "last":
                last_match = indices
            if with_masks and vocabulary is not None:
                self._add(losses, {"vocab": self._vocabulary(pred, targets, indices, vocabulary, num)})
        if plan is not None:
            dn_layers = [slice_queries(p, 0, n_dn) for p in dec.aux[1:]]
            if dec.denoising is not None:
                dn_layers.append(dec.denoising)
            for pred in dn_layers:
                self._add(losses, self._denoising(pred, targets, plan, point_feats))
        if grounding and w.refer > 0:
            losses["refer"] = w.refer * self._refer(dec.last, targets)
        if pairs and last_match is not None:
            losses["track"] = w.track * self._track(dec.track_embed, targets, last_match)
        return losses

    @staticmethod
    def _add(total: dict[str, Tensor], new: dict[str, Tensor]) -> None:
        for k, v in new.items():
            total[k] = total[k] + v if k in total else v

    def _match(
        self, pred: LayerPrediction, targets: list[Targets], visual: bool
    ) -> list[tuple[Tensor, Tensor]]:
        w = self.w
        out = []
        for b, t in enumerate(targets):
            c = t.classes.shape[1]
            out.append(
                match(
                    pred.logits[b, :, :c].detach(),
                    pred.boxes[b].detach(),
                    t.classes,
                    t.boxes,
                    w_cls=w.cls,
                    w_l1=w.l1,
                    w_giou=w.giou,
                    scores=pred.scores[b].detach() if visual else None,
                    w_conf=w.conf,
                    alpha=w.focal_alpha,
                )
            )
        return out

    def _class_loss(
        self,
        logits: Tensor,
        targets: list[Targets],
        rows: list[Tensor],
        hot: list[Tensor],
        num: int,
        queries: Tensor | None = None,
    ) -> Tensor:
        """Focal loss over each image's own names only (padding classes are -inf in ``logits``);
        ``queries`` [B, Q] limits it to some rows (the real denoising queries)."""
        valid = torch.zeros(logits.shape[0], 1, logits.shape[2], dtype=torch.bool)
        target = torch.zeros_like(logits)
        for b, t in enumerate(targets):
            c = t.classes.shape[1]
            valid[b, :, :c] = True
            if len(rows[b]):
                target[b, rows[b], :c] = hot[b]
        if queries is not None:
            valid = valid & queries[..., None]
        safe = torch.where(valid, logits, torch.zeros_like(logits))
        return (focal_loss(safe, target, self.w.focal_alpha) * valid).sum() / num

    def _layer(
        self,
        pred: LayerPrediction,
        targets: list[Targets],
        indices: list[tuple[Tensor, Tensor]],
        point_feats: list[Tensor] | None,
        visual: bool,
        num: int,
    ) -> dict[str, Tensor]:
        w = self.w
        rows = [q for q, _ in indices]
        hot = [t.classes[j] for t, (_, j) in zip(targets, indices, strict=True)]
        out = {"cls": w.cls * self._class_loss(pred.logits, targets, rows, hot, num)}
        out.update(self._geometry(pred, targets, indices, point_feats, num))
        if visual:
            conf_target = torch.zeros_like(pred.scores)
            for b, q in enumerate(rows):
                conf_target[b, q] = 1.0
            out["conf"] = w.conf * focal_loss(pred.scores, conf_target, w.focal_alpha).sum() / num
        return out

    def _geometry(
        self,
        pred: LayerPrediction,
        targets: list[Targets],
        indices: list[tuple[Tensor, Tensor]],
        point_feats: list[Tensor] | None,
        num: int,
    ) -> dict[str, Tensor]:
        """L1 + GIoU for matched boxes and point-sampled BCE + dice for their masks
        (``point_feats``: :func:`point_features` of each image)."""
        w = self.w
        src = torch.cat([pred.boxes[b, q] for b, (q, _) in enumerate(indices)])
        dst = torch.cat([t.boxes[j] for t, (_, j) in zip(targets, indices, strict=True)])
        out = {
            "l1": w.l1 * F.l1_loss(src, dst, reduction="sum") / num,
            "giou": w.giou * (1 - generalized_iou(box_xyxy(src), box_xyxy(dst), pairwise=False)).sum() / num,
        }
        if point_feats is not None:
            bce = dice = src.sum() * 0.0
            for b, (q, j) in enumerate(indices):
                if len(q) == 0:
                    continue
                logits, labels = matched_point_logits(pred.mask_embed[b], q, j, point_feats[b])
                pb, pd = mask_losses(logits, targets[b].point_labels[labels])
                bce, dice = bce + pb, dice + pd
            out["mask"] = w.mask * bce / num
            out["dice"] = w.dice * dice / num
        return out

    def _denoising(
        self, pred: LayerPrediction, targets: list[Targets], plan: DenoisingPlan, point_feats: list[Tensor]
    ) -> dict[str, Tensor]:
        """Positive copies reconstruct their object; negative copies must score as background."""
        w = self.w
        num = max(sum(len(p[0]) for p in plan.positives), 1)
        valid = torch.zeros(pred.logits.shape[:2], dtype=torch.bool)
        for b, rows in enumerate(plan.rows):
            valid[b, rows] = True
        hot = [t.classes[j] for t, (_, j) in zip(targets, plan.positives, strict=True)]
        rows = [q for q, _ in plan.positives]
        out = {"dn_cls": w.cls * self._class_loss(pred.logits, targets, rows, hot, num, queries=valid)}
        geo = self._geometry(pred, targets, plan.positives, point_feats, num)
        return {**out, **{f"dn_{k}": v for k, v in geo.items()}}

    def _vocabulary(
        self,
        pred: LayerPrediction,
        targets: list[Targets],
        indices: list[tuple[Tensor, Tensor]],
        vocabulary: Callable[[Tensor], Tensor],
        num: int,
    ) -> Tensor:
        """Focal loss of the matched queries against every name of the fixed vocabulary."""
        proj = torch.cat([pred.class_proj[b, q] for b, (q, _) in enumerate(indices)])
        if any(t.vocabulary is None for t in targets):
            raise ValueError("a vocabulary loss needs vocabulary targets on every image")
        hot = [t.vocabulary[j] for t, (_, j) in zip(targets, indices, strict=True)]  # type: ignore[index]
        loss = focal_loss(vocabulary(proj), torch.cat(hot), self.w.focal_alpha).sum() / num
        return self.w.vocabulary * loss

    def _refer(self, pred: LayerPrediction, targets: list[Targets]) -> Tensor:
        """Mean :func:`referring_loss` over the images whose referred object has a positive query."""
        total, count = pred.logits.sum() * 0.0, 0
        for b, t in enumerate(targets):
            positive = referred_positives(pred.boxes[b].detach(), t.boxes, self.w.refer_iou)
            if bool(positive.any()):
                total, count = total + referring_loss(pred.logits[b, :, 0], positive), count + 1
        return total / max(count, 1)

    def _track(self, embeds: Tensor, targets: list[Targets], indices: list[tuple[Tensor, Tensor]]) -> Tensor:
        total = embeds.sum() * 0.0
        keys = 0
        for a in range(0, len(targets) - 1, 2):
            ids = {}
            for b in (a, a + 1):
                ids[b] = torch.full((embeds.shape[1],), -1, dtype=torch.int64)
                q, j = indices[b]
                ids[b][q] = targets[b].tracks[j]
            for k, r in ((a, a + 1), (a + 1, a)):
                q = indices[k][0]
                loss, n = track_contrastive_loss(
                    embeds[k, q], ids[k][q], embeds[r], ids[r], self.w.track_temperature
                )
                total, keys = total + loss, keys + n
        return total / max(keys, 1)
