"""Shared fixtures: a real redis-server on a free port, and real ``glee serve`` processes.

Both are subprocesses talking over real sockets; nothing is mocked. redis-server must be installed
(``apt-get install redis-server``; .ci/run does it): a missing server fails the tests that need it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports (all bound at once, so they cannot repeat)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


@pytest.fixture(scope="session")
def unused_port() -> Iterator[int]:
    """A TCP port nothing listens on (for "server down" cases); held bound so nobody else gets it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(scope="session")
def huge_png() -> bytes:
    """A valid 20000x20000 1-bit PNG (about 50 KB compressed, 400 M pixels decoded)."""
    width = height = 20000
    row = b"\x00" + bytes((width + 7) // 8)  # filter byte + one row of black pixels
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a throw-away redis-server (no persistence) for this test session."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    (port,) = free_ports(1)
    command = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start on port {port}")
                time.sleep(0.05)
        yield url
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


@dataclass
class ServiceProcess:
    """One ``glee serve`` subprocess; ``http`` is its base URL and ``grpc`` its host:port."""

    process: subprocess.Popen
    http: str
    grpc: str
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def wait_ready(self, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"glee serve exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.http}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        pytest.fail(f"glee serve not ready after {timeout_s} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="session")
def launch_service(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., ServiceProcess]:
    """``launch_service(name, **settings)`` starts ``glee serve`` (see ``start_service``); the caller
    waits for readiness and stops it."""
    logs = tmp_path_factory.mktemp("service-logs")
    return lambda name, **settings: start_service(logs / f"{name}.log", **settings)


def start_service(log: Path, **settings: object) -> ServiceProcess:
    """Start ``glee serve`` on free ports, configured through GLEE_* environment variables only."""
    http_port, grpc_port = free_ports(2)
    env = {key: value for key, value in os.environ.items() if not key.startswith("GLEE_")}
    env.update({f"GLEE_{name.upper()}": str(value) for name, value in settings.items()})
    env.update(GLEE_HOST="127.0.0.1", GLEE_HTTP_PORT=str(http_port), GLEE_GRPC_PORT=str(grpc_port))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", "from glee.cli import app; app()", "serve"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return ServiceProcess(process, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", log)


@dataclass
class ShapesScene:
    """A 256x256 scene of the demo domain: RGB image plus each object's mask and xyxy box."""

    image: np.ndarray
    masks: dict[str, np.ndarray]

    def box(self, name: str) -> list[float]:
        rows, cols = np.nonzero(self.masks[name])
        return [float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)]


def draw_shapes(shift: int = 0) -> ShapesScene:
    """A red circle, a blue square and a yellow triangle on a muted background, moved ``shift`` px right."""
    shapes = {
        "red circle": ((220, 40, 40), lambda d: d.ellipse((35 + shift, 40, 105 + shift, 110), fill=1)),
        "blue square": ((40, 80, 220), lambda d: d.rectangle((150 + shift, 130, 209 + shift, 189), fill=1)),
        "yellow triangle": ((240, 215, 40), lambda d: d.polygon([(60 + shift, 230), (130 + shift, 230),
                                                                  (95 + shift, 170)], fill=1)),
    }  # fmt: skip
    image = np.empty((256, 256, 3), np.uint8)
    image[:] = (105, 112, 118)
    masks = {}
    for name, (colour, draw) in shapes.items():
        canvas = Image.new("1", (256, 256), 0)
        draw(ImageDraw.Draw(canvas))
        masks[name] = np.asarray(canvas, dtype=bool)
        image[masks[name]] = colour
    return ShapesScene(image, masks)


@pytest.fixture(scope="session")
def shapes_scene() -> Callable[[int], ShapesScene]:
    """``shapes_scene(shift)`` draws the demo-domain test scene (see ``draw_shapes``)."""
    return draw_shapes
