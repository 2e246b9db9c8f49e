"""Exact geometry of the six shapes and their rasterisation.

Every shape is a centre, a circumradius, a rotation and (star, cross) one proportion, so videos can move,
rotate and scale an object by changing four numbers. Non-convex shapes are unions of convex parts, which
lets a pixel test be a handful of half-plane comparisons on a sample grid (numpy, no polygon library).
Coverage is the fraction of sub-pixel samples inside the shape; a pixel belongs to the mask when at least
half its samples are inside, so the mask is exactly what the painter draws with alpha = coverage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from glee.data.spec import SHAPES


@dataclass(frozen=True)
class Shape:
    """One shape instance in image coordinates (pixel (r, c) spans [c, c+1) x [r, r+1)).

    radius: circumradius (circle radius; square half-diagonal; cross centre-to-arm-tip).
    angle: rotation in radians. ratio: star inner/outer radius, cross arm width / tip-to-tip size.
    """

    kind: str
    cx: float
    cy: float
    radius: float
    angle: float
    ratio: float = 0.0

    def parts(self) -> list[np.ndarray]:
        """Convex polygons (float64 [k,2] xy) whose union is the shape; empty for a circle."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        rot = np.array([[c, -s], [s, c]])
        return [
            part @ rot.T * self.radius + (self.cx, self.cy) for part in _unit_parts(self.kind, self.ratio)
        ]

    def bounds(self) -> tuple[float, float, float, float]:
        """Continuous xyxy extent of the exact shape."""
        if self.kind == "circle":
            r = self.radius
            return self.cx - r, self.cy - r, self.cx + r, self.cy + r
        pts = np.concatenate(self.parts())
        x0, y0 = pts.min(0)
        x1, y1 = pts.max(0)
        return float(x0), float(y0), float(x1), float(y1)


@dataclass(frozen=True)
class Raster:
    """Coverage of a shape on the pixel block starting at (x0, y0); may reach outside the image."""

    x0: int
    y0: int
    coverage: np.ndarray  # float32 [h, w] in [0, 1]

    @property
    def mask(self) -> np.ndarray:
        return self.coverage >= 0.5


def _regular(n: int, radius: float, start_deg: float) -> np.ndarray:
    a = np.deg2rad(start_deg + 360.0 * np.arange(n) / n)
    return np.stack([np.cos(a), np.sin(a)], 1) * radius


def _unit_parts(kind: str, ratio: float) -> tuple[np.ndarray, ...]:
    """Convex parts of the unit shape (circumradius 1, angle 0, centred on the origin)."""
    if kind == "circle":
        return ()
    if kind == "square":
        return (_regular(4, 1.0, 45.0),)
    if kind == "triangle":
        return (_regular(3, 1.0, -90.0),)
    if kind == "hexagon":
        return (_regular(6, 1.0, 0.0),)
    if kind == "star":
        outer = _regular(5, 1.0, -90.0)
        inner = _regular(5, ratio, -54.0)  # inner k sits between outer k and outer k+1
        tips = tuple(np.stack([inner[k - 1], outer[k], inner[k]]) for k in range(5))
        return (inner, *tips)
    if kind == "cross":
        h = ratio  # half arm width for a tip-to-tip size of 2
        return (
            np.array([[-1.0, -h], [1.0, -h], [1.0, h], [-1.0, h]]),
            np.array([[-h, -1.0], [h, -1.0], [h, 1.0], [-h, 1.0]]),
        )
    raise ValueError(f"unknown shape {kind!r}; known: {SHAPES}")


def sample_size(rng: np.random.Generator, low: float, high: float, log_uniform: bool) -> float:
    """An object size in [low, high]: uniform, or log-uniform (as many per octave, so more small ones).

    The spec fixes the range of box sides, not their distribution; a generator that draws sizes
    log-uniformly puts a third of its objects under 40 px where a uniform one puts a seventh. Training on
    both covers either reading.
    """
    if log_uniform:
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return float(rng.uniform(low, high))


def radius_limits(kind: str, ratio: float, side_min: float, side_max: float) -> tuple[float, float]:
    """Radius range whose box sides stay within [side_min, side_max] at every rotation (for videos)."""
    if kind == "circle":
        return side_min / 2.0, side_max / 2.0
    pts = np.concatenate(_unit_parts(kind, ratio))
    a = np.linspace(0.0, math.pi, 361)[:, None]
    xs = pts[:, 0] * np.cos(a) - pts[:, 1] * np.sin(a)
    ys = pts[:, 0] * np.sin(a) + pts[:, 1] * np.cos(a)
    sides = np.concatenate([np.ptp(xs, 1), np.ptp(ys, 1)])
    return side_min / float(sides.min()), side_max / float(sides.max())


def _sample_axis(start: int, count: int, ss: int) -> np.ndarray:
    return start + (np.arange(count * ss) + 0.5) / ss


def rasterize(shape: Shape, supersample: int = 1) -> Raster:
    """Coverage on the smallest pixel block holding the shape, from supersample^2 samples per pixel."""
    bx0, by0, bx1, by1 = shape.bounds()
    x0, y0 = math.floor(bx0), math.floor(by0)
    w, h = max(1, math.ceil(bx1) - x0), max(1, math.ceil(by1) - y0)
    xs = _sample_axis(x0, w, supersample)
    ys = _sample_axis(y0, h, supersample)
    if shape.kind == "circle":
        inside = ((ys - shape.cy) ** 2)[:, None] + ((xs - shape.cx) ** 2)[None, :] <= shape.radius**2
    else:
        inside = np.zeros((ys.size, xs.size), bool)
        for part in shape.parts():
            inside |= _inside_convex(part, xs, ys)
    count = inside.reshape(h, supersample, w, supersample).sum((1, 3), dtype=np.int32)
    return Raster(x0, y0, (count / float(supersample * supersample)).astype(np.float32))


def _inside_convex(poly: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Points of the grid xs x ys on the inner side of every edge (boundary counts as inside)."""
    edges = np.roll(poly, -1, 0) - poly
    orientation = 1.0 if float(np.sum(poly[:, 0] * edges[:, 1] - poly[:, 1] * edges[:, 0])) > 0 else -1.0
    inside = np.ones((ys.size, xs.size), bool)
    for (vx, vy), (ex, ey) in zip(poly, edges, strict=True):
        row = orientation * (ex * (ys - vy))
        col = orientation * (ey * (xs - vx))
        inside &= row[:, None] >= col[None, :]
    return inside


def paste(raster: Raster, height: int, width: int) -> np.ndarray:
    """The raster's mask placed on a height x width canvas (parts outside the canvas are dropped)."""
    out = np.zeros((height, width), bool)
    src, dst = overlap(raster, height, width)
    if src is not None:
        out[dst] = raster.mask[src]
    return out


def overlap(
    raster: Raster, height: int, width: int
) -> tuple[tuple[slice, slice] | None, tuple[slice, slice]]:
    """Matching (raster, canvas) slices of the part of the raster that lies on the canvas."""
    h, w = raster.coverage.shape
    cx0, cy0 = max(raster.x0, 0), max(raster.y0, 0)
    cx1, cy1 = min(raster.x0 + w, width), min(raster.y0 + h, height)
    dst = (slice(cy0, max(cy0, cy1)), slice(cx0, max(cx0, cx1)))
    if cx1 <= cx0 or cy1 <= cy0:
        return None, dst
    src = (slice(cy0 - raster.y0, cy1 - raster.y0), slice(cx0 - raster.x0, cx1 - raster.x0))
    return src, dst
