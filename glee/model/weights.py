"""The official GLEE checkpoints (where they live, which variant loads them) and a resumable downloader.

The files are 0.5-2 GB on a Hugging Face space that users report as flaky (GLEE issue #48), so the
downloader resumes an interrupted ``.part`` file with an HTTP Range request, verifies a sha256 and only
then renames the file into place: a file under its final name is always complete.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

log = logging.getLogger(__name__)

SPACE_URL = "https://huggingface.co/spaces/Junfeng5/GLEE_demo/resolve/main"
ZOO_URL = f"{SPACE_URL}/MODEL_ZOO"
CHUNK_BYTES = 1 << 20
_TIMEOUT = httpx.Timeout(30.0)
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)")


@dataclass(frozen=True)
class ZooEntry:
    """One downloadable checkpoint. ``sha256`` is None where no digest has been published."""

    name: str
    filename: str
    variant: str
    url: str
    sha256: str | None = None
    note: str = ""


def _official_zoo() -> dict[str, ZooEntry]:
    entries: list[ZooEntry] = []
    stages = {
        "pretrain": "Stage-1 (Objects365 + OpenImages, CLIP frozen, no visual prompts)",
        "joint": "Stage-2 joint training on 15 datasets",
        "scaleup": "Stage-3 scale-up (+SA1B, GRIT)",
    }
    for size, backbone in (("lite", "R50"), ("plus", "Swin-L"), ("pro", "EVA02-L")):
        for stage, note in stages.items():
            # Only Lite has a separate Stage-1 config; Plus/Pro variants are not implemented at all yet.
            variant = "lite_stage1" if (size, stage) == ("lite", "pretrain") else size
            filename = f"GLEE_{size.capitalize()}_{stage}.pth"
            entries.append(
                ZooEntry(
                    f"{size}-{stage}", filename, variant, f"{ZOO_URL}/{filename}", None, f"{backbone}, {note}"
                )
            )
    entries.append(
        ZooEntry(
            "lite-vos",
            "GLEE_Lite_vos.pth",
            "lite",
            f"{ZOO_URL}/GLEE_Lite_vos.pth",
            None,
            "R50, VOS fine-tune (config not published; assumed to have the Stage-2 layout)",
        )
    )
    # The Dec-2023 demo files sit at the root of the space; the R50 and Swin-L URLs are the ones the GLEE
    # README links, the EVA02 file is loaded from the same folder by the same demo code.
    for size, stem in (("lite", "R50"), ("plus", "SwinL"), ("pro", "EVA02")):
        filename = f"GLEE_{stem}_Scaleup10m.pth"
        entries.append(
            ZooEntry(
                f"{size}-scaleup10m", filename, size, f"{SPACE_URL}/{filename}", None, "Dec-2023 demo weights"
            )
        )
    return {entry.name: entry for entry in entries}


ZOO: dict[str, ZooEntry] = _official_zoo()


def default_weights_dir() -> Path:
    """``$GLEE_WEIGHTS_DIR``, else ``~/.cache/glee/weights``: one place that containers can mount."""
    return Path(os.environ.get("GLEE_WEIGHTS_DIR") or Path.home() / ".cache" / "glee" / "weights")


class FetchError(RuntimeError):
    """A download that did not produce a complete, verified file."""


class ChecksumMismatchError(FetchError):
    pass


def sha256_file(path: str | os.PathLike[str]) -> str:
    return _hash_file(hashlib.sha256(), path).hexdigest()


def _hash_file(digest: hashlib._Hash, path: str | os.PathLike[str]) -> hashlib._Hash:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest


def fetch(
    name: str,
    dest_dir: str | os.PathLike[str],
    *,
    url: str | None = None,
    expected_sha256: str | None = None,
    progress: bool = True,
) -> Path:
    """Download zoo checkpoint ``name`` (or, with ``url``, any file saved as ``name``) into ``dest_dir``.

    An existing complete file is returned as is (verified first when a digest is known). An interrupted
    download resumes from ``<file>.part``. The sha256 is checked against ``expected_sha256`` or the zoo's
    digest; the computed digest is always written beside the file as ``<file>.sha256`` (sha256sum format)
    so that an unpinned download can be pinned later.
    """
    entry = ZOO.get(name)
    if entry is not None:
        filename, source, pinned = entry.filename, url or entry.url, entry.sha256
    elif url is not None:
        filename, source, pinned = name, url, None
    else:
        raise FetchError(f"unknown checkpoint {name!r}; known: {', '.join(ZOO)} (or give its --url)")
    if Path(filename).name != filename:
        raise FetchError(f"{filename!r} must be a plain file name")
    expected = (expected_sha256 or pinned or "").lower() or None
    if expected is not None and not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise FetchError(f"{expected_sha256!r} is not a sha256 (64 hexadecimal digits)")
    dest = Path(dest_dir) / filename
    if dest.is_file():
        if expected is not None:
            _check(sha256_file(dest), expected, f"existing {dest} (delete it to download again)")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(filename + ".part")
    digest = _download(source, part, progress)
    if expected is not None:
        try:
            _check(digest, expected, f"download of {source}")
        except ChecksumMismatchError:
            part.unlink()
            raise
    os.replace(part, dest)
    dest.with_name(filename + ".sha256").write_text(f"{digest}  {filename}\n")
    if expected is None:
        log.warning("no pinned sha256 for %s; computed %s (stored beside the file)", filename, digest)
    return dest


def _check(actual: str, expected: str, what: str) -> None:
    if actual != expected:
        raise ChecksumMismatchError(f"sha256 mismatch for {what}: expected {expected}, got {actual}")


def _download(url: str, part: Path, progress: bool) -> str:
    """Stream ``url`` into ``part``, resuming from its current size; returns the sha256 of the whole file."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        with httpx.stream("GET", url, headers=headers, follow_redirects=True, timeout=_TIMEOUT) as response:
            if response.status_code == 416 and offset:
                # Range past the end: the .part is complete (we died before the rename) or the file changed.
                _, total = _content_range(response)
                if total == offset:
                    return sha256_file(part)
                part.unlink()
                return _download(url, part, progress)
            if response.status_code == 206:
                start, _ = _content_range(response)
                if start != offset:
                    raise FetchError(
                        f"{url}: asked to resume at byte {offset}, server sent from byte {start}"
                    )
            elif response.status_code == 200:
                offset = 0  # the server ignored the Range header: start over
            else:
                raise FetchError(f"GET {url}: HTTP {response.status_code} {response.reason_phrase}")
            return _stream_to(response, part, offset, progress)
    except httpx.HTTPError as exc:
        again = f"run again to resume from {part}" if part.exists() else "run again to retry"
        raise FetchError(f"GET {url} failed ({exc}); {again}") from exc


def _stream_to(response: httpx.Response, part: Path, offset: int, progress: bool) -> str:
    # Hash the bytes already on disk first, so the digest covers the whole file in one pass.
    digest = _hash_file(hashlib.sha256(), part) if offset else hashlib.sha256()
    length = response.headers.get("content-length")
    total = offset + int(length) if length is not None else None
    columns = (
        TextColumn(part.name),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with open(part, "ab" if offset else "wb") as f, Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("download", total=total, completed=offset)
        for chunk in response.iter_bytes(CHUNK_BYTES):
            f.write(chunk)
            digest.update(chunk)
            bar.advance(task, len(chunk))
    return digest.hexdigest()


def _content_range(response: httpx.Response) -> tuple[int | None, int | None]:
    """(first byte, total size) from ``Content-Range``; None where the server left them out."""
    match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
    if match is None:
        return None, None
    start, total = match.groups()
    return (int(start) if start else None), (int(total) if total and total != "*" else None)
