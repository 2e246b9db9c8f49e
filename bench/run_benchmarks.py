"""Run the serving benchmarks and write their tables to BENCHMARKS.md (raw numbers to a JSON file).

Scenarios (each a fresh ``glee serve`` process unless noted; REST detect on one 256 px demo scene,
``max_detections`` 10, score threshold 0):

1. batching on (max_batch_size 8, 5 ms queue delay) vs off (max_batch_size 1), concurrency 1/4/8/16;
2. serving overhead at concurrency 1: direct in-process ``Engine`` vs REST vs gRPC (batching off);
3. text-embedding cache on vs off with the 80 COCO class names as the vocabulary;
4. per-frame latency of a tracking session (sequential frames) with the Redis vs the in-memory store.

    python bench/run_benchmarks.py                      # the embedded demo model
    python bench/run_benchmarks.py --model random       # random demo weights (same architecture, same cost)
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Annotated, Any

import loadgen
import typer

from glee.service.launcher import RedisServer, ServerProcess

ROOT = Path(__file__).resolve().parents[1]

COCO_80 = (  # noqa: SIM905 - 80 names read better as one comma-separated block
    "person,bicycle,car,motorcycle,airplane,bus,train,truck,boat,traffic light,fire hydrant,stop sign,"
    "parking meter,bench,bird,cat,dog,horse,sheep,cow,elephant,bear,zebra,giraffe,backpack,umbrella,handbag,"
    "tie,suitcase,frisbee,skis,snowboard,sports ball,kite,baseball bat,baseball glove,skateboard,surfboard,"
    "tennis racket,bottle,wine glass,cup,fork,knife,spoon,bowl,banana,apple,sandwich,orange,broccoli,carrot,"
    "hot dog,pizza,donut,cake,chair,couch,potted plant,bed,dining table,toilet,tv,laptop,mouse,remote,"
    "keyboard,cell phone,microwave,oven,toaster,sink,refrigerator,book,clock,vase,scissors,teddy bear,"
    "hair drier,toothbrush"
).split(",")
SHAPES = ["circle", "square", "triangle"]
Make = Callable[[AsyncExitStack], Awaitable[loadgen.Call]]
MAX_DETECTIONS = 10


def random_weights(directory: Path) -> str:
    from glee.model import GleePredictor
    from glee.model.checkpoint import save_pretrained

    predictor = GleePredictor.random("demo", seed=0)
    return str(save_pretrained(predictor.model, directory / "demo-random", predictor.cfg))


class Bench:
    def __init__(self, model: str | None, duration_s: float, logs: Path) -> None:
        self.model = model
        self.duration_s = duration_s
        self.logs = logs
        self.results: dict[str, Any] = {}

    def server(self, name: str, **settings: Any) -> ServerProcess:
        if self.model is not None:
            settings["model"] = self.model
        server = ServerProcess.start(self.logs / f"{name}.log", **settings)
        server.wait_ready()
        return server

    def compare(self, arms: dict[str, Make], concurrency: int = 1, rounds: int = 3) -> None:
        """Measure every arm for ``duration_s`` in total, interleaved in ``rounds`` slices (A B A B A B),
        so that slow changes in the load of a shared machine hit every arm alike."""
        merged = {key: loadgen.LoadResult() for key in arms}
        for _ in range(rounds):
            for key, make in arms.items():
                slice_ = loadgen.run(make, concurrency=concurrency, duration_s=self.duration_s / rounds)
                merged[key].merge(asyncio.run(slice_))
        for key, result in merged.items():
            self.results[key] = {"concurrency": concurrency, "duration_s": self.duration_s} | result.summary()
            print(f"{key}: {json.dumps(self.results[key])}", flush=True)

    def detect_http(self, server: ServerProcess, categories: list[str]) -> Callable:
        params = {"categories": categories, "max_detections": MAX_DETECTIONS, "score_threshold": 0.0}
        image = loadgen.scene_png()
        return lambda stack: loadgen.http_detect(stack, server.http, image, params, None)

    def model_batching(self, repeats: int = 5) -> None:
        """The model alone, in this process: what one forward of 8 images costs per image, against one
        image. This is the ceiling of what cross-request batching can gain."""
        import statistics

        from glee.model import GleePredictor, ImageTask
        from glee.service.images import decode_image

        predictor = GleePredictor.load(self.model)
        image = decode_image(loadgen.scene_png(), 10**7)
        for size in (1, 8):
            tasks = [
                ImageTask(
                    "detect", image, categories=SHAPES, score_threshold=0.0, max_detections=MAX_DETECTIONS
                )
                for _ in range(size)
            ]
            predictor.run_batch(tasks)
            times = []
            for _ in range(repeats):
                began = time.perf_counter()
                predictor.run_batch(tasks)
                times.append((time.perf_counter() - began) * 1000)
            batch_ms = statistics.median(times)
            self.results[f"model_batch_{size}"] = {
                "batch_ms": round(batch_ms, 1),
                "per_image_ms": round(batch_ms / size, 1),
            }
            print(f"model_batch_{size}: {self.results[f'model_batch_{size}']}", flush=True)

    def batching(self) -> None:
        off = self.server("batching-off", max_batch_size=1, max_queue_size=256)
        on = self.server("batching-on", max_batch_size=8, max_queue_delay_ms=5, max_queue_size=256)
        try:
            for concurrency in (1, 4, 8, 16):
                arms = {
                    f"batching_{label}_c{concurrency}": self.detect_http(server, SHAPES)
                    for label, server in (("off", off), ("on", on))
                }
                self.compare(arms, concurrency)
        finally:
            off.stop()
            on.stop()

    def overhead(self) -> None:
        params = {"categories": SHAPES, "max_detections": MAX_DETECTIONS, "score_threshold": 0.0}
        image, model = loadgen.scene_png(), self.model
        server = self.server("overhead", max_batch_size=1)
        try:
            self.compare(
                {
                    "overhead_engine": lambda stack: loadgen.engine_detect(
                        stack, model, image, params, max_batch_size=1
                    ),
                    "overhead_http": self.detect_http(server, SHAPES),
                    "overhead_grpc": lambda stack: loadgen.grpc_detect(
                        stack, server.grpc, image, params, None
                    ),
                }
            )
        finally:
            server.stop()

    def text_cache(self) -> None:
        on = self.server("text-cache-on", max_batch_size=1, text_cache=True)
        off = self.server("text-cache-off", max_batch_size=1, text_cache=False)
        try:
            self.compare(
                {
                    "text_cache_on": self.detect_http(on, COCO_80),
                    "text_cache_off": self.detect_http(off, COCO_80),
                }
            )
        finally:
            on.stop()
            off.stop()

    def video(self) -> None:
        frames = loadgen.video_pngs()
        config = {"task": "track", "categories": SHAPES, "max_detections": MAX_DETECTIONS}
        redis = RedisServer.start()
        memory_server = self.server("video-memory")
        redis_server = self.server("video-redis", redis_url=redis.url)
        try:
            self.compare(
                {
                    f"video_{label}": lambda stack, s=server: loadgen.http_track(
                        stack, s.http, frames, config, None
                    )
                    for label, server in (("memory", memory_server), ("redis", redis_server))
                }
            )
        finally:
            memory_server.stop()
            redis_server.stop()
            redis.stop()


def _row(name: str, r: dict[str, Any], *extra: str) -> str:
    errors = sum(r["errors"].values())
    latency = [str(r[f"p{p}_ms"]) for p in (50, 90, 99)]
    cells = [name, f"{r['throughput_rps']:.2f}", *latency, str(r["ok"]), str(errors), *extra]
    return "| " + " | ".join(cells) + " |"


HEADER = "| run | req/s | p50 ms | p90 ms | p99 ms | ok | errors |"
RULE = "|---|---:|---:|---:|---:|---:|---:|"


def render(results: dict[str, Any], meta: dict[str, Any]) -> str:
    r = results
    lines = [
        "# Benchmarks",
        "",
        "Produced by `python bench/run_benchmarks.py` (load generator: `bench/loadgen.py`).",
        "These are measurements, not tests: nothing asserts on them. Setup of this run:",
        "",
        *(f"- {key}: {value}" for key, value in meta.items()),
        "",
        "Every image request is `POST /v1/detect` (or its gRPC/engine equivalent) on one 256x256",
        f"demo-domain scene, `max_detections` {MAX_DETECTIONS}, score threshold 0, JSON with a base64 image.",
        "Load is closed-loop: N clients, each sending its next request when the previous one returns.",
        "Rows compared with each other ran interleaved (A B A B A B, servers up side by side), so that the",
        "changing load of the shared machine affects them alike; differences under ~10 % are still noise.",
        "",
        "## 1. Dynamic batching, REST detect",
        "",
        "The model alone (`GleePredictor.run_batch` in one process, median of 5): one image takes",
        f"{r['model_batch_1']['per_image_ms']} ms, a batch of 8 takes {r['model_batch_8']['batch_ms']} ms "
        f"({r['model_batch_8']['per_image_ms']} ms per image), so batching can gain at most "
        f"{r['model_batch_1']['per_image_ms'] / r['model_batch_8']['per_image_ms']:.2f}x here.",
        "",
        HEADER + " speed-up |",
        RULE + "---:|",
    ]
    for concurrency in (1, 4, 8, 16):
        off, on = r[f"batching_off_c{concurrency}"], r[f"batching_on_c{concurrency}"]
        speedup = on["throughput_rps"] / off["throughput_rps"] if off["throughput_rps"] else float("nan")
        lines.append(_row(f"off, concurrency {concurrency}", off, ""))
        lines.append(_row(f"on, concurrency {concurrency}", on, f"{speedup:.2f}x"))
    http, grpc_, engine = r["overhead_http"], r["overhead_grpc"], r["overhead_engine"]
    lines += [
        "",
        "Goal: >= 1.3x throughput with batching at concurrency 8 on CPU.",
        "",
        "## 2. Serving overhead (concurrency 1, batching off)",
        "",
        "The protocol overhead of a request is its client-side latency minus the server's own",
        "`timing_ms.total` (image decoding, queueing, model, mask encoding): transport, JSON or protobuf,",
        "base64 and the adapters. It is taken per request, so it does not rest on comparing separate runs.",
        "",
        HEADER + " protocol overhead p50 ms |",
        RULE + "---:|",
        _row("engine, called in process", engine, f"{engine['protocol_overhead_p50_ms']}"),
        _row("REST (JSON, base64 image)", http, f"{http['protocol_overhead_p50_ms']}"),
        _row("gRPC (bytes image)", grpc_, f"{grpc_['protocol_overhead_p50_ms']}"),
        "",
        "Goal: overhead <= 10 ms p50.",
        "",
        "## 3. Text-embedding cache, 80-category vocabulary (COCO class names), concurrency 1",
        "",
        HEADER,
        RULE,
        _row("cache on", r["text_cache_on"]),
        _row("cache off", r["text_cache_off"]),
        "",
        "## 4. Video tracking: per-frame latency, one session, sequential frames (REST)",
        "",
        HEADER + " server p50 ms | model p50 ms | server minus model p50 ms |",
        RULE + "---:|---:|---:|",
        *(
            _row(
                name,
                r[key],
                *(str(r[key][k]) for k in ("server_p50_ms", "inference_p50_ms", "engine_non_model_p50_ms")),
            )
            for name, key in (
                ("in-memory session store", "video_memory"),
                ("Redis session store", "video_redis"),
            )
        ),
        "",
        "Server minus model is the engine's work around the model per frame: image decoding, loading and",
        "committing the session state (one pipelined read and one compare-and-set Lua script with Redis) and",
        "mask encoding.",
        "",
    ]
    return "\n".join(lines)


def main(
    model: Annotated[str | None, typer.Option(help="weights dir; 'random' = random demo weights")] = None,
    duration: Annotated[float, typer.Option(help="seconds of measured load per run")] = 15.0,
    threads: Annotated[
        int, typer.Option(help="torch intra-op threads of every server (OMP_NUM_THREADS)")
    ] = 1,
    markdown: Annotated[Path, typer.Option()] = ROOT / "BENCHMARKS.md",
    raw: Annotated[Path, typer.Option()] = ROOT / "bench" / "results.json",
) -> None:
    """Run every scenario, then write the Markdown report and the raw JSON."""
    # Inherited by every server process, and read by torch when this process imports it (engine runs).
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        weights = random_weights(Path(tmp)) if model == "random" else model
        bench = Bench(weights, duration, Path(tmp))
        began = time.time()
        bench.model_batching()
        bench.batching()
        bench.overhead()
        bench.text_cache()
        bench.video()
    meta = {
        "model": "random demo weights (demo architecture; cost does not depend on weight values)"
        if model == "random"
        else (model or "embedded demo model"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"Python {platform.python_version()}",
        "torch threads per server": f"{torch.get_num_threads()} (OMP_NUM_THREADS)",
        "client": "the load generator runs on the same machine as the server (they share the CPU)",
        "per run": f"{duration:.0f} s measured, as 3 interleaved slices after 2 s of warm-up each "
        f"(everything: {time.time() - began:.0f} s)",
        "date": time.strftime("%Y-%m-%d"),
    }
    raw.write_text(json.dumps({"meta": meta, "results": bench.results}, indent=2) + "\n")
    markdown.write_text(render(bench.results, meta))
    print(f"wrote {markdown} and {raw}")


if __name__ == "__main__":
    typer.run(main)
