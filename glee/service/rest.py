"""REST adapter (FastAPI): HTTP <-> typed requests, nothing else. All work happens in the ``Engine``.

Image endpoints accept either a JSON body (``image`` as base64 / data URI / allowed URL) or a multipart
upload (a file part ``file`` plus an optional JSON part ``request`` with the other fields; ``image`` is
accepted as an older name of the file part), so the body is read by hand instead of by a FastAPI body
parameter; ``openapi_extra`` documents both forms.
"""

from __future__ import annotations

import json
import time
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glee.service.auth import check_api_key
from glee.service.engine import Engine, ImageInput
from glee.service.errors import (
    InvalidInputError,
    PayloadTooLargeError,
    QueueFullError,
    SchemaValidationError,
    ServiceError,
    UnauthenticatedError,
)
from glee.service.metrics import CONTENT_TYPE
from glee.service.schemas import (
    DetectParams,
    DetectRequest,
    DetectResponse,
    ErrorResponse,
    FrameParams,
    FrameRequest,
    FrameResponse,
    GroundParams,
    GroundRequest,
    GroundResponse,
    ModelsResponse,
    SegmentParams,
    SegmentRequest,
    SegmentResponse,
    SessionConfig,
    SessionInfo,
    error_message,
    parse,
)
from glee.service.settings import HEALTH_PATH, METRICS_PATH, READY_PATH

M = TypeVar("M", bound=BaseModel)

#: Multipart part names of the image file: "file" is the documented one, "image" its older alias.
IMAGE_PARTS = ("file", "image")
#: The challenge of 401 answers (RFC 9110): a bearer token, or the same key as ``X-API-Key``.
WWW_AUTHENTICATE = 'Bearer realm="glee-serve"'

