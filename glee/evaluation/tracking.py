"""Multi-object tracking metrics (MOTA, IDF1, HOTA) computed by TrackEval's metric classes.

TrackEval's dataset loaders expect files in benchmark layouts; its metrics only need one dict per
sequence (ids re-numbered 0..K-1 plus a per-frame similarity matrix), which is built here directly
from in-memory frames. Evaluation is class-agnostic: identity and localisation are what is judged,
labels are judged by detection AP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TrackFrame:
    """One frame: ground-truth ids [G], predicted track ids [P] and their IoU matrix [G, P]."""

    gt_ids: np.ndarray
    pred_ids: np.ndarray
    similarity: np.ndarray


def _renumber(per_frame: Sequence[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Map arbitrary ids to 0..K-1 (TrackEval indexes arrays with them)."""
    unique = np.unique(
        np.concatenate([np.asarray(ids, np.int64) for ids in per_frame] + [np.zeros(0, np.int64)])
    )
    lookup = {int(v): i for i, v in enumerate(unique)}
    return [np.array([lookup[int(v)] for v in ids], np.int64) for ids in per_frame], len(unique)


def trackeval_sequence(frames: Sequence[TrackFrame]) -> dict[str, Any]:
    """The per-sequence dict that ``trackeval.metrics.*.eval_sequence`` consumes."""
    for t, frame in enumerate(frames):
        if np.shape(frame.similarity) != (len(frame.gt_ids), len(frame.pred_ids)):
            raise ValueError(f"frame {t}: similarity must be [len(gt_ids), len(pred_ids)]")
    gt_ids, num_gt_ids = _renumber([f.gt_ids for f in frames])
    pred_ids, num_pred_ids = _renumber([f.pred_ids for f in frames])
    return {
        "num_timesteps": len(frames),
        "num_gt_ids": num_gt_ids,
        "num_tracker_ids": num_pred_ids,
        "num_gt_dets": sum(len(ids) for ids in gt_ids),
        "num_tracker_dets": sum(len(ids) for ids in pred_ids),
        "gt_ids": gt_ids,
        "tracker_ids": pred_ids,
        "similarity_scores": [np.asarray(f.similarity, np.float64) for f in frames],
    }


def tracking_metrics(
    sequences: Sequence[Sequence[TrackFrame]], iou_threshold: float = 0.5
) -> dict[str, float]:
    """MOTA, IDF1 and HOTA (mean over TrackEval's alpha thresholds) combined over all sequences.

    Also returns the counts behind them (TP/FN/FP, ID switches, IDTP/IDFN/IDFP) so a regression can be
    traced to detection or to association.
    """
    if not sequences:
        raise ValueError("tracking_metrics needs at least one sequence")
    # trackeval is the optional ``eval`` extra: import it only when tracking is evaluated.
    from trackeval.metrics import CLEAR, HOTA, Identity

    clear = CLEAR({"THRESHOLD": iou_threshold, "PRINT_CONFIG": False})
    identity = Identity({"THRESHOLD": iou_threshold, "PRINT_CONFIG": False})
    hota = HOTA()
    per_metric: dict[str, dict[str, Any]] = {"clear": {}, "identity": {}, "hota": {}}
    for index, frames in enumerate(sequences):
        data = trackeval_sequence(frames)
        per_metric["clear"][index] = clear.eval_sequence(data)
        per_metric["identity"][index] = identity.eval_sequence(data)
        per_metric["hota"][index] = hota.eval_sequence(data)
    c = clear.combine_sequences(per_metric["clear"])
    i = identity.combine_sequences(per_metric["identity"])
    h = hota.combine_sequences(per_metric["hota"])
    return {
        "MOTA": float(c["MOTA"]),
        "IDF1": float(i["IDF1"]),
        "HOTA": float(np.mean(h["HOTA"])),
        "DetA": float(np.mean(h["DetA"])),
        "AssA": float(np.mean(h["AssA"])),
        "MOTP": float(c["MOTP"]),
        "TP": int(c["CLR_TP"]),
        "FN": int(c["CLR_FN"]),
        "FP": int(c["CLR_FP"]),
        "IDSW": int(c["IDSW"]),
        "IDTP": int(i["IDTP"]),
        "IDFN": int(i["IDFN"]),
        "IDFP": int(i["IDFP"]),
    }
