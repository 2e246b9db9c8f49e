"""gRPC adapter (grpc.aio): protobuf <-> the typed requests of ``schemas``, nothing else.

Requests are converted to the same pydantic models as REST bodies, so validation (and its messages) is
identical on both protocols; ``ServiceError``s become gRPC status codes via ``errors``, with the API
error code in the ``glee-error-code`` trailer. Health checking (``grpc.health.v1``) and server
reflection are served next to ``glee.v1.Glee``.
"""

from __future__ import annotations

import base64
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from pydantic import BaseModel

from glee.service.auth import check_api_key
from glee.service.engine import Engine, ImageInput
from glee.service.errors import InvalidInputError, QueueFullError, SchemaValidationError, ServiceError
from glee.service.images import is_url
from glee.service.protos import ERROR_CODE_KEY, SERVICE_NAME, generic_handler, pb
from glee.service.schemas import (
    Detection,
    DetectParams,
    FrameParams,
    FrameResponse,
    GroundParams,
    ImageSize,
    Mask,
    RleMask,
    SegmentParams,
    SessionConfig,
    SessionInfo,
    Timing,
    parse,
)

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

_MAX_MESSAGE_BYTES = 2048


# ---------------------------------------------------------------------- protobuf -> typed requests
def _parse(model: type[M], data: dict[str, Any]) -> M:
    """``schemas.parse`` without REST's ``body:`` label: a gRPC request has no body."""
    return parse(model, data, root=None)


def _present(message: Any, *names: str) -> dict[str, Any]:
    """Fields the client set: proto3 ``optional`` fields by presence, others when not empty/zero."""
    out = {}
    for name in names:
        field = message.DESCRIPTOR.fields_by_name[name]
        value = getattr(message, name)
        if field.has_presence:
            if message.HasField(name):
                out[name] = value
        elif value:
            out[name] = list(value) if field.is_repeated else value
    return out


def _prompt(prompt: Any) -> dict[str, Any]:
    return _prompt_kind(prompt) | _present(prompt, "object_id")


def _prompt_kind(prompt: Any) -> dict[str, Any]:
    kind = prompt.WhichOneof("kind")
    if kind == "points":
        return {"points": [[p.x, p.y] for p in prompt.points.points], "labels": list(prompt.points.labels)}
    if kind == "box":
        return {"box": [prompt.box.x1, prompt.box.y1, prompt.box.x2, prompt.box.y2]}
    if kind == "scribble":
        return {"scribble": [[p.x, p.y] for p in prompt.scribble.points]}
    if kind == "mask":
        return {"mask": {"size": list(prompt.mask.size), "counts": prompt.mask.counts}}
    return {}


def _image(request: Any) -> ImageInput:
    if request.image_url and request.image:
        raise SchemaValidationError("set either image or image_url, not both")
    if request.image_url:
        if not is_url(request.image_url):
            raise InvalidInputError("image_url must be an http(s) URL", code="url_not_allowed")
        return request.image_url
    return request.image


def detect_params(request: Any) -> DetectParams:
    fields = ("categories", "score_threshold", "max_detections", "mask_format", "box_format")
    return _parse(DetectParams, _present(request, *fields))


def ground_params(request: Any) -> GroundParams:
    return _parse(GroundParams, _present(request, "expressions", "mask_format", "box_format"))


def segment_params(request: Any) -> SegmentParams:
    data = _present(request, "mask_format", "box_format") | {"prompts": [_prompt(p) for p in request.prompts]}
    return _parse(SegmentParams, data)


def session_config(config: Any) -> SessionConfig:
    fields = ("categories", "expression", "score_threshold", "max_detections", "mask_format", "box_format")
    return _parse(SessionConfig, {"task": config.task} | _present(config, *fields))


def frame_params(frame: Any) -> FrameParams:
    return _parse(FrameParams, {"prompts": [_prompt(p) for p in frame.prompts]} if frame.prompts else {})


