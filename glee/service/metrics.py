"""Prometheus metrics of one server process, split like Triton's: request, queue and compute time.

Each ``Metrics`` owns its own registry (not the global one), so several engines in one process (tests,
benchmarks) never collide and ``/metrics`` shows exactly this server.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "glee_requests",
            "Requests by protocol, endpoint and outcome code.",
            ["protocol", "endpoint", "code"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "glee_request_duration_seconds",
            "End-to-end request time inside the server.",
            ["protocol", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_seconds = Histogram(
            "glee_queue_duration_seconds",
            "Time requests (image and video) waited for the model.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference_seconds = Histogram(
            "glee_inference_duration_seconds",
            "Model time per executed batch or video frame.",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "glee_batch_size",
            "Requests per executed image batch.",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32),
            registry=self.registry,
        )
        self.rejected = Counter(
            "glee_rejected_requests", "Requests rejected because the queue was full.", registry=self.registry
        )
        self.frames = Counter(
            "glee_video_frames", "Video frames processed, by task.", ["task"], registry=self.registry
        )
        self.queue_depth = Gauge(
            "glee_queue_depth",
            "Image requests and video frames waiting for the model.",
            registry=self.registry,
        )
        self.ready = Gauge("glee_ready", "1 when the model is loaded and warmed up.", registry=self.registry)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference_seconds.labels("image_batch").observe(seconds)

    def track_queue_depth(self, depth: Callable[[], float]) -> None:
        self.queue_depth.set_function(depth)

    def render(self) -> bytes:
        return generate_latest(self.registry)
