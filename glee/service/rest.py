"""REST adapter (FastAPI): HTTP <-> typed requests, nothing else. All work happens in the ``Engine``.

Image endpoints accept either a JSON body (``image`` as base64 / data URI / allowed URL) or a multipart
upload (a file part ``image`` plus a JSON part ``request`` with the other fields), so the body is read
by hand instead of by a FastAPI body parameter; ``openapi_extra`` documents both forms.
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glee.service.auth import check_api_key
from glee.service.engine import Engine, ImageInput
from glee.service.errors import (
    InvalidInputError,
    PayloadTooLargeError,
    QueueFullError,
    SchemaValidationError,
    ServiceError,
)
from glee.service.metrics import CONTENT_TYPE
from glee.service.schemas import (
    DetectRequest,
    DetectResponse,
    ErrorResponse,
    FrameRequest,
    FrameResponse,
    GroundRequest,
    GroundResponse,
    ModelsResponse,
    SegmentRequest,
    SegmentResponse,
    SessionConfig,
    SessionInfo,
    parse,
)
from glee.service.settings import HEALTH_PATH, METRICS_PATH, READY_PATH

M = TypeVar("M", bound=BaseModel)

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (400, "Undecodable or empty image, or a bad prompt"),
        (401, "Missing or invalid API key"),
        (413, "Body or image pixel count over the limits"),
        (422, "Request does not match the schema"),
        (429, "Queue full; retry after the Retry-After header"),
        (503, "Model not ready, or the session store is unavailable"),
    )
}
_SESSION_ERRORS = {**_ERRORS, 404: {"model": ErrorResponse, "description": "Unknown or expired session"}}
_BODY_MODELS: list[type[BaseModel]] = [
    DetectRequest,
    GroundRequest,
    SegmentRequest,
    FrameRequest,
    SessionConfig,
]


def error_response(exc: ServiceError) -> JSONResponse:
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if isinstance(exc, SchemaValidationError) and exc.details:
        body["details"] = exc.details
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, QueueFullError) else None
    return JSONResponse({"error": body}, status_code=exc.http_status, headers=headers)


def _body_doc(model: type[BaseModel], *, multipart: bool) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    content: dict[str, Any] = {"application/json": {"schema": ref}}
    if multipart:
        content["multipart/form-data"] = {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": {"type": "string", "format": "binary", "description": "The image file."},
                    "request": {"type": "string", "description": f"JSON {model.__name__} without 'image'."},
                },
            }
        }
    return {"requestBody": {"required": True, "content": content}}


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
    """Counts and times every request by route template (``/v1/sessions/{session_id}``) and status."""

    def __init__(self, app: ASGIApp, engine: Engine) -> None:
        self.app = app
        self.metrics = engine.metrics

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
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            self.metrics.requests.labels("http", endpoint, str(status)).inc()
            self.metrics.request_seconds.labels("http", endpoint).observe(time.perf_counter() - started)


def create_app(engine: Engine) -> FastAPI:
    """The FastAPI application over ``engine`` (whose lifecycle the caller owns)."""
    settings = engine.settings
    app = FastAPI(
        title="glee-serve",
        summary="GLEE object-level foundation model: detection, grounding, segmentation, video tracking.",
        version="1.0.0",
    )
    app.add_middleware(_BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(_HttpMetrics, engine=engine)
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
        body = await request.body()
        if not body:
            raise InvalidInputError("the request body is empty", code="empty_body")
        return parse(model, body)

    async def read_image_request(request: Request, model: type[M]) -> tuple[M, ImageInput]:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form(max_files=1, max_fields=4, max_part_size=settings.max_body_bytes)
            upload, fields = form.get("image"), form.get("request")
            if not isinstance(upload, UploadFile):
                raise SchemaValidationError("image: multipart requests need a file part named 'image'")
            raw = await fields.read() if isinstance(fields, UploadFile) else (fields or "{}")
            return parse(model, raw), await upload.read()
        params = await read_json(request, model)
        image = getattr(params, "image", None)
        if image is None:
            raise SchemaValidationError("image: Field required (base64, URL, or a multipart 'image' part)")
        return params, image

    @app.get(HEALTH_PATH, tags=["ops"], summary="Liveness: the process serves HTTP.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(READY_PATH, tags=["ops"], summary="Readiness: the model is loaded and warmed up.")
    async def readyz() -> JSONResponse:
        if not engine.ready:
            body = {"error": {"code": "not_ready", "message": "the model is not loaded yet"}}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ready", "model": engine.model_name})

    @app.get(METRICS_PATH, tags=["ops"], summary="Prometheus metrics.")
    async def metrics() -> Response:
        return Response(engine.metrics.render(), media_type=CONTENT_TYPE)

    api = APIRouter(prefix="/v1", dependencies=[Security(authenticate)], responses=_ERRORS)

    @api.get("/models", tags=["models"])
    async def list_models() -> ModelsResponse:
        return engine.models()

    @api.post("/detect", tags=["image"], openapi_extra=_body_doc(DetectRequest, multipart=True))
    async def detect(request: Request) -> DetectResponse:
        """Open-vocabulary detection + segmentation of ``categories``."""
        params, image = await read_image_request(request, DetectRequest)
        return await engine.detect(image, params)

    @api.post("/ground", tags=["image"], openapi_extra=_body_doc(GroundRequest, multipart=True))
    async def ground(request: Request) -> GroundResponse:
        """The top-1 object for each referring expression."""
        params, image = await read_image_request(request, GroundRequest)
        return await engine.ground(image, params)

    @api.post("/segment", tags=["image"], openapi_extra=_body_doc(SegmentRequest, multipart=True))
    async def segment(request: Request) -> SegmentResponse:
        """One object per visual prompt (points with labels, box, or scribble)."""
        params, image = await read_image_request(request, SegmentRequest)
        return await engine.segment(image, params)

    @api.post(
        "/sessions",
        tags=["video"],
        status_code=201,
        openapi_extra=_body_doc(SessionConfig, multipart=False),
    )
    async def create_session(request: Request) -> SessionInfo:
        """Open a video session (``track``, ``rvos`` or ``vos``); it expires ``expires_in_s`` after
        its last frame."""
        return await engine.create_session(await read_json(request, SessionConfig))

    @api.post(
        "/sessions/{session_id}/frames",
        tags=["video"],
        responses=_SESSION_ERRORS,
        openapi_extra=_body_doc(FrameRequest, multipart=True),
    )
    async def add_frame(session_id: str, request: Request) -> FrameResponse:
        """Process the session's next frame; returns its tracks (IDs stable across frames)."""
        params, image = await read_image_request(request, FrameRequest)
        return await engine.add_frame(session_id, image, params)

    @api.get("/sessions/{session_id}", tags=["video"], responses=_SESSION_ERRORS)
    async def get_session(session_id: str) -> SessionInfo:
        return await engine.get_session(session_id)

    @api.delete("/sessions/{session_id}", tags=["video"], status_code=204, responses=_SESSION_ERRORS)
    async def delete_session(session_id: str) -> Response:
        await engine.delete_session(session_id)
        return Response(status_code=204)

    app.include_router(api)
    _document_bodies(app)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    async def service_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        return error_response(exc)

    async def request_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
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
            schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
