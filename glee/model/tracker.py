"""Online association of per-frame GLEE outputs into tracks (numpy + scipy only, no torch).

The official GLEE video path is offline MinVIS matching: 300 fixed slots for the whole clip, no births or
deaths. Streaming sessions need an online tracker whose state is small, so this keeps GLEE's association
signal — cosine similarity of the decoder's track embedding to a memory that is the mean of a track's last
k embeddings (k = 3 in GLEE) — and adds what MinVIS leaves out: a box IoU term against a constant-velocity
prediction (it separates look-alike objects, which the demo domain is full of), gates, births above a
score threshold, deaths after ``max_age`` unmatched frames (VOS: a whole-frame search instead), and mask
NMS of the detections first (two queries on the same visible pixels would otherwise feed two tracks).

The rules share one similarity ``embed_weight * cos + (1 - embed_weight) * IoU``:

* ``associate`` (task "track"): Hungarian assignment (scipy) of detections to all live tracks.
* ``follow`` (RVOS): per frame the candidate maximising ``grounding score + λ * similarity`` to the
  referred track. This is the temporal-consistency rule described for GLEE's unpublished RVOS inference,
  with the previous selection generalised to the memory of the last k selections (``memory_size=1`` gives
  exactly "similarity to the previous frame's selected query").
* ``select_candidate`` (inside ``follow``): the same rule for one object and its own candidates.
* ``select_exclusive`` (VOS): ``select_candidate`` for several objects at once, never two on one object.

A VOS object or the RVOS referent lost for more than ``max_age`` frames is ``searched`` for by appearance
alone; tracking's tracks die instead, and a later find starts a new one.

Functions that take a ``TrackState`` or ``Track`` update it in place; ``VideoPredictor.step`` hands them a
copy, so a caller's state is never changed.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from glee.data.masks import box_iou, mask_cover
from glee.model.track_state import TaskConfig, Track, TrackState
from glee.model.types import ImageResult

# Cost of a forbidden pair: larger than any real cost (1 - similarity <= 2), so Hungarian avoids it.
_FORBIDDEN = 1e6
# A velocity estimate blends the newest displacement with the previous estimate (exponential smoothing).
_VELOCITY_SMOOTHING = 0.5


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-6)


def memory(track: Track) -> np.ndarray:
    """A track's appearance memory: the normalised mean of its stored (last k) embeddings."""
    return _normalize(track.embeds.astype(np.float32).mean(axis=0))


def predicted_box(track: Track) -> np.ndarray:
    """Where the track's box should be on the next frame, by constant velocity over the frames missed."""
    return (track.box + track.velocity * np.float32(track.age + 1)).astype(np.float32)


def similarity(
    tracks: list[Track], boxes: np.ndarray, embeds: np.ndarray, cfg: TaskConfig
) -> tuple[np.ndarray, np.ndarray]:
    """``(sim, cos)``, both [T,N]: the combined similarity of tracks to detections and its cosine part."""
    if not tracks or len(boxes) == 0:
        shape = (len(tracks), len(boxes))
        return np.zeros(shape), np.zeros(shape)
    mems = np.stack([memory(t) for t in tracks]).astype(np.float64)
    cos = mems @ _normalize(embeds).astype(np.float64).T
    iou = box_iou(np.stack([predicted_box(t) for t in tracks]), boxes)
    return cfg.embed_weight * cos + (1.0 - cfg.embed_weight) * iou, cos


def gates(tracks: list[Track], cfg: TaskConfig) -> np.ndarray:
    """[T, 1] similarity gate per track: ``match_gate``, or ``lost_gate`` for a track missed last frame."""
    return np.asarray([[cfg.lost_gate if t.age else cfg.match_gate] for t in tracks], np.float64)


def new_track(state: TrackState, det: ImageResult, index: int, track_id: int | None = None) -> Track:
    """Start a track from detection row ``index`` (id: the next free one unless given) and add it."""
    if track_id is None:
        track_id = state.next_id
    state.next_id = max(state.next_id, track_id + 1)
    track = Track(
        track_id=track_id,
        label=det.labels[index],
        box=np.asarray(det.boxes[index], np.float32).copy(),
        velocity=np.zeros(4, np.float32),
        embeds=_normalize(det.track_embeds[index])[None].astype(np.float16),
        scores=np.asarray([det.scores[index]], np.float32),
    )
    state.tracks = [t for t in state.tracks if t.track_id != track_id] + [track]
    return track