# ---------------------------------------------------------------------- typed responses -> protobuf
def _mask(mask: Mask) -> dict[str, Any]:
    if mask is None:
        return {}
    if isinstance(mask, RleMask):
        return {"mask": pb.Mask(rle=pb.Rle(size=list(mask.size), counts=mask.counts))}
    if isinstance(mask, list):
        return {"mask": pb.Mask(polygons=pb.Polygons(polygons=[pb.Polygon(coords=c) for c in mask]))}
    return {"mask": pb.Mask(png=base64.b64decode(mask))}


def _detection(d: Detection) -> Any:
    return pb.Detection(id=d.id, label=d.label, score=d.score, box=d.box, **_mask(d.mask))


def _timing(t: Timing) -> Any:
    return pb.Timing(queue=t.queue, inference=t.inference, total=t.total)


def _size(s: ImageSize) -> Any:
    return pb.ImageSize(width=s.width, height=s.height)


def _session(info: SessionInfo) -> Any:
    return pb.SessionInfo(
        session_id=info.session_id, task=info.task, frames=info.frames, expires_in_s=info.expires_in_s
    )


def _frame(result: FrameResponse) -> Any:
    tracks = [
        pb.Track(track_id=t.track_id, label=t.label, score=t.score, box=t.box, **_mask(t.mask))
        for t in result.tracks
    ]
    return pb.FrameResult(
        session_id=result.session_id,
        frame_index=result.frame_index,
        tracks=tracks,
        timing_ms=_timing(result.timing_ms),
    )


# ---------------------------------------------------------------------- servicer
def _message(text: str) -> str:
    """The status message, cut to fit gRPC's metadata limits (8 KiB soft, after percent-encoding):
    a message that echoes a long input (a 20 kB session id, 256 bad categories) would otherwise make gRPC
    drop the whole status, error code trailer included, for RESOURCE_EXHAUSTED "Stream removed"."""
    data = text.encode()
    if len(data) <= _MAX_MESSAGE_BYTES:
        return text
    return data[:_MAX_MESSAGE_BYTES].decode(errors="ignore") + f"... ({len(data)} bytes in all)"


async def _abort(context: grpc.aio.ServicerContext, exc: ServiceError) -> None:
    """End the call with exc's status code, message and the API error code (and retry-after) trailers."""
    trailers = ((ERROR_CODE_KEY, exc.code),)
    if isinstance(exc, QueueFullError):
        trailers += (("retry-after", str(exc.retry_after_s)),)
    await context.abort(grpc.StatusCode[exc.grpc_code], _message(exc.message), trailing_metadata=trailers)


def _service_error(exc: Exception, rpc: str) -> ServiceError:
    if isinstance(exc, ServiceError):
        return exc
    log.error("unhandled error in %s", rpc, exc_info=exc)
    return ServiceError("internal server error")


class _Outcome:
    """Counts a call in the metrics once, when it has ended: under ``code`` (what its handler set: OK, or
    the error's status), or CANCELLED when gRPC cancelled the call before its handler finished. A handler
    that finishes anyway (the model was already running it; a cancelled stream's requests simply ended,
    as a finished client's do) counts as OK: gRPC's server does not tell those apart."""

    def __init__(self, servicer: GleeServicer, endpoint: str, context: grpc.aio.ServicerContext) -> None:
        self.code = "OK"
        started = time.perf_counter()

        def ended(call: grpc.aio.ServicerContext) -> None:
            servicer.observe(endpoint, "CANCELLED" if call.cancelled() else self.code, started)

        context.add_done_callback(ended)


