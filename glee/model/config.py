"""Model configurations as plain dataclasses.

One set of model classes serves every variant; a config only changes sizes. ``lite`` reproduces the
official GLEE-Lite (R50) Stage-2/3 architecture so that zoo checkpoints load key-for-key; ``demo`` is
the small family the project trains itself on the synthetic shapes domain. ``plus`` / ``pro`` are
reserved names: their backbones (Swin-L, EVA02-L) are not implemented yet, and asking for them fails
loudly instead of building something that silently cannot load their weights.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

PIXEL_MEAN_RGB = (123.675, 116.280, 103.530)
PIXEL_STD_RGB = (58.395, 57.120, 57.375)

_Config = TypeVar("_Config")


@dataclass(frozen=True)
class BackboneConfig:
    """ResNet in detectron2's layout (``stem``, ``res2``..``res5``; stride on the 3x3 conv)."""

    block: Literal["bottleneck", "basic"] = "bottleneck"
    depths: tuple[int, int, int, int] = (3, 4, 6, 3)
    stem_channels: int = 64
    # Output channels of res2..res5; bottleneck width is out/4.
    out_channels: tuple[int, int, int, int] = (256, 512, 1024, 2048)
    # "frozen_bn" is what the official checkpoints use; "bn" lets a from-scratch backbone train.
    # Both hold the same four tensors per norm, so a trained "bn" model loads as "frozen_bn".
    norm: Literal["frozen_bn", "bn"] = "frozen_bn"


@dataclass(frozen=True)
class TextConfig:
    """CLIP text tower (HF ``CLIPTextModel`` semantics: causal + padding mask, quick_gelu, final LN)."""

    vocab_size: int = 49408
    width: int = 512
    layers: int = 12
    heads: int = 8
    mlp_dim: int = 2048
    context_length: int = 77


