"""Still-image scenes of the shapes domain: sampling, occlusion bookkeeping and rendering.

A scene is a pure function of (seed, index): every random draw comes from one numpy Generator seeded
with both, so parallel workers reproduce exactly what a single process would produce.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from glee.data.expressions import Candidate, referring_expressions
from glee.data.geometry import Raster, Shape, paste, rasterize, sample_size
from glee.data.masks import mask_box
from glee.data.render import Appearance, finish, paint, sample_appearance, sample_background, sample_finish
from glee.data.spec import (
    BOX_SIDE,
    CATEGORY_IDS,
    CROSS_ARM_RATIO,
    IMAGE_SIDE,
    MIN_VISIBLE_FRACTION,
    OBJECTS_PER_IMAGE,
    SHAPES,
    STAR_INNER_RATIO,
)

_PLACEMENT_TRIES = 25
IMAGE_STREAM, VIDEO_STREAM = 0, 1


def scene_rng(seed: int, index: int, stream: int = IMAGE_STREAM) -> np.random.Generator:
    """The generator of item `index` of a dataset drawn with `seed` (independent of worker layout).

    `stream` keeps image and video datasets drawn with the same seed from sharing their draws.
    """
    return np.random.default_rng([seed, index, stream])


@dataclass(frozen=True)
class SceneConfig:
    """Sampling ranges of still images (defaults are the spec's)."""

    min_size: int = IMAGE_SIDE[0]
    max_size: int = IMAGE_SIDE[1]
    max_objects: int = OBJECTS_PER_IMAGE[1]
    ref_margins: bool = True  # comparatives only with a clear margin (glee.data.expressions)
    log_sizes: bool = False  # object sizes log-uniform instead of uniform (glee.data.geometry.sample_size)


@dataclass
class SceneObject:
    """One placed object: geometry, look, the whole-shape mask and the visible (annotated) mask."""

    shape: Shape
    look: Appearance
    raster: Raster
    full_mask: np.ndarray  # bool [H,W]
    visible: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))  # bool [H,W]
    full_area: int = field(init=False)

    def __post_init__(self) -> None:
        self.full_area = int(self.full_mask.sum())

    @property
    def category_id(self) -> int:
        return CATEGORY_IDS[self.shape.kind]

    @property
    def area(self) -> int:
        return int(self.visible.sum())

    @property
    def box(self) -> tuple[int, int, int, int]:
        return mask_box(self.visible)

    def candidate(self, annotated: bool = True) -> Candidate:
        return Candidate(self.shape.kind, self.look.colour, self.area, self.full_area, self.box, annotated)


@dataclass
class Scene:
    """A rendered image, its objects in z-order (bottom first) and each object's referring sentences."""

    image: np.ndarray  # uint8 [H,W,3]
    objects: list[SceneObject]
    expressions: list[list[str]]
    attributes: dict[str, object]


def sample_kind(rng: np.random.Generator) -> tuple[str, float]:
    """A shape name and its proportion (star inner ratio, cross arm ratio, else 0)."""
    kind = SHAPES[int(rng.integers(len(SHAPES)))]
    if kind == "star":
        return kind, float(rng.uniform(*STAR_INNER_RATIO))
    if kind == "cross":
        return kind, float(rng.uniform(*CROSS_ARM_RATIO))
    return kind, 0.0


def _box_ok(mask: np.ndarray) -> bool:
    x0, y0, x1, y1 = mask_box(mask)
    return BOX_SIDE[0] <= min(x1 - x0, y1 - y0) and max(x1 - x0, y1 - y0) <= BOX_SIDE[1]


def _sample_shape(
    rng: np.random.Generator, height: int, width: int, ss: int, log_sizes: bool
) -> tuple[Shape, Raster]:
    """A shape lying wholly inside the image whose rasterised box sides are within BOX_SIDE."""
    for _ in range(100):
        kind, ratio = sample_kind(rng)
        angle = 0.0 if kind == "circle" else float(rng.uniform(0.0, 2.0 * math.pi))
        ux0, uy0, ux1, uy1 = Shape(kind, 0.0, 0.0, 1.0, angle, ratio).bounds()
        radius = sample_size(rng, *BOX_SIDE, log_sizes) / max(ux1 - ux0, uy1 - uy0)
        if min(ux1 - ux0, uy1 - uy0) * radius < BOX_SIDE[0]:
            continue
        cx = float(rng.uniform(-ux0 * radius, width - ux1 * radius))
        cy = float(rng.uniform(-uy0 * radius, height - uy1 * radius))
        shape = Shape(kind, cx, cy, radius, angle, ratio)
        raster = rasterize(shape, ss)
        if _box_ok(raster.mask):
            return shape, raster
    raise RuntimeError("could not sample a shape within the box-size limits")


def assign_visibility(stack: list[SceneObject]) -> None:
    """Set each object's visible mask: its mask minus everything above it in z-order."""
    covered = np.zeros_like(stack[0].full_mask)
    for obj in reversed(stack):
        obj.visible = obj.full_mask & ~covered
        covered |= obj.full_mask


def _touches_same_colour(new: SceneObject, stack: list[SceneObject]) -> bool:
    """Whether the new object touches an object of its colour: their shared edge would be invisible."""
    same = [o for o in stack if o.look.colour == new.look.colour]
    if not same:
        return False
    halo = ndimage.binary_dilation(new.full_mask)
    return any((halo & o.full_mask).any() for o in same)


def generate_scene(seed: int, index: int, config: SceneConfig = SceneConfig()) -> Scene:
    """Scene `index` of the dataset drawn with `seed`."""
    rng = scene_rng(seed, index)
    height, width = (int(v) for v in rng.integers(config.min_size, config.max_size + 1, size=2))
    ss = 4 if rng.random() < 0.5 else 1
    background, bg_kind = sample_background(rng, height, width)
    stack: list[SceneObject] = []
    for _ in range(int(rng.integers(OBJECTS_PER_IMAGE[0], config.max_objects + 1))):
        for _ in range(_PLACEMENT_TRIES):
            shape, raster = _sample_shape(rng, height, width, ss, config.log_sizes)
            full = paste(raster, height, width)
            look = sample_appearance(rng, background[full].mean(0))
            new = SceneObject(shape, look, raster, full)
            if _touches_same_colour(new, stack):
                continue
            z = int(rng.integers(len(stack) + 1))
            trial = [*stack[:z], new, *stack[z:]]
            assign_visibility(trial)
            if all(o.area >= MIN_VISIBLE_FRACTION * o.full_area for o in trial):
                stack = trial
                break
    # Rejected trials overwrote the visible masks of the objects they shared with the stack.
    assign_visibility(stack)
    canvas = background.copy()
    for obj in stack:
        paint(canvas, obj.raster, obj.look)
    blur, noise = sample_finish(rng)
    attributes = {"background": bg_kind, "antialias": ss > 1, "blur_sigma": blur, "noise_sigma": noise}
    image = finish(canvas, rng, blur, noise)
    expressions = referring_expressions([o.candidate() for o in stack], rng, config.ref_margins)
    return Scene(image, stack, expressions, attributes)
