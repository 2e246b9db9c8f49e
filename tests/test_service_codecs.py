"""The pieces between the wire and the model: image decoding and its limits, mask/box encodings,
request validation, API keys, settings from the environment and the gRPC plumbing."""

from __future__ import annotations

import asyncio
import base64
import http.server
import io
import threading
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from glee.client import decode_mask
from glee.service import grpc_api, protos
from glee.service.auth import check_api_key
from glee.service.encoding import decode_rle, encode_box, encode_mask, encode_rle, mask_to_polygons
from glee.service.errors import (
    InvalidInputError,
    PayloadTooLargeError,
    SchemaValidationError,
    UnauthenticatedError,
)
from glee.service.images import RemoteImageFetcher, decode_base64, decode_image
from glee.service.schemas import DetectParams, FrameParams, SegmentParams, SessionConfig, parse
from glee.service.settings import Settings


def encoded(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


RGB = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------ images
def test_common_image_files_decode_to_rgb_arrays() -> None:
    assert np.array_equal(decode_image(encoded(RGB, "PNG"), 10**6), RGB)
    assert decode_image(encoded(RGB, "JPEG"), 10**6).shape == (48, 64, 3)
    gray = decode_image(encoded(RGB[..., 0], "PNG"), 10**6)
    assert gray.shape == (48, 64, 3) and np.array_equal(gray[..., 1], RGB[..., 0])
    rgba = np.dstack([RGB, np.full((48, 64), 7, np.uint8)])
    assert np.array_equal(decode_image(encoded(rgba, "PNG"), 10**6), RGB)


@pytest.mark.parametrize(
    ("data", "error", "code"),
    [
        (b"", InvalidInputError, "empty_image"),
        (b"definitely not an image", InvalidInputError, "undecodable_image"),
        (encoded(RGB, "JPEG")[:300], InvalidInputError, "undecodable_image"),
        (encoded(RGB, "PNG")[:-40], InvalidInputError, "undecodable_image"),
    ],
    ids=["empty", "garbage", "truncated-jpeg", "truncated-png"],
)
def test_bad_image_files_are_client_errors(data: bytes, error: type, code: str) -> None:
    with pytest.raises(error) as info:
        decode_image(data, 10**6)
    assert info.value.code == code and info.value.http_status == 400


def test_pixel_limits_are_checked_from_the_header_before_decoding(huge_png: bytes) -> None:
    assert len(huge_png) < 100_000
    with pytest.raises(PayloadTooLargeError) as info:
        decode_image(huge_png, 4096 * 4096)
    assert info.value.http_status == 413
    with pytest.raises(PayloadTooLargeError):
        decode_image(encoded(RGB, "PNG"), 48 * 64 - 1)


def test_base64_accepts_plain_and_data_uris_and_rejects_the_rest() -> None:
    png = encoded(RGB, "PNG")
    text = base64.b64encode(png).decode()
    assert decode_base64(text) == png
    assert decode_base64(f"data:image/png;base64,{text[:40]}\n{text[40:]}") == png
    for bad in ("not base64!", "data:image/png,raw"):
        with pytest.raises(InvalidInputError):
            decode_base64(bad)


class _OneImage(http.server.BaseHTTPRequestHandler):
    body = encoded(RGB, "PNG")

    def do_GET(self) -> None:
        status = 200 if self.path == "/image.png" else 404
        self.send_response(status)
        self.send_header("Content-Length", str(len(self.body) if status == 200 else 0))
        self.end_headers()
        if status == 200:
            self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def image_host() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OneImage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_remote_images_come_only_from_allowed_hosts_and_within_the_size_limit(image_host: str) -> None:
    async def fetch(url: str, **options: object) -> bytes:
        settings = {"enabled": True, "hosts": ["127.0.0.1"], "timeout_s": 5.0, "max_bytes": 10**6} | options
        fetcher = RemoteImageFetcher(**settings)
        try:
            return await fetcher.fetch(url)
        finally:
            await fetcher.aclose()

    assert asyncio.run(fetch(f"{image_host}/image.png")) == _OneImage.body
    cases = [
        ({"enabled": False}, "url_not_allowed"),
        ({"hosts": ["images.example"]}, "url_not_allowed"),
        ({"max_bytes": 100}, "payload_too_large"),
    ]
    for options, code in cases:
        with pytest.raises((InvalidInputError, PayloadTooLargeError)) as info:
            asyncio.run(fetch(f"{image_host}/image.png", **options))
        assert info.value.code == code
    with pytest.raises(InvalidInputError) as info:
        asyncio.run(fetch(f"{image_host}/missing.png"))
    assert info.value.code == "url_fetch_failed"


# ------------------------------------------------------------------------------------------ encodings
def shapes_mask() -> np.ndarray:
    yy, xx = np.mgrid[:120, :160]
    mask = (xx - 50) ** 2 + (yy - 60) ** 2 < 30**2
    mask[20:50, 110:150] = True
    mask[0:6, 0:6] = True  # touches the border
    return mask


def test_rle_is_pycocotools_compatible_and_round_trips() -> None:
    mask = shapes_mask()
    rle = encode_rle(mask)
    assert rle.size == (120, 160)
    assert np.array_equal(mask_utils.decode({"size": [120, 160], "counts": rle.counts.encode()}), mask)
    assert np.array_equal(decode_rle(rle, 120, 160), mask)
    with pytest.raises(InvalidInputError):
        decode_rle(rle, 160, 120)


def test_polygons_rasterize_back_to_the_mask_in_coco_pixel_convention() -> None:
    mask = shapes_mask()
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 3 and all(len(p) % 2 == 0 and len(p) >= 6 for p in polygons)
    assert np.array_equal(decode_mask(polygons, 120, 160), mask)
    assert mask_to_polygons(np.zeros((5, 5), bool)) == []


def test_png_masks_round_trip_and_none_means_no_mask() -> None:
    mask = shapes_mask()
    png = encode_mask(mask, "png")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(png)))) == 255, mask)
    assert encode_mask(mask, "none") is None