@dataclass(frozen=True)
class GleeConfig:
    """Everything that fixes tensor shapes and inference behaviour of a GLEE model."""

    name: str = "lite"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    text: TextConfig = field(default_factory=TextConfig)
    hidden_dim: int = 256
    num_heads: int = 8
    dim_feedforward: int = 2048
    enc_layers: int = 6
    dec_layers: int = 9
    num_queries: int = 300
    n_points: int = 4
    # Encoder levels: res3, res4, res5 projected + one strided conv on res5 (strides 8..64).
    num_feature_levels: int = 4
    early_fusion: bool = True
    # "dot": the official raw dot product with the pooled text embedding (what zoo checkpoints expect).
    # "cosine": exp(scale) * cosine + bias with a learned scale and a focal-prior bias, which a from-scratch
    # text tower learns to separate names with far faster (adds ``predictor.logit_scale`` / ``logit_bias``).
    class_logits: Literal["dot", "cosine"] = "dot"
    # Grounding logits get a sentence-conditioned linear term in each query's box (centre, size, area), not in
    # GLEE (adds ``predictor.ground_box``). Top-1 of content match + a linear position score is exactly how a
    # superlative ("the leftmost circle", "the largest object") picks among objects that match its noun.
    ground_box_term: bool = False
    # Grounding logits of the last layer's queries get a change from ``ground_relation_layers`` blocks of
    # attention among the queries and to the sentence (``glee.model.relation``; not in GLEE, adds
    # ``predictor.ground_relation``): superlatives and sides are relations within the set of candidates.
    ground_relation_layers: int = 0
    # Category logits of the last layer's queries come from the projected query plus a zero-initialised
    # two-layer MLP of it (not in GLEE, adds ``predictor.class_refine``): a head that a later stage fits on
    # a finished model's cached queries, where naming, not finding, costs detection AP.
    class_refine: bool = False
    # With class_refine: the MLP also reads each query's mask sampled on a class_refine_shape x
    # class_refine_shape grid over its box (``layers.mask_crops``; 0 = the query alone).
    class_refine_shape: int = 0
    # Grounding logits, after the relation head, get this share of what the class refinement changes in the
    # queries' match to the sentence (``ObjectDecoder.refinement_change``; needs class_refine). The
    # refinement is fitted on category names and a sentence's noun is one: it names small objects better
    # than the plain projection does. After the head, so that a relation stage's samples and fit do not
    # depend on it. 0 = grounding without it.
    ground_refine_weight: float = 0.0
    # Grounding also runs the image flipped left-right with the sentence's direction words swapped
    # (``glee.model.mirror``) and ranks each candidate by its probability (softmax over the queries) plus
    # this weight times that of the mirrored view's query on the same object. Twice the images in every
    # grounding forward; video tasks keep one view (``video_predictor.VIDEO_SETTINGS``). 0 = one view (the
    # official grounding).
    ground_mirror_weight: float = 0.0
    # Stage-2/3 checkpoints carry the visual prompter (sot_fuser, mask_sptial_embed, pn_indicator).
    visual_prompt: bool = True
    template_size: int = 256
    # Visual prompts: re-rank the top ``prompt_rerank`` candidates by confidence x (how well their mask fits
    # the prompt: clicks inside, stroke covered, box IoU) ** ``predictor.RERANK_FIT_POWER``. 0 = the official
    # top-1 by confidence.
    prompt_rerank: int = 0
    # Crop every output mask to its predicted box grown by this fraction of the box size on each side.
    # None = the official masks (uncropped).
    mask_box_margin: float | None = None
    # detect: drop a detection whose box overlaps a better-scored one of the same label at least this much
    # (greedy NMS). None = the official post-processing, which has no NMS.
    detection_nms_iou: float | None = None
    # Report each output box as the tight box of its (cropped) output mask instead of the regressed box.
    # False = the official regressed boxes.
    box_from_mask: bool = False
    # Snap output masks to the image's colour edges with a guided filter (``glee.model.guided_filter``) of
    # this radius in model-input pixels (4 = one mask cell) and this eps (colour variance in 0..1 treated
    # as noise). None = the official masks (bilinear upsampling of the quarter-resolution logits).
    mask_guided_radius: float | None = None
    mask_guided_eps: float = 1e-3
    max_prompt_points: int = 512
    size_divisibility: int = 32
    pixel_mean: tuple[float, float, float] = PIXEL_MEAN_RGB
    pixel_std: tuple[float, float, float] = PIXEL_STD_RGB
    # Test-time resize of the shortest edge (0 = never resize) and the cap on the long edge.
    min_size_test: int = 800
    max_size_test: int = 1333

    def __post_init__(self) -> None:
        """Reject settings the model would misread or silently ignore (a hand-edited config.json)."""
        counts = ("ground_relation_layers", "class_refine_shape", "prompt_rerank")
        problems = [f"{name} must be >= 0" for name in counts if getattr(self, name) < 0]
        if self.class_refine_shape and not self.class_refine:
            problems.append("class_refine_shape needs class_refine")
        if not self.ground_mirror_weight >= 0:
            problems.append("ground_mirror_weight must be >= 0")
        if not self.ground_refine_weight >= 0:
            problems.append("ground_refine_weight must be >= 0")
        elif self.ground_refine_weight and not self.class_refine:
            problems.append("ground_refine_weight needs class_refine")
        if self.mask_guided_radius is not None and self.mask_guided_radius <= 0:
            problems.append("mask_guided_radius must be > 0 (or null for the official masks)")
        if self.mask_guided_eps <= 0:
            problems.append("mask_guided_eps must be > 0")
        if self.mask_box_margin is not None and self.mask_box_margin < 0:
            problems.append("mask_box_margin must be >= 0 (or null for uncropped masks)")
        if self.detection_nms_iou is not None and not 0 < self.detection_nms_iou <= 1:
            problems.append("detection_nms_iou must be in (0, 1] (or null for no NMS)")
        if problems:
            raise ValueError(f"invalid GleeConfig {self.name!r}: " + "; ".join(problems))

    @property
    def head_dim_fusion(self) -> int:
        """VLFuse attention width per head equals the model width (2048 = 8 x 256 for Lite)."""
        return self.hidden_dim

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GleeConfig:
        """The config of :meth:`to_dict`'s JSON form (e.g. a converted directory's config.json)."""
        return _from_json(cls, data, cls.__name__)


