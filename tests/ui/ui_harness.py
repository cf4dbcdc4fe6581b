"""Helpers of the search page's browser tests: where things are, the page's server, screenshots."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from clipsearch.apps.ui.settings import UISettings

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "ui"
CHECKPOINT = REPO / "encoder_service" / "weights" / "clipsearch-demo.pt"
COLLECTION = "demo"
#: The demo catalog `make demo` serves (seed 0); 300 products hold 3 red dresses.
CATALOG_PRODUCTS = 300
CHROMIUM = os.environ.get("CLIPSEARCH_CHROMIUM", "/usr/bin/chromium")
#: Known to work here: without the networking flags Chromium keeps dialling out of a closed network.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def missing(reason: str) -> None:
    """Skips locally; fails under CI, where a missing browser means a broken setup."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the browser tests must run)", pytrace=False)
    pytest.skip(reason)


class PageServer:
    """The page's uvicorn server in a thread, on a free loopback port."""

    def __init__(self, settings: UISettings, page=None):
        from clipsearch.apps.ui.server import build_server

        self.server = build_server(settings, page)
        self.thread = threading.Thread(target=self.server.run, name="ui", daemon=True)

    def __enter__(self) -> PageServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the page's server did not start"
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
