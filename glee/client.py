"""Python clients for glee-serve: ``GleeClient`` (REST, httpx) and ``GleeGrpcClient`` (gRPC).

Both take images as a file path, encoded bytes, a PIL image or an HxWx3 uint8 RGB array, and raise
``GleeError`` with the server's error code. ``decode_mask`` turns any returned mask (RLE, polygons, PNG)
back into a bool array. Neither client imports torch or the model.

    from glee.client import GleeClient, decode_mask
    with GleeClient("http://localhost:8000") as client:
        result = client.detect("scene.png", ["circle", "red square"])
        for det in result["detections"]:
            mask = decode_mask(det["mask"], result["image"]["height"], result["image"]["width"])
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

ImageLike = str | os.PathLike[str] | bytes | Image.Image | np.ndarray


class GleeError(Exception):
    """An error answer: ``status`` (HTTP status or gRPC code name), ``code`` and ``message``."""

    def __init__(self, status: int | str, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def encode_image(image: ImageLike) -> bytes:
    """Encoded image bytes: files and bytes are sent as they are, arrays and PIL images as PNG."""
    if isinstance(image, bytes):
        return image
    if isinstance(image, str | os.PathLike):
        return Path(image).read_bytes()
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def decode_mask(mask: Any, height: int, width: int) -> np.ndarray:
    """A returned mask (RLE dict, polygon list or base64 PNG, REST or gRPC form) -> bool [H, W]."""
    if hasattr(mask, "WhichOneof"):
        mask = _grpc_mask(mask)
    if mask is None:
        raise ValueError("no mask in this result (mask_format was 'none')")
    if isinstance(mask, dict):
        return mask_utils.decode({"size": mask["size"], "counts": mask["counts"].encode()}).astype(bool)
    if isinstance(mask, list):
        if not mask:
            return np.zeros((height, width), bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(mask, height, width))
        return mask_utils.decode(rle).astype(bool)
    png = base64.b64decode(mask) if isinstance(mask, str) else mask
    return np.asarray(Image.open(io.BytesIO(png))) > 0


def _grpc_mask(mask: Any) -> Any:
    kind = mask.WhichOneof("format")
    if kind == "rle":
        return {"size": list(mask.rle.size), "counts": mask.rle.counts}
    if kind == "polygons":
        return [list(p.coords) for p in mask.polygons.polygons]
    return mask.png if kind == "png" else None


class GleeClient:
    """REST client. Image requests are multipart uploads (no base64 overhead); answers are the JSON
    objects documented in the API (``dict``)."""

    def __init__(
        self, base_url: str = "http://localhost:8000", *, api_key: str | None = None, timeout: float = 120.0
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def __enter__(self) -> GleeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def models(self) -> dict:
        return self._call("GET", "/v1/models")

    def detect(self, image: ImageLike, categories: list[str], **options: Any) -> dict:
        """``options``: score_threshold, max_detections, mask_format, box_format."""
        return self._upload("/v1/detect", image, {"categories": categories, **options})

    def ground(self, image: ImageLike, expressions: list[str], **options: Any) -> dict:
        return self._upload("/v1/ground", image, {"expressions": expressions, **options})

    def segment(self, image: ImageLike, prompts: list[dict], **options: Any) -> dict:
        """``prompts``: ``{"points": [[x, y]], "labels": [1]}``, ``{"box": [x1, y1, x2, y2]}`` or
        ``{"scribble": [[x, y], ...]}``, one object each."""
        return self._upload("/v1/segment", image, {"prompts": prompts, **options})

    def create_session(self, task: str, **config: Any) -> dict:
        """``config``: categories (track), expression (rvos), score_threshold, max_detections, mask_format,
        box_format."""
        return self._call("POST", "/v1/sessions", json={"task": task, **config})

    def add_frame(self, session_id: str, image: ImageLike, prompts: list[dict] | None = None) -> dict:
        """``prompts`` (task "vos"): as for ``segment``, or ``{"mask": bool HxW array or RLE dict}``; with
        ``"object_id"``, a prompt corrects that followed object instead of adding one."""
        fields = {"prompts": [_with_rle(p) for p in prompts]} if prompts else {}
        return self._upload(f"/v1/sessions/{session_id}/frames", image, fields)

    def get_session(self, session_id: str) -> dict:
        return self._call("GET", f"/v1/sessions/{session_id}")

    def delete_session(self, session_id: str) -> None:
        self._call("DELETE", f"/v1/sessions/{session_id}")

    def _upload(self, path: str, image: ImageLike, fields: dict[str, Any]) -> dict:
        files = {
            "file": ("image", encode_image(image), "application/octet-stream"),
            "request": (None, json.dumps(fields), "application/json"),
        }
        return self._call("POST", path, files=files)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "http_error", "message": response.text}
            raise GleeError(response.status_code, error["code"], error["message"])
        return response.json() if response.content else None


class GleeGrpcClient:
    """gRPC client; answers are the ``glee.v1`` protobuf messages (``glee.service.protos.pb``)."""

    def __init__(
        self,
        target: str = "localhost:50051",
        *,
        api_key: str | None = None,
        max_message_bytes: int = 64 << 20,
    ) -> None:
        import grpc

        from glee.service.protos import GleeStub

        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        self._grpc = grpc
        self._channel = grpc.insecure_channel(target, options=options)
        self._stub = GleeStub(self._channel)
        self._metadata = (("x-api-key", api_key),) if api_key else ()

    def __enter__(self) -> GleeGrpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def detect(self, image: ImageLike, categories: list[str], **options: Any) -> Any:
        return self._unary(
            "Detect", _pb().DetectRequest(image=encode_image(image), categories=categories, **options)
        )

    def ground(self, image: ImageLike, expressions: list[str], **options: Any) -> Any:
        request = _pb().GroundRequest(image=encode_image(image), expressions=expressions, **options)
        return self._unary("Ground", request)

    def segment(self, image: ImageLike, prompts: list[dict], **options: Any) -> Any:
        request = _pb().SegmentRequest(
            image=encode_image(image), prompts=[_prompt(p) for p in prompts], **options
        )
        return self._unary("Segment", request)

    def get_session(self, session_id: str) -> Any:
        return self._unary("GetSession", _pb().SessionRef(session_id=session_id))

    def delete_session(self, session_id: str) -> None:
        self._unary("DeleteSession", _pb().SessionRef(session_id=session_id))

    def track(
        self,
        frames: Iterable[ImageLike | tuple[ImageLike, list[dict]]],
        *,
        session_id: str | None = None,
        **config: Any,
    ) -> Iterator[Any]:
        """Stream frames (an image, or ``(image, prompts)``) through a new session (``config``: task,
        categories, expression, ...) or the existing ``session_id``. Yields the session's ``SessionInfo``
        first, then one ``FrameResult`` per frame, in order. A bad config field raises ``ValueError``
        before anything is sent; an error while reading or encoding a frame is raised as itself rather
        than as the stream's cancellation."""
        pb = _pb()
        if session_id is not None and config:
            raise TypeError("pass either session_id (resume) or a session config (open), not both")
        if session_id is not None:
            first = pb.TrackRequest(resume_session_id=session_id)
        else:
            first = pb.TrackRequest(open=pb.SessionConfig(**config))
        failures: list[Exception] = []

        def requests() -> Iterator[Any]:
            yield first
            try:
                for frame in frames:
                    image, prompts = frame if isinstance(frame, tuple) else (frame, [])
                    yield pb.TrackRequest(
                        frame=pb.Frame(image=encode_image(image), prompts=[_prompt(p) for p in prompts])
                    )
            except Exception as exc:
                failures.append(exc)
                raise

        try:
            for response in self._stub.Track(requests(), metadata=self._metadata):
                yield getattr(response, response.WhichOneof("event"))
        except self._grpc.RpcError as exc:
            if failures:
                raise failures[0] from exc
            raise _grpc_error(exc) from exc

    def _unary(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, metadata=self._metadata)
        except self._grpc.RpcError as exc:
            raise _grpc_error(exc) from exc


