"""The pieces between the wire and the model: image decoding and its limits, mask/box encodings,
request validation, API keys, settings from the environment and the gRPC plumbing."""

from __future__ import annotations

import asyncio
import base64
import http.server
import io
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from typer.testing import CliRunner

from glee.cli import app as cli_app
from glee.client import decode_mask
from glee.model.predictor import require_device
from glee.service import grpc_api, protos
from glee.service.auth import check_api_key
from glee.service.encoding import decode_rle, encode_box, encode_mask, encode_rle, mask_to_polygons
from glee.service.engine import _model_prompts
from glee.service.errors import (
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    QueueFullError,
    SchemaValidationError,
    UnauthenticatedError,
)
from glee.service.images import RemoteImageFetcher, decode_base64, decode_image, is_url
from glee.service.schemas import (
    DetectParams,
    FrameParams,
    GroundParams,
    RleMask,
    RlePrompt,
    SegmentParams,
    SessionConfig,
    parse,
)
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


def test_16_bit_grayscale_is_scaled_to_8_bits_and_wider_pixels_are_refused() -> None:
    deep = np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 21  # 0 ... 64491
    for fmt in ("PNG", "TIFF"):
        rgb = decode_image(encoded(deep, fmt), 10**6)
        assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
        assert np.array_equal(rgb[..., 0], (deep >> 8).astype(np.uint8)) and np.array_equal(
            rgb[..., 2], rgb[..., 0]
        )
    for wide in (deep.astype(np.int32), deep.astype(np.float32) / 65535):
        with pytest.raises(InvalidInputError) as info:
            decode_image(encoded(wide, "TIFF"), 10**6)
        assert info.value.code == "unsupported_image" and "8- or 16-bit" in info.value.message


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


def test_url_schemes_are_case_insensitive() -> None:
    assert all(is_url(url) for url in ("http://a.example/x", "HTTPS://a.example/x", "Http://a.example/x"))
    assert not any(is_url(text) for text in ("ftp://a.example/x", "aHR0cDovL2E=", "http:/a.example"))


class _OneImage(http.server.BaseHTTPRequestHandler):
    body = encoded(RGB, "PNG")

    def do_GET(self) -> None:
        redirects = {"/moved.png": "/image.png", "/loop.png": "/loop.png", "/away.png": "http://a.example/x"}
        if self.path in redirects:
            self.send_response(302)
            self.send_header("Location", redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/slow.png":
            time.sleep(1.0)
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
    # Redirects are followed within the allow-list only, and not for ever.
    assert asyncio.run(fetch(f"{image_host}/moved.png")) == _OneImage.body
    for path, code, message in (
        ("/away.png", "url_not_allowed", "host 'a.example' is not in the remote image allow-list"),
        ("/loop.png", "url_fetch_failed", "more than 5 redirects"),
    ):
        with pytest.raises(InvalidInputError) as info:
            asyncio.run(fetch(f"{image_host}{path}"))
        assert info.value.code == code and message in info.value.message, path
    # Malformed URLs on an allowed host: refused before any connection, or by httpx, never a crash.
    for url in ("http://127.0.0.1:99999/x.png", "http://127.0.0.1:abc/x.png", f"{image_host}/\u0000.png"):
        with pytest.raises(InvalidInputError) as info:
            asyncio.run(fetch(url))
        assert info.value.code == "url_fetch_failed", url
    upper = image_host.replace("http://", "HTTP://")
    assert asyncio.run(fetch(f"{upper}/image.png")) == _OneImage.body
    with pytest.raises(InvalidInputError) as info:
        asyncio.run(fetch(f"{image_host}/slow.png", timeout_s=0.2))
    assert info.value.code == "url_fetch_failed"
    assert (
        info.value.message.startswith("fetching the image timed out after 0.2 s (")
        and "Timeout" in info.value.message
    )


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


def test_rle_counts_must_cover_exactly_the_mask_size() -> None:
    """pycocotools fills the pixels that short counts leave out with uninitialised memory."""
    mask = shapes_mask()
    counts = encode_rle(mask).counts
    short = encode_rle(mask[:100]).counts  # valid counts of a 100x160 mask: 5/6 of the pixels
    for bad in ("", short, counts + "1", counts[:-1] + "\x7f", "0" + chr(48 + 0x20)):
        with pytest.raises(InvalidInputError) as info:
            decode_rle(RleMask(size=(120, 160), counts=bad), 120, 160)
        assert info.value.code == "invalid_prompt", bad
    assert "cover 16000 pixels" in _rle_error(short) and "has 19200" in _rle_error(short)
    full = encode_rle(np.ones((120, 160), bool)).counts
    assert decode_rle(RleMask(size=(120, 160), counts=full), 120, 160).all()


def test_mask_prompts_take_uncompressed_rle_counts_too() -> None:
    """COCO's iscrowd annotations carry their runs as a list of integers (column-major, zeros first)."""
    mask = shapes_mask()
    flat = mask.flatten(order="F").astype(np.int8)
    runs = np.diff([0, *(np.flatnonzero(np.diff(flat)) + 1), flat.size]).tolist()
    runs = [0, *runs] if flat[0] else runs
    prompt = parse(FrameParams, {"prompts": [{"mask": {"size": [120, 160], "counts": runs}}]}).prompts[0]
    assert np.array_equal(decode_rle(prompt.mask, 120, 160), mask)
    with pytest.raises(InvalidInputError) as info:
        decode_rle(RlePrompt(size=(120, 160), counts=runs[:-1]), 120, 160)
    assert "cover" in info.value.message
    with pytest.raises(SchemaValidationError):
        parse(FrameParams, {"prompts": [{"mask": {"size": [120, 160], "counts": [5, -1]}}]})


def _rle_error(counts: str) -> str:
    with pytest.raises(InvalidInputError) as info:
        decode_rle(RleMask(size=(120, 160), counts=counts), 120, 160)
    return info.value.message


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
        '{"categories": ["circle"], "score_threshold": "0.5"}',
        '{"categories": ["circle"], "score_threshold": true}',
        '{"categories": ["circle"], "max_detections": true}',
        '{"categories": ["circle"], "max_detections": 2.0}',
        '{"categories": ["circle"], "max_detections": "2"}',
        "not json",
    ]
    for body in bad_bodies:
        with pytest.raises(SchemaValidationError) as info:
            parse(DetectParams, body)
        assert info.value.http_status == 422 and info.value.details, body
    ints = parse(DetectParams, '{"categories": ["circle"], "score_threshold": 1, "max_detections": 3}')
    assert (ints.score_threshold, ints.max_detections) == (1.0, 3)
    points = '{"prompts": [{"points": [[1, 2.5]], "labels": [1]}, {"box": [1, 2, 3.5, 4]}]}'
    assert parse(SegmentParams, points).prompts[0].points == [(1.0, 2.5)]
    for prompt in ('{"points": [[1, 2]], "labels": [true]}', '{"points": [[1, "2"]], "labels": [1]}'):
        with pytest.raises(SchemaValidationError):
            parse(SegmentParams, f'{{"prompts": [{prompt}]}}')
    with pytest.raises(SchemaValidationError):
        parse(FrameParams, '{"prompts": [{"mask": {"size": ["2", 3], "counts": "06"}}]}')


