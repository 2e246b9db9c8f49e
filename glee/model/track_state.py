"""Everything a video session needs between two frames, and its compact, versioned byte format.

glee-serve keeps streaming sessions in Redis and writes the state after every frame, so the state holds
only what association needs: per track its id, label, recent scores, last box, a motion estimate, the
last ``memory_size`` L2-normalised track embeddings in fp16 and (VOS) the last mask as COCO RLE — plus
the frame counter and the task configuration. Never frames or feature maps: a session stays a few KB.

The in-memory state uses exactly the dtypes of the byte format (float32 boxes and scores, float16
embeddings, Python floats in the config), so continuing from ``from_bytes(to_bytes())`` is bit-identical
to continuing in memory.

Byte layout (little-endian), version 1::

    magic b"GLTS" | u16 version | u16 reserved (0) | u32 meta_len | u32 payload_len | u32 crc32
    meta: UTF-8 JSON {"config", "frame_index", "next_id", "image_size", "embed_dim", "labels"}
    payload, per track: i32 id, u32 age, u32 hits, u16 n_scores, u16 n_embeds, u32 mask_rle_len,
        f32[4] box, f32[4] velocity, f32[n_scores] scores, f16[n_embeds, embed_dim] embeds, mask RLE bytes
"""

from __future__ import annotations

import dataclasses
import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

FORMAT_VERSION = 1
MAGIC = b"GLTS"
_HEADER = struct.Struct("<4sHHIII")
_TRACK_HEADER = struct.Struct("<iIIHHI")
_F32 = np.dtype("<f4")
_F16 = np.dtype("<f2")

VideoTask = Literal["track", "rvos", "vos"]
VIDEO_TASKS: tuple[str, ...] = ("track", "rvos", "vos")


class TrackStateError(ValueError):
    """Raised when bytes are not a TrackState this build can read (wrong magic, version, size or CRC)."""


#: VOS's default match threshold and similarity weight (see ``TaskConfig``).
VOS_MATCH_THRESHOLD = 0.05
VOS_TEMPORAL_WEIGHT = 2.0


