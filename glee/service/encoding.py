"""Mask and box encodings of the API: COCO RLE (pycocotools), polygons, PNG; xyxy or xywh boxes.

Coordinates follow the COCO convention: pixel (row r, column c) covers [c, c+1] x [r, r+1], so a
polygon rasterised by ``pycocotools.mask.frPyObjects`` reproduces the mask (holes filled: COCO polygons
cannot hold holes; ask for RLE or PNG when holes matter).
"""

from __future__ import annotations

import base64
import io

import contourpy
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from glee.service.errors import InvalidInputError
from glee.service.schemas import BoxFormat, Mask, MaskFormat, RleMask, RlePrompt


def encode_box(box_xyxy: np.ndarray, box_format: BoxFormat) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    values = (x1, y1, x2, y2) if box_format == "xyxy" else (x1, y1, x2 - x1, y2 - y1)
    return [round(v, 2) for v in values]


def encode_score(score: float) -> float:
    """A score to 4 significant digits: short JSON, and a small score stays distinguishable from 0
    (rounding to 4 decimals turned every score under 5e-5 into 0.0)."""
    return float(f"{float(score):.4g}")


def encode_mask(mask: np.ndarray, mask_format: MaskFormat) -> Mask:
    """One bool [H, W] mask in the requested format (``None`` for ``"none"``)."""
    if mask_format == "rle":
        return encode_rle(mask)
    if mask_format == "polygon":
        return mask_to_polygons(mask)
    if mask_format == "png":
        return encode_png(mask)
    return None


def encode_rle(mask: np.ndarray) -> RleMask:
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return RleMask(size=(int(rle["size"][0]), int(rle["size"][1])), counts=rle["counts"].decode("ascii"))


def decode_rle(rle: RlePrompt, height: int, width: int) -> np.ndarray:
    """A client-given RLE (a VOS mask prompt) -> bool [H, W]; it must match the frame size.

    The runs must cover exactly height x width pixels: pycocotools leaves the pixels after short counts
    uninitialised (random masks), so they are checked here first.
    """
    if tuple(rle.size) != (height, width):
        message = f"mask size {list(rle.size)} does not match the frame size [{height}, {width}]"
        raise InvalidInputError(message, code="invalid_prompt")
    try:
        covered = sum(rle.counts if isinstance(rle.counts, list) else _run_lengths(rle.counts))
    except ValueError as exc:
        raise InvalidInputError(f"mask RLE cannot be decoded: {exc}", code="invalid_prompt") from exc
    if covered != height * width:
        message = (
            f"mask RLE counts cover {covered} pixels, but its size {height}x{width} has {height * width}"
        )
        raise InvalidInputError(message, code="invalid_prompt")
    if isinstance(rle.counts, list):
        compressed = mask_utils.frPyObjects({"size": [height, width], "counts": rle.counts}, height, width)
    else:
        compressed = {"size": [height, width], "counts": rle.counts.encode("ascii")}
    return mask_utils.decode(compressed).astype(bool)


def _run_lengths(counts: str) -> list[int]:
    """The runs of a compressed COCO RLE string, decoded as pycocotools' ``rleFrString`` does: 5 bits
    per character (offset 48), 0x20 = more characters follow, 0x10 on the last one = negative; from the
    fourth run on, each value is a difference to the run two before."""
    runs: list[int] = []
    value = shift = 0
    for char in counts:
        bits = ord(char) - 48
        if not 0 <= bits < 64:
            raise ValueError(f"{char!r} cannot occur in RLE counts")
        value |= (bits & 0x1F) << shift
        shift += 5
        if bits & 0x20:
            continue
        if bits & 0x10:
            value -= 1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            raise ValueError(f"run {len(runs)} has a negative length")
        runs.append(value)
        value = shift = 0
    if shift:
        raise ValueError("the counts end in the middle of a number")
    return runs


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer contours as flat ``[x1, y1, x2, y2, ...]`` lists, collinear vertices removed."""
    if not mask.any():
        return []
    # Zero padding closes contours that touch the border; the 0.5 level runs between pixel centres.
    padded = np.pad(mask, 1).astype(np.float32)
    generator = contourpy.contour_generator(z=padded, fill_type=contourpy.FillType.OuterOffset)
    points, offsets = generator.filled(0.5, 2.0)
    polygons = []
    for ring_points, ring_offsets in zip(points, offsets, strict=True):
        # The first ring of each filled polygon is its outer boundary; it repeats its first vertex.
        ring = ring_points[ring_offsets[0] : ring_offsets[1] - 1] - 0.5
        before, after = np.roll(ring, 1, axis=0), np.roll(ring, -1, axis=0)
        turn = (ring[:, 0] - before[:, 0]) * (after[:, 1] - ring[:, 1]) - (ring[:, 1] - before[:, 1]) * (
            after[:, 0] - ring[:, 0]
        )
        ring = ring[np.abs(turn) > 1e-9]
        if len(ring) >= 3:
            polygons.append([round(float(v), 2) for v in ring.ravel()])
    return polygons


def encode_png(mask: np.ndarray) -> str:
    """Base64 of an 8-bit grayscale PNG, 255 inside the object."""
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