def test_categories_and_expressions_are_distinct_and_returned_as_sent() -> None:
    assert parse(DetectParams, {"categories": ["red circle", "circle"]}).categories == [
        "red circle",
        "circle",
    ]
    cases = [
        (DetectParams, {"categories": ["circle", "circle"]}, ["categories"], "'circle' repeats 'circle'"),
        (DetectParams, {"categories": ["circle", "Circle"]}, ["categories"], "ignoring case"),
        (DetectParams, {"categories": ["red circle", "red  circle"]}, ["categories"], "repeated spaces"),
        (GroundParams, {"expressions": ["the dot", "the dot"]}, ["expressions"], "repeats"),
        (DetectParams, {"categories": ["circle", " square"]}, ["categories", 1], "whitespace"),
        (GroundParams, {"expressions": ["the dot\n"]}, ["expressions", 0], "whitespace"),
        (SessionConfig, {"task": "track", "categories": ["a", "a"]}, ["categories"], "repeats"),
    ]
    for model, body, loc, text in cases:
        with pytest.raises(SchemaValidationError) as info:
            parse(model, body)
        assert [d["loc"] for d in info.value.details] == [loc] and text in info.value.message, body


def test_error_locations_are_the_paths_the_client_wrote() -> None:
    body = {
        "prompts": [{"box": [1, 2, 3, 4]}, {"points": [[1, "x"]], "labels": [1]}, {"box": [1, 2, 3, "4"]}]
    }
    with pytest.raises(SchemaValidationError) as info:
        parse(SegmentParams, body)
    assert [d["loc"] for d in info.value.details] == [
        ["prompts", 1, "points", 0, 1],
        ["prompts", 2, "box", 3],
    ]
    assert info.value.message.startswith("prompts.1.points.0.1: ")
    with pytest.raises(SchemaValidationError) as info:
        parse(FrameParams, {"prompts": [{"mask": {"size": [2, 3]}}]})
    assert [d["loc"] for d in info.value.details] == [["prompts", 0, "mask", "counts"]]
    # Counts of either spelling that fail: one error at the field, not one per spelling under pydantic's
    # names for them (``counts.list[constrained-int].0``).
    for counts in ([-1, 5], [True, 5], 5):
        with pytest.raises(SchemaValidationError) as info:
            parse(FrameParams, {"prompts": [{"mask": {"size": [2, 3], "counts": counts}}]})
        assert [d["loc"] for d in info.value.details] == [["prompts", 0, "mask", "counts"]], counts
        assert "non-negative integer run lengths" in info.value.message
    with pytest.raises(SchemaValidationError) as info:
        parse(SessionConfig, "{")
    assert info.value.message.startswith("body: Invalid JSON")
    with pytest.raises(SchemaValidationError) as info:
        parse(SessionConfig, {"task": "track"}, root=None)
    assert info.value.message == "task 'track' needs categories"


