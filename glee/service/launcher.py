"""Run ``glee serve`` (and a throw-away ``redis-server``) as child processes on free ports: for
integration tests and benchmarks, which need real servers over real sockets (sometimes several)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

import glee

# The directory holding the ``glee`` package, so the child imports this very code even uninstalled.
_IMPORT_ROOT = Path(glee.__file__).resolve().parents[1]


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (bound together, so they cannot repeat)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


@dataclass
class ServerProcess:
    """One ``glee serve`` child; ``http`` is its base URL, ``grpc`` its host:port, ``log`` its output."""

    process: subprocess.Popen
    http: str
    grpc: str
    log: Path

    @classmethod
    def start(cls, log: Path, **settings: object) -> ServerProcess:
        """Start on free ports, configured only through ``GLEE_<SETTING>`` environment variables
        (the parent's GLEE_* variables are not inherited)."""
        http_port, grpc_port = free_ports(2)
        env = {key: value for key, value in os.environ.items() if not key.startswith("GLEE_")}
        env.update({f"GLEE_{name.upper()}": str(value) for name, value in settings.items()})
        env.update(GLEE_HOST="127.0.0.1", GLEE_HTTP_PORT=str(http_port), GLEE_GRPC_PORT=str(grpc_port))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_IMPORT_ROOT), env.get("PYTHONPATH")]))
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-c", "from glee.cli import app; app()", "serve"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return cls(process, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", log)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def wait_ready(self, timeout_s: float = 300) -> None:
        """Block until ``/readyz`` answers 200; raises ``RuntimeError`` (with the log) otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"glee serve exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.http}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"glee serve not ready after {timeout_s} s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM (graceful), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class RedisServer:
    """A ``redis-server`` child without persistence, for sessions that must not outlive the run."""

    process: subprocess.Popen
    url: str

    @classmethod
    def start(cls, timeout_s: float = 20) -> RedisServer:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        (port,) = free_ports(1)
        command = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        server = cls(subprocess.Popen(command, stdout=subprocess.DEVNULL), f"redis://127.0.0.1:{port}/0")
        client = redis.Redis.from_url(server.url)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    client.ping()
                    return server
                except redis.ConnectionError:
                    if server.process.poll() is not None or time.monotonic() > deadline:
                        server.stop()
                        raise RuntimeError(f"redis-server did not start on port {port}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
