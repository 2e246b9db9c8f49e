"""Typed requests and responses of the service: the REST JSON contract, reused by the gRPC adapter.

Requests forbid unknown fields so that a typo (``"score_treshold"``) is a 422 instead of a silently
ignored option, and numbers are strict (``"0.5"``, ``true`` or ``2.0`` for an integer are 422, not
quietly converted; an integer is a fine float). Schema problems (types, ranges, missing fields) are 422;
problems only visible against the image (a point outside it, a degenerate box) are checked by the
engine and are 400.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Strict,
    StrictInt,
    StringConstraints,
    Tag,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from glee.service.errors import SchemaValidationError

MaskFormat = Literal["rle", "polygon", "png", "none"]
BoxFormat = Literal["xyxy", "xywh"]
VideoTask = Literal["track", "rvos", "vos"]

#: A JSON number: an integer or a float, never a numeric string, a boolean, NaN or an infinity.
Number = Annotated[float, Strict(), AllowInfNan(False)]
XY = tuple[Number, Number]
PROMPT_KINDS = ("points", "box", "scribble", "mask")


def _exact_text(text: str) -> str:
    """Labels and expressions are returned exactly as sent, so text the model would read differently
    (blank, or with surrounding whitespace) is refused rather than silently changed."""
    if not text.strip():
        raise ValueError("must not be blank")
    if text != text.strip():
        raise ValueError("must not start or end with whitespace (it is returned exactly as sent)")
    return text


def _distinct(texts: list[str]) -> list[str]:
    """A repeated category or expression would be answered twice; the text encoder lower-cases and reads
    a run of whitespace as one space, so texts that differ only in those repeat too."""
    seen: dict[str, str] = {}
    for text in texts:
        key = " ".join(text.lower().split())
        if key in seen:
            raise ValueError(
                f"{text!r} repeats {seen[key]!r} (compared ignoring case and repeated spaces, as the model "
                "reads them)"
            )
        seen[key] = text
    return texts


Text = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(_exact_text)]
Texts = Annotated[list[Text], AfterValidator(_distinct)]

IMAGE_FIELD_DOC = (
    "Base64-encoded image file (a data: URI prefix is accepted), or an http(s) URL when the server "
    "allows remote images. Required in JSON bodies. A multipart upload sends the image as the file part "
    "'file' instead, and its 'request' part must not contain 'image'."
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OutputOptions(_Request):
    mask_format: MaskFormat = "rle"
    box_format: BoxFormat = "xyxy"


class RleMask(BaseModel):
    """COCO run-length encoding (pycocotools, column-major); ``size`` is [height, width]."""

    model_config = ConfigDict(extra="forbid")

    size: tuple[StrictInt, StrictInt]
    counts: str


class PointsPrompt(_Request):
    points: list[XY] = Field(min_length=1, max_length=512)
    labels: list[Annotated[StrictInt, Field(ge=0, le=1)]] = Field(
        min_length=1, max_length=512, description="1 = positive, 0 = negative; one per point."
    )


class BoxPrompt(_Request):
    box: tuple[Number, Number, Number, Number]


class ScribblePrompt(_Request):
    scribble: list[XY] = Field(min_length=2, max_length=512)


def _rle_counts(value: object) -> str | list[int]:
    """One check, with one message, for both spellings of RLE counts: a union type would report each
    branch's failure under pydantic's name for the branch (``counts.list[constrained-int].0``), which is
    not a field the client sent."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(type(v) is int and v >= 0 for v in value):
        return value
    raise ValueError("counts must be a compressed RLE string or a list of non-negative integer run lengths")


_RLE_COUNTS_SCHEMA = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "integer", "minimum": 0}}],
    "title": "Counts",
}


class RlePrompt(RleMask):
    """A mask prompt's RLE: compressed ``counts`` as returned, or uncompressed run lengths (a list, as in
    COCO's iscrowd annotations and ``pycocotools.mask.frPyObjects``' input)."""

    counts: Annotated[str | list[int], PlainValidator(_rle_counts), WithJsonSchema(_RLE_COUNTS_SCHEMA)]


class _VideoObject(_Request):
    object_id: StrictInt | None = Field(
        None,
        ge=1,
        description="vos: re-prompt (correct) the object the session follows under this track id; "
        "without it, the prompt adds an object with the next id.",
    )


class VideoPointsPrompt(PointsPrompt, _VideoObject):
    """A points prompt of a VOS frame (``object_id`` names the object it corrects)."""


class VideoBoxPrompt(BoxPrompt, _VideoObject):
    """A box prompt of a VOS frame (``object_id`` names the object it corrects)."""


class VideoScribblePrompt(ScribblePrompt, _VideoObject):
    """A scribble prompt of a VOS frame (``object_id`` names the object it corrects)."""


class MaskPrompt(_VideoObject):
    """A mask prompt (VOS frames only; ``object_id`` names the object it corrects)."""

    mask: RlePrompt


def _prompt_kind(value: Any) -> str | None:
    """A prompt's kind is the key it carries, so errors name the right schema instead of every one."""
    fields = vars(value) if isinstance(value, BaseModel) else value
    if not isinstance(fields, dict):
        return None
    return next((kind for kind in PROMPT_KINDS if kind in fields), None)


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
    Annotated[VideoPointsPrompt, Tag("points")]
    | Annotated[VideoBoxPrompt, Tag("box")]
    | Annotated[VideoScribblePrompt, Tag("scribble")]
    | Annotated[MaskPrompt, Tag("mask")],
    Discriminator(
        _prompt_kind,
        custom_error_type="prompt_kind",
        custom_error_message="a prompt is an object with 'points' and 'labels', 'box', 'scribble' or 'mask'",
    ),
]


