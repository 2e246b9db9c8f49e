"""``GleePredictor``: task methods (detect / ground / segment) over a loaded GLEE, SAM-2 style.

Inputs are numpy HxWx3 uint8 RGB arrays or PIL images; outputs are :class:`ImageResult` in original
image pixels. Post-processing follows the official inference path: no NMS, top-K over query x class,
final score = class probability x mean mask probability inside the mask, top-1 for grounding and visual
prompts, regressed boxes. A config may change five of those for a small model (all off for the official
variants, on for the demo model): re-rank visual-prompt candidates by how well their masks fit the prompt
(``GleeConfig.prompt_rerank``), snap masks to the image's colour edges (``mask_guided_radius``), crop masks
to their boxes (``mask_box_margin``), drop duplicate detections by box NMS (``detection_nms_iou``) and report
each box as its mask's tight box (``box_from_mask``). Masks
are computed only for the kept queries, never for all queries at full resolution.

``run_batch`` is the engine's entry point: tasks with the same :meth:`batch_key` share one forward.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
from collections import OrderedDict, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from glee.data.masks import box_iou, mask_boxes
from glee.model.glee import GleeModel, ModelOutput, TextPrompt, VisualPrompt, build_glee
from glee.model.guided_filter import refine_masks
from glee.model.layers import box_region, box_xyxy
from glee.model.mirror import flip_words, fuse_mirrored
from glee.model.prompts import prompt_agreement, rasterize, validate_prompt
from glee.model.types import ImageResult, ImageTask

DEMO_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "glee-demo"
VISUAL_CLASS_NAMES = ["object"]


def require_device(device: str) -> None:
    """Fail with a one-line ``ValueError`` (``glee serve`` and ``glee eval`` print it) instead of torch's
    traceback when the torch device is malformed or not present here (``cuda`` on a CPU-only build)."""
    try:
        torch.empty(0, device=torch.device(device))
    except (RuntimeError, AssertionError) as exc:
        raise ValueError(f"device {device!r} is not usable here: {exc}") from exc


class InputError(ValueError):
    """Bad user input (image, categories, expressions); the service maps it to HTTP 400."""


def to_rgb_array(image: object) -> np.ndarray:
    """numpy HxWx3 uint8 (RGB) or a PIL image -> contiguous HxWx3 uint8."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise InputError(f"image must be a numpy array or PIL image, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"image must be HxWx3 uint8 RGB, got shape {image.shape} dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError("image is empty")
    return np.ascontiguousarray(image)


def resized_size(h: int, w: int, short: int, long_max: int) -> tuple[int, int]:
    """detectron2 ResizeShortestEdge: short side to ``short`` unless the long side would pass ``long_max``."""
    scale = short / min(h, w) if short > 0 else 1.0
    if max(h, w) * scale > long_max:
        scale = long_max / max(h, w)
    return max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))


# How much the fit to a visual prompt outweighs the model's score when re-ranking candidates. At 1 (score x
# fit, v4-v12) a confident neighbour often beat the prompted object. v12 on the tuning sets (60 images, seed
# 5556; 20 videos, seed 5555), power 1 / 4 / fit alone: box-prompt mIoU 0.859 / 0.877 / 0.881, scribble
# 0.896 / 0.904 / 0.901, VOS J&F 0.913 / 0.928 / 0.928; point prompts unchanged (their fit is mostly 0 or 1).
# 4 rather than the fit alone: near-equal fits (0.95 against 0.93, duplicate queries on one object) still go
# to the higher score, whose query's embedding then seeds a VOS track.
RERANK_FIT_POWER = 4.0


@dataclass
class _Prepared:
    pixels: torch.Tensor  # [3, h, w] float 0..255 at model-input size
    image: np.ndarray  # the original HxWx3 uint8
    orig: tuple[int, int]
    size: tuple[int, int]

    @functools.cached_property
    def colours(self) -> torch.Tensor:
        """[3, H, W] the original image in 0..1 on the model's device (the guided filter's guide), made once
        per image however many prompts or expressions share it."""
        return torch.tensor(self.image, device=self.pixels.device).permute(2, 0, 1).float() / 255


