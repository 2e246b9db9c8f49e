"""The engine in process with the embedded demo model, for what sockets cannot stage on purpose: the
model thread held busy, to see which requests count against ``max_queue_size``."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from glee.service.engine import Engine
from glee.service.errors import QueueFullError
from glee.service.schemas import DetectParams, FrameParams, SessionConfig
from glee.service.settings import Settings


def png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def queue_depth(engine: Engine) -> float:
    families = text_string_to_metric_families(engine.metrics.render().decode())
    return next(s.value for f in families for s in f.samples if s.name == "glee_queue_depth")


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never became true")


def with_engine(scenario: Callable[[Engine, bytes], Awaitable[None]], shapes_scene: Callable) -> None:
    async def main() -> None:
        engine = Engine(Settings(warmup=False, max_queue_size=1))
        await engine.start()
        try:
            await scenario(engine, png(shapes_scene(0).image))
        finally:
            await engine.stop()

    asyncio.run(main())


def test_image_requests_and_waiting_video_frames_share_the_queue_bound(shapes_scene: Callable) -> None:
    """One video frame waits for a busy model thread: with ``max_queue_size`` 1 a detect is refused, and
    it is admitted once the frame has run."""

    async def scenario(engine: Engine, image: bytes) -> None:
        gate = threading.Event()
        busy = asyncio.get_running_loop().run_in_executor(engine._model_thread, gate.wait, 60)
        session = await engine.create_session(SessionConfig(task="track", categories=["circle"]))
        frame = asyncio.create_task(engine.add_frame(session.session_id, image, FrameParams()))
        await until(lambda: queue_depth(engine) == 1)
        with pytest.raises(QueueFullError, match="1 waiting"):
            await engine.detect(image, DetectParams(categories=["circle"]))
        gate.set()
        await asyncio.gather(busy, frame)
        assert queue_depth(engine) == 0
        assert (await engine.detect(image, DetectParams(categories=["circle"]))).detections

    with_engine(scenario, shapes_scene)


def test_the_video_frame_being_run_does_not_count_as_waiting(shapes_scene: Callable) -> None:
    """While the model runs one session's frame, another session's frame is admitted with
    ``max_queue_size`` 1: it is the only one waiting."""

    async def scenario(engine: Engine, image: bytes) -> None:
        assert engine._video is not None
        step, running, gate = engine._video.step, threading.Event(), threading.Event()

        def held_step(*args: Any) -> Any:
            running.set()
            gate.wait(60)
            return step(*args)

        engine._video.step = held_step  # type: ignore[method-assign]
        config = SessionConfig(task="track", categories=["circle"])
        first, second = [await engine.create_session(config) for _ in range(2)]
        held = asyncio.create_task(engine.add_frame(first.session_id, image, FrameParams()))
        await until(running.is_set)
        await until(lambda: queue_depth(engine) == 0)
        admitted = asyncio.create_task(engine.add_frame(second.session_id, image, FrameParams()))
        await until(lambda: queue_depth(engine) == 1)
        gate.set()
        results = await asyncio.gather(held, admitted)
        assert [r.frame_index for r in results] == [0, 0]

    with_engine(scenario, shapes_scene)
