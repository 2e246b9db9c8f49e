"""Referring expressions of the spec's kinds that identify exactly one object.

By default comparatives need a clear margin, so that a reader who measures slightly differently (box
centre versus box edge, visible versus whole area) still picks the same object: a size superlative needs
SIZE_MARGIN x the visible area of every rival and the larger (smaller) whole area too; a position needs the
extreme box centre by POSITION_MARGIN pixels and the extreme box edge on that side as well. Without margins
(`margins=False`) a comparative holds wherever its literal reading is strict (visible area, box centre),
as a generator that follows the spec to the letter writes them: close calls included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SIZE_MARGIN = 1.2
POSITION_MARGIN = 10.0
THE_PROBABILITY = 0.75


@dataclass(frozen=True)
class Candidate:
    """What the expression builder knows of one object; `annotated` False marks a visible distractor."""

    shape: str
    colour: str
    area: float  # visible pixels
    full_area: float  # pixels of the whole shape
    box: tuple[float, float, float, float]  # xyxy of the visible mask
    annotated: bool = True


def _centre(c: Candidate, axis: int) -> float:
    return (c.box[axis] + c.box[axis + 2]) / 2.0


def _exceeds(a: Candidate, b: Candidate, sign: int, margins: bool) -> bool:
    """a is larger (sign 1) or smaller (sign -1) than b: clearly (both areas) or simply (visible area)."""
    if not margins:
        return sign * (a.area - b.area) > 0
    big, small = (a, b) if sign > 0 else (b, a)
    return big.area >= SIZE_MARGIN * small.area and big.full_area > small.full_area


def _beyond(a: Candidate, b: Candidate, axis: int, sign: int, margins: bool) -> bool:
    """a lies past b along x (axis 0) or y (1), towards larger (sign 1) or smaller (-1) coordinates:
    clearly, by box centre and that side's box edge, or simply, by box centre."""
    gap = sign * (_centre(a, axis) - _centre(b, axis))
    if not margins:
        return gap > 0
    edge = axis + 2 if sign > 0 else axis
    return gap >= POSITION_MARGIN and sign * (a.box[edge] - b.box[edge]) > 0


# Superlatives: word, the quantity compared (None: area; else the box axis) and its direction.
_SUPERLATIVES = (
    ("largest", None, 1),
    ("biggest", None, 1),
    ("smallest", None, -1),
    ("leftmost", 0, -1),
    ("rightmost", 0, 1),
    ("topmost", 1, -1),
    ("bottommost", 1, 1),
)


def _wins(target: Candidate, rivals: Sequence[Candidate], axis: int | None, sign: int, margins: bool) -> bool:
    if axis is None:
        return all(_exceeds(target, r, sign, margins) for r in rivals)
    return all(_beyond(target, r, axis, sign, margins) for r in rivals)


def phrases(target: Candidate, others: Sequence[Candidate], margins: bool = True) -> list[str]:
    """Every spec phrase (without "the") that singles out `target` among `others`."""
    same_shape = [o for o in others if o.shape == target.shape]
    same_colour = [o for o in others if o.colour == target.colour]
    out: list[str] = []
    if not any(o.colour == target.colour for o in same_shape):
        out.append(f"{target.colour} {target.shape}")
    if not same_shape:
        out.append(target.shape)
    if not same_colour:
        out += [f"{target.colour} object", f"{target.colour} shape"]
    for noun, rivals in (("object", list(others)), (target.shape, same_shape)):
        if rivals:
            out += [
                f"{w} {noun}" for w, axis, sign in _SUPERLATIVES if _wins(target, rivals, axis, sign, margins)
            ]
    # "Exactly two" must hold with and without a distractor, so the other one must be annotated too.
    if len(same_shape) == 1 and same_shape[0].annotated:
        for side, sign in (("left", -1), ("right", 1)):
            if _beyond(target, same_shape[0], 0, sign, margins):
                out.append(f"{target.shape} on the {side}")
    return out


def referring_expressions(
    candidates: Sequence[Candidate], rng: np.random.Generator, margins: bool = True
) -> list[list[str]]:
    """Sentences per candidate (empty for distractors), each with "the" in front 75% of the time."""
    result: list[list[str]] = []
    for i, target in enumerate(candidates):
        if not target.annotated:
            result.append([])
            continue
        others = [c for j, c in enumerate(candidates) if j != i]
        result.append(
            [("the " if rng.random() < THE_PROBABILITY else "") + p for p in phrases(target, others, margins)]
        )
    return result
