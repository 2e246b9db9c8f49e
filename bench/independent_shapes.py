#!/usr/bin/env python
"""Independent generator of demo-domain "shapes" data: images as COCO JSON with RefCOCO-style ``refs``,
videos as YouTube-VIS 2019 JSON with per-object RVOS ``expressions``.

Why it exists: the project's judges measure the embedded demo model on held-out scenes drawn by their
own generator that follows the demo-domain spec (design/demo-domain.md), not by the project's. To
measure the model the same way, this generator was written by a separate session from that spec text
alone, without reading the project's generator (``glee.data``), so its scenes are ones the model was
not built with. It must never import ``glee``, and it should not be "fixed" towards the project's
generator: where the two differ, that difference is what it is here to expose.

The spec in short: RGB images 256-512 px per side on a muted background (solid, linear gradient or
smooth noise; HSV saturation <= 0.35, value 0.25-0.85), optional pixel noise (sigma <= 8) and mild
blur (sigma <= 1 px); 1-8 objects in random z-order, six shapes (circle, square, triangle, 5-point
star, hexagon, cross) in eight named colours with +-25 jitter per channel, optional darker outline
<= 2 px, each box side 20-160 px, no object visible below 40% of its full area; annotations describe
the visible part. Referring expressions ("the" optional) name exactly one object: "<colour> <shape>",
"<shape>", "<colour> object/shape", "largest|biggest|smallest <shape>|object",
"leftmost|rightmost|topmost|bottommost <shape>|object", "<shape> on the left|right". Videos: 8-32
frames of one size, 1-6 objects moving at <= 8 px/frame plus jitter, rotating <= 5 deg and scaling
<= 2% per frame, crossing, occluding, entering and leaving (the 40% rule per frame: below it an object
is not annotated in that frame); occlusion gaps of at most 4 frames; RVOS expressions unique in the
first frame. Where the spec is silent, this generator's own choices are the constants under "own
choices" below, each with a comment.

Usage:
  python bench/independent_shapes.py images OUT -n N -s SEED
  python bench/independent_shapes.py videos OUT -n N -s SEED --frames-min A --frames-max B
  python bench/independent_shapes.py check OUT    # self-check an output folder (images or videos)

All randomness comes from numpy.random.default_rng (one generator per image / video, seeded with
SEED and the index), so output is reproducible.
"""

import argparse
import colorsys
import json
import math
import os
import sys
from collections import Counter
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils
from scipy import ndimage

# --------------------------------------------------------------------------- spec constants
SHAPES = ["circle", "square", "triangle", "star", "hexagon", "cross"]
CAT_ID = {s: i + 1 for i, s in enumerate(SHAPES)}
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 215, 40),
    "purple": (140, 60, 190),
    "orange": (250, 140, 30),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
}
COLOUR_NAMES = list(COLOURS)
COLOUR_JITTER = 25
BOX_MIN, BOX_MAX = 20, 160
VIS_FRAC = 0.40

# --------------------------------------------------------------------------- own choices
SS = 4  # supersampling factor for anti-aliased rendering
SIZE_LOG_RANGE = (22.0, 155.0)  # longest side of the full (unoccluded) box, log-uniform
OUTLINE_PROB = 0.5  # outline width 1 or 2 px, colour = fill * U(0.35, 0.65)
NOISE_PROB = 0.6  # gaussian pixel noise, sigma ~ U(0, 8)
BLUR_PROB = 0.3  # gaussian blur, sigma ~ U(0.3, 1.0)
# ambiguity margins used by the referring-expression resolver
AREA_RATIO = 1.25  # largest must be >= 1.25 x runner-up (smallest <= runner-up / 1.25)
POS_MARGIN_CENTROID = 15.0  # px between extreme and runner-up (mask centroid)
POS_MARGIN_EDGE = 8.0  # px between extreme and runner-up (box edge)
PAIR_MARGIN = 20.0  # px in centroid-x for "the <shape> on the left/right"
THE_DROP_PROB = 0.3  # probability a sentence omits the leading "the"
# video choices
V_SPEED_MAX = 8.0
V_JITTER = 1.0  # per-frame positional jitter, uniform [-1, 1] px per axis
V_ROT_MAX = 5.0  # deg / frame
V_SCALE_MAX = 0.02  # per-frame multiplicative scale change
V_MAX_GAP = 4  # max internal run of un-annotated frames
V_CROSS_PROB = 0.5  # prob. an object is aimed to cross a previous one


# =========================================================================== geometry
def unit_polygon(shape: str, theta: float, params: dict[str, float]) -> np.ndarray:
    """Vertices (k,2) of a shape with circumradius 1 centred at 0, rotated by theta (rad)."""
    if shape == "square":
        a = theta + np.pi / 4 + np.arange(4) * np.pi / 2
        pts = np.stack([np.cos(a), np.sin(a)], 1)
    elif shape == "triangle":
        a = theta - np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        pts = np.stack([np.cos(a), np.sin(a)], 1)
    elif shape == "hexagon":
        a = theta + np.arange(6) * np.pi / 3
        pts = np.stack([np.cos(a), np.sin(a)], 1)
    elif shape == "star":
        k = np.arange(10)
        rad = np.where(k % 2 == 0, 1.0, params["inner_ratio"])
        a = theta - np.pi / 2 + k * np.pi / 5
        pts = np.stack([rad * np.cos(a), rad * np.sin(a)], 1)
    elif shape == "cross":
        # arm width = arm_width * size; size (tip-to-tip) = 2 -> half width = arm_width
        hw = params["arm_width"]
        base = np.array(
            [
                [hw, -1],
                [hw, -hw],
                [1, -hw],
                [1, hw],
                [hw, hw],
                [hw, 1],
                [-hw, 1],
                [-hw, hw],
                [-1, hw],
                [-1, -hw],
                [-hw, -hw],
                [-hw, -1],
            ],
            float,
        )
        c, s = np.cos(theta), np.sin(theta)
        pts = base @ np.array([[c, s], [-s, c]])
    else:
        raise ValueError(shape)
    return pts