def _translation(edges: np.ndarray, prior: np.ndarray | None) -> np.ndarray:
    """The object's motion from its box edges' per-frame motion ``[dx1, dy1, dx2, dy2]``: per axis the
    median of the two edges' motion and the ``prior`` velocity (the box centre's motion when there is none).

    Under partial occlusion or clipping one edge stops or retreats (a box shrinks as its object slides under
    another, or out of the image) while the other still moves with the object: the median then takes the
    moving edge; when both edges move apart or together (the visible part shrinks from both sides) it keeps
    the prior; when both agree on a new motion it takes that. Per-edge velocities would instead predict a
    box that shrinks, inverts and no longer overlaps the object when it reappears. Returned as
    ``[dx, dy, dx, dy]``, so a prediction keeps the box's size."""
    if prior is None:
        motion = (edges[:2] + edges[2:]) / np.float32(2)
    else:
        motion = np.median(np.stack([edges[:2], edges[2:], prior[:2]]), axis=0)
    return np.tile(motion, 2).astype(np.float32)


def observe(track: Track, det: ImageResult, index: int, cfg: TaskConfig) -> None:
    """Extend a track with detection row ``index``: box, motion, embedding memory, scores, label."""
    box = np.asarray(det.boxes[index], np.float32)
    edges = (box - track.box) / np.float32(track.age + 1)
    if track.hits == 1:
        track.velocity = _translation(edges, None)
    else:
        a = np.float32(_VELOCITY_SMOOTHING)
        step = _translation(edges, track.velocity)
        track.velocity = (a * step + (np.float32(1) - a) * track.velocity).astype(np.float32)
    track.box = box.copy()
    score = np.float32(det.scores[index])
    # Label hysteresis: a per-frame label flip only sticks when it beats the track's recent confidence.
    if det.labels[index] != track.label and score > track.scores.mean():
        track.label = det.labels[index]
    track.scores = np.append(track.scores, score)[-cfg.score_window :].astype(np.float32)
    embed = _normalize(det.track_embeds[index])[None].astype(np.float16)
    track.embeds = np.concatenate([track.embeds, embed])[-cfg.memory_size :]
    track.age = 0
    track.hits += 1


def searched(track: Track, cfg: TaskConfig) -> bool:
    """Whether a VOS object or the RVOS referent is searched for over the whole frame: missed for more
    than ``max_age`` frames."""
    return cfg.keeps_lost and track.age > cfg.max_age


def miss(state: TrackState, track: Track) -> None:
    """The track was not observed this frame: age it and drop it once it is older than ``max_age``
    (a VOS object or the RVOS referent is kept: it is ``searched`` for instead)."""
    track.age += 1
    if track.age > state.config.max_age and not state.config.keeps_lost:
        state.tracks = [t for t in state.tracks if t is not track]


def _candidates(det: ImageResult, cfg: TaskConfig) -> np.ndarray:
    """Rows worth associating, best score first: at or above ``match_threshold``, one row per query
    (detection may list a query under several labels), and none whose mask lies mostly inside a better
    row's or mostly covers it (more than ``mask_nms_overlap``)."""
    order = np.argsort(-det.scores, kind="stable")
    order = order[det.scores[order] >= cfg.match_threshold]
    if len(det.query_index) == len(det):
        _, first = np.unique(det.query_index[order], return_index=True)
        order = order[np.sort(first)]
    cover = mask_cover(det.masks[order], det.masks[order])
    overlap = np.maximum(cover, cover.T)
    keep: list[int] = []
    for i in range(len(order)):
        if not keep or overlap[i, keep].max() <= cfg.mask_nms_overlap:
            keep.append(i)
    return order[keep]


def associate(state: TrackState, det: ImageResult) -> np.ndarray:
    """One frame of multi-object tracking. Returns int64 [N]: the track id of each row of ``det``, or -1
    for rows that are not output (below threshold, duplicates, unmatched low-score rows)."""
    cfg = state.config
    ids = np.full(len(det), -1, np.int64)
    rows = _candidates(det, cfg)
    tracks = list(state.tracks)
    matched: set[int] = set()
    if tracks and len(rows):
        sim, cos = similarity(tracks, det.boxes[rows], det.track_embeds[rows], cfg)
        allowed = (sim >= gates(tracks, cfg)) & (cos >= cfg.embed_gate)
        t_idx, d_idx = linear_sum_assignment(np.where(allowed, 1.0 - sim, _FORBIDDEN))
        for t, d in zip(t_idx, d_idx, strict=True):
            if allowed[t, d]:
                observe(tracks[t], det, int(rows[d]), cfg)
                ids[rows[d]] = tracks[t].track_id
                matched.add(t)
    for t, track in enumerate(tracks):
        if t not in matched:
            miss(state, track)
    for r in rows:
        if ids[r] >= 0 or det.scores[r] < cfg.score_threshold:
            continue
        taken = ids >= 0
        if taken.any() and box_iou(det.boxes[r], det.boxes[taken]).max() >= cfg.nms_iou:
            continue
        ids[r] = new_track(state, det, int(r)).track_id
    state.frame_index += 1
    return ids


