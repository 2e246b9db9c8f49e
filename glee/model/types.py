"""Result types shared by the predictors, the tracker, the evaluation harness and the service.

They hold numpy arrays only (never tensors), so that protocol adapters and metrics never touch torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np


@dataclass
class ImageResult:
    """Detections of one image (or one prompt / expression), in original-image pixel coordinates.

    boxes: float32 [N,4] xyxy; scores: float32 [N]; labels: N strings; masks: bool [N,H,W] at the
    original image size; track_embeds: float32 [N,D] (the decoder's track embedding of each kept query);
    query_index: int64 [N], which of the model's queries produced each row (for debugging and tracking).
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: list[str]
    masks: np.ndarray
    track_embeds: np.ndarray
    query_index: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def empty(cls, height: int, width: int, embed_dim: int) -> ImageResult:
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            labels=[],
            masks=np.zeros((0, height, width), bool),
            track_embeds=np.zeros((0, embed_dim), np.float32),
            query_index=np.zeros((0,), np.int64),
        )


TaskKind = Literal["detect", "ground", "segment"]


@dataclass
class ImageTask:
    """One image request as the engine hands it to a predictor's ``run_batch``.

    detect: ``categories`` -> one ImageResult; ground: ``expressions`` -> one top-1 ImageResult per
    expression; segment: ``prompts`` (points/labels, box or scribble dicts) -> one ImageResult per prompt.
    """

    kind: TaskKind
    image: np.ndarray
    categories: list[str] | None = None
    expressions: list[str] | None = None
    prompts: list[dict] | None = None
    score_threshold: float = 0.3
    max_detections: int = 100


class ImagePredictor(Protocol):
    """What video tracking and evaluation need from an image backend (PyTorch, ONNX Runtime, TensorRT)."""

    def detect(
        self,
        image: np.ndarray,
        categories: list[str],
        score_threshold: float = ...,
        max_detections: int = ...,
    ) -> ImageResult: ...

    def ground(self, image: np.ndarray, expressions: list[str], top_k: int = ...) -> list[ImageResult]: ...

    def segment(self, image: np.ndarray, prompts: list[dict], top_k: int = ...) -> list[ImageResult]: ...

    def check_texts(self, texts: list[str], name: str) -> None:
        """Raise ``InputError`` for texts the backend cannot read as given (a session checks its categories
        or expression when it starts, not on its first frame)."""