def unit_extent(shape: str, theta: float, params: dict[str, float]) -> tuple[float, float]:
    """Width and height of the shape's box at circumradius 1."""
    if shape == "circle":
        return 2.0, 2.0
    p = unit_polygon(shape, theta, params)
    return float(np.ptp(p[:, 0])), float(np.ptp(p[:, 1]))


def render_alpha(
    shape: str, cx: float, cy: float, r: float, theta: float, params: dict[str, float]
) -> tuple[np.ndarray, int, int]:
    """Anti-aliased coverage of the full shape. Returns (alpha float32 patch, x0, y0)."""
    m = 3
    x0 = math.floor(cx - r) - m
    y0 = math.floor(cy - r) - m
    size_w = math.ceil(cx + r) + m - x0
    size_h = math.ceil(cy + r) + m - y0
    img = Image.new("L", (size_w * SS, size_h * SS), 0)
    d = ImageDraw.Draw(img)
    lcx, lcy = (cx - x0) * SS, (cy - y0) * SS
    if shape == "circle":
        R = r * SS
        d.ellipse([lcx - R, lcy - R, lcx + R, lcy + R], fill=255)
    else:
        pts = unit_polygon(shape, theta, params) * r * SS + np.array([lcx, lcy])
        d.polygon([tuple(p) for p in pts], fill=255)
    a = np.asarray(img, dtype=np.float32).reshape(size_h, SS, size_w, SS).mean(axis=(1, 3)) / 255.0
    return a, x0, y0


def paste(canvas_shape: tuple[int, int], patch: np.ndarray, x0: int, y0: int, fill: float = 0) -> np.ndarray:
    """Place a patch into a full canvas (clipping at the image borders)."""
    H, W = canvas_shape
    out = np.full((H, W), fill, dtype=patch.dtype)
    ph, pw = patch.shape
    xa, ya = max(x0, 0), max(y0, 0)
    xb, yb = min(x0 + pw, W), min(y0 + ph, H)
    if xa < xb and ya < yb:
        out[ya:yb, xa:xb] = patch[ya - y0 : yb - y0, xa - x0 : xb - x0]
    return out


# =========================================================================== colours / background
def hsv2rgb_arr(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV (all in [0, 1]) to RGB on the 0-255 scale, channels last."""
    h = np.mod(h, 1.0)
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], -1) * 255.0


def muted_colour(rng: np.random.Generator) -> np.ndarray:
    """A random RGB colour (0-255) within the spec's muted background range."""
    h, s, v = rng.uniform(0, 1), rng.uniform(0, 0.35), rng.uniform(0.25, 0.85)
    return np.array(colorsys.hsv_to_rgb(h, s, v)) * 255.0


def is_muted(rgb: np.ndarray, tol: float = 0.005) -> bool:
    """Whether every given RGB colour (0-255) is within the muted range (saturation, value)."""
    rgb = np.asarray(rgb, float).reshape(-1, 3) / 255.0
    mx, mn = rgb.max(1), rgb.min(1)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-9), 0)
    return bool(np.all(sat <= 0.35 + tol) and np.all(mx >= 0.25 - tol) and np.all(mx <= 0.85 + tol))


def make_background(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, str]:
    """A float32 (height, width, 3) muted background and its kind (solid, gradient or noise)."""
    kind = ["solid", "gradient", "noise"][rng.integers(3)]
    if kind == "solid":
        c = muted_colour(rng)
        bg = np.broadcast_to(c, (height, width, 3)).astype(np.float32).copy()
    elif kind == "gradient":
        for _ in range(100):
            c1, c2 = muted_colour(rng), muted_colour(rng)
            t = np.linspace(0, 1, 65)[:, None]
            if is_muted(c1 * (1 - t) + c2 * t):
                break
        phi = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        proj = xx * np.cos(phi) + yy * np.sin(phi)
        t = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
        bg = (c1[None, None] * (1 - t[..., None]) + c2[None, None] * t[..., None]).astype(np.float32)
    else:
        # smooth low-frequency noise in HSV space around a muted base colour
        cell = rng.uniform(60, 160)
        gh, gw = max(2, round(height / cell) + 2), max(2, round(width / cell) + 2)
        fields = []
        for _ in range(3):
            g = rng.normal(size=(gh, gw))
            f = ndimage.zoom(g, (height / gh * 1.0001, width / gw * 1.0001), order=3)[:height, :width]
            f = f / max(np.abs(f).max(), 1e-6)
            fields.append(f)
        h0, s0, v0 = rng.uniform(0, 1), rng.uniform(0.05, 0.30), rng.uniform(0.35, 0.75)
        hh = h0 + rng.uniform(0.02, 0.10) * fields[0]
        ss = np.clip(s0 + rng.uniform(0.03, 0.12) * fields[1], 0, 0.35)
        vv = np.clip(v0 + rng.uniform(0.05, 0.18) * fields[2], 0.25, 0.85)
        bg = hsv2rgb_arr(hh, ss, vv).astype(np.float32)
    return bg, kind


def sample_object_colour(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """A colour name and its jittered RGB value (ints, 0-255)."""
    name = COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))]
    base = np.array(COLOURS[name])
    rgb = np.clip(base + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3), 0, 255)
    return name, rgb.astype(int)


def sample_shape_params(rng: np.random.Generator, shape: str) -> dict[str, float]:
    """Shape-specific parameters: the star's inner radius ratio, the cross's arm width."""
    p = {}
    if shape == "star":
        p["inner_ratio"] = float(rng.uniform(0.38, 0.5))
    if shape == "cross":
        p["arm_width"] = float(rng.uniform(0.28, 0.4))
    return p


def sample_outline(rng: np.random.Generator) -> dict[str, Any] | None:
    """An optional darker outline: width in px and the factor the fill colour is multiplied by."""
    if rng.uniform() < OUTLINE_PROB:
        return {"width": int(rng.integers(1, 3)), "darken": float(rng.uniform(0.35, 0.65))}
    return None


def size_to_radius(shape: str, theta: float, params: dict[str, float], size: float) -> float:
    """Circumradius that makes the longest side of the shape's box ``size`` px."""
    ew, eh = unit_extent(shape, theta, params)
    return size / max(ew, eh)


