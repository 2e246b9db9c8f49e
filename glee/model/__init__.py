"""PyTorch GLEE: model, checkpoint loading, predictors (images and video).

Names are imported lazily so that ``glee --help`` and light users (e.g. the CLI registration) do not
pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GleeConfig": "glee.model.config",
    "get_config": "glee.model.config",
    "GleeModel": "glee.model.glee",
    "build_glee": "glee.model.glee",
    "load_checkpoint": "glee.model.checkpoint",
    "GleePredictor": "glee.model.predictor",
    "InputError": "glee.model.predictor",
    "PromptError": "glee.model.prompts",
    "ImageResult": "glee.model.types",
    "ImageTask": "glee.model.types",
    "TaskConfig": "glee.model.track_state",
    "TrackState": "glee.model.track_state",
    "TrackStateError": "glee.model.track_state",
    "FrameResult": "glee.model.video_predictor",
    "VideoPredictor": "glee.model.video_predictor",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'glee.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