@dataclass(frozen=True)
class TaskConfig:
    """What a session does and every knob of its association rule; stored in the state so a resumed
    session (another process, another replica) behaves exactly like the one that started it.

    score_threshold: a detection starts a track (track, RVOS) only at or above it. Defaults to 0.3 for
        track and VOS and to 0 for RVOS: the expression names an object of the first frame, so that
        frame's top-1 is the answer however low its score (a 0.3 gate dropped 13 % of correct first
        frames of the demo model and cost 0.06 J&F, TRAINING.md); later frames are still gated by
        similarity.
    match_threshold: an existing track may continue on a detection at or above it (lower, so a track
        survives frames where the model is less sure); defaults to half of ``score_threshold``, and for VOS
        to ``VOS_MATCH_THRESHOLD`` (at most ``score_threshold``): a VOS object is given, and the score of its
        candidate, the fit to a prompt re-derived from the previous mask, drops when the object is partly
        hidden, while the similarity to the object (``temporal_weight``) still tells it apart.
    memory_size: k, the number of last embeddings whose mean is a track's memory (3 as in GLEE).
    max_age: frames a track survives unmatched before it dies (8 keeps IDs through 4-frame occlusions).
        A VOS object and the RVOS referent never die (the user named them, and they may come back): after
        ``max_age`` unmatched frames (default 2 for VOS, 8 for RVOS) they are searched for over the whole
        frame instead of near their motion-predicted box, which has drifted by then, and taken back by
        appearance alone (``reacquire_gate``), under the same id.
    embed_weight: weight of embedding cosine versus box IoU (to the motion-predicted box) in similarity.
    match_gate / embed_gate: a pair is never matched below this similarity / cosine. ``match_gate``
        defaults to 0.3 for track, so that appearance alone (cosine 0.75 at ``embed_weight`` 0.4) can
        re-identify a track whose motion prediction missed; and to 0.4 for VOS and RVOS, where the object
        is given and following a look-alike is worse than missing it until it reappears near its
        predicted box.
    lost_gate: the similarity gate of a track missed on the previous frame; defaults to the lower of
        ``match_gate`` and 0.3. A lost object's motion-predicted box is its least reliable cue: it keeps
        the size of the object's last visible remnant (the box shrinks from all sides as the object slides
        under another) and has been extrapolated since, so when the object comes out whole the overlap is
        small and appearance has to carry the match (at 0.3, a cosine of 0.75 does on its own).
    reacquire_gate: VOS and RVOS: the embedding cosine to its memory that a candidate needs to take back
        an object searched for over the whole frame (0.6 and 0.8 both scored lower than 0.7 for VOS on the
        independent generator's videos; TRAINING.md, "VOS objects are never dropped").
    temporal_weight: RVOS/VOS choose a candidate by ``score + temporal_weight * similarity`` (λ): 1 for
        RVOS, ``VOS_TEMPORAL_WEIGHT`` for VOS by default (with the lower match threshold, the pair raised VOS
        J&F by 0.02 on both generators' tuning videos; TRAINING.md, "VOS weighs similarity more").
    nms_iou: a would-be birth overlapping an already assigned detection this much is a duplicate query.
    mask_nms_overlap: of two detections sharing more than this fraction of the smaller mask's pixels, the
        lower-scoring one is dropped before association (1 turns it off): GLEE's masks are
        of visible pixels, which two objects do not share, so the second is a duplicate query, a query
        on a part of the object, or an occluded object's remnant that would keep that object's track
        alive in the occluder's place. VOS uses it too (``select_exclusive``): a followed object skips a
        candidate lying more than this fraction inside pixels another object has already taken.
    top_k: candidates per expression (RVOS) or per object prompt (VOS) asked from the image model.
    score_window: how many recent scores each track keeps (label hysteresis).
    min_mask_area: a VOS mask smaller than this (pixels) is re-prompted by its box instead.
    """

    task: VideoTask = "track"
    categories: tuple[str, ...] = ()
    expression: str | None = None
    score_threshold: float | None = None
    match_threshold: float | None = None
    memory_size: int = 3
    max_age: int | None = None
    embed_weight: float = 0.4
    match_gate: float | None = None
    embed_gate: float = 0.2
    lost_gate: float | None = None
    reacquire_gate: float = 0.7
    temporal_weight: float | None = None
    nms_iou: float = 0.5
    mask_nms_overlap: float = 0.7
    max_detections: int = 100
    top_k: int = 10
    score_window: int = 8
    min_mask_area: int = 16

    def __post_init__(self) -> None:
        if self.task not in VIDEO_TASKS:
            raise ValueError(f"unknown video task {self.task!r}; expected one of {VIDEO_TASKS}")
        object.__setattr__(self, "categories", tuple(self.categories))
        if self.task == "track" and not self.categories:
            raise ValueError("task 'track' needs categories")
        if self.task == "rvos" and not self.expression:
            raise ValueError("task 'rvos' needs an expression")
        if self.score_threshold is None:
            object.__setattr__(self, "score_threshold", 0.0 if self.task == "rvos" else 0.3)
        if self.match_threshold is None:
            half = self.score_threshold / 2
            vos = min(VOS_MATCH_THRESHOLD, self.score_threshold)
            object.__setattr__(self, "match_threshold", vos if self.task == "vos" else half)
        if self.temporal_weight is None:
            object.__setattr__(self, "temporal_weight", VOS_TEMPORAL_WEIGHT if self.task == "vos" else 1.0)
        if self.match_gate is None:
            object.__setattr__(self, "match_gate", 0.3 if self.task == "track" else 0.4)
        if self.lost_gate is None:
            object.__setattr__(self, "lost_gate", min(self.match_gate, 0.3))
        if self.max_age is None:
            object.__setattr__(self, "max_age", 2 if self.task == "vos" else 8)
        for name in (
            "score_threshold",
            "match_threshold",
            "embed_weight",
            "reacquire_gate",
            "nms_iou",
            "mask_nms_overlap",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.match_threshold > self.score_threshold:
            raise ValueError("match_threshold must not exceed score_threshold")
        for name, low in (("memory_size", 1), ("max_age", 0), ("max_detections", 1), ("top_k", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if not 1 <= self.score_window <= 0xFFFF or self.memory_size > 0xFFFF:
            raise ValueError("score_window and memory_size must fit in 16 bits")

    @property
    def keeps_lost(self) -> bool:
        """Whether a lost object is kept and searched for rather than dropped: VOS objects and the RVOS
        referent are the objects the user asked about, and a new one cannot take their place."""
        return self.task in ("vos", "rvos")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["categories"] = list(self.categories)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TaskConfig fields: {sorted(unknown)}")
        return cls(**data)


@dataclass(eq=False)
class Track:
    """One object followed through the video.

    box: float32 [4] xyxy of the last observation; velocity: float32 [4] estimated box motion per frame
    (a translation: ``[dx, dy, dx, dy]``);
    embeds: float16 [m <= memory_size, D], L2-normalised, oldest first; scores: float32 [n <= score_window],
    oldest first; age: frames since the last observation (0 = observed in the latest frame); hits: number
    of frames observed; mask_rle: VOS only, COCO RLE counts of the last mask (empty: re-prompt by box).
    """

    track_id: int
    label: str
    box: np.ndarray
    velocity: np.ndarray
    embeds: np.ndarray
    scores: np.ndarray
    age: int = 0
    hits: int = 1
    mask_rle: bytes = b""


@dataclass(eq=False)
class TrackState:
    """The whole state of one video session. ``frame_index`` is the index of the next frame to process;
    ``image_size`` (H, W) is fixed by the first frame; ``next_id`` is the id the next new track gets."""

    config: TaskConfig
    frame_index: int = 0
    next_id: int = 1
    image_size: tuple[int, int] | None = None
    tracks: list[Track] = field(default_factory=list)

    @property
    def embed_dim(self) -> int:
        return int(self.tracks[0].embeds.shape[1]) if self.tracks else 0

    def track(self, track_id: int) -> Track | None:
        return next((t for t in self.tracks if t.track_id == track_id), None)

    def to_bytes(self) -> bytes:
        dim = self.embed_dim
        meta = {
            "config": self.config.to_dict(),
            "frame_index": self.frame_index,
            "next_id": self.next_id,
            "image_size": list(self.image_size) if self.image_size else None,
            "embed_dim": dim,
            "labels": [t.label for t in self.tracks],
        }
        meta_bytes = json.dumps(meta, separators=(",", ":")).encode()
        parts: list[bytes] = []
        for t in self.tracks:
            if t.embeds.ndim != 2 or t.embeds.shape[1] != dim:
                raise ValueError(f"track {t.track_id}: embeds of shape {t.embeds.shape}, expected [m, {dim}]")
            head = (t.track_id, t.age, t.hits, len(t.scores), len(t.embeds), len(t.mask_rle))
            parts.append(_TRACK_HEADER.pack(*head))
            for arr, dtype in ((t.box, _F32), (t.velocity, _F32), (t.scores, _F32), (t.embeds, _F16)):
                parts.append(np.ascontiguousarray(arr, dtype=dtype).tobytes())
            parts.append(t.mask_rle)
        payload = b"".join(parts)
        crc = zlib.crc32(payload, zlib.crc32(meta_bytes))
        header = _HEADER.pack(MAGIC, FORMAT_VERSION, 0, len(meta_bytes), len(payload), crc)
        return header + meta_bytes + payload

    @classmethod
    def from_bytes(cls, data: bytes) -> TrackState:
        data = bytes(data)
        if len(data) < _HEADER.size:
            raise TrackStateError(f"TrackState too short: {len(data)} bytes, header alone is {_HEADER.size}")
        magic, version, _, meta_len, payload_len, crc = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise TrackStateError(f"not a TrackState (magic {magic!r}, expected {MAGIC!r})")
        if version != FORMAT_VERSION:
            raise TrackStateError(
                f"TrackState format version {version} is not supported (this build reads {FORMAT_VERSION})"
            )
        if len(data) != _HEADER.size + meta_len + payload_len:
            raise TrackStateError(
                f"TrackState size mismatch: header says {_HEADER.size + meta_len + payload_len} bytes, "
                f"got {len(data)}"
            )
        meta_bytes = data[_HEADER.size : _HEADER.size + meta_len]
        payload = data[_HEADER.size + meta_len :]
        if zlib.crc32(payload, zlib.crc32(meta_bytes)) != crc:
            raise TrackStateError("TrackState checksum mismatch (corrupted bytes)")
        try:
            meta = json.loads(meta_bytes)
            size = meta["image_size"]
            return cls(
                config=TaskConfig.from_dict(meta["config"]),
                frame_index=int(meta["frame_index"]),
                next_id=int(meta["next_id"]),
                image_size=(int(size[0]), int(size[1])) if size else None,
                tracks=_read_tracks(payload, meta["labels"], int(meta["embed_dim"])),
            )
        except (KeyError, IndexError, TypeError, ValueError, struct.error) as exc:
            raise TrackStateError(f"malformed TrackState: {exc}") from exc


def _read_tracks(payload: bytes, labels: list[str], dim: int) -> list[Track]:
    tracks: list[Track] = []
    offset = 0

    def take(count: int, dtype: np.dtype) -> np.ndarray:
        nonlocal offset
        size = count * dtype.itemsize
        if offset + size > len(payload):
            raise ValueError("payload truncated")
        arr = np.frombuffer(payload, dtype=dtype, count=count, offset=offset).astype(dtype.newbyteorder("="))
        offset += size
        return arr

    for label in labels:
        if offset + _TRACK_HEADER.size > len(payload):
            raise ValueError("payload truncated")
        track_id, age, hits, n_scores, n_embeds, rle_len = _TRACK_HEADER.unpack_from(payload, offset)
        offset += _TRACK_HEADER.size
        box, velocity, scores = take(4, _F32), take(4, _F32), take(n_scores, _F32)
        embeds = take(n_embeds * dim, _F16).reshape(n_embeds, dim)
        if offset + rle_len > len(payload):
            raise ValueError("payload truncated")
        mask_rle = payload[offset : offset + rle_len]
        offset += rle_len
        tracks.append(Track(track_id, label, box, velocity, embeds, scores, age, hits, mask_rle))
    if offset != len(payload):
        raise ValueError(f"{len(payload) - offset} unread payload bytes")
    return tracks
