"""Referring expressions of the spec's kinds that identify exactly one object.

Comparatives need a clear margin so that a reader who measures slightly differently (box centre versus
box edge, visible versus whole area) still picks the same object: a size superlative needs 1.2x the
visible area of every rival and the larger (smaller) whole area too; a position needs the extreme box
centre by POSITION_MARGIN pixels and the extreme box edge on that side as well.
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


def _is_largest(t: Candidate, rivals: Sequence[Candidate]) -> bool:
    return all(t.area >= SIZE_MARGIN * r.area and t.full_area > r.full_area for r in rivals)


def _is_smallest(t: Candidate, rivals: Sequence[Candidate]) -> bool:
    return all(t.area * SIZE_MARGIN <= r.area and t.full_area < r.full_area for r in rivals)


def _is_first(t: Candidate, rivals: Sequence[Candidate], axis: int) -> bool:
    """Clearly the most left (axis 0) or top (axis 1) of its rivals."""
    return all(
        _centre(t, axis) + POSITION_MARGIN <= _centre(r, axis) and t.box[axis] < r.box[axis] for r in rivals
    )


def _is_last(t: Candidate, rivals: Sequence[Candidate], axis: int) -> bool:
    """Clearly the most right (axis 0) or bottom (axis 1) of its rivals."""
    return all(
        _centre(t, axis) - POSITION_MARGIN >= _centre(r, axis) and t.box[axis + 2] > r.box[axis + 2]
        for r in rivals
    )


def phrases(target: Candidate, others: Sequence[Candidate]) -> list[str]:
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
        if not rivals:
            continue
        if _is_largest(target, rivals):
            out += [f"largest {noun}", f"biggest {noun}"]
        if _is_smallest(target, rivals):
            out.append(f"smallest {noun}")
        for word, test, axis in (
            ("leftmost", _is_first, 0),
            ("rightmost", _is_last, 0),
            ("topmost", _is_first, 1),
            ("bottommost", _is_last, 1),
        ):
            if test(target, rivals, axis):
                out.append(f"{word} {noun}")
    # "Exactly two" must hold with and without a distractor, so the other one must be annotated too.
    if len(same_shape) == 1 and same_shape[0].annotated:
        if _is_first(target, same_shape, 0):
            out.append(f"{target.shape} on the left")
        if _is_last(target, same_shape, 0):
            out.append(f"{target.shape} on the right")
    return out


def referring_expressions(candidates: Sequence[Candidate], rng: np.random.Generator) -> list[list[str]]:
    """Sentences per candidate (empty for distractors), each with "the" in front 75% of the time."""
    result: list[list[str]] = []
    for i, target in enumerate(candidates):
        if not target.annotated:
            result.append([])
            continue
        others = [c for j, c in enumerate(candidates) if j != i]
        result.append(
            [("the " if rng.random() < THE_PROBABILITY else "") + p for p in phrases(target, others)]
        )
    return result