def _rpc(name: str) -> Callable:
    """Wrap a unary method: authenticate, map errors to status codes, record metrics."""

    def decorate(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(method)
        async def handler(self: GleeServicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
            outcome = _Outcome(self, name, context)
            try:
                self.authenticate(context)
                return await method(self, request, context)
            except Exception as exc:
                error = _service_error(exc, name)
            outcome.code = error.grpc_code
            await _abort(context, error)

        return handler

    return decorate


class GleeServicer:
    """Implements ``glee.v1.Glee`` on top of an ``Engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def authenticate(self, context: grpc.aio.ServicerContext) -> None:
        metadata = {key.lower(): value for key, value in context.invocation_metadata() or ()}
        check_api_key(self.engine.settings.api_keys, metadata.get("x-api-key"), metadata.get("authorization"))

    def observe(self, endpoint: str, code: str, started: float) -> None:
        metrics = self.engine.metrics
        metrics.requests.labels("grpc", endpoint, code).inc()
        metrics.request_seconds.labels("grpc", endpoint).observe(time.perf_counter() - started)

    @_rpc("Detect")
    async def detect(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        r = await self.engine.detect(_image(request), detect_params(request))
        return pb.DetectResponse(
            model=r.model,
            image=_size(r.image),
            detections=[_detection(d) for d in r.detections],
            timing_ms=_timing(r.timing_ms),
        )

    @_rpc("Ground")
    async def ground(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        r = await self.engine.ground(_image(request), ground_params(request))
        results = [
            pb.GroundResult(
                expression=g.expression, **({"detection": _detection(g.detection)} if g.detection else {})
            )
            for g in r.results
        ]
        return pb.GroundResponse(
            model=r.model, image=_size(r.image), results=results, timing_ms=_timing(r.timing_ms)
        )

    @_rpc("Segment")
    async def segment(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        r = await self.engine.segment(_image(request), segment_params(request))
        results = [pb.SegmentResult(score=s.score, box=s.box, **_mask(s.mask)) for s in r.results]
        return pb.SegmentResponse(
            model=r.model, image=_size(r.image), results=results, timing_ms=_timing(r.timing_ms)
        )

    @_rpc("GetSession")
    async def get_session(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return _session(await self.engine.get_session(request.session_id))

    @_rpc("DeleteSession")
    async def delete_session(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self.engine.delete_session(request.session_id)
        return pb.DeleteSessionResponse()

    @_rpc("ListModels")
    async def list_models(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        models = self.engine.models().models
        return pb.ListModelsResponse(
            models=[pb.ModelInfo(name=m.name, backend=m.backend, ready=m.ready) for m in models]
        )

    async def track(
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        """First message opens or resumes a session, every later one is a frame; responses in order.
        A client that goes away ends the stream only: the session stays in the store until its TTL."""
        outcome = _Outcome(self, "Track", context)
        try:
            self.authenticate(context)
            first = await anext(aiter(requests), None)
            if first is None:
                return
            kind = first.WhichOneof("message")
            if kind == "open":
                info = await self.engine.create_session(session_config(first.open))
            elif kind == "resume_session_id":
                info = await self.engine.get_session(first.resume_session_id)
            else:
                raise SchemaValidationError("the first Track message must be 'open' or 'resume_session_id'")
            yield pb.TrackResponse(session=_session(info))
            async for message in requests:
                if message.WhichOneof("message") != "frame":
                    raise SchemaValidationError("after the first, every Track message must be a 'frame'")
                frame = message.frame
                result = await self.engine.add_frame(info.session_id, frame.image, frame_params(frame))
                yield pb.TrackResponse(frame=_frame(result))
            return
        except Exception as exc:
            error = _service_error(exc, "Track")
        outcome.code = error.grpc_code
        await _abort(context, error)


async def start_grpc_server(engine: Engine, host: str, port: int) -> tuple[grpc.aio.Server, int, Any]:
    """Start the gRPC server; returns (server, bound port, health servicer to flip when ready)."""
    max_bytes = engine.settings.max_body_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_bytes),
            ("grpc.max_send_message_length", 256 * 1024 * 1024),
            # Without this a second server on a port in use starts and the kernel splits the connections
            # (and so the in-memory sessions) between the two processes.
            ("grpc.so_reuseport", 0),
        ]
    )
    server.add_generic_rpc_handlers((generic_handler(GleeServicer(engine)),))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:
        raise OSError(
            f"cannot listen for gRPC on {host}:{port}: in use, or not an address of this host"
        ) from exc
    await server.start()
    return server, bound, health_servicer


async def set_serving(health_servicer: Any, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, status)
