"""Is a search page answering? Standard library only, for ``make demo`` and tests."""

from __future__ import annotations

import time
import urllib.error
import urllib.request


def is_answering(url: str, *, timeout_s: float = 2.0) -> bool:
    """True when ``GET url`` returns 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_until_answering(url: str, *, timeout_s: float = 60.0, poll_s: float = 0.2) -> None:
    """Blocks until the page answers; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if is_answering(url, timeout_s=min(2.0, timeout_s)):
            return
        time.sleep(poll_s)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f}s")
