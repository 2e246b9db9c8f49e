"""The checkpoint downloader against a real HTTP server on 127.0.0.1 (with HTTP Range support)."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from glee.model.cli import register
from glee.model.weights import ZOO, ChecksumMismatchError, FetchError, fetch

BODY = np.random.default_rng(7).integers(0, 256, size=3 * (1 << 20) + 12345, dtype=np.uint8).tobytes()
DIGEST = hashlib.sha256(BODY).hexdigest()
NAME = "weights.pth"


@dataclass
class FileServer:
    url: str
    files: dict[str, bytes]
    honor_range: bool = True
    cut_after: int | None = None  # announce the full length but close the connection after this many bytes
    ranges: list[str | None] = field(default_factory=list)  # Range header of every GET, None if absent


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        state = self.server.state  # type: ignore[attr-defined]
        requested = self.headers.get("Range")
        state.ranges.append(requested)
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        match = re.fullmatch(r"bytes=(\d+)-", requested or "")
        if match and state.honor_range:
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            body = body[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: state.cut_after])

    def log_message(self, format: str, *args: object) -> None:
        """Keep pytest output clean."""


@pytest.fixture
def server() -> Iterator[FileServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    state = FileServer(url=f"http://127.0.0.1:{httpd.server_port}", files={f"/{NAME}": BODY})
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _get(server: FileServer, tmp_path: Path, **kwargs: object) -> Path:
    return fetch(NAME, tmp_path, url=f"{server.url}/{NAME}", progress=False, **kwargs)  # type: ignore[arg-type]


def test_full_download_is_verified_and_renamed(server: FileServer, tmp_path: Path) -> None:
    path = _get(server, tmp_path, expected_sha256=DIGEST.upper())
    assert path == tmp_path / NAME
    assert path.read_bytes() == BODY
    assert not (tmp_path / f"{NAME}.part").exists()
    assert (tmp_path / f"{NAME}.sha256").read_text() == f"{DIGEST}  {NAME}\n"
    assert server.ranges == [None]


def test_unpinned_download_stores_the_computed_digest(server: FileServer, tmp_path: Path) -> None:
    path = _get(server, tmp_path)
    assert path.read_bytes() == BODY
    assert (tmp_path / f"{NAME}.sha256").read_text().split()[0] == DIGEST


def test_resumes_from_a_partial_file(server: FileServer, tmp_path: Path) -> None:
    done = 1_000_003
    (tmp_path / f"{NAME}.part").write_bytes(BODY[:done])
    path = _get(server, tmp_path, expected_sha256=DIGEST)
    assert server.ranges == [f"bytes={done}-"]
    assert path.read_bytes() == BODY


def test_interrupted_download_keeps_the_part_and_resumes(server: FileServer, tmp_path: Path) -> None:
    server.cut_after = 2_000_000
    with pytest.raises(FetchError, match="resume"):
        _get(server, tmp_path, expected_sha256=DIGEST)
    assert not (tmp_path / NAME).exists()
    kept = (tmp_path / f"{NAME}.part").stat().st_size
    assert 0 < kept <= server.cut_after

    server.cut_after = None
    path = _get(server, tmp_path, expected_sha256=DIGEST)
    assert server.ranges == [None, f"bytes={kept}-"]
    assert path.read_bytes() == BODY


def test_restarts_when_the_server_ignores_range(server: FileServer, tmp_path: Path) -> None:
    server.honor_range = False
    (tmp_path / f"{NAME}.part").write_bytes(b"\xff" * 5000)  # wrong bytes: they must be overwritten
    path = _get(server, tmp_path, expected_sha256=DIGEST)
    assert server.ranges == ["bytes=5000-"]
    assert path.read_bytes() == BODY


def test_complete_partial_file_is_finished_without_download(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / f"{NAME}.part").write_bytes(BODY)
    path = _get(server, tmp_path, expected_sha256=DIGEST)
    assert server.ranges == [f"bytes={len(BODY)}-"]
    assert path.read_bytes() == BODY


def test_checksum_mismatch_keeps_nothing(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(ChecksumMismatchError, match=DIGEST):
        _get(server, tmp_path, expected_sha256="0" * 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_existing_file_with_wrong_digest_is_reported_not_downloaded(
    server: FileServer, tmp_path: Path
) -> None:
    (tmp_path / NAME).write_bytes(b"not the checkpoint")
    with pytest.raises(ChecksumMismatchError, match="delete it"):
        _get(server, tmp_path, expected_sha256=DIGEST)
    assert server.ranges == []


def test_http_404_is_an_error(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="404"):
        fetch(NAME, tmp_path, url=f"{server.url}/missing.pth", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unknown_name_without_url_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="lite-scaleup"):
        fetch("GLEE_Lite_nope", tmp_path, progress=False)


def test_zoo_covers_the_official_files() -> None:
    for size in ("lite", "plus", "pro"):
        for stage in ("pretrain", "joint", "scaleup", "scaleup10m"):
            assert f"{size}-{stage}" in ZOO
    assert ZOO["lite-pretrain"].variant == "lite_stage1"
    assert ZOO["lite-joint"].url == (
        "https://huggingface.co/spaces/Junfeng5/GLEE_demo/resolve/main/MODEL_ZOO/GLEE_Lite_joint.pth"
    )
    assert ZOO["lite-scaleup10m"].url.endswith("/resolve/main/GLEE_R50_Scaleup10m.pth")
    assert ZOO["lite-vos"].filename == "GLEE_Lite_vos.pth"


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_cli_fetch_and_list(server: FileServer, tmp_path: Path, cli: typer.Typer) -> None:
    runner = CliRunner()
    args = [
        "weights",
        "fetch",
        NAME,
        "--dest",
        str(tmp_path),
        "--url",
        f"{server.url}/{NAME}",
        "--no-progress",
    ]
    result = runner.invoke(cli, [*args, "--sha256", DIGEST])
    assert result.exit_code == 0, result.output
    assert f"sha256 {DIGEST}" in result.stdout
    assert (tmp_path / NAME).read_bytes() == BODY

    listing = runner.invoke(cli, ["weights", "list"])
    assert listing.exit_code == 0
    assert "GLEE_Lite_scaleup.pth" in listing.stdout


def test_cli_fetch_failure_exits_non_zero(server: FileServer, tmp_path: Path, cli: typer.Typer) -> None:
    url = f"{server.url}/missing.pth"
    result = CliRunner().invoke(cli, ["weights", "fetch", NAME, "--dest", str(tmp_path), "--url", url])
    assert result.exit_code == 1
    assert "404" in result.stderr