def candidate_totals(track: Track, det: ImageResult, cfg: TaskConfig) -> np.ndarray:
    """float64 [N]: ``score + temporal_weight * similarity`` of each row of ``det`` (one object's
    candidates) as a continuation of ``track``; -inf for rows failing the score or similarity gates.
    A ``searched`` object's box says nothing about where it is now, and its candidates' scores rate their
    fit to a whole-frame prompt (VOS) or to the expression (RVOS), not to the object: its similarity is
    the embedding cosine alone and its only gate ``reacquire_gate``."""
    if len(det) == 0:
        return np.zeros(0)
    sim, cos = similarity([track], det.boxes, det.track_embeds, cfg)
    if searched(track, cfg):
        sim, ok = cos[0], cos[0] >= cfg.reacquire_gate
    else:
        sim, ok = sim[0], (sim[0] >= gates([track], cfg)[0]) & (cos[0] >= cfg.embed_gate)
        ok &= det.scores >= cfg.match_threshold
    return np.where(ok, det.scores + cfg.temporal_weight * sim, -np.inf)


def select_candidate(track: Track, det: ImageResult, cfg: TaskConfig) -> int | None:
    """Row of ``det`` (one object's candidates) that continues ``track``: the best of
    ``candidate_totals``, or None when every row fails the gates."""
    return _best_row(candidate_totals(track, det, cfg))


def _best_row(totals: np.ndarray) -> int | None:
    """Index of the largest total, or None when every row was gated out (all -inf) or there are none."""
    return int(np.argmax(totals)) if np.isfinite(totals).any() else None


def select_exclusive(
    tracks: list[Track], results: list[ImageResult], claimed: list[np.ndarray], cfg: TaskConfig
) -> list[tuple[Track, ImageResult, int | None]]:
    """Each followed object's candidate row (None: not found), chosen so that objects do not share one.

    VOS objects are disjoint, but each object's candidates come from its own prompt, so two objects can
    pick the same physical object (a lost one re-prompted from a box that now covers its neighbour). The
    objects choose in order of their best ``candidate_totals``, after the newly prompted ones, and a
    candidate whose mask lies more than ``mask_nms_overlap`` inside pixels already claimed is skipped.
    Returned in the order of ``tracks``."""
    totals = [candidate_totals(t, r, cfg) for t, r in zip(tracks, results, strict=True)]
    best = [float(x.max()) if len(x) else -np.inf for x in totals]
    taken = np.any(np.stack(claimed), axis=0) if claimed else None
    rows: dict[int, int | None] = {}
    for i in sorted(range(len(tracks)), key=lambda i: -best[i]):
        res, total = results[i], totals[i].copy()
        if taken is not None and len(res):
            total[mask_cover(res.masks, taken[None])[:, 0] > cfg.mask_nms_overlap] = -np.inf
        row = _best_row(total)
        if row is not None:
            taken = res.masks[row] if taken is None else taken | res.masks[row]
        rows[i] = row
    return [(track, res, rows[i]) for i, (track, res) in enumerate(zip(tracks, results, strict=True))]


def follow(state: TrackState, det: ImageResult) -> int | None:
    """One frame of RVOS over ``det``, the expression's top-K candidates. Returns the output row or None.

    Before the referred object is found the grounding's top-1, row 0 (rows come in the model's grounding
    order), starts the track if its score reaches ``score_threshold``; afterwards ``select_candidate``
    keeps it temporally consistent. The referent is the object the expression named, so once found it is
    never replaced: lost for more than ``max_age`` frames it is ``searched`` for among the candidates by
    appearance, and until then the frames have no output. (Restarting from each frame's top-1 instead
    labelled background or another object with the expression while the referent was out of view.)
    """
    cfg = state.config
    state.frame_index += 1
    if not state.tracks:
        if len(det) == 0 or det.scores[0] < cfg.score_threshold:
            return None
        new_track(state, det, 0)
        return 0
    track = state.tracks[0]
    choice = select_candidate(track, det, cfg)
    if choice is None:
        miss(state, track)
    else:
        observe(track, det, choice, cfg)
    return choice
