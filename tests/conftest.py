"""Shared fixtures: a real redis-server on a free port, real ``glee serve`` processes, demo-domain scenes.

Both are subprocesses talking over real sockets; nothing is mocked. redis-server must be installed
(``apt-get install redis-server``; .ci/run does it): a missing server fails the tests that need it.
"""

from __future__ import annotations

import socket
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image, ImageDraw

from glee.service.launcher import RedisServer, ServerProcess


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
    try:
        server = RedisServer.start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def launch_service(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., ServerProcess]:
    """``launch_service(name, **settings)`` starts ``glee serve`` (``ServerProcess.start``); the caller
    waits for readiness and stops it."""
    logs = tmp_path_factory.mktemp("service-logs")
    return lambda name, **settings: ServerProcess.start(logs / f"{name}.log", **settings)


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
