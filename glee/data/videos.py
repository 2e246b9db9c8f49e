"""Synthetic shape videos: moving, rotating, scaling objects over a static background.

Objects keep one colour each within a video (so no two identical-looking objects cross), a fixed z-order,
and box sides within the spec's 20-160 px at every rotation. A video is redrawn when it breaks what the
spec promises the tracker: some object annotated in the first frame, every object annotated at least
once, and no occlusion gap longer than MAX_TRACK_GAP frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from glee.data.expressions import Candidate, referring_expressions
from glee.data.geometry import Raster, Shape, paste, radius_limits, rasterize, sample_size
from glee.data.masks import mask_box
from glee.data.render import Appearance, finish, paint, sample_appearance, sample_background, sample_finish
from glee.data.scenes import VIDEO_STREAM, sample_kind, scene_rng
from glee.data.spec import (
    BOX_SIDE,
    CATEGORY_IDS,
    COLOUR_NAMES,
    FRAMES_PER_VIDEO,
    IMAGE_SIDE,
    MAX_ROTATION_DEG,
    MAX_SCALE_STEP,
    MAX_SPEED,
    MAX_TRACK_GAP,
    MIN_VISIBLE_FRACTION,
    OBJECTS_PER_VIDEO,
)

_JITTER = 1.0  # max per-axis jitter (px/frame); the base speed leaves room so the total stays <= MAX_SPEED
_BASE_SPEED = MAX_SPEED - math.sqrt(2.0) * _JITTER
_ENTER_PROBABILITY = 0.25


@dataclass(frozen=True)
class VideoConfig:
    """Sampling ranges of videos (defaults are the spec's)."""

    min_size: int = IMAGE_SIDE[0]
    max_size: int = IMAGE_SIDE[1]
    frames_min: int = FRAMES_PER_VIDEO[0]
    frames_max: int = FRAMES_PER_VIDEO[1]
    max_objects: int = OBJECTS_PER_VIDEO[1]
    ref_margins: bool = True  # comparatives only with a clear margin (glee.data.expressions)
    log_sizes: bool = False  # object sizes log-uniform instead of uniform (glee.data.geometry.sample_size)
    # Probability that an object (after the first) is aimed to pass through an earlier object's position
    # at a frame in the middle half of the video, so that the two cross and one occludes the other. The
    # spec allows crossings without saying how often; at 0 they happen only where random paths meet.
    crossing: float = 0.0


@dataclass
class Track:
    """One object through the video: geometry per frame, and its visible mask where annotated."""

    look: Appearance
    shapes: list[Shape]
    masks: list[np.ndarray | None]  # bool [H,W] where visible >= 40% of the whole shape, else None
    expressions: list[str]

    @property
    def category_id(self) -> int:
        return CATEGORY_IDS[self.shapes[0].kind]


@dataclass
class Video:
    """Frames and tracks (z-order, bottom first)."""

    frames: list[np.ndarray]  # uint8 [H,W,3] each
    tracks: list[Track]
    attributes: dict[str, object]


def _crossing_target(
    rng: np.random.Generator, paths: list[list[Shape]], frames: int, crossing: float
) -> tuple[np.ndarray, int] | None:
    """Where and when the next object should meet an earlier one, or None (no draws when crossing is 0)."""
    if crossing <= 0.0 or not paths or rng.random() >= crossing:
        return None
    other = paths[int(rng.integers(len(paths)))]
    t = int(rng.integers(frames // 4, 3 * frames // 4 + 1))
    return np.array([other[t].cx, other[t].cy]), t


def _trajectory(
    rng: np.random.Generator,
    frames: int,
    height: int,
    width: int,
    log_sizes: bool = False,
    target: tuple[np.ndarray, int] | None = None,
) -> list[Shape]:
    """Constant velocity plus bounded jitter, constant spin, and a scale drift that bounces off the limits.

    With a `target` (a position and a frame) the path passes through that position at that frame, up to
    the jitter, instead of through a random anchor.
    """
    kind, ratio = sample_kind(rng)
    rmin, rmax = radius_limits(kind, ratio, BOX_SIDE[0] + 1.0, BOX_SIDE[1] - 1.0)
    radius = sample_size(rng, rmin, rmax, log_sizes)
    angle = 0.0 if kind == "circle" else float(rng.uniform(0.0, 2.0 * math.pi))
    spin = 0.0 if kind == "circle" else math.radians(float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)))
    growth = float(rng.uniform(-MAX_SCALE_STEP, MAX_SCALE_STEP))
    heading, speed = float(rng.uniform(0.0, 2.0 * math.pi)), float(rng.uniform(0.0, _BASE_SPEED))
    velocity = np.array([math.cos(heading), math.sin(heading)]) * speed
    # Entering objects are inside the frame at a later anchor frame and start outside along their path.
    anchor_t = int(rng.integers(1, frames // 2 + 1)) if rng.random() < _ENTER_PROBABILITY else 0
    margin = min(radius, width / 2.0, height / 2.0)
    anchor = np.array([rng.uniform(margin, width - margin), rng.uniform(margin, height - margin)])
    if target is not None:
        anchor, anchor_t = target
    pos = anchor - velocity * anchor_t
    shapes = []
    for _ in range(frames):
        shapes.append(Shape(kind, float(pos[0]), float(pos[1]), radius, angle, ratio))
        pos = pos + velocity + rng.uniform(-_JITTER, _JITTER, size=2)
        angle += spin
        if not rmin <= radius * (1.0 + growth) <= rmax:
            growth = -growth
        radius *= 1.0 + growth
    return shapes


def _visibility(rasters: list[Raster], height: int, width: int) -> tuple[list[np.ndarray], list[bool]]:
    """Visible on-frame mask of each object (z-order bottom first) and whether it meets the 40% rule."""
    covered = np.zeros((height, width), bool)
    visible: list[np.ndarray] = []
    keep: list[bool] = []
    for raster in reversed(rasters):
        full = paste(raster, height, width)
        visible.append(full & ~covered)
        covered |= full
        area = int(visible[-1].sum())
        keep.append(area > 0 and area >= MIN_VISIBLE_FRACTION * int(raster.mask.sum()))
    return visible[::-1], keep[::-1]


def _gaps_ok(annotated: list[bool]) -> bool:
    """At least one annotated frame and no gap longer than MAX_TRACK_GAP between annotated frames."""
    idx = np.flatnonzero(annotated)
    return idx.size > 0 and bool(np.all(np.diff(idx) <= MAX_TRACK_GAP + 1))


def generate_video(seed: int, index: int, config: VideoConfig = VideoConfig()) -> Video:
    """Video `index` of the dataset drawn with `seed`."""
    rng = scene_rng(seed, index, VIDEO_STREAM)
    height, width = (int(v) for v in rng.integers(config.min_size, config.max_size + 1, size=2))
    frames = int(rng.integers(config.frames_min, config.frames_max + 1))
    ss = 4 if rng.random() < 0.5 else 1
    background, bg_kind = sample_background(rng, height, width)
    mean_bg = background.reshape(-1, 3).mean(0)
    for _ in range(100):
        count = int(rng.integers(OBJECTS_PER_VIDEO[0], config.max_objects + 1))
        names = [str(n) for n in rng.permutation(COLOUR_NAMES)[:count]]
        looks = [sample_appearance(rng, mean_bg, [n]) for n in names]
        paths: list[list[Shape]] = []
        for _ in range(count):
            target = _crossing_target(rng, paths, frames, config.crossing)
            paths.append(_trajectory(rng, frames, height, width, config.log_sizes, target))
        rasters = [[rasterize(p[t], ss) for p in paths] for t in range(frames)]
        per_frame = [_visibility(r, height, width) for r in rasters]
        annotated = [[keep[i] for _, keep in per_frame] for i in range(count)]
        if any(annotated[i][0] for i in range(count)) and all(_gaps_ok(a) for a in annotated):
            break
    else:
        raise RuntimeError("could not draw a video that satisfies the tracking constraints")
    blur, noise = sample_finish(rng)
    images = []
    for t in range(frames):
        canvas = background.copy()
        for raster, look in zip(rasters[t], looks, strict=True):
            paint(canvas, raster, look)
        images.append(finish(canvas, rng, blur, noise))
    visible0, keep0 = per_frame[0]
    present = [i for i in range(count) if visible0[i].any()]
    candidates = [
        Candidate(
            paths[i][0].kind,
            looks[i].colour,
            float(visible0[i].sum()),
            float(rasters[0][i].mask.sum()),
            mask_box(visible0[i]),
            keep0[i],
        )
        for i in present
    ]
    sentences = dict(zip(present, referring_expressions(candidates, rng, config.ref_margins), strict=True))
    tracks = [
        Track(
            looks[i],
            paths[i],
            [vis[i] if keep[i] else None for vis, keep in per_frame],
            sentences.get(i, []),
        )
        for i in range(count)
    ]
    attributes = {"background": bg_kind, "antialias": ss > 1, "blur_sigma": blur, "noise_sigma": noise}
    return Video(images, tracks, attributes)
