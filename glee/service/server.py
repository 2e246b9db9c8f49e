"""``glee serve``: the REST and gRPC servers and the engine in one process and one event loop.

Both servers come up first (so liveness probes answer at once); the model loads in the background and
readiness (``/readyz``, gRPC health) flips to serving when it is warmed up. A model that fails to load
stops the process with an error instead of leaving a server that can never become ready. SIGINT/SIGTERM
stop accepting, give in-flight requests a grace period, then stop the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn

from glee.model.predictor import GleePredictor
from glee.service.engine import Engine
from glee.service.grpc_api import set_serving, start_grpc_server
from glee.service.rest import create_app
from glee.service.settings import Settings

log = logging.getLogger(__name__)

_GRACE_S = 5.0


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling (it would re-raise SIGTERM after its shutdown and kill the
    process before the gRPC server and the engine stop); ``serve`` routes the signals to it instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _http_socket(host: str, port: int) -> socket.socket:
    """The HTTP listening socket, bound before anything starts: a port in use is then one clear OSError
    rather than uvicorn's exit from inside a task."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise OSError(f"cannot listen for HTTP on {host}:{port}: {exc.strerror or exc}") from exc


async def serve(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM; raises if the model cannot be loaded or a port cannot be bound. A model
    that cannot load (backend, device, path) is refused before any port is bound."""
    GleePredictor.weights_path(settings.model, settings.backend, settings.device)
    http_socket = _http_socket(settings.host, settings.http_port)
    engine = Engine(settings)
    try:
        grpc_server, grpc_port, health = await start_grpc_server(engine, settings.host, settings.grpc_port)
    except OSError:
        http_socket.close()
        raise
    await set_serving(health, False)
    http = _HttpServer(
        uvicorn.Config(
            create_app(engine),
            host=settings.host,
            port=settings.http_port,
            log_level=settings.log_level,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(_GRACE_S),
        )
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, http.handle_exit, sig, None)
    log.info("gRPC on %s:%d, HTTP on %s:%d", settings.host, grpc_port, settings.host, settings.http_port)

    async def load_model() -> None:
        await engine.start()
        await set_serving(health, True)

    loading = asyncio.create_task(load_model())
    http_task = asyncio.create_task(http.serve(sockets=[http_socket]))
    try:
        done, _ = await asyncio.wait({loading, http_task}, return_when=asyncio.FIRST_COMPLETED)
        if loading in done and loading.exception() is not None:
            http.should_exit = True
            await http_task
            raise loading.exception()
        await http_task
    finally:
        loading.cancel()
        await set_serving(health, False)
        await grpc_server.stop(_GRACE_S)
        await engine.stop()