_ERROR_DOCS: dict[int, dict[str, Any]] = {
    400: {"description": "Undecodable, unsupported or empty image, or a bad prompt"},
    401: {
        "description": "Missing or invalid API key",
        "headers": {"WWW-Authenticate": {"description": WWW_AUTHENTICATE, "schema": {"type": "string"}}},
    },
    404: {"description": "Unknown or expired session"},
    409: {"description": "Another request advanced the same session first; reload and retry"},
    413: {"description": "Body or image pixel count over the limits"},
    422: {"description": "Request does not match the schema (see error.details)"},
    429: {
        "description": "Queue full; retry after the Retry-After header",
        "headers": {
            "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
        },
    },
    503: {"description": "Model not ready, or the session store is unavailable"},
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses an operation can really answer."""
    return {status: {"model": ErrorResponse, **_ERROR_DOCS[status]} for status in statuses}


_IMAGE_ERRORS = _errors(400, 401, 413, 422, 429, 503)
_FRAME_ERRORS = _errors(400, 401, 404, 409, 413, 422, 429, 503)
_BODY_MODELS: list[type[BaseModel]] = [
    DetectRequest,
    DetectParams,
    GroundRequest,
    GroundParams,
    SegmentRequest,
    SegmentParams,
    FrameRequest,
    FrameParams,
    SessionConfig,
]


def error_response(exc: ServiceError) -> JSONResponse:
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if isinstance(exc, SchemaValidationError) and exc.details:
        body["details"] = exc.details
    headers = None
    if isinstance(exc, QueueFullError):
        headers = {"Retry-After": str(exc.retry_after_s)}
    elif isinstance(exc, UnauthenticatedError):
        headers = {"WWW-Authenticate": WWW_AUTHENTICATE}
    return JSONResponse({"error": body}, status_code=exc.http_status, headers=headers)


def _body_doc(json_model: type[BaseModel], form_model: type[BaseModel] | None = None) -> dict[str, Any]:
    """The hand-read request body: JSON ``json_model``, and when ``form_model`` is given, a multipart
    upload of the image as part ``file`` plus ``form_model`` as the JSON part ``request``."""
    content: dict[str, Any] = {"application/json": {"schema": _ref(json_model)}}
    if form_model is not None:
        content["multipart/form-data"] = {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "The image file ('image' is accepted as an older name; send one).",
                    },
                    "request": {
                        **_ref(form_model),
                        "description": f"{json_model.__name__} without 'image' (the file part is the "
                        "image); a plain field or a file part; optional when every field has a default.",
                    },
                },
            },
            "encoding": {"request": {"contentType": "application/json"}},
        }
    return {"requestBody": {"required": True, "content": content}}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


def _part_error(part: str, message: str, kind: str) -> SchemaValidationError:
    """A 422 about a multipart part, with ``details`` like every other 422."""
    return SchemaValidationError(
        f"{part}: {message}", details=[{"loc": [part], "msg": message, "type": kind}]
    )


def _only_part(form: FormData, names: tuple[str, ...]) -> tuple[str, UploadFile | str] | None:
    """The one part sent under any of ``names``; two of them are ambiguous, so a 422 rather than a guess."""
    parts = [(name, value) for name in names for value in form.getlist(name)]
    if len(parts) > 1:
        sent = ", ".join(f"'{name}'" for name, _ in parts)
        raise _part_error(names[0], f"sent {len(parts)} times ({sent}); send it once", "duplicate_part")
    return parts[0] if parts else None


def _reject_inline_image(fields: str | bytes) -> None:
    """An ``image`` in the request part next to an uploaded file: the client meant one of them, but which?"""
    try:
        decoded = json.loads(fields)
    except ValueError:
        return  # parse() reports the malformed JSON, with its position
    if isinstance(decoded, dict) and "image" in decoded:
        message = "the image is the uploaded 'file' part; leave 'image' out of the request part"
        raise SchemaValidationError(
            f"request.image: {message}",
            details=[{"loc": ["request", "image"], "msg": message, "type": "ambiguous_image"}],
        )


class _BodyLimit:
    """413 for bodies over ``max_bytes``: at once from Content-Length, or while a chunked body streams."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = PayloadTooLargeError(f"request body is larger than {self.max_bytes} bytes")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await error_response(too_large)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise too_large
            return message

        await self.app(scope, limited_receive, send)


class _HttpMetrics:
    """Counts and times every request by route template (``/v1/sessions/{session_id}``) and status.

    ``routes`` (filled in once the application has them) lets a request answered before routing (a 413
    from Content-Length) still be counted under its endpoint rather than as "unmatched"."""

    def __init__(self, app: ASGIApp, engine: Engine, routes: list[BaseRoute]) -> None:
        self.app = app
        self.metrics = engine.metrics
        self.routes = routes

    def endpoint(self, scope: Scope) -> str:
        route = scope.get("route") or next(
            (r for r in self.routes if r.matches(scope)[0] == Match.FULL), None
        )
        return getattr(route, "path", "unmatched")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observing_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            endpoint = self.endpoint(scope)
            self.metrics.requests.labels("http", endpoint, str(status)).inc()
            self.metrics.request_seconds.labels("http", endpoint).observe(time.perf_counter() - started)


def create_app(engine: Engine) -> FastAPI:
    """The FastAPI application over ``engine`` (whose lifecycle the caller owns)."""
    settings = engine.settings
    app = FastAPI(
        title="glee-serve",
        summary="GLEE object-level foundation model: detection, grounding, segmentation, video tracking.",
        version="1.0.0",
        redirect_slashes=False,  # "/v1/detect/" is an unknown route (JSON 404), not a bare 307 to follow
    )
    app.add_middleware(_BodyLimit, max_bytes=settings.max_body_bytes)
    routes: list[BaseRoute] = []
    app.add_middleware(_HttpMetrics, engine=engine, routes=routes)
    _add_error_handlers(app)

    api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
    bearer = HTTPBearer(auto_error=False)

    async def authenticate(
        api_key: str | None = Security(api_key_header),
        credentials: HTTPAuthorizationCredentials | None = Security(bearer),
    ) -> None:
        authorization = f"Bearer {credentials.credentials}" if credentials else None
        check_api_key(settings.api_keys, api_key, authorization)

    async def read_json(request: Request, model: type[M]) -> M:
        if _is_multipart(request):  # only endpoints without an image get here with one
            message = "this endpoint takes a JSON body (content-type: application/json), not an upload"
            raise _part_error("body", message, "json_type")
        body = await request.body()
        if not body:
            raise InvalidInputError("the request body is empty", code="empty_body")
        return parse(model, body)

    async def read_form(request: Request, form_model: type[M]) -> tuple[M, bytes]:
        """The image file part plus an optional JSON ``request`` part, which may itself be a file
        (``curl -F request=@req.json``): hence two files at most, each part at most once."""
        try:
            form = await request.form(max_files=2, max_fields=4, max_part_size=settings.max_body_bytes)
        except StarletteHTTPException as exc:
            hint = "send one 'file' part and at most one 'request' part"
            raise _part_error(
                "body", f"unreadable multipart body: {exc.detail} ({hint})", "multipart"
            ) from exc
        unknown = sorted(set(form.keys()) - {*IMAGE_PARTS, "request"})
        if unknown:
            raise _part_error(
                unknown[0], "unknown part; send 'file' and optionally 'request'", "extra_forbidden"
            )
        image, fields = _only_part(form, IMAGE_PARTS), _only_part(form, ("request",))
        if image is None:
            raise _part_error(
                "file", "multipart requests need the image as a file part named 'file'", "missing"
            )
        if not isinstance(image[1], UploadFile):
            raise _part_error(
                image[0], "must be a file part (with a filename), not a text field", "file_type"
            )
        raw = fields[1] if fields is not None else "{}"
        raw = await raw.read() if isinstance(raw, UploadFile) else raw
        _reject_inline_image(raw)
        return parse(form_model, raw, root="request"), await image[1].read()

    async def read_image_request(
        request: Request, form_model: type[M], json_model: type[M]
    ) -> tuple[M, ImageInput]:
        """``(options, image)`` from a multipart upload or a JSON body (whose ``image`` is required)."""
        if _is_multipart(request):
            return await read_form(request, form_model)
        params = await read_json(request, json_model)
        return params, params.image  # type: ignore[attr-defined]

    @app.get(HEALTH_PATH, tags=["ops"], summary="Liveness: the process serves HTTP.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        READY_PATH,
        tags=["ops"],
        summary="Readiness: the model is loaded and warmed up.",
        responses={503: {"model": ErrorResponse, "description": "The model is not loaded yet (not_ready)"}},
    )
    async def readyz() -> JSONResponse:
        if not engine.ready:
            body = {"error": {"code": "not_ready", "message": "the model is not loaded yet"}}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ready", "model": engine.model_name})

    for path, probe in ((HEALTH_PATH, healthz), (READY_PATH, readyz)):  # some load balancers probe with HEAD
        app.add_api_route(path, probe, methods=["HEAD"], include_in_schema=False)

    @app.get(METRICS_PATH, tags=["ops"], summary="Prometheus metrics.")
    async def metrics() -> Response:
        return Response(engine.metrics.render(), media_type=CONTENT_TYPE)

    api = APIRouter(prefix="/v1", dependencies=[Security(authenticate)])

    @api.get("/models", tags=["models"], responses=_errors(401))
    async def list_models() -> ModelsResponse:
        return engine.models()

    @api.post(
        "/detect",
        tags=["image"],
        responses=_IMAGE_ERRORS,
        openapi_extra=_body_doc(DetectRequest, DetectParams),
    )
    async def detect(request: Request) -> DetectResponse:
        """Open-vocabulary detection + segmentation of ``categories``."""
        params, image = await read_image_request(request, DetectParams, DetectRequest)
        return await engine.detect(image, params)

    @api.post(
        "/ground",
        tags=["image"],
        responses=_IMAGE_ERRORS,
        openapi_extra=_body_doc(GroundRequest, GroundParams),
    )
    async def ground(request: Request) -> GroundResponse:
        """The top-1 object for each referring expression."""
        params, image = await read_image_request(request, GroundParams, GroundRequest)
        return await engine.ground(image, params)

    @api.post(
        "/segment",
        tags=["image"],
        responses=_IMAGE_ERRORS,
        openapi_extra=_body_doc(SegmentRequest, SegmentParams),
    )
    async def segment(request: Request) -> SegmentResponse:
        """One object per visual prompt (points with labels, box, or scribble)."""
        params, image = await read_image_request(request, SegmentParams, SegmentRequest)
        return await engine.segment(image, params)

    @api.post(
        "/sessions",
        tags=["video"],
        status_code=201,
        responses=_errors(400, 401, 413, 422, 503),
        openapi_extra=_body_doc(SessionConfig),
    )
    async def create_session(request: Request) -> SessionInfo:
        """Open a video session (``track``, ``rvos`` or ``vos``); it expires ``expires_in_s`` after
        its last frame."""
        return await engine.create_session(await read_json(request, SessionConfig))

    @api.post(
        "/sessions/{session_id}/frames",
        tags=["video"],
        responses=_FRAME_ERRORS,
        openapi_extra=_body_doc(FrameRequest, FrameParams),
    )
    async def add_frame(session_id: str, request: Request) -> FrameResponse:
        """Process the session's next frame; returns its tracks (IDs stable across frames). An unknown
        or expired session is a 404 whatever the body holds."""
        await engine.require_session(session_id)
        params, image = await read_image_request(request, FrameParams, FrameRequest)
        return await engine.add_frame(session_id, image, params)

    @api.get("/sessions/{session_id}", tags=["video"], responses=_errors(401, 404, 503))
    async def get_session(session_id: str) -> SessionInfo:
        return await engine.get_session(session_id)

    @api.delete("/sessions/{session_id}", tags=["video"], status_code=204, responses=_errors(401, 404, 503))
    async def delete_session(session_id: str) -> Response:
        await engine.delete_session(session_id)
        return Response(status_code=204)

    app.include_router(api)
    # The docs' routes are plain Routes; the /v1 routes are found in `api` (FastAPI nests included routers).
    routes.extend(route for route in (*app.routes, *api.routes) if isinstance(route, Route))
    _document_bodies(app)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    async def service_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        return error_response(exc)

    async def request_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = [{"loc": list(e["loc"]), "msg": error_message(e), "type": e["type"]} for e in exc.errors()]
        summary = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in details)
        return error_response(SchemaValidationError(summary, details=details))

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        body = {"error": {"code": code, "message": str(exc.detail)}}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def internal(_: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after this response, so uvicorn logs the traceback (once).
        body = {"error": {"code": "internal", "message": "internal server error"}}
        return JSONResponse(body, status_code=500)

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, internal)


def _document_bodies(app: FastAPI) -> None:
    """Add the hand-read request bodies' schemas to the generated OpenAPI components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            _, defs = models_json_schema(
                [(m, "validation") for m in _BODY_MODELS], ref_template="#/components/schemas/{model}"
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(defs.get("$defs", {}))
            _drop_default_422s(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _drop_default_422s(schema: dict[str, Any]) -> None:
    """FastAPI documents a 422 ``HTTPValidationError`` for every operation with a path parameter; these
    string parameters cannot fail validation, and a 422 of this API would be an ``ErrorResponse``."""
    fastapi_422 = "#/components/schemas/HTTPValidationError"
    for operation in (op for path in schema["paths"].values() for op in path.values()):
        answer = operation["responses"].get("422", {})
        if answer.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref") == fastapi_422:
            del operation["responses"]["422"]
    for unused in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(unused, None)
