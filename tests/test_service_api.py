"""End-to-end contract of ``glee serve``: real server processes, real sockets, real redis-server.

Three servers run a randomly initialised demo model (outputs are meaningless but deterministic, which
is all a contract test needs; tests/test_service_demo.py checks meaning with the trained model):

* A and B share one Redis and an API key: every endpoint, every error, and a session started on A and
  continued on B.
* C points at a Redis that is down, has no API key, and batches with a long queue delay and a queue of
  one, so a burst of requests overflows deterministically.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from pycocotools import mask as mask_utils

from glee.client import GleeClient, GleeError, GleeGrpcClient, decode_mask
from glee.service.launcher import ServerProcess, free_ports
from glee.service.protos import GleeStub, pb

pytestmark = pytest.mark.slow

KEY = "test-key"
MAX_BODY = 2_000_000
AUTH = {"X-API-Key": KEY}


@dataclass
class Servers:
    a: ServerProcess
    b: ServerProcess
    c: ServerProcess


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from glee.model import GleePredictor
    from glee.model.checkpoint import save_pretrained

    predictor = GleePredictor.random("demo", seed=0)
    return save_pretrained(predictor.model, tmp_path_factory.mktemp("model") / "demo-random", predictor.cfg)


@pytest.fixture(scope="module")
def servers(
    launch_service: Callable[..., ServerProcess], redis_url: str, model_dir: Path, unused_port: int
) -> Iterator[Servers]:
    common = {"model": model_dir, "warmup": "false", "max_body_bytes": MAX_BODY, "session_ttl_s": 120}
    shared = common | {"redis_url": redis_url, "api_keys": KEY, "max_batch_size": 4, "max_queue_delay_ms": 2}
    dead_redis = f"redis://127.0.0.1:{unused_port}/0"
    started = [
        launch_service("a", **shared),
        launch_service("b", **shared),
        launch_service(
            "c", **common, redis_url=dead_redis, max_batch_size=8, max_queue_delay_ms=2000, max_queue_size=1
        ),
    ]
    try:
        for server in started:
            server.wait_ready()
        yield Servers(*started)
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def rest_a(servers: Servers) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=servers.a.http, headers=AUTH, timeout=300) as client:
        yield client


@pytest.fixture(scope="module")
def grpc_a(servers: Servers) -> Iterator[GleeGrpcClient]:
    with GleeGrpcClient(servers.a.grpc, api_key=KEY) as client:
        yield client


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def b64(image: np.ndarray) -> str:
    return b64_bytes(png(image))


def jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG")
    return buffer.getvalue()


def error_of(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    return body["error"]["code"]


# ---------------------------------------------------------------------------------------- ops
@pytest.mark.parametrize(("taken", "protocol"), [("http", "HTTP"), ("grpc", "gRPC")])
def test_a_second_server_on_a_port_in_use_exits_with_one_clear_line(
    servers: Servers, model_dir: Path, taken: str, protocol: str
) -> None:
    """gRPC binds with SO_REUSEPORT by default: a second server would share the port and the kernel would
    split connections, and so in-memory sessions, between the two processes."""
    http_port, grpc_port = free_ports(2)
    ports = {"http": http_port, "grpc": grpc_port}
    ports[taken] = int(getattr(servers.a, taken).rsplit(":", 1)[1])
    command = [sys.executable, "-c", "from glee.cli import app; app()", "serve", "--host", "127.0.0.1"]
    command += ["--http-port", str(ports["http"]), "--grpc-port", str(ports["grpc"])]
    command += ["--model", str(model_dir)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert f"error: cannot listen for {protocol} on 127.0.0.1:{ports[taken]}" in done.stderr
    assert "Traceback" not in done.stderr


def test_health_readiness_models_metrics_and_openapi(servers: Servers, rest_a: httpx.Client) -> None:
    assert httpx.get(f"{servers.a.http}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{servers.a.http}/readyz")
    assert ready.status_code == 200 and ready.json()["model"] == "demo-random"
    assert rest_a.get("/v1/models").json() == {
        "models": [{"name": "demo-random", "backend": "torch", "ready": True}]
    }
    metrics = httpx.get(f"{servers.a.http}/metrics")
    assert metrics.status_code == 200 and "glee_ready 1.0" in metrics.text
    assert 'glee_requests_total{code="200",endpoint="/v1/models",protocol="http"}' in metrics.text
    spec = httpx.get(f"{servers.a.http}/openapi.json").json()
    detect_body = spec["paths"]["/v1/detect"]["post"]["requestBody"]["content"]
    assert set(detect_body) == {"application/json", "multipart/form-data"}
    schemas = spec["components"]["schemas"]
    assert {"DetectRequest", "DetectResponse", "SessionConfig", "FrameResponse", "ErrorResponse"} <= set(
        schemas
    )
    assert {"/v1/ground", "/v1/segment", "/v1/sessions", "/v1/sessions/{session_id}/frames"} <= set(
        spec["paths"]
    )
    assert httpx.get(f"{servers.a.http}/no/such/path").status_code == 404
    metrics = httpx.get(f"{servers.a.http}/metrics").text
    assert 'glee_requests_total{code="200",endpoint="/openapi.json",protocol="http"}' in metrics
    assert 'glee_requests_total{code="404",endpoint="unmatched",protocol="http"}' in metrics


def test_grpc_health_and_reflection(servers: Servers) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(servers.a.grpc) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="glee.v1.Glee")
        )
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = reflection.ServerReflectionInfo(iter([request]))
        names = {s.name for s in answer.list_services_response.service}
        assert {"glee.v1.Glee", "grpc.health.v1.Health"} <= names


# ---------------------------------------------------------------------------------------- images
def check_detections(body: dict, max_detections: int, height: int = 256, width: int = 256) -> None:
    assert body["model"] == "demo-random" and body["image"] == {"width": width, "height": height}
    assert set(body["timing_ms"]) == {"queue", "inference", "total"}
    assert body["timing_ms"]["total"] >= body["timing_ms"]["inference"] > 0
    assert 0 < len(body["detections"]) <= max_detections
    assert [d["id"] for d in body["detections"]] == list(range(len(body["detections"])))
    scores = [d["score"] for d in body["detections"]]
    assert scores == sorted(scores, reverse=True)


def test_detect_json_multipart_and_grpc_return_the_same_detections(
    servers: Servers, rest_a: httpx.Client, grpc_a: GleeGrpcClient, shapes_scene: Callable
) -> None:
    image = shapes_scene(0).image
    categories = ["circle", "blue square", "object"]
    as_json = rest_a.post(
        "/v1/detect",
        json={"image": b64(image), "categories": categories, "score_threshold": 0.0, "max_detections": 5},
    )
    assert as_json.status_code == 200, as_json.text
    rle = as_json.json()
    check_detections(rle, 5)
    assert {d["label"] for d in rle["detections"]} <= set(categories)
    for det in rle["detections"]:
        assert decode_mask(det["mask"], 256, 256).shape == (256, 256)
        x1, y1, x2, y2 = det["box"]
        assert 0 <= x1 <= x2 <= 256 and 0 <= y1 <= y2 <= 256

    with GleeClient(servers.a.http, api_key=KEY) as client:  # multipart upload
        xywh = client.detect(
            image, categories, score_threshold=0.0, max_detections=5, mask_format="polygon", box_format="xywh"
        )
    assert [(d["label"], d["score"]) for d in xywh["detections"]] == [
        (d["label"], d["score"]) for d in rle["detections"]
    ]
    for a, b in zip(rle["detections"], xywh["detections"], strict=True):
        x1, y1, x2, y2 = a["box"]
        assert b["box"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=0.02)
        assert isinstance(b["mask"], list) and all(len(p) % 2 == 0 for p in b["mask"])

    answer = grpc_a.detect(image, categories, score_threshold=0.0, max_detections=5)
    assert answer.model == "demo-random" and (answer.image.width, answer.image.height) == (256, 256)
    assert [d.label for d in answer.detections] == [d["label"] for d in rle["detections"]]
    assert [d.score for d in answer.detections] == pytest.approx(
        [d["score"] for d in rle["detections"]], abs=1e-4
    )
    for a, b in zip(rle["detections"], answer.detections, strict=True):
        assert list(b.box) == pytest.approx(a["box"], abs=0.01)
        assert np.array_equal(decode_mask(b.mask, 256, 256), decode_mask(a["mask"], 256, 256))


def test_ground_returns_one_result_per_expression_in_order(
    rest_a: httpx.Client, grpc_a: GleeGrpcClient, shapes_scene: Callable
) -> None:
    image = shapes_scene(0).image
    expressions = ["the red circle", "the blue square"]
    response = rest_a.post(
        "/v1/ground", json={"image": b64(image), "expressions": expressions, "mask_format": "png"}
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["expression"] for r in results] == expressions
    for result in results:
        detection = result["detection"]
        assert detection["label"] == result["expression"] and len(detection["box"]) == 4
        assert detection["score"] >= 0.1, detection["score"]
        assert decode_mask(detection["mask"], 256, 256).shape == (256, 256)
    answer = grpc_a.ground(image, expressions[:1])
    assert [r.expression for r in answer.results] == expressions[:1]
    assert answer.results[0].detection.mask.WhichOneof("format") == "rle"


def test_segment_returns_one_object_per_prompt(
    rest_a: httpx.Client, grpc_a: GleeGrpcClient, shapes_scene: Callable
) -> None:
    scene = shapes_scene(0)
    prompts = [
        {"points": [[80, 75], [200, 40]], "labels": [1, 0]},
        {"box": scene.box("blue square")},
        {"scribble": [[85, 215], [95, 200], [105, 215]]},
    ]
    response = rest_a.post(
        "/v1/segment", json={"image": b64(scene.image), "prompts": prompts, "box_format": "xywh"}
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 3
    for result in results:
        assert 0.0 <= result["score"] <= 1.0 and len(result["box"]) == 4
        assert decode_mask(result["mask"], 256, 256).shape == (256, 256)
    answer = grpc_a.segment(scene.image, prompts[1:2], mask_format="none")
    assert len(answer.results) == 1 and not answer.results[0].HasField("mask")


# ---------------------------------------------------------------------------------------- video
def frame_summary(frame: dict) -> list[tuple]:
    return [(t["track_id"], t["label"], t["score"], tuple(t["box"])) for t in frame["tracks"]]


def test_a_session_started_on_one_process_continues_on_another_with_the_same_ids(
    servers: Servers, rest_a: httpx.Client, shapes_scene: Callable
) -> None:
    """Twin sessions see the same frames; the twin's second frame runs on process B (resumed from Redis
    over gRPC). Identical outputs prove B continued the exact state A wrote, track IDs included."""
    config = {"task": "track", "categories": ["circle", "square", "triangle"], "score_threshold": 0.05,
              "max_detections": 4}  # fmt: skip
    first, second = shapes_scene(0).image, shapes_scene(12).image
    reference, twin = (rest_a.post("/v1/sessions", json=config).json()["session_id"] for _ in range(2))
    opening = [
        rest_a.post(f"/v1/sessions/{sid}/frames", json={"image": b64(first)}) for sid in (reference, twin)
    ]
    assert [r.status_code for r in opening] == [200, 200]
    assert frame_summary(opening[0].json()) == frame_summary(opening[1].json())
    ids = [t["track_id"] for t in opening[0].json()["tracks"]]
    assert ids and ids == list(range(1, len(ids) + 1))

    expected = rest_a.post(f"/v1/sessions/{reference}/frames", json={"image": b64(second)}).json()
    with GleeGrpcClient(servers.b.grpc, api_key=KEY) as on_b:
        info, frame = on_b.track([second], session_id=twin)
    assert (info.session_id, info.task, info.frames) == (twin, "track", 1)
    assert (frame.session_id, frame.frame_index) == (twin, expected["frame_index"]) == (twin, 1)
    got = [(t.track_id, t.label, round(t.score, 4), tuple(round(v, 2) for v in t.box)) for t in frame.tracks]
    assert got == [(i, label, pytest.approx(s, abs=1e-4), pytest.approx(b, abs=0.01)) for i, label, s, b in
                   frame_summary(expected)]  # fmt: skip

    for server in (servers.a, servers.b):
        state = httpx.get(f"{server.http}/v1/sessions/{twin}", headers=AUTH).json()
        assert state["frames"] == 2 and state["task"] == "track" and 0 < state["expires_in_s"] <= 120
    assert httpx.delete(f"{servers.b.http}/v1/sessions/{twin}", headers=AUTH).status_code == 204
    assert rest_a.get(f"/v1/sessions/{twin}").status_code == 404
    assert rest_a.delete(f"/v1/sessions/{reference}").status_code == 204


def test_a_grpc_stream_that_ends_leaves_its_session_alive(
    servers: Servers, rest_a: httpx.Client, grpc_a: GleeGrpcClient, shapes_scene: Callable
) -> None:
    events = list(
        grpc_a.track(
            [shapes_scene(0).image], task="track", categories=["circle"], max_detections=2, mask_format="none"
        )
    )
    info, frame = events
    assert info.task == "track" and info.frames == 0 and info.expires_in_s == 120
    assert frame.frame_index == 0 and all(not t.HasField("mask") for t in frame.tracks)
    assert rest_a.get(f"/v1/sessions/{info.session_id}").json()["frames"] == 1
    rest_a.delete(f"/v1/sessions/{info.session_id}")


def test_vos_session_follows_the_prompted_objects(servers: Servers, shapes_scene: Callable) -> None:
    with GleeClient(servers.a.http, api_key=KEY) as client:
        session = client.create_session("vos")
        first, second = shapes_scene(0), shapes_scene(6)
        prompts = [{"mask": first.masks["red circle"]}, {"box": first.box("blue square")}]
        opening = client.add_frame(session["session_id"], first.image, prompts)
        assert opening["frame_index"] == 0 and [t["track_id"] for t in opening["tracks"]] == [1, 2]
        following = client.add_frame(session["session_id"], second.image)
        assert following["frame_index"] == 1 and {t["track_id"] for t in following["tracks"]} <= {1, 2}
        for track in following["tracks"]:
            assert decode_mask(track["mask"], 256, 256).shape == (256, 256)
        with pytest.raises(GleeError) as info:  # frames of a session keep their size
            client.add_frame(session["session_id"], second.image[:128])
        assert (info.value.status, info.value.code) == (400, "frame_size_mismatch")
        client.delete_session(session["session_id"])


def test_rvos_session_reports_at_most_the_referred_object(
    rest_a: httpx.Client, shapes_scene: Callable
) -> None:
    session = rest_a.post("/v1/sessions", json={"task": "rvos", "expression": "the red circle"})
    assert session.status_code == 201 and session.json()["expires_in_s"] == 120
    sid = session.json()["session_id"]
    frame = rest_a.post(f"/v1/sessions/{sid}/frames", json={"image": b64(shapes_scene(0).image)}).json()
    assert frame["frame_index"] == 0 and len(frame["tracks"]) <= 1
    assert all(t["label"] == "the red circle" for t in frame["tracks"])
    bad = rest_a.post(
        f"/v1/sessions/{sid}/frames",
        json={"image": b64(shapes_scene(0).image), "prompts": [{"box": [0, 0, 9, 9]}]},
    )
    assert bad.status_code == 400 and error_of(bad) == "invalid_prompt"
    rest_a.delete(f"/v1/sessions/{sid}")


# ---------------------------------------------------------------------------------------- errors
def upload(image: bytes, fields: dict) -> dict:
    return {"files": {"file": ("image", image), "request": (None, json.dumps(fields))}}


VALIDATION, NO_SESSION = "validation_error", "session_not_found"


def b64_bytes(data: bytes) -> str:
    return base64.b64encode(data).decode()


def raw(body: bytes) -> dict:
    return {"content": body, "headers": {"content-type": "application/json"}}


def test_bad_inputs_get_the_documented_status_codes(
    servers: Servers, rest_a: httpx.Client, shapes_scene: Callable, huge_png: bytes
) -> None:
    image = shapes_scene(0).image
    truncated = jpeg(image)[:400]
    detect = {"categories": ["circle"]}
    outside = {"image": b64(image), "prompts": [{"points": [[999, 5]], "labels": [1]}]}
    long = " ".join(["a"] * 76)  # 78 tokens with start and end: the text encoder reads 77

    def detect_json(**fields: object) -> dict:
        return {"json": {"image": b64(image)} | detect | fields}

    cases = [
        # (what, method, path, request arguments, status, error code)
        ("truncated JPEG", "POST", "/v1/detect", {"json": {"image": b64_bytes(truncated)} | detect},
         400, "undecodable_image"),
        ("truncated JPEG upload", "POST", "/v1/detect", upload(truncated, detect), 400, "undecodable_image"),
        ("0-byte body", "POST", "/v1/detect", raw(b""), 400, "empty_body"),
        ("0-byte frame body, unknown session", "POST", "/v1/sessions/x/frames", raw(b""), 404, NO_SESSION),
        ("junk frame, unknown session", "POST", "/v1/sessions/x/frames", {"json": {"image": "%%"}}, 404,
         NO_SESSION),
        ("0-byte upload", "POST", "/v1/detect", upload(b"", detect), 400, "empty_image"),
        ("20000x20000 PNG", "POST", "/v1/detect", upload(huge_png, detect), 413, "payload_too_large"),
        ("body over the limit", "POST", "/v1/detect", raw(bytes(MAX_BODY + 1)), 413, "payload_too_large"),
        ("not base64", "POST", "/v1/detect", {"json": {"image": "%%%"} | detect}, 400, "bad_base64"),
        ("remote URL not enabled", "POST", "/v1/detect", {"json": {"image": "http://a.example/"} | detect},
         400, "url_not_allowed"),
        ("upper-case URL scheme", "POST", "/v1/detect", {"json": {"image": "HTTPS://a.example/"} | detect},
         400, "url_not_allowed"),
        ("string threshold", "POST", "/v1/detect", detect_json(score_threshold="0.5"), 422, VALIDATION),
        ("float max_detections", "POST", "/v1/detect", detect_json(max_detections=2.0), 422, VALIDATION),
        ("boolean max_detections upload", "POST", "/v1/detect",
         upload(jpeg(image), detect | {"max_detections": True}), 422, VALIDATION),
        ("boolean point label", "POST", "/v1/segment",
         {"json": outside | {"prompts": [{"points": [[9, 5]], "labels": [True]}]}}, 422, VALIDATION),
        ("duplicate categories", "POST", "/v1/detect", detect_json(categories=["c", "c"]), 422, VALIDATION),
        ("no file part", "POST", "/v1/detect", {"files": {"request": (None, json.dumps(detect))}}, 422,
         VALIDATION),
        ("vos with categories", "POST", "/v1/sessions", {"json": {"task": "vos", "categories": ["c"]}}, 422,
         VALIDATION),
        ("wrong types", "POST", "/v1/detect", {"json": {"image": 7, "categories": "c"}}, 422, VALIDATION),
        ("missing image", "POST", "/v1/detect", {"json": detect}, 422, VALIDATION),
        ("invalid JSON", "POST", "/v1/detect", raw(b"{"), 422, VALIDATION),
        ("point outside the image", "POST", "/v1/segment", {"json": outside}, 400, "invalid_prompt"),
        ("track without categories", "POST", "/v1/sessions", {"json": {"task": "track"}}, 422, VALIDATION),
        ("unknown session", "GET", "/v1/sessions/0123456789abcdef", {}, 404, NO_SESSION),
        ("frame for unknown session", "POST", "/v1/sessions/nope/frames", {"json": {"image": b64(image)}},
         404, NO_SESSION),
        ("delete unknown session", "DELETE", "/v1/sessions/nope", {}, 404, NO_SESSION),
        ("missing API key", "GET", "/v1/models", {"headers": {"X-API-Key": ""}}, 401, "unauthenticated"),
        ("bad API key", "GET", "/v1/models", {"headers": {"X-API-Key": "wrong"}}, 401, "unauthenticated"),
        ("bad bearer token", "GET", "/v1/models", {"headers": {"X-API-Key": "", "Authorization": "Bearer x"}},
         401, "unauthenticated"),
        ("unknown route", "GET", "/v1/nothing", {}, 404, "not_found"),
        ("trailing slash", "POST", "/v1/detect/", detect_json(), 404, "not_found"),
        ("expression over 77 tokens", "POST", "/v1/ground",
         {"json": {"image": b64(image), "expressions": [long]}}, 400, "invalid_input"),
        ("rvos expression over 77 tokens", "POST", "/v1/sessions",
         {"json": {"task": "rvos", "expression": long}}, 400, "invalid_input"),
    ]  # fmt: skip
    for what, method, path, arguments, status, code in cases:
        response = rest_a.request(method, path, **arguments)
        assert (response.status_code, error_of(response)) == (status, code), f"{what}: {response.text}"
        if status == 422:
            assert response.json()["error"]["details"], what
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer"), what
    bearer = {"X-API-Key": "", "Authorization": f"Bearer {KEY}"}
    assert rest_a.get("/v1/models", headers=bearer).status_code == 200


def test_a_multipart_request_part_may_be_a_file(rest_a: httpx.Client, shapes_scene: Callable) -> None:
    request = json.dumps({"categories": ["circle"], "score_threshold": 0.0, "max_detections": 2}).encode()
    files = {
        "file": ("scene.png", png(shapes_scene(0).image)),
        "request": ("req.json", request, "application/json"),
    }
    response = rest_a.post("/v1/detect", files=files)
    assert response.status_code == 200, response.text
    assert 0 < len(response.json()["detections"]) <= 2


def test_vos_mask_prompts_whose_counts_miss_pixels_are_refused(
    servers: Servers, rest_a: httpx.Client, shapes_scene: Callable
) -> None:
    """Counts that cover fewer than h*w pixels made pycocotools read uninitialised memory."""
    scene = shapes_scene(0)
    top = np.asfortranarray(scene.masks["red circle"][:100].astype(np.uint8))
    valid_short = mask_utils.encode(top)["counts"].decode()  # well-formed, but 100x256 pixels
    for counts in ("", valid_short):
        mask = {"size": [256, 256], "counts": counts}
        session = rest_a.post("/v1/sessions", json={"task": "vos"}).json()["session_id"]
        frame = {"image": b64(scene.image), "prompts": [{"box": scene.box("blue square")}, {"mask": mask}]}
        response = rest_a.post(f"/v1/sessions/{session}/frames", json=frame)
        assert (response.status_code, error_of(response)) == (400, "invalid_prompt"), response.text
        assert response.json()["error"]["message"].startswith("prompts[1]: mask RLE counts cover")
        with GleeGrpcClient(servers.a.grpc, api_key=KEY) as client, pytest.raises(GleeError) as info:
            list(client.track([(scene.image, [{"mask": mask}])], task="vos"))
        assert (info.value.status, info.value.code) == ("INVALID_ARGUMENT", "invalid_prompt")
        assert info.value.message.startswith("prompts[0]: mask RLE counts cover")
        rest_a.delete(f"/v1/sessions/{session}")


def test_bad_grpc_calls_get_the_documented_status_codes_and_api_error_codes(
    tmp_path: Path, servers: Servers, shapes_scene: Callable, huge_png: bytes
) -> None:
    image = png(shapes_scene(0).image)
    key = (("x-api-key", KEY),)
    circle = {"categories": ["circle"]}
    code = grpc.StatusCode
    unauthenticated, invalid = (code.UNAUTHENTICATED, "unauthenticated"), (code.INVALID_ARGUMENT, VALIDATION)
    both = pb.DetectRequest(image=image, image_url="https://a.example/x.png", **circle)
    cases = [
        # (RPC, request, metadata, (status code, glee-error-code trailer))
        ("Detect", pb.DetectRequest(image=image, **circle), (), unauthenticated),
        ("Detect", pb.DetectRequest(image=image, **circle), (("x-api-key", "no"),), unauthenticated),
        ("Detect", pb.DetectRequest(**circle), key, (code.INVALID_ARGUMENT, "empty_image")),
        (
            "Detect",
            pb.DetectRequest(image=image[:100], **circle),
            key,
            (code.INVALID_ARGUMENT, "undecodable_image"),
        ),
        ("Detect", pb.DetectRequest(image=image), key, invalid),
        ("Detect", both, key, invalid),
        (
            "Detect",
            pb.DetectRequest(image=huge_png, **circle),
            key,
            (code.INVALID_ARGUMENT, "payload_too_large"),
        ),
        (
            "Detect",
            pb.DetectRequest(image=b"x" * (MAX_BODY + 1), **circle),
            key,
            (code.RESOURCE_EXHAUSTED, None),
        ),
        ("Segment", pb.SegmentRequest(image=image, prompts=[pb.Prompt()]), key, invalid),
        ("GetSession", pb.SessionRef(session_id="nope"), key, (code.NOT_FOUND, NO_SESSION)),
        ("DeleteSession", pb.SessionRef(session_id="nope"), key, (code.NOT_FOUND, NO_SESSION)),
        # Messages that echo long input are cut to fit gRPC's metadata limits, so the code survives.
        ("GetSession", pb.SessionRef(session_id="a" * 20000), key, (code.NOT_FOUND, NO_SESSION)),
        ("Detect", pb.DetectRequest(image=image, categories=[f"c{i} " for i in range(256)]), key, invalid),
    ]
    streams = [
        ([pb.TrackRequest(resume_session_id="nope")], (code.NOT_FOUND, NO_SESSION)),
        ([pb.TrackRequest(frame=pb.Frame(image=image))], invalid),
        ([pb.TrackRequest(open=pb.SessionConfig(task="juggle"))], invalid),
    ]
    with grpc.insecure_channel(servers.a.grpc) as channel:
        stub = GleeStub(channel)
        for rpc, request, metadata, expected in cases:
            with pytest.raises(grpc.RpcError) as info:
                getattr(stub, rpc)(request, metadata=metadata)
            trailers = dict(info.value.trailing_metadata())
            assert (info.value.code(), trailers.get("glee-error-code")) == expected, (
                rpc,
                info.value.details(),
            )
        for messages, expected in streams:
            with pytest.raises(grpc.RpcError) as info:
                list(stub.Track(iter(messages), metadata=key))
            trailers = dict(info.value.trailing_metadata())
            assert (info.value.code(), trailers.get("glee-error-code")) == expected, info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            stub.Detect(pb.DetectRequest(image=image, **circle, score_threshold=2), metadata=key)
        assert info.value.details() == "score_threshold: Input should be less than or equal to 1"
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Track(iter([pb.TrackRequest(open=pb.SessionConfig(task="track"))]), metadata=key))
        assert info.value.details() == "task 'track' needs categories"
    with GleeGrpcClient(servers.a.grpc, api_key=KEY) as client:
        with pytest.raises(GleeError) as error:
            client.get_session("nope")
        assert (error.value.status, error.value.code) == ("NOT_FOUND", NO_SESSION)
        # The client's own mistakes are raised as themselves, not as a cancelled stream (UNKNOWN).
        with pytest.raises(ValueError, match="prompts"):
            list(client.track([], task="vos", prompts=[]))
        with pytest.raises(FileNotFoundError):
            list(client.track([tmp_path / "missing.png"], task="track", categories=["circle"]))
    with GleeClient(servers.a.http, api_key=KEY) as client, pytest.raises(GleeError) as same:
        client.get_session("nope")
    assert (same.value.status, same.value.code) == (404, NO_SESSION)


def grpc_track_calls(server: ServerProcess) -> dict[str, float]:
    """``glee_requests_total`` of gRPC ``Track`` by code, from the server's /metrics."""
    text = httpx.get(f"{server.http}/metrics").text
    return {
        sample.labels["code"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "glee_requests_total"
        and sample.labels["protocol"] == "grpc"
        and sample.labels["endpoint"] == "Track"
    }


def test_empty_and_cancelled_grpc_streams_are_counted(servers: Servers, rest_a: httpx.Client) -> None:
    """Every Track call is counted once, when it ends: a stream that sends nothing ends OK; one the
    client cancels mid-session is counted too (CANCELLED when gRPC reports the cancellation before its
    requests end, else OK), and its session stays until its TTL."""
    before = grpc_track_calls(servers.a)
    key = (("x-api-key", KEY),)
    hold = threading.Event()

    def open_then_wait() -> Iterator[Any]:
        yield pb.TrackRequest(open=pb.SessionConfig(task="track", categories=["circle"]))
        hold.wait(60)

    with grpc.insecure_channel(servers.a.grpc) as channel:
        stub = GleeStub(channel)
        assert list(stub.Track(iter([]), metadata=key)) == []
        call = stub.Track(open_then_wait(), metadata=key)
        session = next(call).session.session_id
        call.cancel()
        hold.set()
    added: dict[str, float] = {}
    for _ in range(200):  # a call is counted when the server sees it end, a moment after the client
        added = {code: n - before.get(code, 0) for code, n in grpc_track_calls(servers.a).items()}
        if sum(added.values()) >= 2:
            break
        time.sleep(0.05)
    assert sum(added.values()) == 2 and added.get("OK", 0) >= 1, (before, added)
    assert {code for code, n in added.items() if n} <= {"OK", "CANCELLED"}, added
    assert rest_a.delete(f"/v1/sessions/{session}").status_code == 204


# ---------------------------------------------------------------------------------------- server C
def test_with_redis_down_video_is_unavailable_and_images_keep_working(
    servers: Servers, shapes_scene: Callable
) -> None:
    with httpx.Client(base_url=servers.c.http, timeout=300) as client:
        created = client.post("/v1/sessions", json={"task": "track", "categories": ["circle"]})
        assert (created.status_code, error_of(created)) == (503, "session_store_unavailable")
        fetched = client.get("/v1/sessions/0123")
        assert (fetched.status_code, error_of(fetched)) == (503, "session_store_unavailable")
        assert client.get("/readyz").status_code == 200
        body = {"image": b64(shapes_scene(0).image), "categories": ["circle"], "max_detections": 2}
        detected = client.post("/v1/detect", json=body)
        assert detected.status_code == 200, detected.text
    with GleeGrpcClient(servers.c.grpc) as client, pytest.raises(GleeError) as info:
        list(client.track([], task="track", categories=["circle"]))
    assert (info.value.status, info.value.code) == ("UNAVAILABLE", "session_store_unavailable")


def test_a_burst_over_the_queue_size_gets_429_with_retry_after(
    servers: Servers, shapes_scene: Callable
) -> None:
    body = {"image": b64(shapes_scene(0).image), "categories": ["circle"], "max_detections": 1}
    with httpx.Client(base_url=servers.c.http, timeout=300) as client, ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: client.post("/v1/detect", json=body), range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses[0] == 200 and statuses[-1] == 429 and set(statuses) == {200, 429}, statuses
    for response in responses:
        if response.status_code == 429:
            assert error_of(response) == "queue_full" and int(response.headers["Retry-After"]) >= 1


def test_a_grpc_burst_over_the_queue_size_gets_resource_exhausted(
    servers: Servers, shapes_scene: Callable
) -> None:
    request = pb.DetectRequest(image=png(shapes_scene(0).image), categories=["circle"], max_detections=1)
    with grpc.insecure_channel(servers.c.grpc) as channel:
        stub = GleeStub(channel)
        calls = [stub.Detect.future(request) for _ in range(4)]
        codes = []
        for call in calls:
            try:
                call.result()
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    rejected = [
        dict(call.trailing_metadata())
        for call, status in zip(calls, codes, strict=True)
        if status != grpc.StatusCode.OK
    ]
    assert all(t["glee-error-code"] == "queue_full" and int(t["retry-after"]) >= 1 for t in rejected), (
        rejected
    )
