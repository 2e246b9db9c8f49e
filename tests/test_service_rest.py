"""The REST adapter's request reading, error answers and OpenAPI document, in process and without a
model: the engine is never started, so every request that gets past the adapter's checks answers 503
``not_ready`` (which is how these tests tell "accepted" from "refused"). tests/test_service_api.py
covers the same endpoints end to end over real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from glee.service.engine import Engine
from glee.service.rest import create_app
from glee.service.settings import Settings

KEY = "rest-key"
ACCEPTED = (503, "not_ready")  # got past the adapter: the engine (not started) answers
DETECT = {"categories": ["circle"]}


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = Engine(Settings(api_keys=[KEY], warmup=False))
    yield engine
    asyncio.run(engine.stop())


def call(engine: Engine, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://glee", headers={"X-API-Key": KEY}
        ) as c:
            return await c.request(method, path, **kwargs)

    return asyncio.run(send())


def outcome(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def parts(*items: tuple[str, Any]) -> dict[str, Any]:
    return {"files": list(items)}


IMAGE = ("file", ("scene.png", b"not decoded: the engine is not started"))


def test_multipart_takes_the_image_as_file_and_the_request_as_a_field_or_a_file(engine: Engine) -> None:
    as_field = parts(IMAGE, ("request", (None, json.dumps(DETECT))))
    as_file = parts(IMAGE, ("request", ("req.json", json.dumps(DETECT).encode(), "application/json")))
    old_name = parts(("image", IMAGE[1]), ("request", (None, json.dumps(DETECT))))
    for request in (as_field, as_file, old_name):
        assert outcome(call(engine, "POST", "/v1/detect", **request)) == ACCEPTED
    assert outcome(call(engine, "POST", "/v1/segment", **parts(IMAGE))) == (422, "validation_error")


@pytest.mark.parametrize(
    ("request_parts", "loc", "kind"),
    [
        ([("request", (None, json.dumps(DETECT)))], ["file"], "missing"),
        ([IMAGE, ("image", IMAGE[1]), ("request", (None, "{}"))], ["file"], "duplicate_part"),
        ([IMAGE, ("request", (None, "{}")), ("request", (None, "{}"))], ["request"], "duplicate_part"),
        (
            [IMAGE, ("request", (None, json.dumps(DETECT | {"image": "aGk="})))],
            ["request", "image"],
            "ambiguous_image",
        ),
        ([IMAGE, IMAGE, ("request", ("r.json", b"{}"))], ["body"], "multipart"),
        (
            [IMAGE, ("request", (None, '{"categories": ["circle"], "max_detections": true}'))],
            ["max_detections"],
            "int_type",
        ),
        (
            [IMAGE, ("request", (None, '{"categories": ["a"], "categories": ["b"]}'))],
            ["request"],
            "repeated_key",
        ),
        ([IMAGE, ("request", (None, "{bad"))], ["request"], "json_invalid"),
        ([IMAGE, ("extra", (None, "x"))], ["extra"], "extra_forbidden"),
    ],
    ids=[
        "no-image",
        "two-images",
        "two-requests",
        "image-twice",
        "three-files",
        "strict-types",
        "repeated-field",
        "bad-json",
        "unknown-part",
    ],
)
def test_bad_multipart_uploads_are_422_with_details(
    engine: Engine, request_parts: list[tuple[str, Any]], loc: list, kind: str
) -> None:
    response = call(engine, "POST", "/v1/detect", files=request_parts)
    assert outcome(response) == (422, "validation_error"), response.text
    assert [(d["loc"], d["type"]) for d in response.json()["error"]["details"]] == [(loc, kind)]


def test_json_bodies_need_an_image_and_get_details(engine: Engine) -> None:
    response = call(engine, "POST", "/v1/detect", json=DETECT)
    assert outcome(response) == (422, "validation_error")
    assert response.json()["error"]["details"] == [
        {"loc": ["image"], "msg": "Field required", "type": "missing"}
    ]
    wrong = call(engine, "POST", "/v1/detect", json=DETECT | {"image": "aGk=", "score_threshold": "0.5"})
    assert [d["loc"] for d in wrong.json()["error"]["details"]] == [["score_threshold"]]
    assert (
        outcome(call(engine, "POST", "/v1/detect", json=DETECT | {"image": "aGk=", "score_threshold": 1}))
        == ACCEPTED
    )


def test_json_bodies_with_a_repeated_field_or_a_non_finite_number_are_422(engine: Engine) -> None:
    """JSON parsers keep the last of repeated keys, and NaN / Infinity are not JSON numbers."""
    repeated = '{"image": "aGk=", "categories": ["star"], "categories": ["circle"]}'
    response = call(
        engine, "POST", "/v1/detect", content=repeated, headers={"content-type": "application/json"}
    )
    assert outcome(response) == (422, "validation_error")
    assert response.json()["error"]["message"] == "body: field 'categories' appears more than once"
    # Nested deeper than Python's recursion limit: the schema's JSON parser refuses it by name.
    deep = '{"image": "aGk=", "categories": ' + "[" * 3000 + "]" * 3000 + "}"
    response = call(engine, "POST", "/v1/detect", content=deep, headers={"content-type": "application/json"})
    assert outcome(response) == (422, "validation_error")
    assert "recursion limit exceeded" in response.json()["error"]["message"]
    for number in ("NaN", "Infinity", "-Infinity"):
        body = f'{{"image": "aGk=", "categories": ["star"], "score_threshold": {number}}}'
        response = call(
            engine, "POST", "/v1/detect", content=body, headers={"content-type": "application/json"}
        )
        assert outcome(response) == (422, "validation_error"), number
        assert response.json()["error"]["details"][0]["type"] == "finite_number"


def requests_counted(engine: Engine, endpoint: str, code: str) -> float:
    families = text_string_to_metric_families(engine.metrics.render().decode())
    labels = {"protocol": "http", "endpoint": endpoint, "code": code}
    family = next(f for f in families if f.name == "glee_requests")
    return sum(s.value for s in family.samples if s.name == "glee_requests_total" and s.labels == labels)


def test_a_body_refused_before_routing_is_counted_under_its_endpoint(engine: Engine) -> None:
    before = requests_counted(engine, "/v1/detect", "413")
    too_large = b"x" * (engine.settings.max_body_bytes + 1)
    response = call(
        engine, "POST", "/v1/detect", content=too_large, headers={"content-type": "application/json"}
    )
    assert outcome(response) == (413, "payload_too_large")
    assert requests_counted(engine, "/v1/detect", "413") == before + 1


def test_probes_answer_head_requests(engine: Engine) -> None:
    assert call(engine, "HEAD", "/healthz").status_code == 200
    assert call(engine, "HEAD", "/readyz").status_code == 503  # the engine is not started


def test_a_multipart_body_where_only_json_is_taken_is_refused_by_name(engine: Engine) -> None:
    """Opening a session takes no image, so it takes no upload; the answer says so rather than that
    the multipart bytes are invalid JSON."""
    form = parts(IMAGE, ("request", (None, json.dumps({"task": "vos"}))))
    response = call(engine, "POST", "/v1/sessions", **form)
    assert outcome(response) == (422, "validation_error")
    assert response.json()["error"]["details"][0]["loc"] == ["body"]
    assert "takes a JSON body" in response.json()["error"]["message"]


def test_frames_of_unknown_sessions_are_404_whatever_the_body(engine: Engine) -> None:
    for body in (
        {"content": b""},
        {"json": {"image": "junk"}},
        {"files": [IMAGE]},
        {"json": {"nonsense": 1}},
    ):
        assert outcome(call(engine, "POST", "/v1/sessions/nope/frames", **body)) == (404, "session_not_found")


def test_401_answers_carry_a_www_authenticate_challenge(engine: Engine) -> None:
    response = call(engine, "GET", "/v1/models", headers={"X-API-Key": "wrong"})
    assert outcome(response) == (401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")


def test_openapi_lists_the_errors_each_operation_can_answer(engine: Engine) -> None:
    spec = call(engine, "GET", "/openapi.json").json()
    paths = spec["paths"]

    def statuses(path: str, method: str) -> set[str]:
        return {s for s in paths[path][method]["responses"] if s[0] in "45"}

    image = {"400", "401", "413", "422", "429", "503"}
    assert statuses("/v1/detect", "post") == statuses("/v1/segment", "post") == image
    assert statuses("/v1/sessions/{session_id}/frames", "post") == image | {"404", "409"}
    assert statuses("/v1/sessions/{session_id}", "get") == statuses("/v1/sessions/{session_id}", "delete")
    assert statuses("/v1/sessions/{session_id}", "get") == {"401", "404", "503"}
    assert statuses("/v1/models", "get") == {"401"}
    assert statuses("/readyz", "get") == {"503"}
    assert "Retry-After" in paths["/v1/detect"]["post"]["responses"]["429"]["headers"]
    assert "WWW-Authenticate" in paths["/v1/models"]["get"]["responses"]["401"]["headers"]
    schemas = spec["components"]["schemas"]
    assert (
        "image" in schemas["DetectRequest"]["required"]
        and "image" not in schemas["DetectParams"]["properties"]
    )
    multipart = paths["/v1/detect"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert multipart["schema"]["required"] == ["file"]
    assert multipart["schema"]["properties"]["request"]["$ref"] == "#/components/schemas/DetectParams"