class DetectParams(OutputOptions):
    """Detection options: a JSON body's fields besides ``image``, or a multipart ``request`` part."""

    categories: Texts = Field(min_length=1, max_length=256, description="Distinct, returned as labels.")
    score_threshold: Number = Field(0.3, ge=0.0, le=1.0)
    max_detections: StrictInt = Field(100, ge=1, le=1000)


class DetectRequest(DetectParams):
    image: str = Field(description=IMAGE_FIELD_DOC)


class GroundParams(OutputOptions):
    """Grounding options: a JSON body's fields besides ``image``, or a multipart ``request`` part."""

    expressions: Texts = Field(min_length=1, max_length=64, description="Distinct, returned as sent.")


class GroundRequest(GroundParams):
    image: str = Field(description=IMAGE_FIELD_DOC)


class SegmentParams(OutputOptions):
    """Segmentation options: a JSON body's fields besides ``image``, or a multipart ``request`` part."""

    prompts: list[ImagePrompt] = Field(min_length=1, max_length=64)


class SegmentRequest(SegmentParams):
    image: str = Field(description=IMAGE_FIELD_DOC)


#: The text input each video task takes (vos takes prompts on its first frame instead).
_TASK_TEXT: dict[str, str | None] = {"track": "categories", "rvos": "expression", "vos": None}


class SessionConfig(OutputOptions):
    """A video session: ``track`` needs categories, ``rvos`` an expression, ``vos`` prompts on frame 0."""

    task: VideoTask
    categories: Texts | None = Field(None, min_length=1, max_length=256, description="track only.")
    expression: Text | None = Field(None, description="rvos only.")
    score_threshold: Number | None = Field(
        None, ge=0.0, le=1.0, description="Score that starts a track; default 0.3, rvos 0."
    )
    max_detections: StrictInt | None = Field(None, ge=1, le=1000, description="Objects considered per frame.")

    @model_validator(mode="after")
    def _task_inputs(self) -> SessionConfig:
        """Each task takes exactly its own text input; a stray one would be silently ignored."""
        if self.task == "track" and not self.categories:
            raise ValueError("task 'track' needs categories")
        if self.task == "rvos" and not self.expression:
            raise ValueError("task 'rvos' needs an expression")
        own = _TASK_TEXT[self.task]
        stray = [n for n in ("categories", "expression") if n != own and getattr(self, n) is not None]
        if stray:
            raise ValueError(f"task {self.task!r} does not take {' or '.join(stray)}")
        return self


class FrameParams(_Request):
    """Frame options: a JSON body's fields besides ``image``, or a multipart ``request`` part."""

    prompts: list[VideoPrompt] | None = Field(None, max_length=64)


class FrameRequest(FrameParams):
    image: str = Field(description=IMAGE_FIELD_DOC)


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


def parse(model: type[M], data: bytes | str | dict, *, root: str | None = "body") -> M:
    """Validate JSON text or a dict into ``model``; failures become one 422 ``SchemaValidationError``.

    ``root`` names the whole request in messages about it (``body: Invalid JSON``); gRPC has no body,
    so its adapter passes ``None`` and such messages carry no location.
    """
    try:
        if isinstance(data, dict):
            return model.model_validate(data)
        _refuse_repeated_keys(data, root)
        return model.model_validate_json(data)
    except ValidationError as exc:
        details = [
            {"loc": _client_loc(err["loc"], root), "msg": error_message(err), "type": err["type"]}
            for err in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise SchemaValidationError(
            "; ".join(located(d["loc"], d["msg"], root) for d in details), details=details
        ) from exc


def _refuse_repeated_keys(text: bytes | str, root: str | None) -> None:
    """JSON parsers keep the last of repeated keys, so ``{"categories": [...], "categories": [...]}``
    would silently drop the first list; a repeated field is a 422 like an unknown one. (Invalid JSON, and
    JSON nested deeper than Python's recursion limit, are left to the schema's parser, which says where
    it breaks.)"""
    repeated: list[str] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen and key not in repeated:
                repeated.append(key)
            seen.add(key)
        return dict(pairs)

    try:
        json.loads(text, object_pairs_hook=pairs_hook)
    except (ValueError, RecursionError):
        return
    if repeated:
        messages = [f"field {key!r} appears more than once" for key in repeated]
        details = [{"loc": _client_loc((), root), "msg": msg, "type": "repeated_key"} for msg in messages]
        raise SchemaValidationError("; ".join(located([], d["msg"], root) for d in details), details=details)


def error_message(err: Mapping[str, Any]) -> str:
    """A pydantic error's message without the "Value error, " that pydantic puts before the message of
    a validator's ValueError: those messages are ours and already say what is wrong."""
    return str(err["msg"]).removeprefix("Value error, ")


def _client_loc(loc: tuple[int | str, ...], root: str | None) -> list[int | str]:
    """The location as the client wrote it: pydantic adds the prompt kind it dispatched on
    (``prompts.0.box.box.3``), which is not in the request, so it is dropped (``prompts.0.box.3``). An
    error about the whole document (invalid JSON, a repeated key) is located at ``root``, the body or the
    multipart part it came in, where there is one."""
    if not loc:
        return [root] if root else []
    parts = list(loc)
    if len(parts) > 3 and parts[0] == "prompts" and isinstance(parts[1], int) and parts[2] in PROMPT_KINDS:
        del parts[2]
    return parts


def located(loc: Sequence[int | str], message: str, root: str | None = None) -> str:
    """``message`` prefixed with where it applies: the dotted field path, else ``root`` (the body or a
    multipart part), else nothing."""
    where = ".".join(map(str, loc)) or root
    return f"{where}: {message}" if where else message