def test_prompt_errors_against_the_image_name_the_prompt() -> None:
    prompts = parse(
        FrameParams,
        {"prompts": [{"box": [1, 2, 30, 40]}, {"box": [50, 2, 10, 40]}, {"points": [[1, 2]], "labels": [1]}]},
    ).prompts
    assert len(_model_prompts(prompts[:1], (48, 64))) == 1
    with pytest.raises(InvalidInputError) as info:
        _model_prompts(prompts, (48, 64))
    assert info.value.code == "invalid_prompt" and info.value.message.startswith(
        "prompts[1]: box must have x2 > x1"
    )
    empty = parse(
        FrameParams, {"prompts": [{"box": [1, 2, 30, 40]}, {"mask": {"size": [48, 64], "counts": ""}}]}
    )
    with pytest.raises(InvalidInputError) as info:
        _model_prompts(empty.prompts, (48, 64))
    assert info.value.message.startswith("prompts[1]: mask RLE counts cover 0 pixels")


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
    stray = [
        ({"task": "vos", "categories": ["circle"]}, "task 'vos' does not take categories"),
        ({"task": "vos", "expression": "the dot"}, "task 'vos' does not take expression"),
        (
            {"task": "rvos", "expression": "the dot", "categories": ["dot"]},
            "task 'rvos' does not take categories",
        ),
        (
            {"task": "track", "categories": ["dot"], "expression": "the dot"},
            "task 'track' does not take expression",
        ),
    ]
    for body, message in stray:
        with pytest.raises(SchemaValidationError) as info:
            parse(SessionConfig, body)
        assert message in info.value.message


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
    assert Settings(log_level="WARNING").log_level == "warning"


def test_serve_reports_bad_settings_and_devices_in_one_line() -> None:
    result = CliRunner().invoke(cli_app, ["serve", "--log-level", "loud"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "error: log_level: log level must be one of debug, info" in result.output
    require_device("cpu")
    unusable = ["bogus"] + ([] if torch.cuda.is_available() else ["cuda"])
    for device in unusable:
        with pytest.raises(ValueError, match=f"device '{device}' is not usable here: ."):
            require_device(device)


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


def test_grpc_requests_with_both_image_and_url_and_grpc_messages_without_the_body_label() -> None:
    pb = protos.pb
    with pytest.raises(SchemaValidationError) as info:
        grpc_api._image(pb.DetectRequest(image=b"png", image_url="https://a.example/x.png"))
    assert info.value.grpc_code == "INVALID_ARGUMENT" and "not both" in info.value.message
    assert grpc_api._image(pb.DetectRequest(image_url="HTTPS://a.example/x.png")) == "HTTPS://a.example/x.png"
    with pytest.raises(SchemaValidationError) as info:
        grpc_api.session_config(pb.SessionConfig(task="vos", categories=["dot"]))
    assert info.value.message == "task 'vos' does not take categories"


class _AbortedCall:
    """What ``grpc_api._abort`` hands to ``ServicerContext.abort``."""

    async def abort(self, code: grpc.StatusCode, details: str, trailing_metadata: tuple) -> None:
        self.status, self.details, self.trailers = code, details, dict(trailing_metadata)


def aborted(error: Exception) -> _AbortedCall:
    call = _AbortedCall()
    asyncio.run(grpc_api._abort(call, error))
    return call


def test_grpc_failures_carry_the_api_error_code_as_trailing_metadata() -> None:
    call = aborted(InvalidInputError("bad", code="invalid_prompt"))
    assert (call.status, call.details) == (grpc.StatusCode.INVALID_ARGUMENT, "bad")
    assert call.trailers == {"glee-error-code": "invalid_prompt"}
    call = aborted(QueueFullError("full", retry_after_s=3))
    assert call.status == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert call.trailers == {"glee-error-code": "queue_full", "retry-after": "3"}


def test_grpc_status_messages_are_cut_to_fit_the_metadata_limits() -> None:
    """gRPC drops a status whose percent-encoded message passes 8 KiB, trailers and all."""
    long = "session 'é" + "a" * 20000 + "' not found"
    call = aborted(NotFoundError(long, code="session_not_found"))
    assert call.trailers == {"glee-error-code": "session_not_found"}
    assert len(call.details.encode()) < 2100 and call.details.startswith("session 'é")
    assert call.details.endswith(f"... ({len(long.encode())} bytes in all)")
    assert aborted(NotFoundError("short")).details == "short"
