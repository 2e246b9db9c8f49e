"""``VideoPredictor``: online video tracking, RVOS and VOS on top of any image predictor (SAM-2 style API).

Each ``step`` runs the image model once on one frame and hands its output to the association rules in
``glee.model.tracker``; everything carried to the next frame is in the returned ``TrackState`` (a few KB,
see ``track_state``), so a streaming session can live in Redis between frames and continue anywhere.

Tasks:

* ``track``: ``detect(frame, categories)`` every frame; detections are associated with live tracks.
* ``rvos``: ``ground(frame, [expression], top_k=K)`` every frame; the referred object is kept by the
  temporal-consistency rule (score + λ·similarity to the previous selections) and, once lost for
  ``max_age`` frames, taken back by appearance, never replaced by another object.
* ``vos``: the first frame's prompt per object (``{"mask": bool HxW}``, ``{"box": ...}``,
  ``{"points": ..., "labels": ...}`` or ``{"scribble": ...}``) is the visual prompt; each later frame
  re-prompts the model with the object's *previous predicted mask* (its motion-predicted box when the
  mask is tiny, or while the object is lost; the whole frame once it has been lost for ``max_age``
  frames) and picks among the top-K candidates by confidence plus λ·similarity to the object's
  embedding memory and last box, no two objects taking one candidate (``select_exclusive``). Masks of
  different objects are made disjoint (a pixel goes to the more confident object), as VOS annotations are.

Deviation from GLEE's VOS training design, which re-uses the first frame's prompt *template features* on
every frame: those feature maps would make the session state hundreds of KB instead of a few KB, so the
state stores only the last mask (COCO RLE) and the embedding memory, and the prompt is re-derived from
the previous prediction each frame.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from glee.data.masks import mask_box
from glee.model.prompts import PromptError
from glee.model.track_state import TaskConfig, Track, TrackState, VideoTask
from glee.model.tracker import (
    associate,
    follow,
    miss,
    new_track,
    observe,
    predicted_box,
    searched,
    select_exclusive,
)
from glee.model.types import ImagePredictor, ImageResult

_PROMPT_KEYS = ("mask", "box", "points", "scribble")
#: Mask IoU at which two VOS objects are one: distinct objects' masks barely touch, while two prompts on
#: one object give masks that mostly agree.
_SAME_OBJECT_IOU = 0.5


@dataclass
class FrameResult(ImageResult):
    """One frame's output: the ``ImageResult`` fields plus ``track_ids`` (one int per row, stable across
    frames) and the index of the frame in its video."""

    track_ids: list[int] = field(default_factory=list)
    frame_index: int = 0


# Image-task settings that video tasks override (see ``VideoPredictor.__init__``).
VIDEO_SETTINGS: dict[str, object] = {"mask_guided_radius": None, "ground_mirror_weight": 0.0}


class VideoPredictor:
    """Streams frames through an image predictor and keeps object identities across them."""

    def __init__(self, predictor: ImagePredictor) -> None:
        # Video tasks keep bilinear masks: with the guided filter, the tight mask of a nearly hidden object
        # shrinks the box that a lost VOS track is re-prompted from, and a crossing object was not found
        # again (TRAINING.md, "Guided masks"). RVOS grounds every frame with one view: the mirrored one
        # left its first picks as they were and lowered the independent videos' J&F, at twice the images
        # per frame (TRAINING.md, "A second, mirrored view for grounding").
        cfg = getattr(predictor, "cfg", None)
        changes = {k: v for k, v in VIDEO_SETTINGS.items() if cfg is not None and getattr(cfg, k, v) != v}
        if changes:
            predictor = predictor.with_config(**changes)  # type: ignore[attr-defined]
        self.predictor = predictor

    @classmethod
    def load(cls, name_or_path: str | None = None, **kwargs: Any) -> VideoPredictor:
        """Load ``GleePredictor.load(name_or_path, **kwargs)`` (None: the embedded demo model)."""
        from glee.model import GleePredictor

        return cls(GleePredictor.load(name_or_path, **kwargs))

    def start(
        self,
        task: VideoTask = "track",
        categories: Iterable[str] | None = None,
        expression: str | None = None,
        score_threshold: float | None = None,
        **options: Any,
    ) -> TrackState:
        """A fresh session state; ``score_threshold`` None takes the task's default (``TaskConfig``);
        ``options`` are the other ``TaskConfig`` fields (``memory_size``, ``max_age``,
        ``temporal_weight`` (λ), gates, ``top_k``...). Texts the model cannot read raise ``InputError`` here,
        before the session exists, not on its first frame."""
        config = TaskConfig(
            task=task,
            categories=tuple(categories or ()),
            expression=expression,
            score_threshold=score_threshold,
            **options,
        )
        if config.categories:
            self.predictor.check_texts(list(config.categories), "categories")
        if config.expression is not None:
            self.predictor.check_texts([config.expression], "expression")
        return TrackState(config=config)

    def step(
        self, state: TrackState, frame: np.ndarray, prompts: Any = None
    ) -> tuple[TrackState, FrameResult]:
        """Process the next frame (HxWx3 uint8 RGB). Returns the new state and the frame's result; the
        given state is left untouched, so a caller may retry a frame from it.

        ``prompts`` (VOS only): one prompt dict, a list of them (new object ids follow the session's
        next id) or ``{object_id: prompt}``. Required on the first frame; on a later frame a prompt
        adds an object or re-initialises an existing one. A prompt that selects an object another id
        has raises ``PromptError``.
        """
        state = copy.deepcopy(state)
        frame = np.asarray(frame)
        size = (int(frame.shape[0]), int(frame.shape[1]))
        if state.image_size is None:
            state.image_size = size
        elif state.image_size != size:
            raise ValueError(f"frame size {size} differs from the session's {state.image_size}")
        index = state.frame_index
        cfg = state.config
        if cfg.task == "vos":
            return state, self._step_vos(state, frame, prompts)
        if prompts is not None:
            raise ValueError(f"prompts are only accepted by task 'vos', not {cfg.task!r}")
        if cfg.task == "track":
            det = self.predictor.detect(
                frame,
                list(cfg.categories),
                score_threshold=cfg.match_threshold,
                max_detections=cfg.max_detections,
            )
            ids = associate(state, det)
            rows = np.flatnonzero(ids >= 0)
            picks = [(det, int(r), _track(state, int(ids[r]))) for r in rows]
        else:
            det = self.predictor.ground(frame, [cfg.expression], top_k=cfg.top_k)[0]
            choice = follow(state, det)
            picks = [] if choice is None else [(det, choice, state.tracks[0])]
        return state, _frame_result(picks, [det.masks[r] for det, r, _ in picks], index, size, det)

    def run(
        self,
        frames: Iterable[np.ndarray],
        task: VideoTask = "track",
        categories: Iterable[str] | None = None,
        expression: str | None = None,
        prompts: Any = None,
        score_threshold: float | None = None,
        **options: Any,
    ) -> list[FrameResult]:
        """Offline: a whole clip in order (``prompts``, VOS only, apply to the first frame)."""
        state = self.start(task, categories, expression, score_threshold, **options)
        results = []
        for i, frame in enumerate(frames):
            state, result = self.step(state, frame, prompts if i == 0 else None)
            results.append(result)
        return results

    def _step_vos(self, state: TrackState, frame: np.ndarray, prompts: Any) -> FrameResult:
        cfg = state.config
        size = state.image_size
        assert size is not None
        index = state.frame_index
        new = _object_prompts(prompts, state.next_id, size)
        if not new and state.next_id == 1:
            raise ValueError("task 'vos' needs the prompt of at least one object on the first frame")
        kept = [t for t in state.tracks if t.track_id not in new]
        queries = list(new.values()) + [_reprompt(t, size, cfg) for t in kept]
        results = self.predictor.segment(frame, queries, top_k=cfg.top_k) if queries else []
        picks: list[tuple[ImageResult, int, Track]] = []
        masks: list[np.ndarray] = []
        for (obj_id, prompt), res in zip(new.items(), results, strict=False):
            if len(res) == 0:
                raise ValueError(f"the model returned no candidate for the prompt of object {obj_id}")
            track = new_track(state, res, 0, obj_id)
            mask = res.masks[0]
            if "mask" in prompt:
                mask = np.asarray(prompt["mask"], bool)
                if mask.any():
                    track.box = np.asarray(mask_box(mask), np.float32)
            picks.append((res, 0, track))
            masks.append(mask)
        if new:
            _refuse_shared_objects(dict(zip(new, masks, strict=True)), kept, results[len(new) :], cfg)
        for track, res, row in select_exclusive(kept, results[len(new) :], masks, cfg):
            if row is None:
                track.mask_rle = b""
                miss(state, track)
                continue
            observe(track, res, row, cfg)
            picks.append((res, row, track))
            masks.append(res.masks[row])
        masks = _disjoint(masks, [float(res.scores[r]) for res, r, _ in picks])
        for (_, _, track), mask in zip(picks, masks, strict=True):
            track.mask_rle = _encode(mask) if mask.sum() >= cfg.min_mask_area else b""
        state.frame_index += 1
        fallback = results[0] if results else None
        return _frame_result(picks, masks, index, size, fallback, state.embed_dim)


def _track(state: TrackState, track_id: int) -> Track:
    track = state.track(track_id)
    assert track is not None, f"track {track_id} was assigned but is not live"
    return track


def _frame_result(
    picks: list[tuple[ImageResult, int, Track]],
    masks: list[np.ndarray],
    frame_index: int,
    size: tuple[int, int],
    template: ImageResult | None,
    embed_dim: int = 0,
) -> FrameResult:
    """Stack the chosen rows (each from its own ImageResult) into a FrameResult, in track-id order (the
    choice order depends on confidence and on which objects were just prompted, which means nothing to a
    client); box and label come from the track (they equal the row's, except a VOS mask prompt's box,
    which is its given mask's)."""
    order = sorted(range(len(picks)), key=lambda i: picks[i][2].track_id)
    picks, masks = [picks[i] for i in order], [masks[i] for i in order]
    if not picks:
        dim = template.track_embeds.shape[1] if template is not None else embed_dim
        empty = FrameResult.empty(size[0], size[1], dim)
        empty.frame_index = frame_index
        return empty
    return FrameResult(
        boxes=np.stack([t.box for _, _, t in picks]).astype(np.float32),
        scores=np.asarray([res.scores[r] for res, r, _ in picks], np.float32),
        labels=[t.label for _, _, t in picks],
        masks=np.stack(masks).astype(bool),
        track_embeds=np.stack([res.track_embeds[r] for res, r, _ in picks]).astype(np.float32),
        query_index=np.asarray(
            [res.query_index[r] if len(res.query_index) == len(res) else -1 for res, r, _ in picks], np.int64
        ),
        track_ids=[t.track_id for _, _, t in picks],
        frame_index=frame_index,
    )


def _object_prompts(prompts: Any, next_id: int, size: tuple[int, int]) -> dict[int, dict]:
    """Normalise VOS prompts to ``{object_id: prompt}`` and check each has a known key."""
    if prompts is None:
        return {}
    if isinstance(prompts, Mapping) and any(k in prompts for k in _PROMPT_KEYS):
        prompts = [prompts]
    if isinstance(prompts, Mapping):
        by_id = {int(k): v for k, v in prompts.items()}
    else:
        by_id = {next_id + i: p for i, p in enumerate(prompts)}
    for obj_id, prompt in by_id.items():
        if obj_id < 1:
            raise ValueError(f"object ids must be positive integers, got {obj_id}")
        if not isinstance(prompt, Mapping) or not any(k in prompt for k in _PROMPT_KEYS):
            raise ValueError(f"prompt of object {obj_id} needs one of {_PROMPT_KEYS}")
        if "mask" in prompt and np.shape(prompt["mask"]) != size:
            raise ValueError(f"mask prompt of object {obj_id} is {np.shape(prompt['mask'])}, frame is {size}")
    return by_id


def _reprompt(track: Track, size: tuple[int, int], cfg: TaskConfig) -> dict:
    """The visual prompt that finds a followed object on the next frame: its last mask, else its box, or
    the whole frame while the object is ``searched`` for (its top-K candidates are then the frame's most
    salient objects, among which appearance picks)."""
    if track.mask_rle:
        rle = {"size": list(size), "counts": track.mask_rle}
        return {"mask": mask_utils.decode(rle).astype(bool)}
    h, w = size
    limits = np.array([w, h, w, h], np.float32)
    boxes = [] if searched(track, cfg) else [predicted_box(track), track.box]
    for box in boxes:
        clipped = np.clip(box, 0, limits)
        if clipped[2] - clipped[0] >= 1 and clipped[3] - clipped[1] >= 1:
            return {"box": clipped.tolist()}
    return {"box": [0.0, 0.0, float(w), float(h)]}


def _refuse_shared_objects(
    prompted: dict[int, np.ndarray], kept: list[Track], results: list[ImageResult], cfg: TaskConfig
) -> None:
    """Refuse a frame whose prompt selects an object that a followed object (seen on the previous frame)
    would take on this frame, or that another of its prompts selects. ``prompted``: each prompted object's
    mask; ``results``: the kept objects' candidates. Two ids on one object would fight over its pixels,
    which go to one of them (masks are disjoint), on every later frame; correcting a followed object is a
    prompt under its id."""
    followed = {
        track.track_id: res.masks[row]
        for track, res, row in select_exclusive(kept, results, [], cfg)
        if row is not None and track.mask_rle
    }
    ids = list(prompted) + list(followed)
    rles = [_rle(m) for m in [*prompted.values(), *followed.values()]]
    ious = np.asarray(mask_utils.iou(rles[: len(prompted)], rles, [0] * len(rles))).reshape(len(prompted), -1)
    for i, obj_id in enumerate(prompted):
        for j in np.flatnonzero(ious[i] >= _SAME_OBJECT_IOU):
            if j == i:
                continue
            if j < len(prompted):
                what = f"the prompts of objects {obj_id} and {ids[j]} select one object"
            else:
                what = f"the prompt of object {obj_id} selects the object followed as object {ids[j]}"
            raise PromptError(
                f"{what} (mask IoU {ious[i, j]:.2f}), and one object cannot have two ids; to correct a "
                "followed object, prompt it under its id"
            )


def _disjoint(masks: list[np.ndarray], scores: list[float]) -> list[np.ndarray]:
    """Give each pixel claimed by several objects to the most confident one."""
    if not masks:
        return []
    taken = np.zeros(masks[0].shape, bool)
    out = list(masks)
    for i in sorted(range(len(masks)), key=lambda i: -scores[i]):
        out[i] = masks[i] & ~taken
        taken |= out[i]
    return out


def _rle(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def _encode(mask: np.ndarray) -> bytes:
    return _rle(mask)["counts"]
