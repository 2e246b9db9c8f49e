"""Constants of the "shapes" demo domain (design/demo-domain.md), in one place.

The generator, the expression builder, the readers and the tests all read these values, so a change to
the domain is a change here only. Category ids are fixed (1..6 in the spec's order) because trained
weights, packed caches and evaluation files all refer to them.
"""

from __future__ import annotations

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "cross")
CATEGORY_IDS: dict[str, int] = {name: i + 1 for i, name in enumerate(SHAPES)}
CATEGORIES: list[dict[str, object]] = [
    {"id": CATEGORY_IDS[name], "name": name, "supercategory": "shape"} for name in SHAPES
]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 215, 40),
    "purple": (140, 60, 190),
    "orange": (250, 140, 30),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
COLOUR_JITTER = 25

IMAGE_SIDE = (256, 512)
OBJECTS_PER_IMAGE = (1, 8)
OBJECTS_PER_VIDEO = (1, 6)
FRAMES_PER_VIDEO = (8, 32)
BOX_SIDE = (20, 160)
MIN_VISIBLE_FRACTION = 0.4

BACKGROUND_MAX_SATURATION = 0.35
BACKGROUND_VALUE = (0.25, 0.85)
NOISE_SIGMA_MAX = 8.0
BLUR_SIGMA_MAX = 1.0
OUTLINE_MAX_WIDTH = 2

STAR_INNER_RATIO = (0.38, 0.5)
CROSS_ARM_RATIO = (0.28, 0.4)

MAX_SPEED = 8.0  # px per frame, jitter included
MAX_ROTATION_DEG = 5.0  # per frame
MAX_SCALE_STEP = 0.02  # relative, per frame
MAX_TRACK_GAP = 4  # frames an object may be hidden between two annotated frames
