"""Visual prompts (points, boxes, scribbles) sampled from an object's visible mask, and their rasters.

The trainer and the evaluation harness both draw prompts here, so that a model is judged on the prompt
distribution it was trained on. Coordinates are continuous image coordinates: pixel (row r, column c)
spans [c, c+1) x [r, r+1), so ``mask[int(y), int(x)]`` is the pixel under point (x, y).
GLEE turns every prompt into a binary mask before the model; the ``*_mask`` functions do that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

Point = tuple[float, float]

INTERIOR_DEPTH = 3.0  # preferred distance (px) of a positive point from the mask edge
SCRIBBLE_WIDTH = (3, 5)
SCRIBBLE_VERTICES = (3, 8)
BOX_JITTER = 0.1


@dataclass(frozen=True)
class Scribble:
    """A polyline drawn with a round pen of `width` pixels."""

    points: list[Point]
    width: int


def _depth(mask: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Distance to the nearest non-mask pixel on the mask's padded bounding crop, and the crop origin."""
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    if rows.size == 0:
        raise ValueError("cannot sample a prompt from an empty mask")
    r0, c0 = int(rows[0]), int(cols[0])
    crop = np.pad(mask[r0 : rows[-1] + 1, c0 : cols[-1] + 1], 1)
    return ndimage.distance_transform_edt(crop), r0 - 1, c0 - 1


def _pick(region: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    rows, cols = np.nonzero(region)
    k = int(rng.integers(rows.size))
    return int(rows[k]), int(cols[k])


def sample_positive_point(mask: np.ndarray, rng: np.random.Generator) -> Point:
    """A point inside the mask, at least INTERIOR_DEPTH px from its edge where the mask is thick enough."""
    depth, r0, c0 = _depth(mask)
    r, c = _pick(depth >= min(INTERIOR_DEPTH, float(depth.max())), rng)
    return c + c0 + float(rng.random()), r + r0 + float(rng.random())


def sample_negative_points(
    mask: np.ndarray, rng: np.random.Generator, count: int = 1, others: np.ndarray | None = None
) -> list[Point]:
    """Points off the object (2 px clear of its edge): half on other objects when `others` has any."""
    clear = ~ndimage.binary_dilation(mask, iterations=2)
    pools = [clear] if others is None else [p for p in (clear & ~others, clear & others) if p.any()]
    if not pools or not pools[0].any():
        raise ValueError("no pixel is clear of the mask")
    out: list[Point] = []
    for _ in range(count):
        r, c = _pick(pools[int(rng.integers(len(pools)))], rng)
        out.append((c + float(rng.random()), r + float(rng.random())))
    return out


def jitter_box(
    box: Sequence[float],
    rng: np.random.Generator,
    max_frac: float = BOX_JITTER,
    image_hw: tuple[int, int] | None = None,
) -> list[float]:
    """The xyxy box with each side moved by up to `max_frac` of the box's extent on that axis."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    dx0, dy0, dx1, dy1 = rng.uniform(-max_frac, max_frac, size=4)
    out = [x0 + dx0 * w, y0 + dy0 * h, x1 + dx1 * w, y1 + dy1 * h]
    if image_hw is not None:
        height, width = image_hw
        out = [
            min(max(v, 0.0), float(lim)) for v, lim in zip(out, (width, height, width, height), strict=True)
        ]
    return out


def _segment_inside(region: np.ndarray, a: tuple[int, int], b: tuple[int, int]) -> bool:
    steps = math.ceil(math.hypot(b[0] - a[0], b[1] - a[1]) * 2) + 2
    rr = np.rint(np.linspace(a[0], b[0], steps)).astype(int)
    cc = np.rint(np.linspace(a[1], b[1], steps)).astype(int)
    return bool(region[rr, cc].all())


def sample_scribble(mask: np.ndarray, rng: np.random.Generator) -> Scribble:
    """A 3-8 vertex polyline whose stroke stays inside the mask (thin masks get a 3 px pen)."""
    depth, r0, c0 = _depth(mask)
    width = int(rng.integers(SCRIBBLE_WIDTH[0], SCRIBBLE_WIDTH[1] + 1))
    region = depth >= width / 2.0 + 1.0
    if not region.any():
        width = SCRIBBLE_WIDTH[0]
        region = depth >= min(width / 2.0 + 1.0, float(depth.max()))
    vertices = [_pick(region, rng)]
    for _ in range(int(rng.integers(SCRIBBLE_VERTICES[0], SCRIBBLE_VERTICES[1] + 1)) - 1):
        nxt = vertices[-1]  # a mask too thin for any segment repeats the vertex
        for _ in range(12):
            cand = _pick(region, rng)
            if _segment_inside(region, vertices[-1], cand):
                nxt = cand
                break
        vertices.append(nxt)
    return Scribble([(c + c0 + 0.5, r + r0 + 0.5) for r, c in vertices], width)


def points_mask(
    points: Sequence[Point], height: int, width: int, half_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Union of squares around the points; GLEE's demo uses half-size (H//40, W//40), the default."""
    hy, hx = half_size or (max(1, height // 40), max(1, width // 40))
    out = np.zeros((height, width), bool)
    for x, y in points:
        r, c = math.floor(y), math.floor(x)
        out[max(r - hy, 0) : max(r + hy + 1, 0), max(c - hx, 0) : max(c + hx + 1, 0)] = True
    return out


def box_mask(box: Sequence[float], height: int, width: int) -> np.ndarray:
    """Pixels whose centre lies in the xyxy box (a mask's tight box maps back to that box exactly)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    out = np.zeros((height, width), bool)
    c0, c1 = max(math.ceil(x0 - 0.5), 0), min(math.floor(x1 - 0.5) + 1, width)
    r0, r1 = max(math.ceil(y0 - 0.5), 0), min(math.floor(y1 - 0.5) + 1, height)
    if c1 > c0 and r1 > r0:
        out[r0:r1, c0:c1] = True
    return out


def scribble_mask(scribble: Scribble, height: int, width: int) -> np.ndarray:
    """The scribble's stroke: the polyline drawn with a round pen of its width."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    pts = [(x - 0.5, y - 0.5) for x, y in scribble.points]  # PIL puts pixel centres on integers
    if len(pts) > 1:
        draw.line(pts, fill=1, width=scribble.width, joint="curve")
    r = (scribble.width - 1) / 2.0
    for x, y in pts:
        draw.ellipse((x - r, y - r, x + r, y + r), fill=1)
    return np.asarray(canvas, dtype=bool)