def object_layers(obj: dict[str, Any], height: int, width: int) -> dict[str, Any]:
    """Render an object at its pose: returns dict with full-canvas alpha, binary masks, colour patch."""
    a, x0, y0 = render_alpha(obj["shape"], obj["cx"], obj["cy"], obj["r"], obj["theta"], obj["params"])
    full_bin = a >= 0.5
    full_area = int(full_bin.sum())  # unclipped area (counts parts outside the image)
    ys, xs = np.nonzero(full_bin)
    full_box = (xs.min() + x0, ys.min() + y0, xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    # colour patch: flat fill, optional inner darker outline
    col = np.empty((*a.shape, 3), np.float32)
    col[:] = obj["rgb"]
    if obj["outline"] is not None:
        er = ndimage.binary_erosion(full_bin, iterations=obj["outline"]["width"])
        ring = full_bin & ~er
        # also darken the anti-aliased fringe so the outline looks continuous
        ring = ring | ((a > 0) & ~full_bin)
        col[ring] = np.asarray(obj["rgb"], np.float32) * obj["outline"]["darken"]
    return {
        "alpha": paste((height, width), a, x0, y0, 0.0),
        "mask": paste((height, width), full_bin, x0, y0, False),
        "colour": (col, x0, y0),
        "full_area": full_area,
        "full_box": full_box,
    }


def composite(bg: np.ndarray, layers_in_z_order: list[dict[str, Any]]) -> np.ndarray:
    """Alpha-blend the objects' colour layers over the background, bottom first (float image)."""
    img = bg.copy()
    H, W = bg.shape[:2]
    for L in layers_in_z_order:
        col, x0, y0 = L["colour"]
        colfull = np.stack([paste((H, W), col[..., c], x0, y0, 0.0) for c in range(3)], -1)
        a = L["alpha"][..., None]
        img = img * (1 - a) + colfull * a
    return img


def visible_masks(layers_in_z_order: list[dict[str, Any]]) -> list[np.ndarray]:
    """Visible mask of each layer: own mask minus the union of masks drawn above it."""
    n = len(layers_in_z_order)
    vis = [None] * n
    above = np.zeros_like(layers_in_z_order[0]["mask"]) if n else None
    for i in range(n - 1, -1, -1):
        m = layers_in_z_order[i]["mask"]
        vis[i] = m & ~above
        above = above | m
    return vis


def finish_image(
    rng_img: np.random.Generator, img: np.ndarray, blur_sigma: float, noise_sigma: float
) -> np.ndarray:
    """Optional blur, then optional Gaussian pixel noise; rounded to uint8."""
    if blur_sigma > 0:
        img = np.stack([ndimage.gaussian_filter(img[..., c], blur_sigma) for c in range(3)], -1)
    if noise_sigma > 0:
        img = img + rng_img.normal(0, noise_sigma, size=img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


# =========================================================================== masks -> annotations
def tight_box(m: np.ndarray) -> list[int] | None:
    """COCO [x, y, w, h] of the mask's pixels, or None for an empty mask."""
    ys = np.nonzero(m.any(1))[0]
    xs = np.nonzero(m.any(0))[0]
    if len(xs) == 0:
        return None
    return [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)]


def rle_of(m: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of a mask, with the counts as a str (JSON-ready)."""
    r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    r["counts"] = r["counts"].decode("ascii")
    return {"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"]}


def scene_features(m: np.ndarray) -> dict[str, Any]:
    """Features the referring-expression resolver uses (visible mask based)."""
    ys, xs = np.nonzero(m)
    b = tight_box(m)
    return {
        "area": len(xs),
        "cx": float(xs.mean()),
        "cy": float(ys.mean()),
        "x0": b[0],
        "y0": b[1],
        "x1": b[0] + b[2] - 1,
        "y1": b[1] + b[3] - 1,
        "box_area": b[2] * b[3],
    }


# =========================================================================== referring expressions
SUPER_SIZE = {"largest": +1, "biggest": +1, "smallest": -1}
SUPER_POS = {
    "leftmost": ("cx", "x0", -1),
    "rightmost": ("cx", "x1", +1),
    "topmost": ("cy", "y0", -1),
    "bottommost": ("cy", "y1", +1),
}


def _extreme(
    cands: list[int], objs: list[dict[str, Any]], keyfuncs_margins: list[tuple[str, int, float, str]]
) -> set[int]:
    """Given candidate indices and a list of (key, sign, margin, kind) return the set of
    indices that could plausibly be the extreme one (size 1 = unambiguous)."""
    if not cands:
        return set()
    if len(cands) == 1:
        return set(cands)
    possible = set()
    for key, sign, margin, kind in keyfuncs_margins:
        vals = {i: objs[i][key] for i in cands}
        best = max(vals.values()) if sign > 0 else min(vals.values())
        for i, v in vals.items():
            if kind == "ratio":
                close = (v * margin >= best) if sign > 0 else (v <= best * margin)
            else:
                close = (v >= best - margin) if sign > 0 else (v <= best + margin)
            if close:
                possible.add(i)
    return possible


def resolve(sentence: str, objs: list[dict[str, Any]]) -> set[int]:
    """Independent parser/resolver for the spec's referring-expression grammar.
    objs: list of dicts with keys shape, colour, area, box_area, cx, cy, x0, y0, x1, y1.
    Returns the set of object indices the sentence could refer to (ambiguity-aware)."""
    toks = sentence.strip().lower().split()
    if toks and toks[0] == "the":
        toks = toks[1:]
    allidx = list(range(len(objs)))

    def head_filter(word: str) -> list[int] | None:
        if word in ("object", "shape"):
            return allidx
        if word in SHAPES:
            return [i for i in allidx if objs[i]["shape"] == word]
        return None

    # "<shape> on the left|right"
    if (
        len(toks) == 4
        and toks[1] == "on"
        and toks[2] == "the"
        and toks[3] in ("left", "right")
        and toks[0] in SHAPES
    ):
        c = [i for i in allidx if objs[i]["shape"] == toks[0]]
        if len(c) != 2:
            return set(c) if len(c) > 2 else set()
        a, b = sorted(c, key=lambda i: objs[i]["cx"])
        if objs[b]["cx"] - objs[a]["cx"] < PAIR_MARGIN:
            return {a, b}

        # box centres must agree
        def box_centre(i: int) -> float:
            return (objs[i]["x0"] + objs[i]["x1"]) / 2

        if box_centre(b) - box_centre(a) < PAIR_MARGIN / 2:
            return {a, b}
        return {a} if toks[3] == "left" else {b}
    if len(toks) == 2 and toks[0] in SUPER_SIZE:
        c = head_filter(toks[1])
        if c is None:
            return set()
        sign = SUPER_SIZE[toks[0]]
        return _extreme(
            c, objs, [("area", sign, AREA_RATIO, "ratio"), ("box_area", sign, AREA_RATIO, "ratio")]
        )
    if len(toks) == 2 and toks[0] in SUPER_POS:
        c = head_filter(toks[1])
        if c is None:
            return set()
        ckey, ekey, sign = SUPER_POS[toks[0]]
        return _extreme(
            c, objs, [(ckey, sign, POS_MARGIN_CENTROID, "abs"), (ekey, sign, POS_MARGIN_EDGE, "abs")]
        )
    if len(toks) == 2 and toks[0] in COLOURS:
        if toks[1] in ("object", "shape"):
            return {i for i in allidx if objs[i]["colour"] == toks[0]}
        if toks[1] in SHAPES:
            return {i for i in allidx if objs[i]["colour"] == toks[0] and objs[i]["shape"] == toks[1]}
        return set()
    if len(toks) == 1 and toks[0] in SHAPES:
        return {i for i in allidx if objs[i]["shape"] == toks[0]}
    return set()


def candidate_sentences(
    rng: np.random.Generator, t: int, objs: list[dict[str, Any]]
) -> list[tuple[str, str]]:
    """All (kind, sentence-without-'the') candidates for target t; caller checks uniqueness."""
    o = objs[t]
    sh, co = o["shape"], o["colour"]
    n_shape = sum(1 for x in objs if x["shape"] == sh)
    out = [
        ("colour_shape", f"{co} {sh}"),
        ("shape", sh),
        ("colour_object", f"{co} {'object' if rng.uniform() < 0.5 else 'shape'}"),
    ]
    big = "largest" if rng.uniform() < 0.5 else "biggest"
    for head, ok in ((sh, n_shape >= 2), ("object", len(objs) >= 2)):
        if not ok:
            continue
        kind_sfx = "shape" if head != "object" else "object"
        out.append((f"size_{kind_sfx}", f"{big} {head}"))
        out.append((f"size_{kind_sfx}", f"smallest {head}"))
        for w in SUPER_POS:
            out.append((f"position_{kind_sfx}", f"{w} {head}"))
    if n_shape == 2:
        out.append(("pair_side", f"{sh} on the left"))
        out.append(("pair_side", f"{sh} on the right"))
    return out


def make_sentences(
    rng: np.random.Generator, t: int, objs: list[dict[str, Any]], annotated: list[bool]
) -> list[tuple[str, str]]:
    """Unique sentences for object t. objs = all objects with visible pixels (distractors too);
    annotated[i] says whether object i may be a target."""
    res = []
    if not annotated[t]:
        return res
    for kind, s in candidate_sentences(rng, t, objs):
        if resolve(s, objs) != {t}:
            continue
        # a superlative must also not pick a non-annotated (barely visible) object: covered by set
        sent = s if rng.uniform() < THE_DROP_PROB else "the " + s
        assert resolve(sent, objs) == {t}
        res.append((kind, sent))
    return res


# =========================================================================== images
def all_visible_enough(layers_in_z_order: list[dict[str, Any]]) -> bool:
    """Whether every object keeps >= VIS_FRAC of its full area visible, with a visible box in range."""
    for lay, v in zip(layers_in_z_order, visible_masks(layers_in_z_order), strict=True):
        if v.sum() < VIS_FRAC * lay["full_area"]:
            return False
        b = tight_box(v)
        if b is None or not (BOX_MIN <= b[2] <= BOX_MAX and BOX_MIN <= b[3] <= BOX_MAX):
            return False
    return True


def gen_one_image(rng: np.random.Generator) -> dict[str, Any]:
    """One image scene: the finished uint8 image, placed objects (bottom first), their layers,
    visible masks and resolver features."""
    W, H = int(rng.integers(256, 513)), int(rng.integers(256, 513))
    bg, bg_kind = make_background(rng, H, W)
    n_target = int(rng.integers(1, 9))
    placed = []  # objects in z-order (bottom first)
    layers = []
    for _ in range(n_target):
        for attempt in range(60):
            shape = SHAPES[rng.integers(len(SHAPES))]
            cname, rgb = sample_object_colour(rng)
            theta = float(rng.uniform(0, 2 * np.pi))
            params = sample_shape_params(rng, shape)
            Lmax = min(SIZE_LOG_RANGE[1], 0.6 * min(H, W))
            L = float(np.exp(rng.uniform(np.log(SIZE_LOG_RANGE[0]), np.log(Lmax))))
            if attempt >= 30:
                L = min(L, 60.0)  # crowded scene: try smaller objects
            r = size_to_radius(shape, theta, params, L)
            cx = float(rng.uniform(r + 2, W - r - 2))
            cy = float(rng.uniform(r + 2, H - r - 2))
            obj = {
                "shape": shape,
                "colour": cname,
                "rgb": [int(v) for v in rgb],
                "theta": theta,
                "params": params,
                "r": r,
                "cx": cx,
                "cy": cy,
                "outline": sample_outline(rng),
            }
            lay = object_layers(obj, H, W)
            fb = lay["full_box"]
            if not (BOX_MIN <= fb[2] <= BOX_MAX and BOX_MIN <= fb[3] <= BOX_MAX):
                continue
            if fb[0] < 0 or fb[1] < 0 or fb[0] + fb[2] > W or fb[1] + fb[3] > H:
                continue
            # new object goes on top (random z-order = random placement order)
            cand = [*layers, lay]
            if all_visible_enough(cand):
                placed.append(obj)
                layers.append(lay)
                break
        # an object that could not be placed is dropped: the scene just has fewer objects
    vis = visible_masks(layers)
    img = composite(bg, layers)
    blur = float(rng.uniform(0.3, 1.0)) if rng.uniform() < BLUR_PROB else 0.0
    noise = float(rng.uniform(0, 8)) if rng.uniform() < NOISE_PROB else 0.0
    img8 = finish_image(rng, img, blur, noise)
    feats = []
    for obj, v in zip(placed, vis, strict=True):
        f = scene_features(v)
        f.update(shape=obj["shape"], colour=obj["colour"])
        feats.append(f)
    return {
        "W": W,
        "H": H,
        "img": img8,
        "objs": placed,
        "layers": layers,
        "vis": vis,
        "feats": feats,
        "meta": {"background": bg_kind, "blur_sigma": blur, "noise_sigma": noise},
    }


def cmd_images(out: str, n: int, seed: int) -> None:
    """Write ``n`` images and annotations.json (COCO + refs) into ``out``."""
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    images, anns, refs = [], [], []
    ann_id, ref_id, sent_id = 1, 0, 0
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        sc = gen_one_image(rng)
        fname = f"{i:06d}.png"
        Image.fromarray(sc["img"]).save(os.path.join(out, "images", fname))
        img_id = i + 1
        images.append(
            {
                "id": img_id,
                "file_name": fname,
                "height": sc["H"],
                "width": sc["W"],
                "background": sc["meta"]["background"],
                "blur_sigma": round(sc["meta"]["blur_sigma"], 3),
                "noise_sigma": round(sc["meta"]["noise_sigma"], 3),
            }
        )
        ids = []
        for z, (obj, v, lay) in enumerate(zip(sc["objs"], sc["vis"], sc["layers"], strict=True)):
            anns.append(
                {
                    "id": ann_id,
                    "image_id": img_id,
                    "category_id": CAT_ID[obj["shape"]],
                    "bbox": tight_box(v),
                    "segmentation": rle_of(v),
                    "area": int(v.sum()),
                    "iscrowd": 0,
                    "attributes": {"colour": obj["colour"], "color": obj["colour"], "rgb": obj["rgb"]},
                    "z_order": z,
                    "full_area": lay["full_area"],
                }
            )
            ids.append(ann_id)
            ann_id += 1
        annotated = [True] * len(sc["objs"])
        for t in range(len(sc["objs"])):
            sents = make_sentences(rng, t, sc["feats"], annotated)
            if not sents:
                continue
            sd = []
            for kind, s in sents:
                sd.append({"sent": s, "raw": s, "tokens": s.split(), "sent_id": sent_id, "kind": kind})
                sent_id += 1
            refs.append(
                {
                    "ref_id": ref_id,
                    "image_id": img_id,
                    "ann_id": ids[t],
                    "category_id": CAT_ID[sc["objs"][t]["shape"]],
                    "split": "val",
                    "sentences": sd,
                    "sent_ids": [x["sent_id"] for x in sd],
                    "file_name": fname,
                }
            )
            ref_id += 1
        if (i + 1) % 50 == 0:
            print(f"images: {i + 1}/{n}", flush=True)
    data = {
        "info": {"description": "independent shapes generator (demo-domain.md)", "seed": seed},
        "images": images,
        "annotations": anns,
        "categories": [{"id": CAT_ID[s], "name": s, "supercategory": "shape"} for s in SHAPES],
        "colours": [{"name": k, "rgb": list(v)} for k, v in COLOURS.items()],
        "refs": refs,
    }
    with open(os.path.join(out, "annotations.json"), "w") as f:
        json.dump(data, f)
    print(f"wrote {len(images)} images, {len(anns)} annotations, {len(refs)} refs, {sent_id} sentences")


# =========================================================================== videos
# one rendered frame: the objects' layers and their visible masks, in z-order (bottom first)
Frame = tuple[list[dict[str, Any]], list[np.ndarray]]


def video_pose(o: dict[str, Any], t: int) -> tuple[float, float, float, float]:
    """Centre x, centre y, rotation (rad) and box size of a video object at frame t."""
    cx = o["p0"][0] + o["v"][0] * t + o["jit"][t][0]
    cy = o["p0"][1] + o["v"][1] * t + o["jit"][t][1]
    theta = o["theta0"] + np.deg2rad(o["omega"]) * t
    L = o["L0"] * (1.0 + o["g"]) ** t
    return cx, cy, theta, L


def sample_video_object(
    rng: np.random.Generator, height: int, width: int, n_frames: int, others: list[dict[str, Any]]
) -> dict[str, Any]:
    """A moving object: appearance, start pose, velocity, rotation and scale rates, per-frame jitter;
    with probability V_CROSS_PROB aimed so that it crosses one of ``others``."""
    shape = SHAPES[rng.integers(len(SHAPES))]
    cname, rgb = sample_object_colour(rng)
    params = sample_shape_params(rng, shape)
    theta0 = float(rng.uniform(0, 2 * np.pi))
    omega = float(rng.uniform(-V_ROT_MAX, V_ROT_MAX))
    g = float(rng.uniform(-V_SCALE_MAX, V_SCALE_MAX))
    Lmax = min(SIZE_LOG_RANGE[1], 0.5 * min(height, width))
    L0 = float(np.exp(rng.uniform(np.log(SIZE_LOG_RANGE[0] + 6), np.log(Lmax))))
    speed = float(rng.uniform(0, V_SPEED_MAX - V_JITTER))  # keep |v| + jitter near <= 8
    ang = rng.uniform(0, 2 * np.pi)
    v = (speed * math.cos(ang), speed * math.sin(ang))
    ta = int(rng.integers(0, n_frames))
    if others and rng.uniform() < V_CROSS_PROB:
        # aim at another object's position at frame ta so that they cross; make sure the two
        # objects move relative to each other (>= 3 px/frame) so an occlusion does not last long
        oth = others[rng.integers(len(others))]
        for _ in range(20):
            if math.hypot(v[0] - oth["v"][0], v[1] - oth["v"][1]) >= 3.0:
                break
            speed = float(rng.uniform(2.0, V_SPEED_MAX - V_JITTER))
            ang = rng.uniform(0, 2 * np.pi)
            v = (speed * math.cos(ang), speed * math.sin(ang))
        ta = int(rng.integers(max(0, n_frames // 4), max(1, (3 * n_frames) // 4 + 1)))
        ocx, ocy, _, _ = video_pose(oth, ta)
        ax, ay = ocx + rng.uniform(-20, 20), ocy + rng.uniform(-20, 20)
    else:
        ax, ay = rng.uniform(0.1 * width, 0.9 * width), rng.uniform(0.1 * height, 0.9 * height)
    p0 = (ax - v[0] * ta, ay - v[1] * ta)
    jit = rng.uniform(-V_JITTER, V_JITTER, size=(n_frames, 2))
    jit[0] = 0.0
    return {
        "shape": shape,
        "colour": cname,
        "rgb": [int(x) for x in rgb],
        "params": params,
        "theta0": theta0,
        "omega": omega,
        "g": g,
        "L0": L0,
        "v": v,
        "p0": p0,
        "jit": jit,
        "outline": sample_outline(rng),
    }


def frame_obj(o: dict[str, Any], t: int) -> dict[str, Any]:
    """The video object at frame t, in the form ``object_layers`` renders."""
    cx, cy, theta, L = video_pose(o, t)
    r = size_to_radius(o["shape"], theta, o["params"], L)
    return {
        "shape": o["shape"],
        "colour": o["colour"],
        "rgb": o["rgb"],
        "theta": theta,
        "params": o["params"],
        "r": r,
        "cx": cx,
        "cy": cy,
        "outline": o["outline"],
    }


def simulate(objs: list[dict[str, Any]], height: int, width: int, n_frames: int) -> list[Frame]:
    """Render all frames: per frame, the objects' layers and visible masks (in z-order)."""
    frames = []
    for t in range(n_frames):
        layers = [object_layers(frame_obj(o, t), height, width) for o in objs]
        vis = visible_masks(layers)
        frames.append((layers, vis))
    return frames


def track_ok(frames: list[Frame], k: int, n_frames: int) -> list[bool] | None:
    """Check per-object annotation pattern: full box size in range in every frame, annotated in
    >= 3 frames, internal gaps <= V_MAX_GAP. Returns list of annotated flags or None."""
    flags = []
    for t in range(n_frames):
        lay, vis = frames[t][0][k], frames[t][1][k]
        fb = lay["full_box"]
        if not (BOX_MIN <= fb[2] <= BOX_MAX and BOX_MIN <= fb[3] <= BOX_MAX):
            return None
        a = int(vis.sum())
        flags.append(a > 0 and a >= VIS_FRAC * lay["full_area"])
    on = [t for t, f in enumerate(flags) if f]
    if len(on) < 3:
        return None
    gap = 0
    for t in range(on[0], on[-1] + 1):
        gap = gap + 1 if not flags[t] else 0
        if gap > V_MAX_GAP:
            return None
    return flags


def size_stays_in_range(o: dict[str, Any], n_frames: int) -> bool:
    """Quick check that the object's full box keeps both sides inside the spec range in every frame."""
    for t in range(n_frames):
        _, _, th, size = video_pose(o, t)
        r = size_to_radius(o["shape"], th, o["params"], size)
        ew, eh = unit_extent(o["shape"], th, o["params"])
        if not (min(ew, eh) * r >= BOX_MIN + 1 and max(ew, eh) * r <= BOX_MAX - 1):
            return False
    return True


def gen_one_video(
    rng: np.random.Generator, n_frames: int
) -> tuple[int, int, np.ndarray, list[dict[str, Any]], list[Frame] | None, int]:
    """One video: width, height, background, objects (z-order), rendered frames (None without
    objects) and the number of objects aimed for. Objects whose track breaks the rules are dropped."""
    W, H = int(rng.integers(256, 513)), int(rng.integers(256, 513))
    bg, _ = make_background(rng, H, W)
    n_target = int(rng.integers(1, 7))
    objs = []
    for _ in range(n_target):
        for _attempt in range(25):
            o = sample_video_object(rng, H, W, n_frames, objs)
            if not size_stays_in_range(o, n_frames):
                continue
            z = int(rng.integers(0, len(objs) + 1))  # random depth among the objects so far
            cand = [*objs[:z], o, *objs[z:]]
            frames = simulate(cand, H, W, n_frames)
            flags_all = [track_ok(frames, j, n_frames) for j in range(len(cand))]
            if any(f is None for f in flags_all):
                continue
            objs = cand
            break
    frames = simulate(objs, H, W, n_frames) if objs else None
    return W, H, bg, objs, frames, n_target


def cmd_videos(out: str, n: int, seed: int, fmin: int, fmax: int) -> None:
    """Write ``n`` videos of ``fmin``-``fmax`` frames and annotations.json (YouTube-VIS 2019) into ``out``."""
    os.makedirs(os.path.join(out, "frames"), exist_ok=True)
    videos, anns = [], []
    ann_id = 1
    nexpr = 0
    for i in range(n):
        rng = np.random.default_rng([seed, 1_000_000 + i])
        T = int(rng.integers(fmin, fmax + 1))
        # a video needs at least one object annotated in frame 0 (for RVOS / VOS)
        for tries in range(20):  # noqa: B007 -- the count is reported after the loop
            W, H, bg, objs, frames, n_target = gen_one_video(rng, T)
            if not objs:
                continue
            flags = [track_ok(frames, k, T) for k in range(len(objs))]
            if all(f is not None for f in flags) and any(f[0] for f in flags):
                break
        else:
            raise RuntimeError("could not generate video")
        blur = float(rng.uniform(0.3, 1.0)) if rng.uniform() < BLUR_PROB else 0.0
        noise = float(rng.uniform(0, 8)) if rng.uniform() < NOISE_PROB else 0.0
        vname = f"vid_{i:05d}"
        os.makedirs(os.path.join(out, "frames", vname), exist_ok=True)
        fnames = []
        for t in range(T):
            img = composite(bg, frames[t][0])
            img8 = finish_image(rng, img, blur, noise)
            fn = f"{vname}/{t:05d}.jpg"
            Image.fromarray(img8).save(os.path.join(out, "frames", fn), quality=95)
            fnames.append(fn)
        vid_id = i + 1
        videos.append(
            {
                "id": vid_id,
                "name": vname,
                "file_names": fnames,
                "height": H,
                "width": W,
                "length": T,
                "background": "static",
                "blur_sigma": round(blur, 3),
                "noise_sigma": round(noise, 3),
            }
        )
        # first-frame scene for RVOS: every object with any visible pixel is a distractor
        vis0 = frames[0][1]
        present = [k for k in range(len(objs)) if vis0[k].sum() > 0]
        feats0 = []
        for k in present:
            f = scene_features(vis0[k])
            f.update(shape=objs[k]["shape"], colour=objs[k]["colour"])
            feats0.append(f)
        annotated0 = [flags[k][0] for k in present]
        for k, o in enumerate(objs):
            segs, boxes, areas = [], [], []
            for t in range(T):
                if flags[k][t]:
                    v = frames[t][1][k]
                    segs.append(rle_of(v))
                    boxes.append(tight_box(v))
                    areas.append(int(v.sum()))
                else:
                    segs.append(None)
                    boxes.append(None)
                    areas.append(None)
            exprs, kinds = [], []
            if k in present and flags[k][0]:
                # must be unique both among all visible objects of frame 0 and among the
                # annotated ones (so an object that is barely visible cannot change the answer)
                ann_list = [j for j in present if flags[j][0]]
                feats_ann = [feats0[present.index(j)] for j in ann_list]
                for kind, s in make_sentences(rng, present.index(k), feats0, annotated0):
                    if resolve(s, feats_ann) != {ann_list.index(k)}:
                        continue
                    exprs.append(s)
                    kinds.append(kind)
            nexpr += len(exprs)
            anns.append(
                {
                    "id": ann_id,
                    "video_id": vid_id,
                    "category_id": CAT_ID[o["shape"]],
                    "segmentations": segs,
                    "bboxes": boxes,
                    "areas": areas,
                    "iscrowd": 0,
                    "height": H,
                    "width": W,
                    "length": 1,
                    "attributes": {"colour": o["colour"], "color": o["colour"], "rgb": o["rgb"]},
                    "expressions": exprs,
                    "expression_kinds": kinds,
                    "z_order": k,
                    "motion": {
                        "velocity": [round(o["v"][0], 3), round(o["v"][1], 3)],
                        "rotation_deg_per_frame": round(o["omega"], 3),
                        "scale_per_frame": round(o["g"], 4),
                    },
                }
            )
            ann_id += 1
        print(f"video {i + 1}/{n}: T={T} {W}x{H} objs={len(objs)}/{n_target} tries={tries + 1}", flush=True)
    data = {
        "info": {
            "description": "independent shapes generator (demo-domain.md), YouTube-VIS 2019 style",
            "seed": seed,
        },
        "videos": videos,
        "annotations": anns,
        "categories": [{"id": CAT_ID[s], "name": s, "supercategory": "shape"} for s in SHAPES],
    }
    with open(os.path.join(out, "annotations.json"), "w") as f:
        json.dump(data, f)
    print(
        f"wrote {len(videos)} videos, {sum(v['length'] for v in videos)} frames, "
        f"{len(anns)} objects, {nexpr} expressions"
    )


# =========================================================================== self check
def decode_rle(seg: dict[str, Any]) -> np.ndarray:
    """Boolean mask of a JSON (str counts) COCO RLE."""
    return mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)


def annotation_features(m: np.ndarray, ann: dict[str, Any], catname: dict[int, str]) -> dict[str, Any]:
    """Resolver features of an annotated object, rebuilt from its mask and labels only."""
    f = scene_features(m)
    f.update(shape=catname[ann["category_id"]], colour=ann["attributes"]["colour"], id=ann["id"])
    return f


def resolves_to(sentence: str, feats: list[dict[str, Any]], ann_id: int) -> bool:
    """Whether the sentence names exactly one object, the one with annotation id ``ann_id``."""
    res = resolve(sentence, feats)
    return len(res) == 1 and feats[next(iter(res))]["id"] == ann_id


def has_internal_gap(segs: list[dict[str, Any] | None]) -> bool:
    """Whether a track has an unannotated frame between its first and last annotated frame."""
    on = [t for t, s in enumerate(segs) if s]
    return any(segs[t] is None for t in range(on[0], on[-1] + 1))


def check_images(d: dict[str, Any], catname: dict[int, str]) -> list[tuple[Any, ...]]:
    """Check an image dataset against the spec, print its statistics; returns the problems found."""
    problems = []
    byimg = {}
    for a in d["annotations"]:
        byimg.setdefault(a["image_id"], []).append(a)
    imgs = {im["id"]: im for im in d["images"]}
    for a in d["annotations"]:
        im = imgs[a["image_id"]]
        m = decode_rle(a["segmentation"])
        assert m.shape == (im["height"], im["width"])
        if tight_box(m) != a["bbox"]:
            problems.append(("bbox", a["id"]))
        if list(mask_utils.toBbox(a["segmentation"] | {"counts": a["segmentation"]["counts"].encode()})) != [
            float(x) for x in a["bbox"]
        ]:
            problems.append(("toBbox", a["id"]))
        if int(m.sum()) != a["area"]:
            problems.append(("area", a["id"]))
        if a["area"] < VIS_FRAC * a["full_area"]:
            problems.append(("vis", a["id"]))
        if not all(BOX_MIN <= s <= BOX_MAX for s in a["bbox"][2:]):
            problems.append(("boxside", a["id"], a["bbox"]))
    # overlapping visible masks must be disjoint
    for iid, al in byimg.items():
        tot = None
        for a in al:
            m = decode_rle(a["segmentation"])
            if tot is not None and (tot & m).any():
                problems.append(("overlap", iid))
            tot = m if tot is None else tot | m
    # re-resolve every sentence from annotations only
    kinds = Counter()
    feats_cache = {}
    for r in d["refs"]:
        iid = r["image_id"]
        if iid not in feats_cache:
            feats_cache[iid] = [
                annotation_features(decode_rle(a["segmentation"]), a, catname) for a in byimg[iid]
            ]
        for s in r["sentences"]:
            kinds[s["kind"]] += 1
            if not resolves_to(s["sent"], feats_cache[iid], r["ann_id"]):
                problems.append(("ref", r["ref_id"], s["sent"]))
    print(
        "images",
        len(d["images"]),
        "objects",
        len(d["annotations"]),
        "refs",
        len(d["refs"]),
        "sentences",
        sum(kinds.values()),
    )
    print("objects per category", Counter(catname[a["category_id"]] for a in d["annotations"]))
    print("objects per colour", Counter(a["attributes"]["colour"] for a in d["annotations"]))
    print(
        "objects per image",
        Counter(len(v) for v in byimg.values()),
        "images w/o objects",
        len(d["images"]) - len(byimg),
    )
    print("sentence kinds", dict(kinds))
    forms = Counter()
    for r in d["refs"]:
        for s in r["sentences"]:
            t = s["sent"].split()
            if t[0] == "the":
                t = t[1:]
            w = [("<shape>" if x in SHAPES else "<colour>" if x in COLOURS else x) for x in t]
            forms[" ".join(w)] += 1
    print("sentence forms", dict(forms))
    print("with 'the'", sum(1 for r in d["refs"] for s in r["sentences"] if s["sent"].startswith("the ")))
    print("backgrounds", Counter(im["background"] for im in d["images"]))
    sides = [s for a in d["annotations"] for s in a["bbox"][2:]]
    print("box side min/median/max", min(sides), float(np.median(sides)), max(sides))
    return problems


def check_videos(d: dict[str, Any], catname: dict[int, str]) -> list[tuple[Any, ...]]:
    """Check a video dataset against the spec, print its statistics; returns the problems found."""
    problems = []
    vids = {v["id"]: v for v in d["videos"]}
    kinds = Counter()
    nnull = 0
    small_sides = 0
    byvid = {}
    for a in d["annotations"]:
        byvid.setdefault(a["video_id"], []).append(a)
    for a in d["annotations"]:
        v = vids[a["video_id"]]
        assert len(a["segmentations"]) == len(a["bboxes"]) == len(a["areas"]) == v["length"]
        on = [t for t, s in enumerate(a["segmentations"]) if s is not None]
        if not on:
            problems.append(("empty track", a["id"]))
            continue
        gap = 0
        for t in range(on[0], on[-1] + 1):
            gap = gap + 1 if a["segmentations"][t] is None else 0
            if gap > V_MAX_GAP:
                problems.append(("gap", a["id"]))
        for t, s in enumerate(a["segmentations"]):
            if s is None:
                nnull += 1
                assert a["bboxes"][t] is None and a["areas"][t] is None
                continue
            m = decode_rle(s)
            if tight_box(m) != a["bboxes"][t] or int(m.sum()) != a["areas"][t]:
                problems.append(("box/area", a["id"], t))
            if min(a["bboxes"][t][2:]) < BOX_MIN:
                small_sides += 1
            if max(a["bboxes"][t][2:]) > BOX_MAX:
                problems.append(("big", a["id"], t))
        if a["expressions"] and a["segmentations"][0] is None:
            problems.append(("expr on absent", a["id"]))
        for k in a["expression_kinds"]:
            kinds[k] += 1
    # re-resolve expressions on frame 0 (annotated objects only: distractors below 40% are
    # not visible in the json, so this is a weaker check than at generation time)
    for al in byvid.values():
        fl = [
            annotation_features(decode_rle(a["segmentations"][0]), a, catname)
            for a in al
            if a["segmentations"][0] is not None
        ]
        for a in al:
            for e in a["expressions"]:
                if not resolves_to(e, fl, a["id"]):
                    problems.append(("expr", a["id"], e))
    nframes = sum(v["length"] for v in d["videos"])
    print(
        "videos",
        len(d["videos"]),
        "frames",
        nframes,
        "objects",
        len(d["annotations"]),
        "expressions",
        sum(len(a["expressions"]) for a in d["annotations"]),
    )
    print("lengths", sorted(v["length"] for v in d["videos"]))
    print("objects per video", Counter(len(v) for v in byvid.values()))
    print(
        "annotated object-frames",
        sum(len(a["segmentations"]) for a in d["annotations"]) - nnull,
        "null object-frames",
        nnull,
        "annotated boxes with a side < 20 (edge entries)",
        small_sides,
    )
    tracks = [a["segmentations"] for a in d["annotations"] if any(a["segmentations"])]
    print("objects with >=1 internal gap", sum(1 for segs in tracks if has_internal_gap(segs)))
    print(
        "objects absent in frame 0",
        sum(1 for a in d["annotations"] if a["segmentations"][0] is None),
        "objects absent in last frame",
        sum(1 for a in d["annotations"] if a["segmentations"][-1] is None),
    )
    print("expression kinds", dict(kinds))
    return problems


def cmd_check(out: str) -> int:
    """Self-check an output folder (images or videos) and print its statistics; 1 if problems were found."""
    with open(os.path.join(out, "annotations.json")) as f:
        d = json.load(f)
    catname = {c["id"]: c["name"] for c in d["categories"]}
    problems = check_images(d, catname) if "images" in d else check_videos(d, catname)
    print("problems", len(problems), problems[:20])
    return 0 if not problems else 1


def main(argv: list[str] | None = None) -> None:
    """Command line: images, videos or check."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("images")
    a.add_argument("out")
    a.add_argument("-n", type=int, default=200)
    a.add_argument("-s", "--seed", type=int, default=0)
    b = sub.add_parser("videos")
    b.add_argument("out")
    b.add_argument("-n", type=int, default=30)
    b.add_argument("-s", "--seed", type=int, default=0)
    b.add_argument("--frames-min", type=int, default=8)
    b.add_argument("--frames-max", type=int, default=32)
    c = sub.add_parser("check")
    c.add_argument("out")
    args = ap.parse_args(argv)
    if args.cmd == "images":
        cmd_images(args.out, args.n, args.seed)
    elif args.cmd == "videos":
        if not (1 <= args.frames_min <= args.frames_max):
            ap.error("need 1 <= frames-min <= frames-max")
        cmd_videos(args.out, args.n, args.seed, args.frames_min, args.frames_max)
    else:
        sys.exit(cmd_check(args.out))


if __name__ == "__main__":
    main()