def _from_json(cls: type[_Config], data: Any, where: str) -> _Config:
    """A config dataclass from its JSON object, nested configs included, every field's type checked: a
    dataclass checks none, and a hand-edited size that is a string would fail far away, inside torch.
    ``where`` names ``data`` in the messages (``GleeConfig.backbone``)."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be an object, not {json.dumps(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"unknown {where} fields: {sorted(unknown)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _from_json(hint, value, f"{where}.{name}")
        elif _matches(value, hint):
            # JSON turns tuples into lists; frozen dataclasses want them back as tuples.
            values[name] = tuple(value) if isinstance(value, list) else value
        else:
            raise ValueError(f"{where}.{name} must be {fields[name].type}, not {json.dumps(value)}")
    return cls(**values)


def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON (or ``to_dict``) value fits a config field's type (an integer is a float, a bool is
    no number)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return value in args
    if origin is types.UnionType:
        return any(_matches(value, arg) for arg in args)
    if origin is tuple:
        return isinstance(value, list | tuple) and len(value) == len(args) and all(map(_matches, value, args))
    if isinstance(value, bool):
        return hint is bool
    if hint is float:
        return isinstance(value, int | float)
    return isinstance(value, hint)


def lite() -> GleeConfig:
    """GLEE-Lite Stage-2/3 (R50, visual prompts): the layout of ``GLEE_Lite_{joint,scaleup}.pth``."""
    return GleeConfig(name="lite")


def lite_stage1() -> GleeConfig:
    """GLEE-Lite Stage-1 (``GLEE_Lite_pretrain.pth``): no visual-prompt modules."""
    return GleeConfig(name="lite_stage1", visual_prompt=False)


def demo() -> GleeConfig:
    """The embedded demo model: same classes as Lite, sized to train on 2 CPU cores in about an hour."""
    return GleeConfig(
        name="demo",
        # ResNet-18's layout at half width. With one block per stage (v1-v3) the stride-8 features were 5
        # convolutions deep: a linear probe on the decoder's queries told the six shapes apart only 41 % of
        # the time while their boxes fit (97 % at IoU 0.5), so naming, not finding, was what failed.
        backbone=BackboneConfig(
            block="basic", depths=(2, 2, 2, 2), stem_channels=32, out_channels=(32, 64, 128, 256), norm="bn"
        ),
        text=TextConfig(width=64, layers=3, heads=4, mlp_dim=256),
        hidden_dim=128,
        num_heads=4,
        dim_feedforward=512,
        enc_layers=3,
        dec_layers=4,
        num_queries=100,
        class_logits="cosine",
        # v8 (without it) grounded relational expressions poorly (held-out REC: left/right 0.43, extreme 0.36,
        # size 0.50) while colour and shape expressions reached 0.90 / 0.86.
        ground_box_term=True,
        max_prompt_points=128,
        template_size=128,
        # An undertrained confidence head often ranks a neighbour first; its top 10 nearly always hold the
        # prompted object (held-out point-prompt mIoU best-of-10 0.72 vs top-1 0.56).
        prompt_rerank=10,
        # Its stride-4 mask logits leak far past small objects (predicted masks ~2x the object's area) while
        # its boxes fit; cropping to the box raised mask AP 0.27 -> 0.40 and VOS J&F 0.79 -> 0.94 (CI sets).
        mask_box_margin=0.1,
        # Second queries on one object (the official path has no NMS) cost detection AP and were a main
        # source of tracking false positives: NMS at 0.7 raised box AP50 0.638 -> 0.687 (60 tuning images).
        detection_nms_iou=0.7,
        # Its masks fit objects better than its regressed boxes (60 tuning images: mask AP 0.705 against
        # box AP 0.585), and an annotated box is the tight box of the visible mask.
        box_from_mask=True,
        # One mask cell covers up to 8x8 image pixels (inputs are at most half the image size), and its edges
        # are bilinear blurs; snapping them to the colour edges (two cells' radius) on the 60 tuning images:
        # box-prompt mIoU 0.882 -> 0.929, point 0.879 -> 0.921, mask AP 0.786 -> 0.853, box AP50 0.886 ->
        # 0.905 (boxes come from the masks). Radius 12: the same within 0.003; 4: about 0.01 lower.
        mask_guided_radius=8.0,
        # Long side 256: the size the demo model is trained at (and 4x fewer pixels than 512 on CPU).
        min_size_test=256,
        max_size_test=256,
    )


VARIANTS = {"lite": lite, "lite_stage1": lite_stage1, "demo": demo}
RESERVED = {"plus": "Swin-L backbone", "pro": "EVA02-L backbone"}


def get_config(name: str) -> GleeConfig:
    """Config by variant name; reserved variants raise ``NotImplementedError`` with the reason."""
    if name in VARIANTS:
        return VARIANTS[name]()
    if name in RESERVED:
        raise NotImplementedError(
            f"variant {name!r} needs the {RESERVED[name]}, which is not implemented yet"
        )
    raise ValueError(f"unknown GLEE variant {name!r}; known: {sorted(VARIANTS)}")
