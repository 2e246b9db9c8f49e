"""User prompts (points / box / scribble / mask dicts) -> validated, rasterized prompt masks.

The official demo turns every drawn prompt into one binary mask: a point becomes a rectangle of
half-size (H//40, W//40) around it (H, W = model-input size), a box the filled rectangle, a scribble the
drawn pixels. Several positive points give the union of their rectangles (one point is exactly the
official rule); negative points (label 0) become a separate negative mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from glee.data.masks import box_iou, mask_boxes

SCRIBBLE_WIDTH = 3


class PromptError(ValueError):
    """A prompt that cannot be turned into a mask (the service maps this to HTTP 400)."""


@dataclass
class RasterPrompt:
    positive: np.ndarray  # bool [H, W] at model-input size
    negative: np.ndarray | None
    prompt_type: str  # point | box | scribble | mask


def _points(value: object, name: str, min_len: int = 1) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"{name} must be a list of [x, y] pairs") from exc
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) < min_len or not np.isfinite(arr).all():
        raise PromptError(f"{name} must be a list of at least {min_len} finite [x, y] pairs")
    return arr


def validate_prompt(prompt: object, width: int, height: int) -> tuple[str, dict]:
    """Check a prompt dict against the image size; returns (type, normalized dict)."""
    if not isinstance(prompt, dict):
        raise PromptError("each prompt must be an object with points/labels, box, scribble or mask")
    kinds = [k for k in ("points", "box", "scribble", "mask") if k in prompt]
    if len(kinds) != 1:
        raise PromptError("each prompt needs exactly one of: points, box, scribble, mask")
    kind = kinds[0]
    if kind == "points":
        pts = _points(prompt["points"], "points")
        labels = np.asarray(prompt.get("labels", [1] * len(pts)))
        if labels.shape != (len(pts),) or not np.isin(labels, (0, 1)).all():
            raise PromptError("labels must hold one 0 or 1 per point")
        _inside(pts, width, height, "points")
        if not (labels == 1).any():
            raise PromptError("a points prompt needs at least one positive point (label 1)")
        return "point", {"points": pts, "labels": labels.astype(int)}
    if kind == "box":
        box = np.asarray(prompt["box"], dtype=np.float64) if _is_seq(prompt["box"]) else None
        if box is None or box.shape != (4,) or not np.isfinite(box).all():
            raise PromptError("box must be [x1, y1, x2, y2]")
        x1, y1, x2, y2 = np.clip(box, 0, [width, height, width, height])
        if x2 - x1 < 1 or y2 - y1 < 1:
            raise PromptError("box must have x2 > x1 and y2 > y1 inside the image")
        return "box", {"box": np.array([x1, y1, x2, y2])}
    if kind == "scribble":
        pts = _points(prompt["scribble"], "scribble")
        _inside(pts, width, height, "scribble")
        return "scribble", {"scribble": pts}
    mask = np.asarray(prompt["mask"])
    if mask.shape != (height, width):
        raise PromptError(f"mask must be {height}x{width}, got {mask.shape}")
    mask = mask.astype(bool)
    if not mask.any():
        raise PromptError("mask is empty")
    return "mask", {"mask": mask}


def _is_seq(v: object) -> bool:
    return isinstance(v, list | tuple | np.ndarray)


def _inside(pts: np.ndarray, width: int, height: int, name: str) -> None:
    if (
        (pts[:, 0] < 0).any()
        or (pts[:, 1] < 0).any()
        or (pts[:, 0] > width).any()
        or (pts[:, 1] > height).any()
    ):
        raise PromptError(f"{name} must lie inside the {width}x{height} image")


def rasterize(kind: str, prompt: dict, scale: tuple[float, float], size: tuple[int, int]) -> RasterPrompt:
    """Mask at model-input size (h, w); ``scale`` = (sx, sy) from original to model-input pixels."""
    h, w = size
    sx, sy = scale
    if kind == "point":
        pts = prompt["points"] * [sx, sy]
        labels = prompt["labels"]
        pos = _rectangles(pts[labels == 1], h, w)
        neg = _rectangles(pts[labels == 0], h, w) if (labels == 0).any() else None
        return RasterPrompt(pos, neg, "point")
    if kind == "box":
        x1, y1, x2, y2 = prompt["box"] * [sx, sy, sx, sy]
        mask = np.zeros((h, w), bool)
        mask[int(np.floor(y1)) : max(int(np.ceil(y2)), int(np.floor(y1)) + 1),
             int(np.floor(x1)) : max(int(np.ceil(x2)), int(np.floor(x1)) + 1)] = True  # fmt: skip
        return RasterPrompt(mask, None, "box")
    if kind == "scribble":
        canvas = Image.new("1", (w, h), 0)
        pts = [tuple(p) for p in (prompt["scribble"] * [sx, sy]).tolist()]
        draw = ImageDraw.Draw(canvas)
        if len(pts) == 1:
            draw.point(pts, fill=1)
        else:
            draw.line(pts, fill=1, width=SCRIBBLE_WIDTH)
        mask = np.array(canvas, dtype=bool)
        if not mask.any():
            mask[min(int(pts[0][1]), h - 1), min(int(pts[0][0]), w - 1)] = True
        return RasterPrompt(mask, None, "scribble")
    resized = Image.fromarray(prompt["mask"]).resize((w, h), Image.NEAREST)
    mask = np.array(resized, dtype=bool)
    if not mask.any():
        # A tiny or thin mask can fall between the nearest-neighbour samples: keep the cells it touches.
        ys, xs = np.nonzero(prompt["mask"])
        mask[np.minimum((ys * sy).astype(int), h - 1), np.minimum((xs * sx).astype(int), w - 1)] = True
    return RasterPrompt(mask, None, "mask")


def prompt_agreement(kind: str, prompt: dict, masks: np.ndarray) -> np.ndarray:
    """[N] in [0, 1]: how well each candidate mask (bool [N, H, W], original pixels) fits a validated prompt.

    point: share of the positive clicks inside the mask times share of the negative clicks outside it;
    scribble: share of the drawn stroke inside the mask; box: IoU of the mask's tight box with the box;
    mask: IoU with the prompt mask. An empty candidate agrees with nothing.
    """
    n, h, w = masks.shape
    if n == 0:
        return np.zeros(0, np.float32)
    if kind == "point":
        pts = np.minimum(prompt["points"].astype(np.int64), [w - 1, h - 1])
        inside = masks[:, pts[:, 1], pts[:, 0]]
        labels = prompt["labels"]
        score = inside[:, labels == 1].mean(1)
        if (labels == 0).any():
            score = score * (1 - inside[:, labels == 0].mean(1))
        return score.astype(np.float32)
    if kind == "box":
        return box_iou(mask_boxes(masks), prompt["box"])[:, 0].astype(np.float32)
    target = rasterize(kind, prompt, (1.0, 1.0), (h, w)).positive
    inter = (masks & target).reshape(n, -1).sum(1)
    if kind == "scribble":
        return (inter / target.sum()).astype(np.float32)
    union = (masks | target).reshape(n, -1).sum(1)
    return (inter / np.maximum(union, 1)).astype(np.float32)


def _rectangles(pts: np.ndarray, h: int, w: int) -> np.ndarray:
    """Official point rule: rows cy-H//40 .. cy+H//40-1, cols cx-W//40 .. cx+W//40-1 (at least 1 px)."""
    mask = np.zeros((h, w), bool)
    ph, pw = max(h // 40, 1), max(w // 40, 1)
    for x, y in pts:
        cx, cy = min(int(x), w - 1), min(int(y), h - 1)
        mask[max(cy - ph, 0) : cy + ph, max(cx - pw, 0) : cx + pw] = True
    return mask
