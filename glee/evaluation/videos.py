"""Video evaluation runner over a YouTube-VIS 2019 JSON: tracking, RVOS and VOS.

Like the image runner it only uses the public ``VideoPredictor.run`` call, and reads the data with
``glee.data.readers``. Ground-truth objects are absent (``null``) in frames where they are occluded or
outside the image; they then contribute an empty mask to J&F and no ground-truth detection to the
tracking metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from glee.data.masks import mask_iou
from glee.data.readers import VideoObject, YtvisDataset
from glee.evaluation.iou import mask_pair_iou
from glee.evaluation.referring import expression_kind
from glee.evaluation.tracking import TrackFrame, tracking_metrics
from glee.evaluation.vos import DEFAULT_BOUND_TH, j_and_f, mean_j_and_f

VIDEO_TASKS = ("track", "rvos", "vos")
# An RVOS answer "found the referent" on the first frame at this mask IoU (REC's accuracy@0.5 on frame 0).
FIRST_FRAME_IOU = 0.5


class FrameOutput(Protocol):
    """The fields of a predictor's per-frame result that the runner reads."""

    track_ids: list[int]
    masks: np.ndarray


class VideoPredictorLike(Protocol):
    """The part of ``VideoPredictor`` the runner relies on."""

    def run(
        self,
        frames: list[np.ndarray],
        task: str = ...,
        categories: list[str] | None = ...,
        expression: str | None = ...,
        prompts: Any = ...,
        score_threshold: float | None = ...,
    ) -> Sequence[FrameOutput]: ...


def _mask_or_empty(mask: np.ndarray | None, height: int, width: int) -> np.ndarray:
    return np.zeros((height, width), bool) if mask is None else mask


def _track_frames(
    objects: Sequence[VideoObject], outputs: Sequence[FrameOutput], height: int, width: int
) -> list[TrackFrame]:
    """Tracking frames: ground-truth object ids vs predicted track ids, mask IoU as similarity."""
    frames = []
    for t, output in enumerate(outputs):
        present = [o for o in objects if o.masks[t] is not None]
        gt_masks = np.stack([o.masks[t] for o in present]) if present else np.zeros((0, height, width), bool)
        frames.append(
            TrackFrame(
                gt_ids=np.array([o.ann_id for o in present], np.int64),
                pred_ids=np.asarray(output.track_ids, np.int64),
                similarity=mask_iou(gt_masks, np.asarray(output.masks, bool)),
            )
        )
    return frames


def _track_mask(output: FrameOutput, track_id: int | None, height: int, width: int) -> np.ndarray:
    """The union of a frame's rows with ``track_id`` (``None`` = the top-1 row), empty if none."""
    masks = np.asarray(output.masks, bool)
    if track_id is None:
        return masks[0] if len(masks) else np.zeros((height, width), bool)
    rows = np.asarray(output.track_ids) == track_id
    return masks[rows].any(axis=0) if rows.any() else np.zeros((height, width), bool)


def evaluate_videos(
    video_predictor: VideoPredictorLike,
    ytvis_json_path: str | Path,
    frames_dir: str | Path,
    tasks: Iterable[str] = VIDEO_TASKS,
    limit: int | None = None,
    bound_th: float = DEFAULT_BOUND_TH,
    progress: Callable[[Iterable[Any]], Iterable[Any]] = iter,
    score_threshold: float | None = None,
) -> dict[str, Any]:
    """Run ``tasks`` on the first ``limit`` videos of the file; return the metrics as a JSON-ready dict.

    ``score_threshold`` is handed to every ``run`` (the predictor's default when None): the threshold a
    model's scores need differs from model to model, and tracking metrics depend on it.

    track -> MOTA / IDF1 / HOTA (class-agnostic, mask IoU >= 0.5), the model queried with the shape names;
    rvos -> J&F per (object, expression) over all frames, the top-1 mask of each frame; also per
    expression kind (``expression_kind``) and the share of expressions whose first-frame mask reaches
    IoU 0.5, which separates grounding errors (the wrong object from the start) from following errors;
    vos -> J&F per object present in the first frame, prompted with its first-frame mask as
    ``{object_id: {"mask": ...}}`` (ids 1..n); the given first frame is not scored.
    """
    tasks = tuple(tasks)
    unknown = set(tasks) - set(VIDEO_TASKS)
    if unknown:
        raise ValueError(f"unknown video tasks {sorted(unknown)}; choose from {VIDEO_TASKS}")
    dataset = YtvisDataset(ytvis_json_path, frame_root=frames_dir)
    categories = [dataset.categories[i] for i in sorted(dataset.categories)]
    count = min(len(dataset), limit or len(dataset))
    options = {} if score_threshold is None else {"score_threshold": score_threshold}

    track_sequences: list[list[TrackFrame]] = []
    rvos: list[dict[str, float]] = []
    rvos_kinds: list[str] = []
    rvos_first_hits: list[bool] = []
    vos: list[dict[str, float]] = []
    for index in progress(range(count)):
        video = dataset.get(index)
        h, w, frames = video.height, video.width, video.frames
        if "track" in tasks:
            outputs = video_predictor.run(frames, task="track", categories=categories, **options)
            track_sequences.append(_track_frames(video.objects, outputs, h, w))
        if "rvos" in tasks:
            for obj in video.objects:
                gt_masks = [_mask_or_empty(m, h, w) for m in obj.masks]
                for expression in obj.expressions:
                    outputs = video_predictor.run(frames, task="rvos", expression=expression, **options)
                    pred = [_track_mask(o, None, h, w) for o in outputs]
                    rvos.append(j_and_f(pred, gt_masks, bound_th))
                    rvos_kinds.append(expression_kind(expression))
                    rvos_first_hits.append(mask_pair_iou(pred[0], gt_masks[0]) >= FIRST_FRAME_IOU)
        first = [o for o in video.objects if o.masks[0] is not None]
        if "vos" in tasks and first and len(frames) > 1:
            # Explicit object ids (1..n) so that no convention on how ids are assigned is assumed.
            prompts = {k: {"mask": o.masks[0]} for k, o in enumerate(first, start=1)}
            outputs = video_predictor.run(frames, task="vos", prompts=prompts, **options)
            for k, obj in enumerate(first, start=1):
                pred = [_track_mask(o, k, h, w) for o in outputs[1:]]
                vos.append(j_and_f(pred, [_mask_or_empty(m, h, w) for m in obj.masks[1:]], bound_th))

    out: dict[str, Any] = {"videos": count}
    if "track" in tasks:
        out["track"] = tracking_metrics(track_sequences) if track_sequences else {"skipped": "no videos"}
    if "rvos" in tasks:
        out["rvos"] = _rvos_summary(rvos, rvos_kinds, rvos_first_hits)
    if "vos" in tasks:
        out["vos"] = mean_j_and_f(vos)
    return out


def _rvos_summary(
    per_expression: Sequence[dict[str, float]], kinds: Sequence[str], first_hits: Sequence[bool]
) -> dict[str, Any]:
    """Dataset J&F, the first-frame accuracy and J&F per expression kind."""
    out: dict[str, Any] = dict(mean_j_and_f(per_expression))
    out["first_frame_accuracy"] = float(np.mean(first_hits)) if len(first_hits) else None
    out["by_kind"] = {
        kind: mean_j_and_f([r for r, k in zip(per_expression, kinds, strict=True) if k == kind])
        for kind in sorted(set(kinds))
    }
    return out
