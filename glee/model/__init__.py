"""PyTorch GLEE: model, checkpoint loading, predictors (images and video)."""

from glee.model.checkpoint import load_checkpoint
from glee.model.config import GleeConfig, get_config
from glee.model.glee import GleeModel, build_glee
from glee.model.predictor import GleePredictor, InputError
from glee.model.prompts import PromptError
from glee.model.track_state import TaskConfig, TrackState, TrackStateError
from glee.model.types import ImageResult, ImageTask
from glee.model.video_predictor import FrameResult, VideoPredictor

__all__ = [
    "FrameResult",
    "GleeConfig",
    "GleeModel",
    "GleePredictor",
    "ImageResult",
    "ImageTask",
    "InputError",
    "PromptError",
    "TaskConfig",
    "TrackState",
    "TrackStateError",
    "VideoPredictor",
    "build_glee",
    "get_config",
    "load_checkpoint",
]