def _pb() -> Any:
    from glee.service.protos import pb

    return pb


def _prompt(prompt: dict) -> Any:
    message = _prompt_kind(prompt)
    if prompt.get("object_id") is not None:
        message.object_id = prompt["object_id"]
    return message


def _prompt_kind(prompt: dict) -> Any:
    pb = _pb()
    if "points" in prompt:
        points = [pb.Point(x=x, y=y) for x, y in prompt["points"]]
        return pb.Prompt(
            points=pb.PointsPrompt(points=points, labels=prompt.get("labels", [1] * len(points)))
        )
    if "box" in prompt:
        x1, y1, x2, y2 = prompt["box"]
        return pb.Prompt(box=pb.Box(x1=x1, y1=y1, x2=x2, y2=y2))
    if "scribble" in prompt:
        return pb.Prompt(scribble=pb.Scribble(points=[pb.Point(x=x, y=y) for x, y in prompt["scribble"]]))
    if "mask" in prompt:
        rle = _with_rle(prompt)["mask"]
        return pb.Prompt(mask=pb.Rle(size=list(rle["size"]), counts=rle["counts"]))
    raise ValueError(f"a prompt needs 'points', 'box', 'scribble' or 'mask', got {sorted(prompt)}")


def _with_rle(prompt: dict) -> dict:
    """A mask prompt given as a bool array becomes the COCO RLE the API takes."""
    mask = prompt.get("mask")
    if not isinstance(mask, np.ndarray):
        return prompt
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle = {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode()}
    return prompt | {"mask": rle}


def _grpc_error(exc: Any) -> GleeError:
    """The server's API error code comes in a trailer; errors raised by gRPC itself (a message over the
    size limit, a server that cannot be reached) have none and get the status name as their code."""
    from glee.service.protos import ERROR_CODE_KEY

    trailers = dict(exc.trailing_metadata() or ())
    status = exc.code().name
    return GleeError(status, trailers.get(ERROR_CODE_KEY, status.lower()), exc.details() or "")
