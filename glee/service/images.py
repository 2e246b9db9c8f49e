"""Turning request images into RGB arrays, with every failure mapped to a documented client error.

Order matters: the pixel count is read from the file header before any pixel is decoded, so a small
file that declares 20000x20000 pixels costs nothing (413) instead of gigabytes of memory.

Pixel depths: 8-bit images of any mode become RGB, 16-bit grayscale is scaled to 8 bits (value / 257,
rounded down to the high byte), and 32-bit integer or floating-point images are refused (400
``unsupported_image``): their value range is not known, so any conversion would be a guess.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from urllib.parse import urljoin, urlsplit

import httpx
import numpy as np
from PIL import Image, UnidentifiedImageError

from glee.service.errors import InvalidInputError, PayloadTooLargeError

_DATA_URI_MARK = ";base64,"
_URL_SCHEMES = ("http://", "https://")
# Pillow's modes of unsigned 16-bit grayscale (little, little, big and native endian).
_16_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Encoded image file -> uint8 RGB array [H, W, 3] (first frame of animations, EXIF ignored)."""
    if not data:
        raise InvalidInputError("the image is empty (0 bytes)", code="empty_image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise PayloadTooLargeError(f"image has too many pixels (limit {max_pixels})") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InvalidInputError("the image could not be decoded", code="undecodable_image") from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidInputError(f"image has no pixels ({width}x{height})", code="empty_image")
    if width * height > max_pixels:
        raise PayloadTooLargeError(f"image is {width}x{height} pixels; the limit is {max_pixels} pixels")
    if image.mode in ("I", "F"):
        kind = "32-bit integer" if image.mode == "I" else "floating-point"
        message = f"{kind} images are not supported; send 8- or 16-bit images"
        raise InvalidInputError(message, code="unsupported_image")
    try:
        return _rgb(image)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        message = f"the image is truncated or corrupt: {exc}"
        raise InvalidInputError(message, code="undecodable_image") from exc


def _rgb(image: Image.Image) -> np.ndarray:
    """uint8 RGB. Pillow's own conversion would clip 16-bit values at 255 (all but the darkest pixels
    white), so 16-bit grayscale keeps its high byte instead."""
    if image.mode in _16_BIT_MODES:
        gray = (np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def decode_base64(text: str) -> bytes:
    """Standard base64, optionally behind a ``data:<mime>;base64,`` prefix; whitespace is ignored."""
    if text.startswith("data:"):
        if _DATA_URI_MARK not in text:
            raise InvalidInputError("data URI images must be base64 encoded", code="undecodable_image")
        text = text.split(_DATA_URI_MARK, 1)[1]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        message = "image is neither valid base64 nor an http(s) URL"
        raise InvalidInputError(message, code="bad_base64") from exc


def is_url(text: str) -> bool:
    """http(s) URLs, with the scheme in any case (``HTTPS://`` is a URL, not malformed base64)."""
    return text[:8].lower().startswith(_URL_SCHEMES)


class RemoteImageFetcher:
    """Downloads http(s) images for requests that pass a URL, only from allow-listed hosts.

    Redirects are followed (at most ``MAX_REDIRECTS``; object stores and CDNs redirect) only to allowed
    hosts: each hop is checked like the first URL, so a redirect can never leave the allow-list. The
    download stops at the body size limit, so a remote image can never be bigger than an uploaded one.
    """

    MAX_REDIRECTS = 5

    def __init__(self, *, enabled: bool, hosts: list[str], timeout_s: float, max_bytes: int) -> None:
        self.enabled = enabled
        self.hosts = {h.lower() for h in hosts}
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) if enabled else None

    async def fetch(self, url: str) -> bytes:
        if self._client is None:
            raise InvalidInputError("remote image URLs are disabled on this server", code="url_not_allowed")
        for _ in range(self.MAX_REDIRECTS + 1):
            self._check(url)
            got = await self._get(self._client, url)
            if isinstance(got, bytes):
                return got
            url = got
        raise InvalidInputError(
            f"fetching the image took more than {self.MAX_REDIRECTS} redirects", code="url_fetch_failed"
        )

    async def _get(self, client: httpx.AsyncClient, url: str) -> bytes | str:
        """The body at ``url``, or the URL that its redirect points to."""
        try:
            async with client.stream("GET", url) as response:
                if response.has_redirect_location:
                    return urljoin(url, response.headers["Location"])
                if response.status_code != 200:
                    message = f"fetching the image returned HTTP {response.status_code}"
                    raise InvalidInputError(message, code="url_fetch_failed")
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise PayloadTooLargeError(f"remote image is larger than {self.max_bytes} bytes")
                    chunks.append(chunk)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise InvalidInputError(_fetch_failure(exc, self.timeout_s), code="url_fetch_failed") from exc
        return b"".join(chunks)

    def _check(self, url: str) -> None:
        """Refuse a URL (the request's, or a redirect's target) that is not http(s) on an allowed host."""
        try:
            parts = urlsplit(url)
            host, _ = (parts.hostname or "").lower(), parts.port  # .port raises on a malformed port
        except ValueError as exc:
            raise InvalidInputError(f"malformed image URL: {exc}", code="url_fetch_failed") from exc
        if parts.scheme.lower() not in ("http", "https"):
            raise InvalidInputError(f"image URL {url!r} is not http(s)", code="url_not_allowed")
        if host not in self.hosts:
            message = f"host {host!r} is not in the remote image allow-list"
            raise InvalidInputError(message, code="url_not_allowed")

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _fetch_failure(exc: httpx.HTTPError | httpx.InvalidURL, timeout_s: float) -> str:
    """A message that says what went wrong even when httpx gives none (its timeouts have no text)."""
    if isinstance(exc, httpx.TimeoutException):
        return f"fetching the image timed out after {timeout_s:g} s ({type(exc).__name__})"
    detail = f": {exc}" if str(exc) else ""
    return f"fetching the image failed: {type(exc).__name__}{detail}"
