"""Load generator for glee-serve: closed-loop (fixed concurrency) or open-loop (fixed request rate) load
on the REST API, the gRPC API or an in-process ``Engine``; reports p50/p90/p99 latency, throughput and
errors as JSON.

Open-loop latency is measured from each request's *scheduled* send time, so a server that falls behind
is charged for the queueing it causes (no coordinated omission).

    python bench/loadgen.py --protocol http --target http://127.0.0.1:8000 --concurrency 8 --duration 20
    python bench/loadgen.py --protocol grpc --target 127.0.0.1:50051 --rate 4 --duration 20
    python bench/loadgen.py --protocol engine --target /path/to/weights --concurrency 1
    python bench/loadgen.py --protocol http --target http://127.0.0.1:8000 --workload track
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Annotated, Any

import grpc
import httpx
import numpy as np
import typer
from PIL import Image

from glee.data.scenes import SceneConfig, generate_scene
from glee.data.videos import VideoConfig, generate_video

# One request; returns the server's own timing ({"total": ms, "inference": ms}) from the answer.
Call = Callable[[], Awaitable[dict[str, float]]]

# 256 px is the demo model's test size: every image batches with every other one.
SIDE = 256


class RequestFailedError(Exception):
    """A request that got an error answer; ``label`` names it in the error counts."""

    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.label = label


@dataclass
class LoadResult:
    """Per successful request: client latency, and the server's own total and model time from the
    answer's ``timing_ms``. ``latency - server total`` is what the protocol stack costs (transport,
    (de)serialisation, adapters); ``server total - inference`` is the engine's work around the model."""

    latencies_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    inference_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0

    def merge(self, other: LoadResult) -> None:
        """Add another run's requests (runs taken in slices, see run_benchmarks.py)."""
        self.latencies_ms += other.latencies_ms
        self.server_ms += other.server_ms
        self.inference_ms += other.inference_ms
        self.errors.update(other.errors)
        self.wall_s += other.wall_s

    def summary(self) -> dict[str, Any]:
        latency, server = np.asarray(self.latencies_ms), np.asarray(self.server_ms)
        inference = np.asarray(self.inference_ms)
        percentiles = _percentiles(latency, 50, 90, 99)
        return {
            "requests": len(latency) + sum(self.errors.values()),
            "ok": len(latency),
            "errors": dict(self.errors),
            "throughput_rps": round(len(latency) / self.wall_s, 3) if self.wall_s else 0.0,
            "p50_ms": percentiles[0],
            "p90_ms": percentiles[1],
            "p99_ms": percentiles[2],
            "mean_ms": round(float(latency.mean()), 1) if len(latency) else None,
            "server_p50_ms": _percentiles(server, 50)[0],
            "inference_p50_ms": _percentiles(inference, 50)[0],
            "protocol_overhead_p50_ms": _percentiles(latency - server, 50)[0],
            "engine_non_model_p50_ms": _percentiles(server - inference, 50)[0],
        }


def _percentiles(values: np.ndarray, *q: float) -> list[float | None]:
    return np.percentile(values, q).round(1).tolist() if len(values) else [None] * len(q)


async def _timed(call: Call, start: float, result: LoadResult) -> None:
    try:
        timing = await call()
    except RequestFailedError as exc:
        result.errors[exc.label] += 1
    except (httpx.HTTPError, grpc.RpcError, OSError) as exc:
        result.errors[type(exc).__name__] += 1
    else:
        result.latencies_ms.append((time.perf_counter() - start) * 1000)
        result.server_ms.append(timing["total"])
        result.inference_ms.append(timing["inference"])


async def closed_loop(call: Call, concurrency: int, duration_s: float) -> LoadResult:
    """``concurrency`` workers, each sending its next request as soon as the previous one returned."""
    result = LoadResult()
    began = time.perf_counter()
    deadline = began + duration_s

    async def worker() -> None:
        while time.perf_counter() < deadline:
            await _timed(call, time.perf_counter(), result)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.wall_s = time.perf_counter() - began
    return result


async def open_loop(call: Call, rate_rps: float, duration_s: float, max_in_flight: int = 256) -> LoadResult:
    """Requests sent every ``1 / rate_rps`` s whatever the answers; beyond ``max_in_flight`` pending
    requests the generator itself counts the request as an error ("client_backlog")."""
    result = LoadResult()
    began = time.perf_counter()
    in_flight: set[asyncio.Task] = set()
    for index in range(int(rate_rps * duration_s)):
        scheduled = began + index / rate_rps
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        if len(in_flight) >= max_in_flight:
            result.errors["client_backlog"] += 1
            continue
        task = asyncio.create_task(_timed(call, scheduled, result))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.gather(*in_flight)
    result.wall_s = time.perf_counter() - began
    return result


# ------------------------------------------------------------------------------------------ inputs
def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def scene_png(seed: int = 0) -> bytes:
    """One demo-domain scene (synthetic shapes), SIDE x SIDE."""
    return png(generate_scene(seed, 0, SceneConfig(min_size=SIDE, max_size=SIDE)).image)


def video_pngs(seed: int = 0) -> list[bytes]:
    video = generate_video(seed, 0, VideoConfig(min_size=SIDE, max_size=SIDE, frames_min=16, frames_max=16))
    return [png(frame) for frame in video.frames]


