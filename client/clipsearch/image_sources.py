"""Where a catalog's images come from: a path relative to the catalog, an absolute path, or a URL.

URLs are fetched here, on the ingesting side, not by the encoder: the encoder stays a compute
service that never opens connections on a caller's say-so (an encoder fetching URLs given
by anyone holding a read token would reach whatever its network reaches), and the catalog's
owner gets per-row errors and retries where the catalog is. Every fetch is bounded: a size
cap (checked from Content-Length and while reading), a timeout per attempt, a redirect limit
(http and https only), an image content type, the pixel count read from the header, a few
retries with backoff for transient failures (timeouts, 429, 5xx), and a bounded number of
fetches at once. Local files get the size cap too. A failure is a :class:`SourceError`
naming what went wrong; it fails only its row.
"""

from __future__ import annotations

import io
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

USER_AGENT = "clipsearch-ingest"
_URL = re.compile(r"^https?://", re.IGNORECASE)
_TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}


class SourceError(Exception):
    """An image that could not be had; ``kind`` groups failures in the ingest report."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class SourceLimits:
    max_bytes: int = 16 * 1024 * 1024
    max_pixels: int = 89_478_485
    timeout_s: float = 10.0
    max_redirects: int = 3
    retries: int = 2
    #: URLs fetched at once.
    workers: int = 8


def is_url(ref: str) -> bool:
    return bool(_URL.match(ref))


class ImageSources:
    """Loads image bytes for catalog references; relative paths are under ``root``."""

    def __init__(self, root: Path, limits: SourceLimits = SourceLimits()):
        self.root = root
        self.limits = limits
        self._opener = urllib.request.build_opener(_LimitedRedirects(limits.max_redirects))
        self._pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="ingest-fetch")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def path_of(self, ref: str) -> Path:
        path = Path(ref)
        return path if path.is_absolute() else self.root / path

    def load_many(self, refs: Sequence[str]) -> list[bytes | SourceError]:
        """Each reference's bytes or its error, in order; URLs fetched concurrently."""
        futures = {i: self._pool.submit(self.fetch, ref) for i, ref in enumerate(refs) if is_url(ref)}
        results: list[bytes | SourceError] = []
        for i, ref in enumerate(refs):
            try:
                results.append(futures[i].result() if i in futures else self.read(ref))
            except SourceError as error:
                results.append(error)
        return results

    def read(self, ref: str) -> bytes:
        if ref.lower().startswith(("file:", "ftp:", "data:")):
            raise SourceError("unsupported image location", f"{ref[:80]}: use a file path or an http(s) URL")
        path = self.path_of(ref)
        try:
            size = path.stat().st_size
            if size > self.limits.max_bytes:
                raise SourceError(
                    "image too large", f"{ref}: {size} bytes, over the limit of {self.limits.max_bytes}"
                )
            return path.read_bytes()
        except SourceError:
            raise
        except IsADirectoryError:
            raise SourceError("image not found", f"cannot read image {ref}: it is a directory") from None
        except FileNotFoundError:
            raise SourceError("image not found", f"cannot read image {ref}: no such file ({path})") from None
        except OSError as error:
            raise SourceError(
                "image not readable", f"cannot read image {ref}: {error.strerror or error}"
            ) from None

    def fetch(self, url: str) -> bytes:
        """The bytes at ``url`` within the limits, retrying transient failures."""
        attempt = 0
        while True:
            try:
                return self._fetch_once(url)
            except _Transient as error:
                attempt += 1
                if attempt > self.limits.retries:
                    raise SourceError("fetch failed", f"{url}: {error} (after {attempt} attempts)") from None
                time.sleep(min(2.0, 0.25 * 2**attempt))

    def _fetch_once(self, url: str) -> bytes:
        limits = self.limits
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "image/*"})
        try:
            with self._opener.open(request, timeout=limits.timeout_s) as response:
                kind = response.headers.get_content_type()
                if not kind.startswith("image/") and kind != "application/octet-stream":
                    raise SourceError("not an image", f"{url}: the server sent {kind}, not an image")
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > limits.max_bytes:
                    raise SourceError(
                        "image too large", f"{url}: {declared} bytes, over the limit of {limits.max_bytes}"
                    )
                data = response.read(limits.max_bytes + 1)
        except SourceError:
            raise
        except urllib.error.HTTPError as error:
            if 300 <= error.code < 400:
                raise SourceError(
                    "fetch failed", f"{url}: more than {limits.max_redirects} redirects"
                ) from None
            if error.code in _TRANSIENT_HTTP:
                raise _Transient(f"HTTP {error.code} {error.reason}") from None
            raise SourceError("fetch failed", f"{url}: HTTP {error.code} {error.reason}") from None
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, (TimeoutError, socket.timeout, ConnectionError)):
                raise _Transient(f"{type(reason).__name__}: {reason}") from None
            raise SourceError("fetch failed", f"{url}: {reason}") from None
        except (TimeoutError, ConnectionError) as error:
            raise _Transient(f"{type(error).__name__}: {error or 'timed out'}") from None
        if len(data) > limits.max_bytes:
            raise SourceError("image too large", f"{url}: more than {limits.max_bytes} bytes")
        self._check_pixels(url, data)
        return data

    def _check_pixels(self, ref: str, data: bytes) -> None:
        """The header's size against the pixel limit (the encoder decodes; this refuses early)."""
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        except Exception:
            raise SourceError("not an image", f"{ref}: the bytes are not an image Pillow can read") from None
        if width * height > self.limits.max_pixels:
            raise SourceError(
                "image too large",
                f"{ref}: {width}x{height} pixels, over the limit of {self.limits.max_pixels}",
            )


class _Transient(Exception):
    """A failure worth retrying (timeout, connection reset, 429, 5xx)."""


class _LimitedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows at most ``limit`` redirects, to http(s) only."""

    def __init__(self, limit: int):
        super().__init__()
        self.max_redirections = limit  # type: ignore[misc]
        self.max_repeats = limit  # type: ignore[misc]

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if not is_url(newurl):
            raise SourceError("fetch failed", f"{req.full_url}: redirected to {newurl[:80]}, not http(s)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)
