"""Helpers of the search page's browser tests: where things are, the page's server, screenshots."""

from __future__ import annotations

import os
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
    """The page's server (the real PageServer) on its own event loop in a thread, on a free port."""

    def __init__(self, settings: UISettings, page=None):
        from dataclasses import replace

        from harness import ServerThread

        from clipsearch.apps.ui.server import PageServer as Server

        self.thread = ServerThread(lambda: Server(replace(settings, port=0), page).start(), name="ui")

    def __enter__(self) -> PageServer:
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.thread.port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.stop()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