def test_box_formats() -> None:
    box = np.array([10.0, 20.0, 110.5, 70.25], np.float32)
    assert encode_box(box, "xyxy") == [10.0, 20.0, 110.5, 70.25]
    assert encode_box(box, "xywh") == [10.0, 20.0, 100.5, 50.25]


# ------------------------------------------------------------------------------------------ requests
def test_request_schemas_reject_wrong_types_ranges_and_unknown_fields() -> None:
    assert parse(DetectParams, '{"categories": ["circle"]}').score_threshold == 0.3
    bad_bodies = [
        '{"categories": "circle"}',
        '{"categories": []}',
        '{"categories": ["  "]}',
        '{"categories": ["circle"], "score_threshold": 2}',
        '{"categories": ["circle"], "mask_format": "bmp"}',
        '{"categories": ["circle"], "score_treshold": 0.5}',
        "not json",
    ]
    for body in bad_bodies:
        with pytest.raises(SchemaValidationError) as info:
            parse(DetectParams, body)
        assert info.value.http_status == 422 and info.value.details


def test_prompts_are_told_apart_by_their_key() -> None:
    prompts = parse(
        SegmentParams,
        {
            "prompts": [
                {"points": [[1, 2]], "labels": [1]},
                {"box": [1, 2, 3, 4]},
                {"scribble": [[1, 2], [3, 4]]},
            ]
        },
    ).prompts
    assert [type(p).__name__ for p in prompts] == ["PointsPrompt", "BoxPrompt", "ScribblePrompt"]
    for prompt in ({}, {"mask": {"size": [1, 1], "counts": ""}}, {"points": [[1, 2]], "box": [1, 2, 3, 4]}):
        with pytest.raises(SchemaValidationError):
            parse(SegmentParams, {"prompts": [prompt]})
    frame = parse(FrameParams, {"prompts": [{"mask": {"size": [2, 3], "counts": "06"}}]})
    assert type(frame.prompts[0]).__name__ == "MaskPrompt"


def test_session_config_requires_what_each_task_needs() -> None:
    assert parse(SessionConfig, {"task": "vos"}).task == "vos"
    assert parse(SessionConfig, {"task": "track", "categories": ["circle"]}).categories == ["circle"]
    for body in ({"task": "track"}, {"task": "rvos"}, {"task": "count"}, {}):
        with pytest.raises(SchemaValidationError):
            parse(SessionConfig, body)


def test_api_keys_from_header_or_bearer_token() -> None:
    check_api_key([], None, None)
    check_api_key(["k1", "k2"], "k2", None)
    check_api_key(["k1"], None, "Bearer k1")
    for api_key, authorization in ((None, None), ("nope", None), (None, "Bearer nope"), (None, "Basic k1")):
        with pytest.raises(UnauthenticatedError):
            check_api_key(["k1"], api_key, authorization)


def test_settings_read_comma_separated_lists_and_flags_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GLEE_API_KEYS", "alpha, beta")
    monkeypatch.setenv("GLEE_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("GLEE_TEXT_CACHE", "false")
    monkeypatch.setenv("GLEE_REMOTE_IMAGE_HOSTS", "images.example")
    settings = Settings()
    assert settings.api_keys == ["alpha", "beta"] and settings.max_batch_size == 8
    assert settings.text_cache is False and settings.remote_image_hosts == ["images.example"]
    assert Settings(max_batch_size=2).max_batch_size == 2


# ------------------------------------------------------------------------------------------ gRPC
def test_every_rpc_in_the_proto_has_a_servicer_method_and_a_stub_attribute() -> None:
    service = protos.pb.DetectRequest.DESCRIPTOR.file.services_by_name["Glee"]
    names = [method.name for method in service.methods]
    assert {"Detect", "Ground", "Segment", "Track", "GetSession", "DeleteSession", "ListModels"} <= set(names)
    for name in names:
        assert callable(getattr(grpc_api.GleeServicer, protos.method_attribute(name)))
    with grpc.insecure_channel("127.0.0.1:1") as channel:
        stub = protos.GleeStub(channel)
        assert all(callable(getattr(stub, name)) for name in names)
    track = service.methods_by_name["Track"]
    assert track.client_streaming and track.server_streaming


def test_grpc_requests_convert_to_the_rest_models_with_presence_respected() -> None:
    pb = protos.pb
    request = pb.DetectRequest(categories=["circle"], max_detections=0, mask_format="polygon")
    # max_detections=0 was set explicitly, so it is validated (and rejected), not silently defaulted.
    with pytest.raises(SchemaValidationError):
        grpc_api.detect_params(request)
    params = grpc_api.detect_params(pb.DetectRequest(categories=["circle"], score_threshold=0.0))
    assert (params.score_threshold, params.max_detections, params.mask_format) == (0.0, 100, "rle")
    segment = grpc_api.segment_params(
        pb.SegmentRequest(
            prompts=[
                pb.Prompt(points=pb.PointsPrompt(points=[pb.Point(x=0, y=5)], labels=[1])),
                pb.Prompt(box=pb.Box(x1=1, y1=2, x2=3, y2=4)),
            ]
        )
    )
    assert segment.prompts[0].points == [(0.0, 5.0)] and segment.prompts[1].box == (1, 2, 3, 4)
