"""Pixels of a scene: muted backgrounds, object appearance, painting and the final noise/blur pass.

Objects are painted with alpha = coverage, and their masks are coverage >= 0.5 (see geometry), so a mask
is exactly the set of pixels that show the object's colour more than the layer under it.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from glee.data.geometry import Raster, overlap
from glee.data.spec import (
    BACKGROUND_MAX_SATURATION,
    BACKGROUND_VALUE,
    BLUR_SIGMA_MAX,
    COLOUR_JITTER,
    COLOUR_NAMES,
    COLOURS,
    NOISE_SIGMA_MAX,
    OUTLINE_MAX_WIDTH,
)

BACKGROUND_KINDS = ("solid", "gradient", "noise")
# Limits a hair inside the spec so that rounding to uint8 cannot push a pixel out of it (at value 64,
# rounding max and min by half a level each moves the saturation by up to 0.016).
_SAT_LIMIT = BACKGROUND_MAX_SATURATION - 0.02
_VALUE_LIMITS = (BACKGROUND_VALUE[0] * 255 + 1.0, BACKGROUND_VALUE[1] * 255 - 1.0)
# An object is re-coloured when its fill is this close (RGB distance) to the background under it,
# because an invisible object is label noise, not a hard example.
MIN_CONTRAST = 40.0


@dataclass(frozen=True)
class Appearance:
    """How an object is painted: its colour name, jittered fill and optional darker outline."""

    colour: str
    fill: tuple[int, int, int]
    outline: tuple[int, int, int] | None
    outline_width: int


def mute(rgb: np.ndarray) -> np.ndarray:
    """Clamp HSV value and saturation of float RGB (0-255) pixels into the background range, keeping hue."""
    out = np.maximum(rgb.astype(np.float32), 0.0)
    mx = np.maximum(_channel_max(out), 1e-3)
    out *= np.clip(mx, *_VALUE_LIMITS) / mx
    mx = _channel_max(out)
    sat = (mx - _channel_min(out)) / mx
    shrink = np.minimum(1.0, _SAT_LIMIT / np.maximum(sat, 1e-6))
    return mx - (mx - out) * shrink


# Elementwise over the three channel planes: several times faster than numpy's reduce over a length-3 axis.
def _channel_max(rgb: np.ndarray) -> np.ndarray:
    return np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])[..., None]


def _channel_min(rgb: np.ndarray) -> np.ndarray:
    return np.minimum(np.minimum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])[..., None]


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    h, s = rng.random(), rng.uniform(0.0, BACKGROUND_MAX_SATURATION)
    v = rng.uniform(*BACKGROUND_VALUE)
    return np.array(colorsys.hsv_to_rgb(h, s, v), np.float32) * 255.0


def sample_background(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, str]:
    """A muted float32 [H,W,3] background: solid, linear gradient, or smooth low-frequency noise."""
    kind = BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))]
    if kind == "solid":
        return np.broadcast_to(mute(_muted_colour(rng)), (height, width, 3)).copy(), kind
    if kind == "gradient":
        c0, c1 = _muted_colour(rng), _muted_colour(rng)
        theta = rng.uniform(0.0, 2.0 * math.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        t = xx * math.cos(theta) + yy * math.sin(theta)
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        bg = c0 * (1.0 - t[..., None]) + c1 * t[..., None]
    else:
        gh, gw = (int(v) for v in rng.integers(2, 7, size=2))
        grid = np.stack([_muted_colour(rng) for _ in range(gh * gw)]).reshape(gh, gw, 3)
        planes = [Image.fromarray(np.ascontiguousarray(grid[..., c])) for c in range(3)]
        bg = np.stack([np.asarray(p.resize((width, height), Image.BICUBIC)) for p in planes], -1)
    return mute(bg), kind


def sample_appearance(
    rng: np.random.Generator, under: np.ndarray, names: Sequence[str] = COLOUR_NAMES
) -> Appearance:
    """Colour name (from `names`), jittered fill and outline; `under` is the mean RGB below the object."""
    for _ in range(16):
        name = names[int(rng.integers(len(names)))]
        jitter = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3)
        fill = np.clip(np.array(COLOURS[name]) + jitter, 0, 255)
        if float(np.linalg.norm(fill - under)) >= MIN_CONTRAST:
            break
    outline, width = None, 0
    if rng.random() < 0.3:
        width = int(rng.integers(1, OUTLINE_MAX_WIDTH + 1))
        outline = tuple(int(v) for v in np.round(fill * rng.uniform(0.45, 0.7)))
    return Appearance(name, (int(fill[0]), int(fill[1]), int(fill[2])), outline, width)


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return xx * xx + yy * yy <= radius * radius


def paint(canvas: np.ndarray, raster: Raster, look: Appearance) -> None:
    """Alpha-blend one object onto the float canvas in place; the outline is the mask's inner band."""
    src, dst = overlap(raster, canvas.shape[0], canvas.shape[1])
    if src is None:
        return
    colour = np.empty((*raster.coverage.shape, 3), np.float32)
    colour[:] = look.fill
    if look.outline is not None:
        # Eroding the whole raster (not the on-canvas crop) keeps the frame edge from drawing an outline.
        core = ndimage.binary_erosion(raster.mask, _disk(look.outline_width))
        colour[~core] = look.outline
    alpha = raster.coverage[src][..., None]
    canvas[dst] = canvas[dst] * (1.0 - alpha) + colour[src] * alpha


def sample_finish(rng: np.random.Generator) -> tuple[float, float]:
    """(blur sigma, noise sigma) of one image or video; 0 means off (blur 70%, noise 50% of the time)."""
    blur = rng.uniform(0.3, BLUR_SIGMA_MAX) if rng.random() < 0.3 else 0.0
    noise = rng.uniform(0.0, NOISE_SIGMA_MAX) if rng.random() < 0.5 else 0.0
    return float(blur), float(noise)


def finish(canvas: np.ndarray, rng: np.random.Generator, blur: float, noise: float) -> np.ndarray:
    """Blur, then add Gaussian pixel noise, then round to uint8."""
    out = ndimage.gaussian_filter(canvas, (blur, blur, 0)) if blur > 0 else canvas
    if noise > 0:
        out = out + rng.normal(0.0, noise, out.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