class GleePredictor:
    """Task API over a :class:`GleeModel`; owns the text-embedding cache."""

    def __init__(self, model: GleeModel, model_name: str = "glee", *, text_cache_size: int = 4096) -> None:
        self.model = model.eval()
        self.model_name = model_name
        self.cfg = model.cfg
        self.text_cache_enabled = True
        self._cache_size = text_cache_size
        self._name_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._expr_cache: OrderedDict[str, TextPrompt] = OrderedDict()

    # ------------------------------------------------------------ construction
    @classmethod
    def load(
        cls, name_or_path: str | os.PathLike[str] | None = None, backend: str = "torch", device: str = "cpu"
    ) -> GleePredictor:
        """Load a converted weights directory (None = the embedded demo model) for ``backend``."""
        from glee.model.checkpoint import load_pretrained

        path = cls.weights_path(name_or_path, backend, device)
        model = load_pretrained(path, device=device)
        name = "glee-demo" if name_or_path is None else path.name
        return cls(model, name)

    @staticmethod
    def weights_path(
        name_or_path: str | os.PathLike[str] | None = None, backend: str = "torch", device: str = "cpu"
    ) -> Path:
        """The directory ``load`` reads, after the checks that need no loading (backend, device, the
        directory's config.json and weights header), which ``glee serve`` runs before it binds its ports."""
        if backend != "torch":
            raise ValueError(f"backend {backend!r} is not available; use 'torch'")
        require_device(device)
        path = Path(name_or_path) if name_or_path is not None else DEMO_WEIGHTS
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"no converted GLEE weights at {path} (expected config.json + model.safetensors)"
            )
        from glee.model.checkpoint import check_pretrained

        check_pretrained(path)
        return path

    @classmethod
    def random(cls, variant: str = "demo", seed: int = 0) -> GleePredictor:
        """Randomly initialized model: for plumbing tests and benchmarks only (outputs mean nothing)."""
        torch.manual_seed(seed)
        return cls(build_glee(variant), f"{variant}-random")

    def with_config(self, **changes: object) -> GleePredictor:
        """The same model and text caches under a config with ``changes`` (post-processing settings)."""
        other = copy.copy(self)
        other.cfg = dataclasses.replace(self.cfg, **changes)
        return other

    @property
    def embed_dim(self) -> int:
        return self.cfg.hidden_dim

    @property
    def device(self) -> torch.device:
        return self.model.lang_projection.device

    # ------------------------------------------------------------ public tasks
    def detect(
        self,
        image: object,
        categories: Sequence[str],
        score_threshold: float = 0.3,
        max_detections: int = 100,
    ) -> ImageResult:
        task = ImageTask("detect", to_rgb_array(image), categories=list(categories),
                         score_threshold=score_threshold, max_detections=max_detections)  # fmt: skip
        return self.run_batch([task])[0][0]

    def ground(self, image: object, expressions: Sequence[str], top_k: int = 1) -> list[ImageResult]:
        """Per expression its ``top_k`` candidates in grounding order (row 0 is the answer); their
        scores, which include the mask score, need not decrease."""
        task = ImageTask("ground", to_rgb_array(image), expressions=list(expressions), max_detections=top_k)
        return self.run_batch([task])[0]

    def segment(self, image: object, prompts: Sequence[dict], top_k: int = 1) -> list[ImageResult]:
        """Per prompt its ``top_k`` candidates, best first by confidence (re-ranked by fit to the
        prompt when ``prompt_rerank`` is set)."""
        task = ImageTask("segment", to_rgb_array(image), prompts=list(prompts), max_detections=top_k)
        return self.run_batch([task])[0]

    # ------------------------------------------------------------ batching
    def batch_key(self, task: ImageTask) -> Hashable:
        """Tasks may share a forward when their padded input size and mode agree."""
        h, w = task.image.shape[:2]
        rh, rw = resized_size(h, w, self.cfg.min_size_test, self.cfg.max_size_test)
        div = self.cfg.size_divisibility
        return (task.kind, -(-rh // div) * div, -(-rw // div) * div)

    @torch.inference_mode()
    def run_batch(self, tasks: Sequence[ImageTask]) -> list[list[ImageResult]]:
        """Run tasks (grouped internally by :meth:`batch_key`); one result list per task."""
        for task in tasks:
            self._validate(task)
        groups: dict[Hashable, list[int]] = defaultdict(list)
        for i, task in enumerate(tasks):
            groups[self.batch_key(task)].append(i)
        results: list[list[ImageResult]] = [[] for _ in tasks]
        for idxs in groups.values():
            group = [tasks[i] for i in idxs]
            for i, res in zip(idxs, self._run_group(group), strict=True):
                results[i] = res
        return results

    def check_texts(self, texts: object, name: str) -> None:
        """Refuse texts the model cannot read as given (``InputError``): an empty list, blank strings, and
        texts longer than the text encoder's context, which GLEE's tokenizer cuts silently, so that the
        answer would be to the sentence's beginning rather than to the sentence asked."""
        if not texts or not isinstance(texts, list):
            raise InputError(f"{name} must be a non-empty list of strings")
        tokenizer = self.model.tokenizer
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"{name} must contain non-empty strings")
            if (n := tokenizer.length(text)) > tokenizer.context_length:
                raise InputError(
                    f"{name}[{i}] is {n} tokens long (start and end tokens included); "
                    f"the text encoder reads at most {tokenizer.context_length}"
                )

    def _validate(self, task: ImageTask) -> None:
        task.image = to_rgb_array(task.image)
        if task.kind == "detect":
            self.check_texts(task.categories, "categories")
            if task.max_detections < 1:
                raise InputError("max_detections must be >= 1")
        elif task.kind == "ground":
            self.check_texts(task.expressions, "expressions")
        elif task.kind == "segment":
            if not task.prompts:
                raise InputError("prompts must be a non-empty list")
            h, w = task.image.shape[:2]
            for p in task.prompts:
                validate_prompt(p, w, h)
        else:
            raise InputError(f"unknown task kind {task.kind!r}")

    def _prepare(self, image: np.ndarray) -> _Prepared:
        original = image
        h, w = image.shape[:2]
        rh, rw = resized_size(h, w, self.cfg.min_size_test, self.cfg.max_size_test)
        if (rh, rw) != (h, w):
            image = np.asarray(Image.fromarray(image).resize((rw, rh), Image.BILINEAR))
        pixels = torch.from_numpy(np.array(image)).to(self.device).permute(2, 0, 1).float()
        return _Prepared(pixels, original, (h, w), (rh, rw))

    def _images(self, prepared: list[_Prepared], mirrored: bool = False) -> torch.Tensor:
        """[N, 3, H, W] the normalized, padded inputs; ``mirrored``: each image flipped left-right inside its
        own part of the frame (the padding stays on the right)."""
        pixels = [p.pixels.flip(-1) if mirrored else p.pixels for p in prepared]
        return torch.cat([self.model.normalize_and_pad(x[None]) for x in pixels], 0)

    def _run_group(self, tasks: list[ImageTask]) -> list[list[ImageResult]]:
        prepared = [self._prepare(t.image) for t in tasks]
        kind = tasks[0].kind
        if kind == "detect":
            prompts = [self._category_prompt(t.categories) for t in tasks]
            out = self.model.run(self._images(prepared), prompts)
            return [
                [self._detections(out, b, p, t.categories, t.score_threshold, t.max_detections)]
                for b, (t, p) in enumerate(zip(tasks, prepared, strict=True))
            ]
        # ground / segment: one model item per expression / prompt, all in one forward.
        items = [
            (ti, x) for ti, t in enumerate(tasks) for x in (t.expressions if kind == "ground" else t.prompts)
        ]
        index = [ti for ti, _ in items]
        batch = self._images(prepared)[index]
        orders: list[torch.Tensor | None] = [None] * len(items)
        if kind == "ground":
            out, orders = self._ground(batch, [x for _, x in items], prepared, index)
        else:
            visual = self._visual(items, tasks, prepared, batch.shape[-2:])
            out = self.model.run(batch, [self._category_prompt(VISUAL_CLASS_NAMES)] * len(items), visual)
        results: list[list[ImageResult]] = [[] for _ in tasks]
        for b, (ti, x) in enumerate(items):
            k = tasks[ti].max_detections
            if kind == "ground":
                results[ti].append(self._top(out, b, prepared[ti], x, "logits", k, orders[b]))
                continue
            n = max(k, self.cfg.prompt_rerank)
            candidates = self._top(out, b, prepared[ti], "object", "confidence", n)
            results[ti].append(_rerank(candidates, x, k) if self.cfg.prompt_rerank else candidates)
        return results

    def _ground(
        self, batch: torch.Tensor, sentences: list[str], prepared: list[_Prepared], index: list[int]
    ) -> tuple[ModelOutput, list[torch.Tensor | None]]:
        """One forward for the sentences, sentence b on ``batch[b]``, the input of image ``index[b]`` of
        ``prepared``. With ``ground_mirror_weight`` the same forward also runs each image flipped left-right
        (once per image) with its sentence's direction words swapped, and each sentence's grounding order
        is fused with its mirror's (``mirror.fuse_mirrored``); the first views keep the rows of ``batch``,
        the mirrored ones follow."""
        prompts = [self._expression_prompt(x) for x in sentences]
        weight = self.cfg.ground_mirror_weight
        if not weight:
            return self.model.run(batch, prompts), [None] * len(sentences)
        mirrored = self._images(prepared, mirrored=True)[index]
        mirrored_prompts = [self._expression_prompt(flip_words(x, (True, False))) for x in sentences]
        both = self.model.run(torch.cat([batch, mirrored]), prompts + mirrored_prompts)
        n, frame_width = len(sentences), batch.shape[-1]
        last = both.decoder.last
        orders = [
            fuse_mirrored(
                last.logits[b, :, 0], last.boxes[b], last.logits[n + b, :, 0], last.boxes[n + b],
                prepared[i].size[1] / frame_width, weight,
            )
            for b, i in enumerate(index)
        ]  # fmt: skip
        return both, orders

    # ------------------------------------------------------------ prompts
    def _category_prompt(self, names: Sequence[str]) -> TextPrompt:
        missing = [n for n in dict.fromkeys(names) if not (self.text_cache_enabled and n in self._name_cache)]
        fresh = dict(zip(missing, self.model.encode_names(missing), strict=True)) if missing else {}
        tokens = []
        for n in names:
            t = fresh.get(n)
            if t is None:
                t = self._name_cache[n]
                self._name_cache.move_to_end(n)
            tokens.append(t)
        if self.text_cache_enabled:
            for n, t in fresh.items():
                _lru_put(self._name_cache, n, t, self._cache_size)
        return self.model.category_prompt(tokens)

    def _expression_prompt(self, expression: str) -> TextPrompt:
        if self.text_cache_enabled and expression in self._expr_cache:
            self._expr_cache.move_to_end(expression)
            return self._expr_cache[expression]
        prompt = self.model.expression_prompt(expression)
        if self.text_cache_enabled:
            _lru_put(self._expr_cache, expression, prompt, self._cache_size)
        return prompt

    def _visual(self, items, tasks, prepared, padded_hw) -> VisualPrompt:
        hp, wp = int(padded_hw[0]), int(padded_hw[1])
        pos = torch.zeros(len(items), hp, wp, dtype=torch.bool)
        neg = torch.zeros_like(pos)
        types = []
        for b, (ti, prompt) in enumerate(items):
            p = prepared[ti]
            (h, w), (rh, rw) = p.orig, p.size
            kind, norm = validate_prompt(prompt, w, h)
            raster = rasterize(kind, norm, (rw / w, rh / h), (rh, rw))
            pos[b, :rh, :rw] = torch.from_numpy(raster.positive)
            if raster.negative is not None:
                neg[b, :rh, :rw] = torch.from_numpy(raster.negative)
            types.append(raster.prompt_type)
        return VisualPrompt(pos.to(self.device), types, neg.to(self.device) if neg.any() else None)

    # ------------------------------------------------------------ post-processing
    def _detections(
        self, out: ModelOutput, b: int, p: _Prepared, names: list[str], threshold: float, k: int
    ) -> ImageResult:
        probs = out.decoder.last.logits[b, :, : len(names)].sigmoid()
        flat = probs.flatten()
        top = torch.topk(flat, min(k, flat.numel()))
        # The final score (probability x mask score) never exceeds the probability, so candidates
        # already below the threshold are dropped before their masks are computed.
        above = top.values >= threshold
        values, indices = top.values[above], top.indices[above]
        queries = torch.div(indices, len(names), rounding_mode="floor")
        classes = indices % len(names)
        result = self._assemble(out, b, p, queries, values, [names[int(c)] for c in classes])
        # Detections rank by the final score; the rows came in probability order.
        order = np.argsort(-result.scores, kind="stable")
        result = _select(result, order[result.scores[order] >= threshold])
        if self.cfg.detection_nms_iou is not None:
            result = _select(result, _nms(result, self.cfg.detection_nms_iou))
        return result

    def _top(
        self, out: ModelOutput, b: int, p: _Prepared, label: str, rank: str, k: int,
        order: torch.Tensor | None = None,
    ) -> ImageResult:  # fmt: skip
        """The ``k`` best queries by grounding logit (``rank`` "logits"; ``order`` instead when given) or
        prompt confidence. A grounding answer's probability is its match to the sentence
        (``DecoderOutput.match_logits``), not the relation head's rank logit, whose level says nothing on
        its own (near 1e-5 for right answers)."""
        last = out.decoder.last
        if order is None:
            order = (last.logits[b, :, 0] if rank == "logits" else last.scores[b, :, 0]).sigmoid()
        match = out.decoder.match_logits if rank == "logits" else None
        probs = order if match is None else match[b].sigmoid()
        top = torch.topk(order, min(max(k, 1), order.numel()))
        return self._assemble(out, b, p, top.indices, probs[top.indices], [label] * len(top.indices))

    def _assemble(self, out: ModelOutput, b: int, p: _Prepared, queries: torch.Tensor, probs: torch.Tensor,
                  labels: list[str]) -> ImageResult:  # fmt: skip
        """Rows for ``queries``, in the given order, with final scores (probability x mask score).

        The order is the caller's rank (grounding logit, prompt confidence), not the final score:
        ranking a referring answer by the final score loses REC accuracy (TRAINING.md), and RVOS starts
        its track from row 0. Detection re-sorts by the final score itself."""
        (h, w), (rh, rw) = p.orig, p.size
        if len(queries) == 0:
            return ImageResult.empty(h, w, self.embed_dim)
        unique, inverse = torch.unique(queries, return_inverse=True)
        logits = out.masks_for(b, unique)  # [U, Hp/4, Wp/4]
        up = F.interpolate(logits[None], scale_factor=4, mode="bilinear", align_corners=False)[0, :, :rh, :rw]
        full = F.interpolate(up[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        hp, wp = out.mask_features.shape[-2] * 4, out.mask_features.shape[-1] * 4
        boxes = box_xyxy(out.decoder.last.boxes[b, unique])
        boxes = boxes * torch.tensor([wp * w / rw, hp * h / rh] * 2, device=boxes.device)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        prob = full.float().sigmoid()
        margin = self.cfg.mask_box_margin
        region = None if margin is None else box_region(boxes, margin, h, w)
        if region is not None:
            prob = prob * region  # what the crop removes need not be filtered (nor scored)
        if self.cfg.mask_guided_radius is not None:
            prob = self._snap_to_edges(prob, p)
        masks = prob > 0.5
        if region is not None:
            masks &= region
        mask_score = (prob * masks).flatten(1).sum(1) / (masks.flatten(1).sum(1) + 1e-6)
        scores = probs * mask_score[inverse]
        # Per unique query (a query listed under several labels has one mask and one box), then per row.
        query_masks = masks.cpu().numpy()
        query_boxes = boxes.float().cpu().numpy()
        if self.cfg.box_from_mask:
            filled = query_masks.any((1, 2))
            query_boxes[filled] = mask_boxes(query_masks[filled])
        rows = inverse.cpu().numpy()
        return ImageResult(
            boxes=query_boxes[rows],
            scores=scores.float().cpu().numpy(),
            labels=list(labels),
            masks=query_masks[rows],
            track_embeds=out.decoder.track_embed[b, unique][inverse].float().cpu().numpy(),
            query_index=unique[inverse].cpu().numpy().astype(np.int64),
        )

    def _snap_to_edges(self, prob: torch.Tensor, p: _Prepared) -> torch.Tensor:
        """[U, h, w] mask probabilities guided-filtered by the original image (``mask_guided_radius`` is in
        model-input pixels, so it covers the same number of mask cells at any image size)."""
        radius = max(1, round(self.cfg.mask_guided_radius * p.orig[0] / p.size[0]))
        return refine_masks(p.colours, prob, radius, self.cfg.mask_guided_eps).clamp(0, 1)


def _nms(result: ImageResult, iou: float) -> np.ndarray:
    """Rows kept by greedy box NMS within each label (rows come sorted by score, best first): a query
    listed under two names is kept under both, a second query on one object under one name is not."""
    keep: list[int] = []
    for i, label in enumerate(result.labels):
        same = [j for j in keep if result.labels[j] == label]
        if not same or box_iou(result.boxes[i], result.boxes[same]).max() < iou:
            keep.append(i)
    return np.asarray(keep, np.int64)


def _rerank(result: ImageResult, prompt: dict, k: int) -> ImageResult:
    """The k candidates with the best score x agreement ** ``RERANK_FIT_POWER`` (see
    ``GleeConfig.prompt_rerank``), the score breaking ties. Scores stay the model's (confidence x mask
    score): callers threshold them, and a video prompt made from the previous frame's mask must not lose
    score because the object moved."""
    h, w = result.masks.shape[1:]
    kind, norm = validate_prompt(prompt, w, h)
    fit = result.scores * prompt_agreement(kind, norm, result.masks) ** RERANK_FIT_POWER
    return _select(result, np.lexsort((-result.scores, -fit))[:k])


def _select(r: ImageResult, idx: np.ndarray) -> ImageResult:
    return ImageResult(r.boxes[idx], r.scores[idx], [r.labels[i] for i in idx], r.masks[idx],
                       r.track_embeds[idx], r.query_index[idx])  # fmt: skip


def _lru_put(cache: OrderedDict, key: str, value: object, size: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > size:
        cache.popitem(last=False)