# ------------------------------------------------------------------------------------------ workloads
def _http_check(response: httpx.Response) -> dict:
    if response.status_code >= 400:
        raise RequestFailedError(f"http_{response.status_code}")
    return response.json()


async def http_detect(
    stack: AsyncExitStack, url: str, image: bytes, params: dict, api_key: str | None
) -> Call:
    headers = {"X-API-Key": api_key} if api_key else {}
    client = await stack.enter_async_context(httpx.AsyncClient(base_url=url, headers=headers, timeout=600))
    body = {"image": base64.b64encode(image).decode(), **params}

    async def call() -> dict[str, float]:
        return _http_check(await client.post("/v1/detect", json=body))["timing_ms"]

    return call


async def grpc_detect(
    stack: AsyncExitStack, target: str, image: bytes, params: dict, api_key: str | None
) -> Call:
    from glee.service.protos import GleeStub, pb

    channel = await stack.enter_async_context(grpc.aio.insecure_channel(target))
    stub = GleeStub(channel)
    request = pb.DetectRequest(image=image, **params)
    metadata = (("x-api-key", api_key),) if api_key else ()

    async def call() -> dict[str, float]:
        try:
            timing = (await stub.Detect(request, metadata=metadata)).timing_ms
        except grpc.aio.AioRpcError as exc:
            raise RequestFailedError(exc.code().name) from exc
        return {"total": timing.total, "inference": timing.inference}

    return call


async def engine_detect(
    stack: AsyncExitStack, model: str, image: bytes, params: dict, **settings: Any
) -> Call:
    """The engine in this process: what a request costs without any protocol around it."""
    from glee.service.engine import Engine
    from glee.service.errors import ServiceError
    from glee.service.schemas import DetectParams
    from glee.service.settings import Settings

    engine = Engine(Settings(model=model, **settings))
    await engine.start()
    stack.push_async_callback(engine.stop)
    detect_params = DetectParams(**params)

    async def call() -> dict[str, float]:
        try:
            response = await engine.detect(image, detect_params)
        except ServiceError as exc:
            raise RequestFailedError(exc.code) from exc
        return response.timing_ms.model_dump()

    return call


async def http_track(
    stack: AsyncExitStack, url: str, frames: list[bytes], config: dict, api_key: str | None
) -> Call:
    """Frames of one video, in a loop, into one tracking session (sequential by nature)."""
    headers = {"X-API-Key": api_key} if api_key else {}
    client = await stack.enter_async_context(httpx.AsyncClient(base_url=url, headers=headers, timeout=600))
    session = _http_check(await client.post("/v1/sessions", json=config))["session_id"]
    bodies = [json.dumps({"image": base64.b64encode(frame).decode()}) for frame in frames]
    count = 0

    async def call() -> dict[str, float]:
        nonlocal count
        body, count = bodies[count % len(bodies)], count + 1
        response = await client.post(
            f"/v1/sessions/{session}/frames", content=body, headers={"content-type": "application/json"}
        )
        return _http_check(response)["timing_ms"]

    return call


async def run(
    make: Callable[[AsyncExitStack], Awaitable[Call]],
    *,
    concurrency: int = 1,
    rate_rps: float | None = None,
    duration_s: float = 20.0,
    warmup_s: float = 2.0,
) -> LoadResult:
    """Build a workload, run it unmeasured for ``warmup_s`` (at the same concurrency, so batch shapes
    are warm too), then measure."""
    async with AsyncExitStack() as stack:
        call = await make(stack)
        await closed_loop(call, concurrency, warmup_s)
        if rate_rps is not None:
            return await open_loop(call, rate_rps, duration_s)
        return await closed_loop(call, concurrency, duration_s)


def main(
    protocol: Annotated[str, typer.Option(help="http | grpc | engine")] = "http",
    target: Annotated[str, typer.Option(help="base URL (http), host:port (grpc) or weights dir (engine)")] = (
        "http://127.0.0.1:8000"
    ),
    workload: Annotated[str, typer.Option(help="detect | track (track: http only)")] = "detect",
    concurrency: Annotated[int, typer.Option(help="closed-loop workers")] = 1,
    rate: Annotated[float | None, typer.Option(help="open-loop requests/s (overrides concurrency)")] = None,
    duration: Annotated[float, typer.Option(help="seconds of measured load")] = 20.0,
    categories: Annotated[
        str, typer.Option(help="comma-separated detect vocabulary")
    ] = "circle,square,triangle",
    max_detections: Annotated[int, typer.Option()] = 10,
    api_key: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Run one load test and print its JSON summary."""
    params = {"categories": categories.split(","), "max_detections": max_detections, "score_threshold": 0.0}
    image = scene_png()

    async def make(stack: AsyncExitStack) -> Call:
        if workload == "track":
            config = {"task": "track", "categories": params["categories"], "max_detections": max_detections}
            return await http_track(stack, target, video_pngs(), config, api_key)
        if protocol == "grpc":
            return await grpc_detect(stack, target, image, params, api_key)
        if protocol == "engine":
            return await engine_detect(stack, target, image, params)
        return await http_detect(stack, target, image, params, api_key)

    result = asyncio.run(run(make, concurrency=concurrency, rate_rps=rate, duration_s=duration))
    mode = {"rate_rps": rate} if rate is not None else {"concurrency": concurrency}
    summary = mode | {"duration_s": duration} | result.summary()
    json.dump(summary, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    typer.run(main)
