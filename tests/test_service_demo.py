"""The served embedded demo model finds the right objects on a demo-domain scene, through every endpoint.

This is ``glee serve`` exactly as ``make serve`` starts it: default model, in-memory session store.
Scenes come from ``draw_shapes`` (a red circle, a blue square, a yellow triangle); a prediction is right
when its mask overlaps the drawn object with IoU >= 0.5 (the demo model's targets are far higher).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from glee.client import GleeClient, GleeError, GleeGrpcClient, decode_mask
from glee.service.launcher import ServerProcess

pytestmark = pytest.mark.slow

MIN_IOU = 0.5
SHAPE_OF = {"red circle": "circle", "blue square": "square", "yellow triangle": "triangle"}


@pytest.fixture(scope="module")
def demo_server(launch_service: Callable[..., ServerProcess]) -> Iterator[ServerProcess]:
    server = launch_service("demo")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(demo_server: ServerProcess) -> Iterator[GleeClient]:
    with GleeClient(demo_server.http) as rest:
        yield rest


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def mask_of(item: dict) -> np.ndarray:
    return decode_mask(item["mask"], 256, 256)


def test_detect_finds_each_shape_with_its_label(client: GleeClient, shapes_scene: Callable) -> None:
    scene = shapes_scene(0)
    result = client.detect(scene.image, ["circle", "square", "triangle"])
    for name, shape in SHAPE_OF.items():
        best = max((iou(mask_of(d), scene.masks[name]), d["label"]) for d in result["detections"])
        assert best[0] >= MIN_IOU and best[1] == shape, (name, best)


def test_a_colour_phrase_matches_only_its_object(client: GleeClient, shapes_scene: Callable) -> None:
    scene = shapes_scene(0)
    result = client.detect(scene.image, ["red circle"])
    assert result["detections"], "no detection for 'red circle'"
    top = result["detections"][0]
    assert top["label"] == "red circle" and iou(mask_of(top), scene.masks["red circle"]) >= MIN_IOU
    for other in ("blue square", "yellow triangle"):
        assert all(iou(mask_of(d), scene.masks[other]) < MIN_IOU for d in result["detections"])


def test_ground_returns_the_referred_object(client: GleeClient, shapes_scene: Callable) -> None:
    scene = shapes_scene(0)
    expressions = {"the red circle": "red circle", "the blue square": "blue square",
                   "the yellow triangle": "yellow triangle", "the topmost object": "red circle"}  # fmt: skip
    result = client.ground(scene.image, list(expressions))
    for answer in result["results"]:
        target = scene.masks[expressions[answer["expression"]]]
        assert iou(mask_of(answer["detection"]), target) >= MIN_IOU, answer["expression"]


def test_segment_returns_the_prompted_object(
    demo_server: ServerProcess, client: GleeClient, shapes_scene: Callable
) -> None:
    scene = shapes_scene(0)
    prompts = [
        ({"points": [[80, 75]], "labels": [1]}, "red circle"),
        ({"box": scene.box("blue square")}, "blue square"),
        ({"scribble": [[88, 215], [95, 200], [102, 215]]}, "yellow triangle"),
    ]
    result = client.segment(scene.image, [p for p, _ in prompts])
    for answer, (_, name) in zip(result["results"], prompts, strict=True):
        assert iou(mask_of(answer), scene.masks[name]) >= MIN_IOU, name
    with GleeGrpcClient(demo_server.grpc) as grpc_client:
        answer = grpc_client.segment(scene.image, [prompts[0][0]])
    assert iou(decode_mask(answer.results[0].mask, 256, 256), scene.masks["red circle"]) >= MIN_IOU


def test_tracking_keeps_one_id_per_object_across_frames(client: GleeClient, shapes_scene: Callable) -> None:
    session = client.create_session("track", categories=["circle", "square", "triangle"])
    ids: dict[str, set[int]] = {name: set() for name in SHAPE_OF}
    for shift in (0, 5, 10):
        scene = shapes_scene(shift)
        frame = client.add_frame(session["session_id"], scene.image)
        for name, target in scene.masks.items():
            matched = [t["track_id"] for t in frame["tracks"] if iou(mask_of(t), target) >= MIN_IOU]
            assert len(matched) == 1, (shift, name, frame["tracks"])
            ids[name].add(matched[0])
    assert all(len(found) == 1 for found in ids.values()), ids
    assert len({next(iter(found)) for found in ids.values()}) == 3
    client.delete_session(session["session_id"])


def test_rvos_and_vos_follow_their_object(client: GleeClient, shapes_scene: Callable) -> None:
    first, second = shapes_scene(0), shapes_scene(8)
    rvos = client.create_session("rvos", expression="the blue square")
    vos = client.create_session("vos")
    for index, scene in enumerate((first, second)):
        referred = client.add_frame(rvos["session_id"], scene.image)
        assert (
            len(referred["tracks"]) == 1
            and iou(mask_of(referred["tracks"][0]), scene.masks["blue square"]) >= MIN_IOU
        )
        prompts = [{"mask": first.masks["yellow triangle"]}] if index == 0 else None
        followed = client.add_frame(vos["session_id"], scene.image, prompts)
        assert [t["track_id"] for t in followed["tracks"]] == [1]
        assert iou(mask_of(followed["tracks"][0]), scene.masks["yellow triangle"]) >= MIN_IOU
    assert client.get_session(vos["session_id"])["frames"] == 2


def test_a_vos_object_is_corrected_under_its_object_id_and_never_given_a_second_id(
    demo_server: ServerProcess, client: GleeClient, shapes_scene: Callable
) -> None:
    """Over REST and gRPC: a later frame's prompt with ``object_id`` re-prompts that object (no new id);
    without it, a prompt on the followed object is a 400 that names both ids, and an ``object_id`` the
    session does not have is a 400 that lists the ones it has."""
    first, second = shapes_scene(0), shapes_scene(8)
    triangle = {"box": second.box("yellow triangle")}
    session = client.create_session("vos")["session_id"]
    client.add_frame(session, first.image, [{"mask": first.masks["yellow triangle"]}])
    corrected = client.add_frame(session, second.image, [triangle | {"object_id": 1}])
    assert [t["track_id"] for t in corrected["tracks"]] == [1]
    assert iou(mask_of(corrected["tracks"][0]), second.masks["yellow triangle"]) >= MIN_IOU
    refusals = {
        "object 2 selects the object followed as object 1": [triangle],
        "object_id 3 is not an object of this session (its objects: 1)": [triangle | {"object_id": 3}],
        "object 1 is prompted twice in this frame": [triangle | {"object_id": 1}] * 2,
    }
    for message, prompts in refusals.items():
        with pytest.raises(GleeError) as info:
            client.add_frame(session, second.image, prompts)
        assert (info.value.status, info.value.code) == (
            400,
            "invalid_prompt",
        ) and message in info.value.message
    added = client.add_frame(session, second.image, [{"box": second.box("blue square")}])
    assert sorted(t["track_id"] for t in added["tracks"]) == [1, 2]
    assert client.get_session(session)["frames"] == 3
    with GleeGrpcClient(demo_server.grpc) as grpc_client:
        frames = [
            (first.image, [{"mask": first.masks["yellow triangle"]}]),
            (second.image, [triangle | {"object_id": 1}]),
        ]
        _, opening, fixed = grpc_client.track(frames, task="vos")
        assert [t.track_id for t in fixed.tracks] == [1]
        with pytest.raises(GleeError) as info:
            list(grpc_client.track([(second.image, [triangle])], session_id=opening.session_id))
        assert (info.value.status, info.value.code) == ("INVALID_ARGUMENT", "invalid_prompt")
        assert "object 2 selects the object followed as object 1" in info.value.message
