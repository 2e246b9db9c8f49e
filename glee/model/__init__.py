"""PyTorch GLEE: model, checkpoint loading, predictors (images and video)."""

from glee.model.checkpoint import load_checkpoint
from glee.model.config import GleeConfig, get_config
from glee.model.glee import GleeModel, build_glee
from glee.model.predictor import GleePredictor, InputError
from glee.model.prompts import PromptError
from glee.model.types import ImageResult, ImageTask

__all__ = [
    "GleeConfig",
    "GleeModel",
    "GleePredictor",
    "ImageResult",
    "ImageTask",
    "InputError",
    "PromptError",
    "build_glee",
    "get_config",
    "load_checkpoint",
]
