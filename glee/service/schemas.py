"""Typed requests and responses of the service: the REST JSON contract, reused by the gRPC adapter.

Requests forbid unknown fields so that a typo (``"score_treshold"``) is a 422 instead of a silently
ignored option. Schema problems (types, ranges, missing fields) are 422; problems only visible against
the image (a point outside it, a degenerate box) are checked by the engine and are 400.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    model_validator,
)

from glee.service.errors import SchemaValidationError

MaskFormat = Literal["rle", "polygon", "png", "none"]
BoxFormat = Literal["xyxy", "xywh"]
VideoTask = Literal["track", "rvos", "vos"]

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
XY = tuple[float, float]

IMAGE_FIELD_DOC = (
    "Base64-encoded image file (a data: URI prefix is accepted), or an http(s) URL when the server "
    "allows remote images. Omit it when the image is uploaded as the multipart part 'image'."
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OutputOptions(_Request):
    mask_format: MaskFormat = "rle"
    box_format: BoxFormat = "xyxy"


class RleMask(BaseModel):
    """COCO run-length encoding (pycocotools, column-major); ``size`` is [height, width]."""

    model_config = ConfigDict(extra="forbid")

    size: tuple[int, int]
    counts: str


class PointsPrompt(_Request):
    points: list[XY] = Field(min_length=1, max_length=512)
    labels: list[Literal[0, 1]] = Field(min_length=1, max_length=512)


class BoxPrompt(_Request):
    box: tuple[float, float, float, float]


class ScribblePrompt(_Request):
    scribble: list[XY] = Field(min_length=2, max_length=512)


class MaskPrompt(_Request):
    mask: RleMask


def _prompt_kind(value: Any) -> str | None:
    """A prompt's kind is the key it carries, so errors name the right schema instead of every one."""
    fields = vars(value) if isinstance(value, BaseModel) else value
    if not isinstance(fields, dict):
        return None
    return next((kind for kind in ("points", "box", "scribble", "mask") if kind in fields), None)


ImagePrompt = Annotated[
    Annotated[PointsPrompt, Tag("points")]
    | Annotated[BoxPrompt, Tag("box")]
    | Annotated[ScribblePrompt, Tag("scribble")],
    Discriminator(
        _prompt_kind,
        custom_error_type="prompt_kind",
        custom_error_message="a prompt is an object with 'points' and 'labels', 'box', or 'scribble'",
    ),
]
VideoPrompt = Annotated[
    Annotated[PointsPrompt, Tag("points")]
    | Annotated[BoxPrompt, Tag("box")]
    | Annotated[ScribblePrompt, Tag("scribble")]
    | Annotated[MaskPrompt, Tag("mask")],
    Discriminator(
        _prompt_kind,
        custom_error_type="prompt_kind",
        custom_error_message="a prompt is an object with 'points' and 'labels', 'box', 'scribble' or 'mask'",
    ),
]


class DetectParams(OutputOptions):
    categories: list[Text] = Field(min_length=1, max_length=256)
    score_threshold: float = Field(0.3, ge=0.0, le=1.0)
    max_detections: int = Field(100, ge=1, le=1000)


class DetectRequest(DetectParams):
    image: str | None = Field(None, description=IMAGE_FIELD_DOC)


class GroundParams(OutputOptions):
    expressions: list[Text] = Field(min_length=1, max_length=64)


class GroundRequest(GroundParams):
    image: str | None = Field(None, description=IMAGE_FIELD_DOC)


class SegmentParams(OutputOptions):
    prompts: list[ImagePrompt] = Field(min_length=1, max_length=64)


class SegmentRequest(SegmentParams):
    image: str | None = Field(None, description=IMAGE_FIELD_DOC)


class SessionConfig(OutputOptions):
    """A video session: ``track`` needs categories, ``rvos`` an expression, ``vos`` prompts on frame 0."""

    task: VideoTask
    categories: list[Text] | None = Field(None, min_length=1, max_length=256)
    expression: Text | None = None
    score_threshold: float | None = Field(None, ge=0.0, le=1.0)
    max_detections: int | None = Field(None, ge=1, le=1000, description="Objects considered per frame.")

    @model_validator(mode="after")
    def _task_inputs(self) -> SessionConfig:
        if self.task == "track" and not self.categories:
            raise ValueError("task 'track' needs categories")
        if self.task == "rvos" and not self.expression:
            raise ValueError("task 'rvos' needs an expression")
        return self


class FrameParams(_Request):
    prompts: list[VideoPrompt] | None = Field(None, max_length=64)


class FrameRequest(FrameParams):
    image: str | None = Field(None, description=IMAGE_FIELD_DOC)


Mask = RleMask | list[list[float]] | str | None


class ImageSize(BaseModel):
    width: int
    height: int


class Timing(BaseModel):
    """Milliseconds: waiting for the model, in the model (the whole batch), and end to end."""

    queue: float
    inference: float
    total: float


class Detection(BaseModel):
    id: int
    label: str
    score: float
    box: list[float]
    mask: Mask = Field(None, description="RLE object, polygon list, base64 PNG, or null (mask_format).")


class DetectResponse(BaseModel):
    model: str
    image: ImageSize
    detections: list[Detection]
    timing_ms: Timing


class GroundResult(BaseModel):
    expression: str
    detection: Detection | None


class GroundResponse(BaseModel):
    model: str
    image: ImageSize
    results: list[GroundResult]
    timing_ms: Timing


class SegmentResult(BaseModel):
    score: float
    box: list[float]
    mask: Mask = None


class SegmentResponse(BaseModel):
    model: str
    image: ImageSize
    results: list[SegmentResult]
    timing_ms: Timing


class SessionInfo(BaseModel):
    session_id: str
    task: VideoTask
    frames: int = Field(description="Frames processed so far; the next frame gets this index.")
    expires_in_s: int


class TrackOut(BaseModel):
    track_id: int
    label: str
    score: float
    box: list[float]
    mask: Mask = None


class FrameResponse(BaseModel):
    session_id: str
    frame_index: int
    tracks: list[TrackOut]
    timing_ms: Timing


class ModelInfo(BaseModel):
    name: str
    backend: str
    ready: bool


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: bytes | str | dict) -> M:
    """Validate JSON text or a dict into ``model``; failures become one 422 ``SchemaValidationError``."""
    try:
        if isinstance(data, dict):
            return model.model_validate(data)
        return model.model_validate_json(data)
    except ValidationError as exc:
        details = [
            {"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        summary = "; ".join(f"{'.'.join(map(str, d['loc'])) or 'body'}: {d['msg']}" for d in details)
        raise SchemaValidationError(summary, details=details) from exc
